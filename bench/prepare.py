"""Benchmark artefacts built once and cached: onnxruntime's dynamic int8 quantization of an export
(with the Identity rewiring ALBERT needs), and the PyTorch model directory the fill-mask pipeline
loads.

ALBERT's exporter deduplicates the shared layer weights and reaches each layer through `Identity`
nodes; onnxruntime's `quantize_dynamic` only quantizes a MatMul whose weight is an initializer, so
it skips them (9 of 99 MatMuls quantized, measurements.md). `rewire_identities` points every
consumer of an `Identity(initializer)` at the initializer itself and drops the Identity node, after
which 75 of 99 are quantized. It changes nothing for graphs without such nodes and is applied to all.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile


def rewire_identities(model) -> int:
    """Rewires consumers of Identity nodes whose input is an initializer; returns how many Identity
    nodes were removed. Identity nodes that feed a graph output are kept."""
    graph = model.graph
    inits = {i.name for i in graph.initializer}
    outputs = {o.name for o in graph.output}
    alias = {}
    keep = []
    for node in graph.node:
        if node.op_type == "Identity" and node.input[0] in inits and node.output[0] not in outputs:
            alias[node.output[0]] = node.input[0]
        else:
            keep.append(node)
    if not alias:
        return 0
    for node in keep:
        for i, name in enumerate(node.input):
            if name in alias:
                node.input[i] = alias[name]
    del graph.node[:]
    graph.node.extend(keep)
    return len(alias)


def count_ops(model) -> dict:
    counts: dict = {}
    for node in model.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def quantize_ort_int8(export_dir: str, out_dir: str) -> dict:
    """onnxruntime `quantize_dynamic(weight_type=QInt8)` of the rewired export into out_dir
    (model.onnx + meta.json). Returns the meta."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src = os.path.join(export_dir, "model.onnx")
    model = onnx.load(src)
    matmuls = count_ops(model).get("MatMul", 0)
    removed = rewire_identities(model)
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        rewired = os.path.join(tmp, "rewired.onnx")
        onnx.save(model, rewired)
        dst = os.path.join(out_dir, "model.onnx")
        quantize_dynamic(rewired, dst, weight_type=QuantType.QInt8)
    q = onnx.load(dst)
    ops = count_ops(q)
    meta = {
        "source": src,
        "identity_nodes_rewired": removed,
        "matmuls_in_export": matmuls,
        "matmuls_quantized": ops.get("MatMulInteger", 0) + ops.get("DynamicQuantizeMatMul", 0),
        "matmuls_left_fp32": ops.get("MatMul", 0),
        "bytes": os.path.getsize(dst),
    }
    with open(os.path.join(out_dir, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    return meta


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def torch_model_dir(arch: str, export_dir: str, out_dir: str) -> dict:
    """The PyTorch model of the export, saved where `pipeline('fill-mask', model=out_dir)` loads it.
    A build-base export is rebuilt exactly (same class, config and seed: the same weights as its
    ONNX); an export without base_meta.json (regen, or a user's) gets the config's class with
    random weights of the same shapes, which times the same."""
    import torch
    import transformers

    meta_path = os.path.join(export_dir, "base_meta.json")
    tmp = out_dir + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    if os.path.exists(meta_path):
        from bertling_models import export

        with open(meta_path) as f:
            meta = json.load(f)
        model = export.build_model(arch, "base", int(meta["tokenizer_vocab_size"]))
        same = True
    else:
        cfg = transformers.AutoConfig.from_pretrained(export_dir)
        torch.manual_seed(0)
        model = transformers.AutoModelForMaskedLM.from_config(cfg).eval()
        same = False
    model.save_pretrained(tmp)
    for name in TOKENIZER_FILES:
        p = os.path.join(export_dir, name)
        if os.path.exists(p):
            shutil.copy(p, tmp)
    info = {"same_weights_as_export": same, "class": type(model).__name__}
    with open(os.path.join(tmp, "bench_meta.json"), "w") as f:
        json.dump(info, f, indent=1)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
    return info
