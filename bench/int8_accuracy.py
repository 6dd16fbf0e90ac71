"""int8 accuracy acceptance (issue 3) on a real pretrained BERT masked LM: AntiBERTy (PyPI antiberty==0.1.3).

Converts AntiBERTy into an optimum-style export (``bertling_models.antiberty``), compiles it twice with
``bertling compile --precision fp32`` and ``--precision int8``, and runs every masked position of
``bertling_models.antiberty.masked_positions()`` (each residue of AntiBERTy's README example sequences,
masked alone, in the whole sequence and in 96/64/32-residue windows) through both files (one
``bertling-run fill-lines`` process per file: one load, one JSON line per request, full mask logits
back) and through PyTorch (``BertForMaskedLM`` with AntiBERTy's weights). Top-k lists are taken over
the full mask logits (all 25 ids, ties broken by the lower id) the same way for every engine.

Figures: int8 vs fp32 top-1 agreement, top-5 overlap (|top5_int8 & top5_fp32| / 5, averaged), cosine of
the mask logits (mean, min), max |logit difference|; int8 and fp32 vs PyTorch; the model's own top-1 /
top-5 accuracy on the masked residues; every int8/fp32 top-1 disagreement with its probabilities.

    PYTHONPATH=models .venv/bin/python bench/int8_accuracy.py        # after cargo build --release -p bertling-tools --bins
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import threading
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "models"))

from bertling_models import antiberty  # noqa: E402
from bertling_models.fill_lines import fill_lines  # noqa: E402

WORK = os.path.join(REPO, "target", "antiberty")
ACCEPT_TOP1 = 0.99
ACCEPT_TOP5 = 0.97


def log(msg: str) -> None:
    print(f"[int8-accuracy {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def newer(target: str, *sources: str) -> bool:
    """True if ``target`` exists and is newer than every existing source."""
    if not os.path.exists(target):
        return False
    t = os.path.getmtime(target)
    return all(os.path.getmtime(s) <= t for s in sources if os.path.exists(s))


def ensure_export(export: str) -> None:
    """Convert AntiBERTy into ``export`` unless it is already there."""
    if os.path.exists(os.path.join(export, "model.onnx")):
        return
    log(f"converting AntiBERTy into {export}")
    antiberty.convert(export)


def compile_model(binary: str, export: str, out: str, precision: str, activations: str) -> float:
    """``bertling compile`` unless ``out`` is newer than the export and the compiler; returns seconds (0 if reused)."""
    if newer(out, os.path.join(export, "model.onnx"), binary):
        return 0.0
    t = time.time()
    cmd = [binary, "compile", export, "-o", out, "--precision", precision]
    if precision == "int8":
        cmd += ["--int8-activations", activations]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"bertling compile --precision {precision} failed:\n{r.stdout}\n{r.stderr}")
    return time.time() - t


def run_fill_lines(run_bin: str, model: str, texts: list[str], result: dict, key: str) -> None:
    """All texts through one ``bertling-run fill-lines`` process; result[key] = list of parsed lines."""
    result[key] = fill_lines(run_bin, model, texts)


def torch_logits(export: str, id_lists: list[list[int]], positions: list[int]) -> np.ndarray:
    """PyTorch (BertForMaskedLM with AntiBERTy's weights) mask logits [n, vocab], batched by length."""
    return model_mask_logits(antiberty.build_model(antiberty.package_dir()), id_lists, positions)


def model_mask_logits(model, id_lists: list[list[int]], positions: list[int]) -> np.ndarray:
    """A PyTorch masked LM's logits at each request's mask position [n, vocab], batched by length."""
    import torch

    out = np.zeros((len(id_lists), model.config.vocab_size), dtype=np.float32)
    by_len: dict[int, list[int]] = collections.defaultdict(list)
    for i, ids in enumerate(id_lists):
        by_len[len(ids)].append(i)
    with torch.no_grad():
        for n, idx in sorted(by_len.items()):
            for b in range(0, len(idx), 64):
                chunk = idx[b:b + 64]
                ids = torch.tensor([id_lists[i] for i in chunk], dtype=torch.int64)
                logits = model(input_ids=ids, attention_mask=torch.ones_like(ids),
                               token_type_ids=torch.zeros_like(ids)).logits.numpy()
                for row, i in enumerate(chunk):
                    out[i] = logits[row, positions[i]]
    return out


def topk(logits: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest logits per row, descending, ties to the lower id."""
    order = np.lexsort((np.broadcast_to(np.arange(logits.shape[1]), logits.shape), -logits), axis=1)
    return order[:, :k]


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def compare(a: np.ndarray, b: np.ndarray) -> dict:
    """Agreement figures of engine ``a`` against reference ``b`` (mask logits [n, vocab])."""
    ta, tb = topk(a, 5), topk(b, 5)
    overlap = np.array([len(set(x) & set(y)) / 5 for x, y in zip(ta, tb)])
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    pa, pb = softmax(a), softmax(b)
    return {
        "top1_agreement": float((ta[:, 0] == tb[:, 0]).mean()),
        "top1_disagreements": int((ta[:, 0] != tb[:, 0]).sum()),
        "top5_overlap": float(overlap.mean()),
        "top5_identical_sets": float((overlap == 1).mean()),
        "top5_order_identical": float((ta == tb).all(1).mean()),
        "cosine_mean": float(cos.mean()),
        "cosine_min": float(cos.min()),
        "max_abs_logit_diff": float(np.abs(a - b).max()),
        "max_abs_prob_diff": float(np.abs(pa - pb).max()),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(REPO, "target", "release", "bertling"), help="for compile")
    ap.add_argument("--run-bin", default=os.path.join(REPO, "target", "release", "bertling-run"), help="for fill-lines")
    ap.add_argument("--export", default=os.path.join(WORK, "export"))
    ap.add_argument("--work", default=WORK, help="where the model files go")
    ap.add_argument("--int8-activations", default="grouped8", choices=["grouped8", "rows12", "grouped7"],
                    help="bertling compile --int8-activations for the int8 file")
    ap.add_argument("--json-out", default=None, help="default: <work>/int8_accuracy[-rows12|-grouped7].json")
    ap.add_argument("--limit", type=int, default=0, help="only the first N positions (a quick try)")
    args = ap.parse_args()

    ensure_export(args.export)
    mode = "" if args.int8_activations == "grouped8" else f"-{args.int8_activations}"
    if args.json_out is None:
        args.json_out = os.path.join(args.work, f"int8_accuracy{mode}.json")
    files = {"fp32": os.path.join(args.work, "antiberty-fp32.bertling"),
             "int8": os.path.join(args.work, f"antiberty-int8{mode}.bertling")}
    compile_s = {p: compile_model(args.bin, args.export, f, p, args.int8_activations) for p, f in files.items()}
    sizes = {p: os.path.getsize(f) for p, f in files.items()}
    log(f"model files: {sizes} bytes (compile s, 0 = reused: {compile_s})")

    positions = antiberty.masked_positions()
    if args.limit:
        positions = positions[:args.limit]
    texts = [p.text for p in positions]
    tok = antiberty.build_tokenizer(os.path.join(antiberty.package_dir(), antiberty.VOCAB))
    id_lists = [tok.encode(t).ids for t in texts]
    mask_pos = [p.position for p in positions]
    vocab_ids = tok.get_vocab()
    targets = np.array([vocab_ids[p.target] for p in positions])
    for ids, p in zip(id_lists, positions):
        assert ids[p.position] == vocab_ids[antiberty.MASK] and ids.count(vocab_ids[antiberty.MASK]) == 1

    log(f"{len(positions)} masked positions: bertling fp32 and int8 (fill-lines, 1 thread each)")
    t = time.time()
    res: dict = {}
    threads = [threading.Thread(target=run_fill_lines, args=(args.run_bin, f, texts, res, p)) for p, f in files.items()]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    bertling_s = time.time() - t
    logits = {}
    for p in files:
        lines = res[p]
        for line, ids, pos in zip(lines, id_lists, mask_pos):
            if line["input_ids"] != ids or len(line["masks"]) != 1 or line["masks"][0]["position"] != pos:
                raise RuntimeError(f"{p}: bertling tokenized differently: {line['input_ids']} vs {ids}")
        logits[p] = np.array([line["masks"][0]["logits"] for line in lines], dtype=np.float32)
        # bertling's own top-5 equals the top-5 of its logits (same ranking as used here)
        own = np.array([line["masks"][0]["tokens"] for line in lines])
        assert (own == topk(logits[p], 5)).mean() > 0.999, f"{p}: bertling top-5 differs from its logits' top-5"
    log(f"bertling done in {bertling_s:.0f} s; PyTorch")
    t = time.time()
    logits["torch"] = torch_logits(args.export, id_lists, mask_pos)
    torch_s = time.time() - t

    figures = {
        "int8_vs_fp32": compare(logits["int8"], logits["fp32"]),
        "int8_vs_torch": compare(logits["int8"], logits["torch"]),
        "fp32_vs_torch": compare(logits["fp32"], logits["torch"]),
    }
    accuracy = {}
    for e in ("torch", "fp32", "int8"):
        tk = topk(logits[e], 5)
        accuracy[e] = {"top1": float((tk[:, 0] == targets).mean()),
                       "top5": float((tk == targets[:, None]).any(1).mean()),
                       "top1_is_special": int((tk[:, 0] < 5).sum())}
    by_context = {}
    groups: dict[str, list[int]] = collections.defaultdict(list)
    for i, p in enumerate(positions):
        groups[p.context].append(i)
        groups[p.sequence].append(i)
    for g, idx in groups.items():
        sub = compare(logits["int8"][idx], logits["fp32"][idx])
        by_context[g] = {"n": len(idx), "top1_agreement": sub["top1_agreement"], "top5_overlap": sub["top5_overlap"],
                         "cosine_min": sub["cosine_min"],
                         "accuracy_top1_fp32": float((topk(logits["fp32"][idx], 1)[:, 0] == targets[idx]).mean())}

    inv = {i: s for s, i in vocab_ids.items()}
    pf, pi = softmax(logits["fp32"]), softmax(logits["int8"])
    tf, ti = topk(logits["fp32"], 6), topk(logits["int8"], 6)
    disagreements = []
    for i in np.nonzero(tf[:, 0] != ti[:, 0])[0]:
        p = positions[i]
        disagreements.append({
            "id": p.id, "sequence": p.sequence, "context": p.context, "window": [p.start, p.end], "residue_index": p.index,
            "target": p.target,
            "fp32_top3": [[inv[int(j)], round(float(pf[i, j]), 4)] for j in tf[i, :3]],
            "int8_top3": [[inv[int(j)], round(float(pi[i, j]), 4)] for j in ti[i, :3]],
        })
    # top-5 misses: how close were ranks 5 and 6 in fp32?
    miss = [i for i in range(len(positions)) if set(tf[i, :5]) != set(ti[i, :5])]
    gap56 = [float(pf[i, tf[i, 4]] - pf[i, tf[i, 5]]) for i in miss]
    top1_margin = pf[np.arange(len(positions)), tf[:, 0]] - pf[np.arange(len(positions)), tf[:, 1]]
    dis_idx = np.nonzero(tf[:, 0] != ti[:, 0])[0]

    result = {
        "model": antiberty.PACKAGE + " (AntiBERTy_md_smooth, BertForMaskedLM, 8 layers, hidden 512, vocab 25)",
        "positions": len(positions),
        "positions_by": {g: len(v) for g, v in groups.items()},
        "sequences": {k: len(v) for k, v in antiberty.example_sequences().items()},
        "windows": list(antiberty.WINDOWS), "window_stride": antiberty.WINDOW_STRIDE,
        "files_bytes": sizes,
        "int8_activations": args.int8_activations,
        "acceptance": {"top1_agreement >= 0.99": figures["int8_vs_fp32"]["top1_agreement"] >= ACCEPT_TOP1,
                       "top5_overlap >= 0.97": figures["int8_vs_fp32"]["top5_overlap"] >= ACCEPT_TOP5,
                       "positions >= 2000": len(positions) >= 2000},
        **figures,
        "accuracy_on_masked_residues": accuracy,
        "int8_vs_fp32_by_group": by_context,
        "fp32_top1_margin": {"median": float(np.median(top1_margin)),
                             "at_disagreements": [round(float(top1_margin[i]), 4) for i in dis_idx]},
        "top5_set_misses": len(miss),
        "top5_misses_fp32_prob_gap_rank5_rank6": {"median": float(np.median(gap56)) if gap56 else None,
                                                  "max": max(gap56) if gap56 else None},
        "top1_disagreements": disagreements,
        "seconds": {"bertling_both_files": round(bertling_s, 1), "torch": round(torch_s, 1), "compile": compile_s},
    }
    os.makedirs(os.path.dirname(args.json_out), exist_ok=True)
    with open(args.json_out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
        f.write("\n")

    a = figures["int8_vs_fp32"]
    print(f"AntiBERTy, {len(positions)} masked positions (one [MASK] per request)")
    print(f"int8 vs fp32:   top-1 agreement {a['top1_agreement']:.2%} ({a['top1_disagreements']} differ), "
          f"top-5 overlap {a['top5_overlap']:.2%}, cosine mean {a['cosine_mean']:.6f} min {a['cosine_min']:.6f}, "
          f"max |dlogit| {a['max_abs_logit_diff']:.3f}")
    for k in ("int8_vs_torch", "fp32_vs_torch"):
        b = figures[k]
        print(f"{k.replace('_', ' '):15} top-1 agreement {b['top1_agreement']:.2%}, top-5 overlap {b['top5_overlap']:.2%}, "
              f"cosine min {b['cosine_min']:.6f}, max |dlogit| {b['max_abs_logit_diff']:.4f}")
    for e, v in accuracy.items():
        print(f"accuracy {e:6} top-1 {v['top1']:.2%} top-5 {v['top5']:.2%}")
    for g, v in by_context.items():
        print(f"  {g:10} n={v['n']:5} top-1 agr {v['top1_agreement']:.2%} top-5 ovl {v['top5_overlap']:.2%} "
              f"cos min {v['cosine_min']:.5f} acc {v['accuracy_top1_fp32']:.2%}")
    print("acceptance:", result["acceptance"])
    print("written", args.json_out)
    return 0 if all(result["acceptance"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
