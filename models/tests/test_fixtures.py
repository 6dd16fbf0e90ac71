"""Torch-free checks of the committed fixtures (run in CI): onnxruntime vs the recorded references."""
import json
import os

import numpy as np
import onnx
import pytest
from tokenizers import Tokenizer

from bertling_models import architectures, cases, ort, tokenization
from bertling_models.fixtures import FIXTURES_DIR

ARCHS = architectures.ARCHS
TOL = 1e-4
FILES = ["model.onnx", "config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
         "references.json", "tokenizer_reference.json"]


def fdir(arch):
    return os.path.join(FIXTURES_DIR, arch)


def load(arch, name):
    with open(os.path.join(fdir(arch), name), encoding="utf-8") as f:
        return json.load(f)


@pytest.mark.parametrize("arch", ARCHS)
def test_layout_and_graph(arch):
    for fn in FILES:
        assert os.path.exists(os.path.join(fdir(arch), fn)), fn
    path = os.path.join(fdir(arch), "model.onnx")
    assert os.path.getsize(path) < 2 * 1024 * 1024
    m = onnx.load(path)
    onnx.checker.check_model(m)
    assert [i.name for i in m.graph.input] == architectures.ONNX_INPUTS[arch]
    for i in m.graph.input:
        assert i.type.tensor_type.elem_type == onnx.TensorProto.INT64
        assert [d.dim_param for d in i.type.tensor_type.shape.dim] == ["batch_size", "sequence_length"]
    assert [o.name for o in m.graph.output] == ["logits"]
    cfg = load(arch, "config.json")
    assert cfg["model_type"] == arch
    refs = load(arch, "references.json")
    assert refs["model_vocab_size"] == cfg["vocab_size"]
    assert refs["mask_token"] == tokenization.MASK_TOKEN[arch]


@pytest.mark.parametrize("arch", ARCHS)
def test_special_tokens(arch):
    tok = Tokenizer.from_file(os.path.join(fdir(arch), "tokenizer.json"))
    for name, (content, tid) in tokenization.SPECIALS[arch].items():
        got = tok.token_to_id(content)
        assert got is not None
        if tid is not None:
            assert got == tid, (content, got, tid)
    if arch == "roberta":
        assert tok.token_to_id("<mask>") == tok.get_vocab_size(with_added_tokens=True) - 1


@pytest.mark.parametrize("arch", ARCHS)
def test_tokenizer_reference(arch):
    tok = Tokenizer.from_file(os.path.join(fdir(arch), "tokenizer.json"))
    ref = load(arch, "tokenizer_reference.json")
    with open(os.path.join(FIXTURES_DIR, "tokenizer_cases.json"), encoding="utf-8") as f:
        generic = json.load(f)
    assert len(generic) >= 220 and len(ref) == len(generic)
    for g, r in zip(generic, ref):
        assert r["text"] == cases.with_mask(g, tokenization.MASK_TOKEN[arch])
        enc = tok.encode(r["text"])
        assert enc.ids == r["ids"], r["text"]
        assert [list(o) for o in enc.offsets] == r["offsets"], r["text"]


@pytest.mark.parametrize("arch", ARCHS)
def test_references_against_onnxruntime(arch):
    refs = load(arch, "references.json")
    assert len(refs["cases"]) >= 25
    for c in refs["cases"]:
        ids, pos_logits = ort.ort_mask_logits(fdir(arch), c["text"])
        assert ids == c["input_ids"]
        assert sorted(pos_logits) == c["mask_positions"]
        for m in c["masks"]:
            row = pos_logits[m["position"]]
            probs = ort.softmax(row)
            top = np.argsort(-row, kind="stable")[:10]
            assert [int(t) for t in top[:5]] == [r["token"] for r in m["top"][:5]], c["text"]
            for r in m["top"]:
                assert abs(probs[r["token"]] - r["score"]) < TOL
            for t, lg in m["torch_logits_top"]:
                assert abs(float(row[t]) - lg) < TOL
            assert m["logit_gap_5_6"] >= 1e-3


@pytest.mark.parametrize("arch", ARCHS)
def test_padded_batch_matches_single(arch):
    """Dynamic batch/sequence axes and the attention mask work: a padded batch equals single runs."""
    refs = load(arch, "references.json")
    tok = Tokenizer.from_file(os.path.join(fdir(arch), "tokenizer.json"))
    texts = [c["text"] for c in refs["cases"][:4]]
    encs = [tok.encode(t) for t in texts]
    n = max(len(e.ids) for e in encs)
    pad = tok.token_to_id(tokenization.SPECIALS[arch]["pad"][0])
    ids = np.full((len(encs), n), pad, dtype=np.int64)
    am = np.zeros((len(encs), n), dtype=np.int64)
    tt = np.zeros((len(encs), n), dtype=np.int64)
    for i, e in enumerate(encs):
        ids[i, :len(e.ids)] = e.ids
        am[i, :len(e.ids)] = 1
        tt[i, :len(e.ids)] = e.type_ids
    batched = ort.run_logits(fdir(arch), ids, am, tt)
    for i, e in enumerate(encs):
        single = ort.run_logits(fdir(arch), e.ids, e.attention_mask, e.type_ids)[0]
        assert np.abs(batched[i, :len(e.ids)] - single).max() < TOL


def test_tokenizer_cases_cover_required_kinds():
    generic = json.load(open(os.path.join(FIXTURES_DIR, "tokenizer_cases.json"), encoding="utf-8"))
    assert "" in generic
    assert any("\u0301" in s for s in generic)
    assert any("東京" in s for s in generic)
    assert any("😀" in s for s in generic)
    assert any(s.count("[MASK]") >= 3 for s in generic)
    assert any(len(s) >= 500 for s in generic)
