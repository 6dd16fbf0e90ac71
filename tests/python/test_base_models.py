"""Base-size ALBERT and DistilBERT (albert-base-v2 and distilbert-base-uncased shapes) rebuilt
without torch from the committed skeletons, compiled by bertling, and compared with onnxruntime
live: identical top-5 for every mask, and mask-position logits close."""
from __future__ import annotations

import numpy as np
import pytest

from bertling_cli import fill_json, run_bertling

from bertling_models import skeleton
from bertling_models.ort import ort_mask_logits

SENTENCES = [
    "The capital of France is [MASK].",
    "If you don't [MASK] at the sign, you will get a ticket.",
    "She opened the [MASK] and walked into the [MASK].",
    "[MASK] is a programming language.",
    "Tokyo (東京) is the [MASK] of Japan; the café is [MASK]!",
]

# Base-size graphs sum 768- and 3072-wide products in a different order than onnxruntime does.
LOGIT_TOLERANCE = 1e-3


@pytest.mark.parametrize("arch", ["albert", "distilbert"])
def test_base_model_matches_onnxruntime(arch, tmp_path):
    export = tmp_path / "export"
    skeleton.regen(skeleton.skeleton_dir(arch), str(export))
    model = tmp_path / f"{arch}.bertling"
    run_bertling("compile", str(export), "-o", str(model), "--precision", "fp32")
    info = run_bertling("inspect", str(model))
    assert "hidden 768" in info
    if arch == "albert":
        # The shared layer's weights are stored once, though tract's graph uses a copy per layer.
        assert model.stat().st_size <= (export / "model.onnx").stat().st_size * 1.02
    mask = "[MASK]"
    checked = 0
    for text in SENTENCES:
        ids, ort_logits = ort_mask_logits(str(export), text.replace("[MASK]", mask))
        ours = fill_json(model, text)
        assert ours["input_ids"] == ids, text
        for m, pos in zip(ours["masks"], sorted(ort_logits)):
            assert m["position"] == pos
            want = ort_logits[pos]
            got = np.asarray(m["logits"], dtype=np.float32)
            diff = float(np.max(np.abs(got - want)))
            assert diff <= LOGIT_TOLERANCE, f"{arch} {text!r}: max |diff| {diff}"
            top5 = list(np.argsort(-want.astype(np.float64), kind="stable")[:5])
            assert [p["token"] for p in m["predictions"]] == top5, text
            checked += 1
    assert checked == 7


# Issue 3's accuracy bar for the random-init base models, and its size limits (onnxruntime's
# quantize_dynamic files: 15.7 MB and 90.7 MB).
INT8_MIN_COSINE = 0.999
INT8_MAX_BYTES = {"albert": 13_000_000, "distilbert": 70_000_000}

INT8_SENTENCES = SENTENCES + [
    "The [MASK] sat on the mat and looked at the [MASK].",
    "I would like to [MASK] a table for two at eight.",
    "Water boils at one hundred degrees [MASK].",
    "He plays the [MASK] in a jazz band.",
    "Please insert your [MASK] and enter your PIN.",
    "The meeting was moved to [MASK] morning.",
]


@pytest.mark.parametrize("arch", ["albert", "distilbert"])
def test_base_model_int8_stays_close_to_onnxruntime_fp32(arch, tmp_path):
    export = tmp_path / "export"
    skeleton.regen(skeleton.skeleton_dir(arch), str(export))
    model = tmp_path / f"{arch}.int8.bertling"
    run_bertling("compile", str(export), "-o", str(model))  # int8 is the default
    assert "int8" in run_bertling("inspect", str(model))
    size = model.stat().st_size
    assert size <= INT8_MAX_BYTES[arch], f"{arch}: {size} bytes"
    cosines = []
    for text in INT8_SENTENCES:
        ids, ort_logits = ort_mask_logits(str(export), text)
        ours = fill_json(model, text)
        assert ours["input_ids"] == ids, text
        for m, pos in zip(ours["masks"], sorted(ort_logits)):
            want = ort_logits[pos].astype(np.float64)
            got = np.asarray(m["logits"], dtype=np.float64)
            cosines.append(float(want @ got / (np.linalg.norm(want) * np.linalg.norm(got))))
    assert len(cosines) >= 14
    print(f"{arch}: int8 {size} bytes, {len(cosines)} masks, min cosine to onnxruntime fp32 {min(cosines):.6f}")
    assert min(cosines) >= INT8_MIN_COSINE, f"{arch}: cosines {sorted(cosines)[:3]}"
