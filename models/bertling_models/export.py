"""Build a seeded random-init masked-LM model and export it like ``optimum-cli export onnx --task fill-mask``.

Exporter: ``torch.onnx.export(opset_version=17, dynamo=False)`` with optimum's fill-mask I/O:
inputs ``input_ids``, ``attention_mask`` (+ ``token_type_ids`` for BERT/ALBERT), int64,
dynamic axes ``batch_size``/``sequence_length``; output ``logits`` [batch_size, sequence_length, vocab].
"""
from __future__ import annotations

import json
import os

from . import architectures, tokenization

OPSET = 17


def _perturb_affine(model, seed: int, std: float = 0.1):
    """Tiny fixtures: give biases and LayerNorm gamma/beta non-trivial seeded values, so a runtime
    that ignores a bias or a LayerNorm affine parameter fails the references (HF init leaves
    them at 0 and 1)."""
    import torch

    g = torch.Generator().manual_seed(seed + 7)
    with torch.no_grad():
        for name, p in model.named_parameters():
            lname = name.lower()
            is_ln = "layernorm" in lname or "layer_norm" in lname
            if name.endswith(".bias"):
                p.copy_(torch.randn(p.shape, generator=g) * std)
            elif is_ln and name.endswith(".weight"):
                p.copy_(1.0 + torch.randn(p.shape, generator=g) * std)


def build_model(arch: str, size: str, vocab_size: int, seed: int | None = None):
    import torch
    import transformers

    if seed is None:
        seed = architectures.SEEDS[(arch, size)]
    cfg = architectures.config(arch, size, vocab_size)
    cls = getattr(transformers, architectures.MLM_CLASS[arch])
    torch.manual_seed(seed)
    model = cls(cfg)
    if size == "tiny":
        _perturb_affine(model, seed)
    model.eval()
    return model


def export_onnx(model, arch: str, path: str, seq_len: int = 16, batch: int = 2):
    import torch

    names = architectures.ONNX_INPUTS[arch]

    g = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    ids = torch.randint(5, min(vocab, 1000), (batch, seq_len), generator=g, dtype=torch.int64)
    am = torch.ones(batch, seq_len, dtype=torch.int64)
    am[1, seq_len - 3:] = 0
    args = [ids, am]
    if "token_type_ids" in names:
        args.append(torch.zeros(batch, seq_len, dtype=torch.int64))
    dyn = {n: {0: "batch_size", 1: "sequence_length"} for n in names}
    dyn["logits"] = {0: "batch_size", 1: "sequence_length"}
    # Export the Hugging Face module itself (initializer names as optimum's: "bert.embeddings...."),
    # positional args in optimum's input order, tuple output -> ("logits",).
    model.eval()
    old_rd = model.config.return_dict
    model.config.return_dict = False
    with torch.no_grad():
        torch.onnx.export(model, tuple(args), path, input_names=names, output_names=["logits"],
                          dynamic_axes=dyn, opset_version=OPSET, do_constant_folding=True, dynamo=False)
    model.config.return_dict = old_rd
    model.eval()  # the TorchScript exporter leaves the module in train() mode


def export_onnx_dynamo(model, arch: str, path: str, seq_len: int = 16, batch: int = 2):
    """The export as ``torch.onnx.export(..., dynamo=True)`` writes it (the default exporter from
    PyTorch 2.9; needs onnxscript): opset 18+, the attention mask through ``GatherND``, RoBERTa's
    position count cast to int64 before its ``CumSum``. Not what optimum writes; what a user's own
    export script may."""
    import torch

    names = architectures.ONNX_INPUTS[arch]
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, min(model.config.vocab_size, 1000), (batch, seq_len), generator=g, dtype=torch.int64)
    kwargs = {"input_ids": ids, "attention_mask": torch.ones(batch, seq_len, dtype=torch.int64)}
    if "token_type_ids" in names:
        kwargs["token_type_ids"] = torch.zeros(batch, seq_len, dtype=torch.int64)
    b, s = torch.export.Dim("batch_size"), torch.export.Dim("sequence_length")
    model.eval()
    with torch.no_grad():
        torch.onnx.export(model, (), path, kwargs=kwargs, input_names=list(kwargs), output_names=["logits"],
                          dynamic_shapes={k: {0: b, 1: s} for k in kwargs}, dynamo=True, external_data=False)


def save_tokenizer(tok, arch: str, out: str):
    """Save tokenizer files the way transformers' save_pretrained writes them (as optimum copies them)."""
    fast = tokenization.hf_fast_tokenizer(tok, arch)
    fast.save_pretrained(out)
    # transformers 5 writes tokenizer_class "TokenizersBackend", unknown to transformers 4.x;
    # PreTrainedTokenizerFast loads in both.
    tcp = os.path.join(out, "tokenizer_config.json")
    with open(tcp, encoding="utf-8") as f:
        tc = json.load(f)
    tc["tokenizer_class"] = "PreTrainedTokenizerFast"
    tc.pop("backend", None)
    tc["model_input_names"] = list(fast.model_input_names)
    with open(tcp, "w", encoding="utf-8") as f:
        json.dump(tc, f, indent=2, ensure_ascii=False)
        f.write("\n")
    stm = os.path.join(out, "special_tokens_map.json")
    if not os.path.exists(stm):  # transformers 5 no longer writes it; optimum exports of 4.x did
        sp = {k + "_token": v[0] for k, v in tokenization.SPECIALS[arch].items()}
        if arch == "roberta":
            sp.update(cls_token="<s>", sep_token="</s>")
        sp["mask_token"] = {"content": sp["mask_token"], "lstrip": arch in ("albert", "roberta"), "normalized": False,
                            "rstrip": False, "single_word": False}
        with open(stm, "w", encoding="utf-8") as f:
            json.dump(sp, f, indent=2, ensure_ascii=False)
            f.write("\n")
    return fast


def build_export(arch: str, size: str, out: str, tok=None, seed: int | None = None):
    """Tokenizer + model + ONNX export into ``out``. Returns (model, hf tokenizer, tokenizers.Tokenizer)."""
    os.makedirs(out, exist_ok=True)
    if tok is None:
        tok = tokenization.build(arch, size)
    ntok = tok.get_vocab_size(with_added_tokens=True)
    model = build_model(arch, size, ntok, seed)
    model.config.save_pretrained(out)
    fast = save_tokenizer(tok, arch, out)
    export_onnx(model, arch, os.path.join(out, "model.onnx"))
    return model, fast, tok
