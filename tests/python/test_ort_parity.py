"""bertling against onnxruntime, live, on the committed tiny fixtures: mask-position logits within
1e-4 and identical top-5 for every reference sentence of every architecture."""
from __future__ import annotations

import json

import numpy as np
import pytest

from bertling_cli import ARCHS, ROOT, fill_json

from bertling_models.ort import ort_mask_logits

LOGIT_TOLERANCE = 1e-4


def reference_texts(arch: str) -> list[str]:
    refs = json.loads((ROOT / "models" / "fixtures" / arch / "references.json").read_text())
    return [c["text"] for c in refs["cases"]]


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
