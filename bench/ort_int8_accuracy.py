"""onnxruntime's int8 on the same AntiBERTy positions as ``bench/int8_accuracy.py``: what the engine
the speed bar compares against gives up in accuracy.

Quantizes the AntiBERTy export with ``quantize_dynamic(weight_type=QInt8)`` exactly as the speed
benchmark does (``bench/prepare.py``: uint8 activations with a scale and zero point per tensor,
int8 weights with one scale per tensor), runs every masked position through it (CPU execution
provider, batched by length) and through PyTorch fp32 (AntiBERTy's weights; bertling's fp32 file
agrees with it on 100% of top-1), and prints the same figures as ``int8_accuracy.py``.

    PYTHONPATH=models .venv/bin/python bench/ort_int8_accuracy.py     # ~3 min
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "models"))
sys.path.insert(0, HERE)

from bertling_models import antiberty  # noqa: E402
from int8_accuracy import WORK, compare, ensure_export, log, topk, torch_logits  # noqa: E402
from prepare import quantize_ort_int8  # noqa: E402


def ort_logits(model: str, id_lists: list[list[int]], positions: list[int]) -> np.ndarray:
    import onnxruntime as ort

    so = ort.SessionOptions()
    sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    names = {i.name for i in sess.get_inputs()}
    out = None
    by_len: dict[int, list[int]] = collections.defaultdict(list)
    for i, ids in enumerate(id_lists):
        by_len[len(ids)].append(i)
    for _, idx in sorted(by_len.items()):
        # One request at a time: onnxruntime quantizes each activation tensor with one scale, so
        # a batch would share scales between sequences.
        for i in idx:
            ids = np.asarray([id_lists[i]], dtype=np.int64)
            feeds = {"input_ids": ids}
            if "attention_mask" in names:
                feeds["attention_mask"] = np.ones_like(ids)
            if "token_type_ids" in names:
                feeds["token_type_ids"] = np.zeros_like(ids)
            logits = sess.run(["logits"], feeds)[0]
            if out is None:
                out = np.zeros((len(id_lists), logits.shape[-1]), dtype=np.float32)
            out[i] = logits[0, positions[i]]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--export", default=os.path.join(WORK, "export"))
    ap.add_argument("--work", default=WORK)
    ap.add_argument("--json-out", default=None, help="default: <work>/ort_int8_accuracy.json")
    args = ap.parse_args()
    ensure_export(args.export)
    qdir = os.path.join(args.work, "ort-int8")
    meta = quantize_ort_int8(args.export, qdir)
    log(f"onnxruntime int8: {meta['matmuls_quantized']} of {meta['matmuls_in_export']} MatMuls quantized")

    positions = antiberty.masked_positions()
    tok = antiberty.build_tokenizer(os.path.join(antiberty.package_dir(), antiberty.VOCAB))
    id_lists = [tok.encode(p.text).ids for p in positions]
    mask_pos = [p.position for p in positions]
    vocab_ids = tok.get_vocab()
    targets = np.array([vocab_ids[p.target] for p in positions])
    log(f"{len(positions)} masked positions: onnxruntime int8, then PyTorch fp32")
    ort8 = ort_logits(os.path.join(qdir, "model.onnx"), id_lists, mask_pos)
    ref = torch_logits(args.export, id_lists, mask_pos)
    c = compare(ort8, ref)
    acc = {name: {"top1": float((topk(l, 5)[:, 0] == targets).mean()),
                  "top5": float((topk(l, 5) == targets[:, None]).any(1).mean())}
           for name, l in (("onnxruntime_int8", ort8), ("torch_fp32", ref))}
    result = {"positions": len(positions), "quantization": meta, "onnxruntime_int8_vs_fp32": c,
              "accuracy_on_masked_residues": acc}
    out = args.json_out or os.path.join(args.work, "ort_int8_accuracy.json")
    with open(out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(f"AntiBERTy, {len(positions)} masked positions")
    print(f"onnxruntime int8 vs fp32: top-1 agreement {c['top1_agreement']:.2%} ({c['top1_disagreements']} differ), "
          f"top-5 overlap {c['top5_overlap']:.2%}, cosine mean {c['cosine_mean']:.6f} min {c['cosine_min']:.6f}, "
          f"max |dlogit| {c['max_abs_logit_diff']:.3f}")
    for e, v in acc.items():
        print(f"accuracy {e:17} top-1 {v['top1']:.2%} top-5 {v['top5']:.2%}")
    print("written", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
