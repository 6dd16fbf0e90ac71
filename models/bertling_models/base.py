"""Base-size seeded random-init exports (real albert-base-v2 / distilbert-base-uncased / bert-base-cased /
roberta-base shapes), into a cache outside git. Needs torch (dev machine only)."""
from __future__ import annotations

import os
import time

import numpy as np

from . import architectures, export, ort, references, tokenization


def build_base(arch: str, out: str) -> dict:
    import torch

    t0 = time.time()
    tok = tokenization.build(arch, "base")
    model, fast, tok = export.build_export(arch, "base", out, tok=tok)
    text = "The capital of France is [MASK].".replace("[MASK]", tokenization.MASK_TOKEN[arch])
    ids, pos_logits = ort.ort_mask_logits(out, text)
    enc = tok.encode(text)
    feeds = {"input_ids": torch.tensor([ids]), "attention_mask": torch.tensor([enc.attention_mask])}
    if "token_type_ids" in architectures.ONNX_INPUTS[arch]:
        feeds["token_type_ids"] = torch.tensor([enc.type_ids])
    with torch.no_grad():
        pt = model(**feeds).logits[0].numpy()
    worst = max(float(np.abs(v - pt[p]).max()) for p, v in pos_logits.items())
    meta = {
        "architecture": arch, "hf_class": architectures.MLM_CLASS[arch], "size": "base",
        "seed": architectures.SEEDS[(arch, "base")], "init": "transformers _init_weights (config initializer_range)",
        "onnx_inputs": architectures.ONNX_INPUTS[arch], "opset": export.OPSET,
        "model_vocab_size": int(model.config.vocab_size), "tokenizer_vocab_size": tok.get_vocab_size(with_added_tokens=True),
        "onnx_bytes": os.path.getsize(os.path.join(out, "model.onnx")), "max_abs_logit_diff_ort_vs_torch": worst,
        "seconds": round(time.time() - t0, 1),
    }
    references.write_json(os.path.join(out, "base_meta.json"), meta, indent=1)
    assert worst < 1e-3, worst
    print(meta, flush=True)
    return meta
