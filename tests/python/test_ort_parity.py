"""bertling against onnxruntime, live, on the committed tiny fixtures: mask-position logits within
1e-4 and identical top-5 for every reference sentence of every architecture."""
from __future__ import annotations

import numpy as np
import pytest

from bertling_cli import ARCHS, ROOT, copy_fixture, fill_json, reference_texts, run_bertling

from bertling_models.ort import ort_mask_logits

LOGIT_TOLERANCE = 1e-4


@pytest.mark.parametrize("arch", ARCHS)
def test_mask_logits_match_onnxruntime(arch, compiled_models):
    export = str(ROOT / "models" / "fixtures" / arch)
    texts = reference_texts(arch)
    assert len(texts) >= 20
    checked = 0
    for text in texts:
        ids, ort_logits = ort_mask_logits(export, text)
        ours = fill_json(compiled_models[arch], text)
        assert ours["input_ids"] == ids, text
        positions = sorted(ort_logits)
        assert [m["position"] for m in ours["masks"]] == positions, text
        for mask, pos in zip(ours["masks"], positions):
            got = np.asarray(mask["logits"], dtype=np.float32)
            want = ort_logits[pos]
            assert got.shape == want.shape
            diff = float(np.max(np.abs(got - want)))
            assert diff <= LOGIT_TOLERANCE, f"{arch} {text!r} position {pos}: max |diff| {diff}"
            top5 = list(np.argsort(-want.astype(np.float64), kind="stable")[:5])
            assert [p["token"] for p in mask["predictions"]] == top5, text
            checked += 1
    assert checked >= 25


@pytest.mark.parametrize("arch", ARCHS)
def test_large_logits_compile_in_fp32_and_match_onnxruntime(arch, tmp_path):
    """Real models' logits reach tens (the tiny fixtures' stay near +-5); f32 rounding grows with
    them. The fixture with its head's LayerNorm gain scaled by 40 must still compile in fp32 and
    match onnxruntime within 1e-4 of the logits' magnitude."""
    import onnx
    from onnx import numpy_helper

    export, graph = copy_fixture(arch, tmp_path)
    heads = {"albert": "predictions.LayerNorm.weight", "bert": "cls.predictions.transform.LayerNorm.weight",
             "distilbert": "vocab_layer_norm.weight", "roberta": "lm_head.layer_norm.weight"}
    (gain,) = [t for t in graph.graph.initializer if t.name == heads[arch]]
    gain.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(gain) * np.float32(40), gain.name))
    onnx.save(graph, str(export / "model.onnx"))
    model = tmp_path / "big.bertling"
    run_bertling("compile", str(export), "-o", str(model), "--precision", "fp32")
    worst, magnitude = 0.0, 0.0
    for text in reference_texts(arch)[:8]:
        ids, ort_logits = ort_mask_logits(str(export), text)
        ours = fill_json(model, text)
        assert ours["input_ids"] == ids, text
        for mask, pos in zip(ours["masks"], sorted(ort_logits)):
            want = ort_logits[pos]
            worst = max(worst, float(np.max(np.abs(np.asarray(mask["logits"], dtype=np.float32) - want))))
            magnitude = max(magnitude, float(np.max(np.abs(want))))
    assert magnitude > 50, magnitude  # the scaling took: logits an order above the fixture's
    assert worst <= LOGIT_TOLERANCE * magnitude, f"{arch}: max |diff| {worst}, max |logit| {magnitude}"
