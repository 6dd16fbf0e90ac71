"""The committed completion references (fixtures/<arch>/completion_reference.json).

Torch-free (CI): the brute force re-run on the committed ONNX fixture under onnxruntime gives the same
top 5 for the typed-prefix cases, and the references are well formed. With torch installed (dev venv):
the brute force re-run on the PyTorch model rebuilt from the fixture seed reproduces the committed file
(all four families with BERTLING_SLOW=1, else ALBERT only).
"""
import json
import os

import pytest

from bertling_models import architectures, completion, tokenization
from bertling_models.fixtures import FIXTURES_DIR

ARCHS = architectures.ARCHS


def load(arch):
    with open(os.path.join(FIXTURES_DIR, arch, completion.REFERENCE_FILE), encoding="utf-8") as f:
        return json.load(f)


def vocab(arch):
    return completion.Vocabulary(os.path.join(FIXTURES_DIR, arch, "tokenizer.json"))


def rerun(v, scorer, arch, case, max_pieces):
    o = case["options"]
    lists = {key: completion.normalized_list(v, o[key]) if key in o else None for key in ("only", "prefer", "stop")}
    return completion.brute_force(v, scorer, tokenization.MASK_TOKEN[arch], case["text"], max_pieces=max_pieces,
                                  bias=o.get("bias", 0.0), **lists)


def test_at_least_100_prefixes_across_the_families():
    total = sum(len(load(a)["cases"]) for a in ARCHS)
    assert total >= 100
    kinds = {"mid-word": 0, "after a space": 0, "accents": 0, "capitals": 0, "punctuation": 0}
    for text in completion.PREFIXES:
        kinds["mid-word"] += bool(text) and text[-1].isalnum()
        kinds["after a space"] += text.endswith(" ")
        kinds["accents"] += any(ord(c) > 127 for c in text)
        kinds["capitals"] += any(c.isupper() for c in text)
        kinds["punctuation"] += any(c in ",.;:()\"-=" for c in text)
    assert all(n >= 3 for n in kinds.values()), kinds


@pytest.mark.parametrize("arch", ARCHS)
def test_reference_is_well_formed(arch):
    ref = load(arch)
    v = vocab(arch)
    assert ref["style"] == v.style
    assert (ref["start_pieces"], ref["cont_pieces"]) == (len(v.by_kind["start"]), len(v.by_kind["cont"]))
    for c in ref["cases"]:
        start, _ = completion.split_prefix(c["text"])
        assert c["prefix"] == v.normalize(c["text"][start:])
        assert len(c["words"]) <= ref["top_k"]
        assert all(w.startswith(c["prefix"]) for w in c["words"])
        assert c["scores"] == sorted(c["scores"], reverse=True)
        for w, pieces in zip(c["words"], c["pieces"]):
            assert "".join(v.spellings[p] for p in pieces) == w
            assert 1 <= len(pieces) <= c["max_pieces"]
    # Most prefixes get a full top 5.
    assert sum(len(c["words"]) == ref["top_k"] for c in ref["cases"]) >= 0.8 * len(ref["cases"])


@pytest.mark.parametrize("arch", ARCHS)
def test_onnxruntime_brute_force_agrees(arch):
    """Typed-prefix cases (up to 3000 sequences each) re-run on the ONNX fixture."""
    ref = load(arch)
    v = vocab(arch)
    scorer = completion.OrtScorer(os.path.join(FIXTURES_DIR, arch), arch)
    checked = 0
    for c in ref["cases"]:
        if not c["prefix"] or c["passes"] > 3000:
            continue
        got = rerun(v, scorer, arch, c, c["max_pieces"])
        assert got["words"] == c["words"], (arch, c["text"])
        for a, b in zip(got["scores"], c["scores"]):
            assert abs(a - b) < 1e-4, (arch, c["text"], a, b)
        checked += 1
    assert checked >= 10, checked


@pytest.mark.parametrize("arch", ARCHS)
def test_pytorch_regenerates_the_reference(arch):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    if arch != "albert" and not os.environ.get("BERTLING_SLOW"):
        pytest.skip("set BERTLING_SLOW=1 to regenerate every family (~2 min each)")
    ref = load(arch)
    new = completion.build_reference(arch, max_pieces=ref["max_pieces"])
    assert {k: v for k, v in new.items() if k != "cases"} == {k: v for k, v in ref.items() if k != "cases"}
    assert [c["text"] for c in new["cases"]] == [c["text"] for c in ref["cases"]]
    for a, b in zip(new["cases"], ref["cases"]):
        assert a["words"] == b["words"], (arch, a["text"])
        assert a["pieces"] == b["pieces"], (arch, a["text"])
        for x, y in zip(a["scores"], b["scores"]):
            assert abs(x - y) < 1e-6, (arch, a["text"], x, y)
