"""Held-out evaluation of the default model: single-WordPiece whole-word targets, masked one at a time.

A target is a position whose token is one alphabetic WordPiece that is a whole word (it does not start
with ``##`` and the next token does not either).  Up to ``per_sentence`` targets are drawn per held-out
sentence (seeded); each is evaluated in its own copy of the sentence with only that position replaced by
``[MASK]``.  Top-1/top-5 = the target is the argmax / among the 5 highest logits.  The unigram baseline
always answers the most frequent alphabetic whole-word tokens of the training text.
"""
from __future__ import annotations

import random

import numpy as np

MASK_ID = 103


def make_targets(rows, tok, n_targets: int, seed: int, per_sentence: int = 2, max_len: int = 64) -> dict:
    rng = random.Random(seed)
    rows = list(rows)
    rng.shuffle(rows)
    encs = tok.encode_batch([s for _, s in rows], add_special_tokens=True)
    targets = []
    for (src, s), e in zip(rows, encs):
        toks = e.tokens
        if len(toks) > max_len:
            continue
        cand = [i for i in range(1, len(toks) - 1)
                if toks[i].isalpha() and toks[i].isascii() and not toks[i + 1].startswith("##")]
        rng.shuffle(cand)
        for i in sorted(cand[:per_sentence]):
            targets.append({"source": src, "text": s, "ids": list(e.ids), "pos": i, "target": e.ids[i]})
            if len(targets) >= n_targets:
                return {"targets": targets}
    return {"targets": targets}


def _batches(targets, size=64):
    order = sorted(range(len(targets)), key=lambda k: len(targets[k]["ids"]))
    for j in range(0, len(order), size):
        yield order[j:j + size]


def score(rank_top5: np.ndarray, targets) -> dict:
    """rank_top5: [n, 5] token ids, best first."""
    gold = np.array([t["target"] for t in targets])
    top1 = rank_top5[:, 0] == gold
    top5 = (rank_top5 == gold[:, None]).any(1)
    out = {"targets": len(targets), "top1": round(float(top1.mean()), 4), "top5": round(float(top5.mean()), 4)}
    by = {}
    for src in sorted({t["source"] for t in targets}):
        m = np.array([t["source"] == src for t in targets])
        by[src] = {"targets": int(m.sum()), "top1": round(float(top1[m].mean()), 4),
                   "top5": round(float(top5[m].mean()), 4)}
    out["by_source"] = by
    return out


def _run(targets, forward):
    res = np.zeros((len(targets), 5), dtype=np.int64)
    for idx in _batches(targets):
        L = max(len(targets[k]["ids"]) for k in idx)
        ids = np.zeros((len(idx), L), dtype=np.int64)
        am = np.zeros_like(ids)
        pos = np.zeros(len(idx), dtype=np.int64)
        for b, k in enumerate(idx):
            t = targets[k]
            ids[b, :len(t["ids"])] = t["ids"]
            ids[b, t["pos"]] = MASK_ID
            am[b, :len(t["ids"])] = 1
            pos[b] = t["pos"]
        logits = forward(ids, am, pos)  # [b, vocab] at the mask positions
        res[idx] = np.argsort(-logits, axis=1)[:, :5]
    return res


def evaluate_torch(model, val: dict) -> dict:
    import torch

    def fwd(ids, am, pos):
        with torch.no_grad():
            h = model.distilbert(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(am)).last_hidden_state
            h = h[torch.arange(len(pos)), torch.from_numpy(pos)]
            lg = model.vocab_projector(model.vocab_layer_norm(model.activation(model.vocab_transform(h))))
        return lg.numpy()

    return score(_run(val["targets"], fwd), val["targets"])


def evaluate_onnx(model_path: str, val: dict, threads: int = 1) -> dict:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(model_path, so, providers=["CPUExecutionProvider"])

    def fwd(ids, am, pos):
        lg = sess.run(["logits"], {"input_ids": ids, "attention_mask": am})[0]
        return lg[np.arange(len(pos)), pos]

    return score(_run(val["targets"], fwd), val["targets"])


def evaluate_unigram(counts: np.ndarray, tok, val: dict) -> dict:
    vocab = tok.get_vocab()
    alpha = np.zeros(len(counts), dtype=bool)
    for t, i in vocab.items():
        if i < len(counts) and t.isalpha() and t.isascii():
            alpha[i] = True
    c = np.where(alpha, counts, -1)
    top5 = np.argsort(-c)[:5]
    return score(np.tile(top5, (len(val["targets"]), 1)), val["targets"])


def evaluate_bertling(run_bin: str, model_file: str, tok, val: dict) -> dict:
    """The same targets through a compiled bertling file (``bertling-run fill-lines``: one load, one
    JSON line per request): each target's sentence with that word replaced by the tokenizer's own
    ``[MASK]`` text, tokenized by bertling; a target whose ids then differ from the reference
    encoding (with ``[MASK]`` at the position) counts as wrong and is reported in ``id_mismatches``."""
    from .fill_lines import fill_lines

    texts = []
    for t in val["targets"]:
        enc = tok.encode(t["text"])
        a, b = enc.offsets[t["pos"]]
        texts.append(t["text"][:a] + "[MASK]" + t["text"][b:])
    lines = fill_lines(run_bin, model_file, texts)
    res = np.full((len(texts), 5), -1, dtype=np.int64)
    mismatches = 0
    for k, (t, line) in enumerate(zip(val["targets"], lines)):
        want = list(t["ids"])
        want[t["pos"]] = MASK_ID
        masks = line.get("masks", [])
        if line.get("input_ids") != want or len(masks) != 1:
            mismatches += 1
            continue
        res[k] = masks[0]["tokens"][:5]
    out = score(res, val["targets"])
    out["id_mismatches"] = mismatches
    return out


if __name__ == "__main__":
    # Held-out quality of compiled default-model files against the ONNX export, on the same targets:
    #   PYTHONPATH=models .venv/bin/python -m bertling_models.default_model_eval \
    #       --text target/default-train/text --export target/models/default-export \
    #       --file int8=target/models/default.bertling --file fp32=/tmp/default-fp32.bertling
    import argparse
    import os
    import sys

    from tokenizers import Tokenizer

    from .default_model_train import load_split

    ap = argparse.ArgumentParser()
    ap.add_argument("--text", required=True, help="the training text directory (with test.tsv)")
    ap.add_argument("--export", required=True, help="the assembled export (model.onnx, tokenizer.json)")
    ap.add_argument("--file", action="append", default=[], help="NAME=PATH of a compiled file")
    ap.add_argument("--run-bin", default="target/release/bertling-run")
    ap.add_argument("--targets", type=int, default=6000)
    args = ap.parse_args()
    tok = Tokenizer.from_file(os.path.join(args.export, "tokenizer.json"))
    test = make_targets(load_split(os.path.join(args.text, "test.tsv")), tok, args.targets, seed=9001)
    report = {"onnx fp32 (export)": evaluate_onnx(os.path.join(args.export, "model.onnx"), test)}
    for spec in args.file:
        name, path = spec.split("=", 1)
        report[f"bertling {name}"] = evaluate_bertling(args.run_bin, path, tok, test)
    for name, r in report.items():
        extra = f", id mismatches {r['id_mismatches']}" if "id_mismatches" in r else ""
        print(f"{name:22} {r['targets']} targets: top-1 {100 * r['top1']:.2f}%, top-5 {100 * r['top5']:.2f}%{extra}")
    sys.exit(0)
