"""Reference outputs: transformers' fill-mask pipeline on the PyTorch model, and tokenizer encodings."""
from __future__ import annotations

import json
import os

import numpy as np

from . import cases, tokenization

TOP_K = 10
MIN_GAP_5_6 = 1e-3


def fill_mask_references(model, fast, tok, arch: str) -> dict:
    import torch
    from transformers import pipeline

    model.eval()
    pipe = pipeline("fill-mask", model=model, tokenizer=fast, top_k=TOP_K, device="cpu")
    mask_tok = tokenization.MASK_TOKEN[arch]
    mid = tok.token_to_id(mask_tok)
    out_cases = []
    for generic in cases.REFERENCE_SENTENCES:
        text = cases.with_mask(generic, mask_tok)
        enc = tok.encode(text)
        ids = list(enc.ids)
        hf_ids = fast(text)["input_ids"]
        assert hf_ids == ids, (text, hf_ids, ids)
        positions = [i for i, t in enumerate(ids) if t == mid]
        assert positions, text
        res = pipe(text)
        if len(positions) == 1:
            res = [res]
        assert len(res) == len(positions)
        feeds = {"input_ids": torch.tensor([ids]), "attention_mask": torch.tensor([enc.attention_mask])}
        if arch in ("bert", "albert"):
            feeds["token_type_ids"] = torch.tensor([enc.type_ids])
        with torch.no_grad():
            logits = model(**feeds).logits[0].numpy()
        masks = []
        for pos, top in zip(positions, res):
            row = logits[pos]
            order = np.argsort(-row, kind="stable")[:TOP_K]
            gaps = [float(row[order[i]] - row[order[i + 1]]) for i in range(TOP_K - 1)]
            masks.append({
                "position": pos,
                "top": [{"token": int(r["token"]), "token_str": r["token_str"], "score": float(r["score"]),
                         "sequence": r["sequence"]} for r in top],
                "torch_logits_top": [[int(t), float(row[t])] for t in order],
                "logit_gap_5_6": gaps[4],
                "min_logit_gap_top6": min(gaps[:5]),
            })
            assert [int(r["token"]) for r in top] == [int(t) for t in order], (text, pos)
        out_cases.append({"text": text, "input_ids": ids, "mask_positions": positions, "masks": masks})
    return {"architecture": arch, "mask_token": mask_tok, "model_vocab_size": int(model.config.vocab_size),
            "cases": out_cases}


def min_gap(refs: dict) -> float:
    return min(m["logit_gap_5_6"] for c in refs["cases"] for m in c["masks"])


def tokenizer_reference(tokenizer_json: str, arch: str) -> list:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(tokenizer_json)
    mask_tok = tokenization.MASK_TOKEN[arch]
    out = []
    for generic in cases.tokenizer_cases():
        text = cases.with_mask(generic, mask_tok)
        enc = tok.encode(text)
        out.append({"text": text, "ids": list(enc.ids), "offsets": [list(o) for o in enc.offsets]})
    return out


def write_json(path: str, obj, indent=None):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=indent)
        f.write("\n")
