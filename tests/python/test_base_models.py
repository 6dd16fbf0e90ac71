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
    run_bertling("compile", str(export), "-o", str(model))
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
