"""Skeletons: a base export with every large float initializer's data removed (torch-free regeneration).

``make_skeleton`` (dev) strips a base export into ``models/skeletons/<arch>/``:
  model.onnx        the graph, every float initializer with >= STRIP_MIN_ELEMENTS elements left without data
  skeleton.json     per stripped initializer: name, shape, rule, tie (identical / transposed copy of another)
  config.json, tokenizer_config.json, special_tokens_map.json, tokenizer.json.gz (gzip, mtime 0)
``regen`` refills them with seeded numpy values and writes a complete, loadable export.

Rule (recorded in skeleton.json):
  * 1-D tensor whose name contains "norm" (LayerNorm / layer_norm) and ends in "weight": 1 + N(0, std)
  * other 1-D tensors (biases, LayerNorm biases): N(0, std)
  * tensors of rank >= 2 (Linear/MatMul weights, embeddings): N(0, std)
  std = config initializer_range.  Embedding rows at the config's pad_token_id are zeroed
  (padding_idx, as in Hugging Face init) for tensors named "*embeddings*" with that many rows.
  Each tensor draws from numpy default_rng([seed, crc32(name)]) as float32 standard normals.
  Ties: an initializer byte-identical to another, or identical to another's transpose, in the
  original export is regenerated as that copy (the tied input/output embedding).
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import time
import zlib

import numpy as np

SKELETON_ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "skeletons")
STRIP_MIN_ELEMENTS = 64
REGEN_SEED = {"albert": 3001, "distilbert": 3002, "bert": 3003, "roberta": 3004}
COPY_FILES = ("config.json", "tokenizer_config.json", "special_tokens_map.json")


def skeleton_dir(arch: str) -> str:
    return os.path.join(SKELETON_ROOT, arch)


def _rule(name: str, shape) -> str:
    low = name.lower()
    if len(shape) == 1:
        if "norm" in low and low.endswith("weight"):
            return "ones_plus_normal"
        return "normal_bias"
    return "normal"


def dynamo_skeleton_dir(arch: str) -> str:
    return os.path.join(SKELETON_ROOT, "dynamo", arch)


def build_dynamo_skeleton(arch: str) -> dict:
    """Dev (torch, onnxscript): the tiny fixture's architecture and config, seeded, exported by
    PyTorch's dynamo exporter, stripped into ``models/skeletons/dynamo/<arch>`` (the tests regen
    it: the graph is what matters, weights are drawn again)."""
    import tempfile

    import torch
    import transformers

    from . import export
    from .fixtures import FIXTURES_DIR

    fixture = os.path.join(FIXTURES_DIR, arch)
    cfg = transformers.AutoConfig.from_pretrained(fixture)
    torch.manual_seed(REGEN_SEED[arch])
    model = getattr(transformers, cfg.architectures[0])(cfg).eval()
    with tempfile.TemporaryDirectory() as tmp:
        for name in COPY_FILES + ("tokenizer.json",):
            shutil.copy(os.path.join(fixture, name), tmp)
        path = os.path.join(tmp, "model.onnx")
        export.export_onnx_dynamo(model, arch, path)
        # The exporter annotates every node with its Python stack trace and module path: nine
        # tenths of the stripped file, and nothing a runtime reads.
        import onnx

        m = onnx.load(path)
        for node in m.graph.node:
            del node.metadata_props[:]
            node.doc_string = ""
        onnx.save(m, path)
        return make_skeleton(tmp, dynamo_skeleton_dir(arch))


def make_skeleton(src: str, out: str) -> dict:
    import onnx
    from onnx import numpy_helper

    with open(os.path.join(src, "config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    arch = cfg["model_type"]
    model = onnx.load(os.path.join(src, "model.onnx"))
    inits = list(model.graph.initializer)
    arrays = {t.name: numpy_helper.to_array(t) for t in inits}
    big = [t.name for t in inits
           if arrays[t.name].dtype in (np.float32, np.float16, np.float64) and arrays[t.name].size >= STRIP_MIN_ELEMENTS]
    digest = {n: hashlib.sha256(np.ascontiguousarray(arrays[n]).tobytes()).hexdigest() for n in big}
    entries, first_by_digest = [], {}
    for n in big:
        a = arrays[n]
        e = {"name": n, "shape": list(a.shape), "dtype": str(a.dtype), "rule": _rule(n, a.shape),
             "orig_mean": float(a.mean()), "orig_std": float(a.std())}
        key = (digest[n], a.shape)
        if key in first_by_digest:
            e["tie"] = {"kind": "identical", "of": first_by_digest[key]}
        else:
            first_by_digest[key] = n
            if a.ndim == 2:
                td = hashlib.sha256(np.ascontiguousarray(a.T).tobytes()).hexdigest()
                k2 = (td, a.T.shape)
                if k2 in first_by_digest:
                    e["tie"] = {"kind": "transpose", "of": first_by_digest[k2]}
        entries.append(e)
    # strip the data
    for t in model.graph.initializer:
        if t.name in digest:
            t.ClearField("raw_data")
            t.ClearField("float_data")
    os.makedirs(out, exist_ok=True)
    onnx.save(model, os.path.join(out, "model.onnx"))
    for fn in COPY_FILES:
        shutil.copy(os.path.join(src, fn), os.path.join(out, fn))
    with open(os.path.join(src, "tokenizer.json"), "rb") as f:
        raw = f.read()
    with open(os.path.join(out, "tokenizer.json.gz"), "wb") as f:
        with gzip.GzipFile(filename="tokenizer.json", mode="wb", fileobj=f, mtime=0, compresslevel=9) as gz:
            gz.write(raw)
    meta = {
        "architecture": arch, "seed": REGEN_SEED[arch], "initializer_range": cfg["initializer_range"],
        "pad_token_id": cfg.get("pad_token_id"), "strip_min_elements": STRIP_MIN_ELEMENTS,
        "rule": __doc__.split("Rule (recorded in skeleton.json):")[1].strip(),
        "original_onnx_sha256": hashlib.sha256(open(os.path.join(src, "model.onnx"), "rb").read()).hexdigest(),
        "stripped": entries,
    }
    with open(os.path.join(out, "skeleton.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    print(f"skeleton {arch}: {len(entries)} stripped initializers, "
          f"{sum(1 for e in entries if 'tie' in e)} tied, model.onnx {os.path.getsize(os.path.join(out, 'model.onnx'))} B")
    return meta


def _values(e: dict, seed: int, std: float, pad_id) -> np.ndarray:
    rng = np.random.default_rng([seed, zlib.crc32(e["name"].encode("utf-8"))])
    shape = tuple(e["shape"])
    a = rng.standard_normal(shape, dtype=np.float32)
    a *= np.float32(std)
    if e["rule"] == "ones_plus_normal":
        a += np.float32(1.0)
    if pad_id is not None and "embeddings" in e["name"] and len(shape) == 2 and shape[0] > pad_id \
            and "position" not in e["name"] and "token_type" not in e["name"]:
        a[pad_id] = 0.0
    return a.astype(np.dtype(e["dtype"]), copy=False)


def regen(skel: str, out: str) -> dict:
    import onnx
    from onnx import numpy_helper

    t0 = time.time()
    with open(os.path.join(skel, "skeleton.json"), encoding="utf-8") as f:
        meta = json.load(f)
    model = onnx.load(os.path.join(skel, "model.onnx"))
    std, seed, pad = meta["initializer_range"], meta["seed"], meta.get("pad_token_id")
    values = {}
    for e in meta["stripped"]:
        tie = e.get("tie")
        if tie is None:
            values[e["name"]] = _values(e, seed, std, pad)
    for e in meta["stripped"]:
        tie = e.get("tie")
        if tie is not None:
            src = values[tie["of"]]
            values[e["name"]] = np.ascontiguousarray(src.T if tie["kind"] == "transpose" else src)
    by_name = {t.name: i for i, t in enumerate(model.graph.initializer)}
    for name, arr in values.items():
        i = by_name[name]
        assert tuple(model.graph.initializer[i].dims) == arr.shape, name
        model.graph.initializer[i].CopyFrom(numpy_helper.from_array(arr, name))
    os.makedirs(out, exist_ok=True)
    total = sum(a.nbytes for a in values.values())
    path = os.path.join(out, "model.onnx")
    if total > 1_900_000_000:
        onnx.save(model, path, save_as_external_data=True, location="model.onnx_data", all_tensors_to_one_file=True)
    else:
        onnx.save(model, path)
    for fn in COPY_FILES:
        shutil.copy(os.path.join(skel, fn), os.path.join(out, fn))
    with gzip.open(os.path.join(skel, "tokenizer.json.gz"), "rb") as f:
        raw = f.read()
    with open(os.path.join(out, "tokenizer.json"), "wb") as f:
        f.write(raw)
    secs = time.time() - t0
    print(f"regen {meta['architecture']}: {len(values)} initializers, {total / 1e6:.1f} MB, {secs:.1f} s -> {path}")
    return {"seconds": secs, "bytes": total}


def check_runs(model_dir: str, text: str | None = None) -> dict:
    """Load the export in onnxruntime, run one sentence, check logits are finite and shaped."""
    from . import ort as ortmod

    tok = ortmod.load_tokenizer(model_dir)
    mask = "<mask>" if tok.token_to_id("<mask>") is not None else "[MASK]"
    text = text or f"The capital of France is {mask}."
    ids, pos = ortmod.ort_mask_logits(model_dir, text)
    with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
        vocab = json.load(f)["vocab_size"]
    assert pos, "no mask position"
    for p, row in pos.items():
        assert row.shape == (vocab,), row.shape
        assert np.isfinite(row).all()
    p0 = min(pos)
    top = np.argsort(-pos[p0])[:5]
    return {"input_ids": ids, "mask_positions": sorted(pos), "top5": [int(t) for t in top],
            "top5_tokens": [tok.id_to_token(int(t)) for t in top]}
