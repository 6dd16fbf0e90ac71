"""AntiBERTy (PyPI ``antiberty==0.1.3``, MIT) -> an optimum-style fill-mask export, and its masked residues.

AntiBERTy is a real pretrained BERT masked LM over antibody amino-acid sequences (8 layers, hidden 512,
8 heads, FFN 2048, vocabulary 25: ``[PAD] [UNK] [CLS] [SEP] [MASK]`` and the 20 residues), shipped as
``antiberty/trained_models/AntiBERTy_md_smooth/pytorch_model.bin`` + ``config.json`` and
``antiberty/trained_models/vocab.txt``. Its ``AntiBERTy`` class is a ``BertModel`` plus a
``BertLMPredictionHead`` (``cls.predictions``, decoder tied to the word embeddings) and three
classification heads on the pooled output (species, chain, graft). The masked-LM part is exactly
``transformers.BertForMaskedLM``: the conversion loads ``bert.*`` (without the pooler) and
``cls.predictions.*`` into it and drops the pooler and the classification heads.

The export is made like the fixtures' (``export.export_onnx``: ``torch.onnx.export``, opset 17, inputs
``input_ids``/``attention_mask``/``token_type_ids``, output ``logits``), i.e. what
``optimum-cli export onnx --task fill-mask`` lays out. The tokenizer is AntiBERTy's own:
``transformers.BertTokenizer(vocab_file=vocab.txt, do_lower_case=False)`` over residues separated by
spaces (``"E V Q [MASK] V"``), written as a ``tokenizer.json`` with the ``tokenizers`` library
(WordPiece, BertNormalizer without lowercasing, BertPreTokenizer, ``[CLS] $A [SEP]``); ids are checked
against transformers' on the example sequences (see :func:`reference_tokenizers`: under transformers 5,
AntiBERTy's own ``BertTokenizer(vocab_file=...)`` call silently yields [UNK] for every residue).

Example sequences: the package ships no tests or example files; its only antibody sequences are the ones
in its README (the wheel's METADATA long description), read from there by :func:`example_sequences`.

    PYTHONPATH=models .venv/bin/python -m bertling_models.antiberty OUT_DIR   # needs torch, transformers
"""
from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import re
import sys
from dataclasses import asdict, dataclass

PACKAGE = "antiberty==0.1.3"
CHECKPOINT = os.path.join("trained_models", "AntiBERTy_md_smooth")
VOCAB = os.path.join("trained_models", "vocab.txt")
MASK = "[MASK]"
# Contexts each residue is masked in (see masked_positions): the whole sequence, then every window of
# these lengths whose start is a multiple of WINDOW_STRIDE (plus the window ending at the last residue).
WINDOWS = (96, 64, 32)
WINDOW_STRIDE = 16


def package_dir() -> str:
    """The installed ``antiberty`` package directory (found without importing it: its ``__init__``
    imports torch and transformers)."""
    spec = importlib.util.find_spec("antiberty")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"antiberty is not installed: .venv/bin/pip install {PACKAGE} --no-deps")
    version = importlib.metadata.version("antiberty")
    if version != PACKAGE.split("==")[1]:
        raise SystemExit(f"antiberty {version} is installed, {PACKAGE} is expected")
    return list(spec.submodule_search_locations)[0]


def example_sequences() -> dict[str, str]:
    """AntiBERTy's own example sequences: every distinct complete sequence in its README (the
    ``fill_masks`` examples with ``_`` masks are these same sequences with residues blanked, so they are
    not separate). Names: ``heavy`` and ``light`` (the embed/classify examples) and ``light_pll`` (the
    pseudo-log-likelihood example, the light chain with ``SS`` inserted after residue 6)."""
    readme = importlib.metadata.metadata("antiberty").get_payload()
    found = re.findall(r'"([A-Z_]{50,})"', readme)
    distinct: list[str] = []
    for s in found:
        if "_" not in s and s not in distinct:
            distinct.append(s)
    names = ["heavy", "light", "light_pll"]
    if len(distinct) != len(names):
        raise RuntimeError(f"expected {len(names)} distinct example sequences in the antiberty README, found {len(distinct)}")
    # Every blanked fill_masks example must be one of these with residues replaced by "_".
    for s in found:
        if "_" in s and not any(len(d) == len(s) and all(a == "_" or a == b for a, b in zip(s, d)) for d in distinct):
            raise RuntimeError(f"a masked README example matches no complete sequence: {s}")
    return dict(zip(names, distinct))


def spaced(residues: str | list[str]) -> str:
    """AntiBERTy's input text: residues separated by single spaces (``_`` -> ``[MASK]``), as its runner does."""
    return " ".join(MASK if c == "_" else c for c in residues)


@dataclass(frozen=True)
class MaskedPosition:
    """One fill-mask request: residue ``index`` of example sequence ``sequence`` masked, in the
    context ``sequence[start:end]``; ``position`` is the token index of the mask ([CLS] is 0)."""

    id: int
    sequence: str
    context: str  # "full" or "w96" / "w64" / "w32"
    start: int
    end: int
    index: int
    target: str
    position: int
    text: str


def _windows(n: int, width: int, stride: int) -> list[tuple[int, int]]:
    if n <= width:
        return []
    starts = list(range(0, n - width + 1, stride))
    if starts[-1] != n - width:
        starts.append(n - width)
    return [(s, s + width) for s in starts]


def masked_positions(sequences: dict[str, str] | None = None) -> list[MaskedPosition]:
    """Every residue of every example sequence, masked alone (one [MASK] per request), in the whole
    sequence and in each window of ``WINDOWS`` residues starting at a multiple of ``WINDOW_STRIDE``
    (plus the window ending at the sequence's end) that contains it. Deterministic order: sequence,
    context, window start, residue."""
    seqs = example_sequences() if sequences is None else sequences
    out: list[MaskedPosition] = []
    for name, seq in seqs.items():
        contexts = [("full", 0, len(seq))]
        for w in WINDOWS:
            contexts += [(f"w{w}", s, e) for s, e in _windows(len(seq), w, WINDOW_STRIDE)]
        for ctx, s, e in contexts:
            for i in range(s, e):
                res = list(seq[s:e])
                res[i - s] = "_"
                out.append(MaskedPosition(len(out), name, ctx, s, e, i, seq[i], 1 + i - s, spaced(res)))
    return out


def build_tokenizer(vocab_file: str):
    """AntiBERTy's ``BertTokenizer(vocab_file, do_lower_case=False)`` as a ``tokenizers.Tokenizer``
    (what transformers' BertConverter writes for it)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    from . import tokenization

    with open(vocab_file, encoding="utf-8") as f:
        vocab = {line.rstrip("\n"): i for i, line in enumerate(f) if line.rstrip("\n")}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", continuing_subword_prefix="##",
                                     max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None,
                                                lowercase=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    # The same special tokens and ids as the bert fixtures: [PAD] 0 [UNK] 1 [CLS] 2 [SEP] 3 [MASK] 4,
    # added (never split, matched before normalization) as BertTokenizer does.
    order = ["pad", "unk", "cls", "sep", "mask"]
    sp = tokenization.SPECIALS["bert"]
    tok.add_special_tokens([AddedToken(sp[k][0], special=True, normalized=False) for k in order])
    for k in order:
        assert tok.token_to_id(sp[k][0]) == vocab[sp[k][0]] == sp[k][1], (k, vocab.get(sp[k][0]))
    return tok


def build_model(pkg: str):
    """``BertForMaskedLM`` holding AntiBERTy's encoder and masked-LM head (eval mode)."""
    import torch
    import transformers

    ckpt = os.path.join(pkg, CHECKPOINT)
    with open(os.path.join(ckpt, "config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    for k in ("_name_or_path", "architectures", "transformers_version", "gradient_checkpointing", "use_cache"):
        cfg.pop(k, None)
    config = transformers.BertConfig(**cfg, architectures=["BertForMaskedLM"], tie_word_embeddings=True)
    sd = torch.load(os.path.join(ckpt, "pytorch_model.bin"), map_location="cpu", weights_only=True)
    if not torch.equal(sd["cls.predictions.decoder.weight"], sd["bert.embeddings.word_embeddings.weight"]):
        raise RuntimeError("AntiBERTy's decoder is not tied to its word embeddings")
    dropped = [k for k in sd if k.startswith(("bert.pooler.", "cls.species.", "cls.chain.", "cls.graft."))
               or k == "bert.embeddings.position_ids"]
    kept = {k: v for k, v in sd.items() if k not in dropped}
    model = transformers.BertForMaskedLM(config)
    own = model.state_dict()
    unknown = sorted(set(kept) - set(own))
    missing = sorted(k for k in set(own) - set(kept) if not k.endswith("position_ids"))
    if unknown or missing:
        raise RuntimeError(f"AntiBERTy -> BertForMaskedLM: unknown {unknown}, missing {missing}")
    model.load_state_dict(kept, strict=False)
    model.eval()
    with torch.no_grad():
        for k, v in kept.items():
            if not torch.equal(model.state_dict()[k], v):
                raise RuntimeError(f"{k} did not load")
    return model


def reference_tokenizers(vocab_file: str) -> dict:
    """AntiBERTy's tokenizer as transformers builds it: ``AntiBERTyRunner`` calls
    ``BertTokenizer(vocab_file=..., do_lower_case=False)``, which in transformers 4.x (what AntiBERTy was
    written for) is the pure-Python WordPiece tokenizer, ``BertTokenizerLegacy`` in transformers 5.
    transformers 5's ``BertTokenizer`` ignores ``vocab_file=`` (its vocabulary then holds only the 5
    special tokens and every residue becomes [UNK]), so it is checked with ``vocab=`` instead."""
    import transformers
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

    return {"BertTokenizerLegacy(vocab_file)": BertTokenizerLegacy(vocab_file=vocab_file, do_lower_case=False),
            "BertTokenizer(vocab)": transformers.BertTokenizer(vocab=vocab_file, do_lower_case=False)}


def check_tokenizer(tok, vocab_file: str, texts: list[str]) -> None:
    """The ``tokenizers`` encoding equals transformers' (:func:`reference_tokenizers`) on every text."""
    refs = reference_tokenizers(vocab_file)
    for t in texts:
        a = tok.encode(t).ids
        for name, ref in refs.items():
            b = ref(t)["input_ids"]
            if a != b:
                raise RuntimeError(f"tokenizer mismatch with {name} on {t!r}: {a} != {b}")
        if 1 in a:
            raise RuntimeError(f"[UNK] in {t!r}")


def check_export(model, out: str, texts: list[str]) -> float:
    """Max |ONNX (onnxruntime) - PyTorch| logit difference over ``texts``."""
    import numpy as np
    import torch

    from . import ort

    tok = ort.load_tokenizer(out)
    worst = 0.0
    for t in texts:
        ids = np.array([tok.encode(t).ids], dtype=np.int64)
        got = ort.run_logits(out, ids)
        with torch.no_grad():
            want = model(input_ids=torch.from_numpy(ids), attention_mask=torch.ones_like(torch.from_numpy(ids)),
                         token_type_ids=torch.zeros_like(torch.from_numpy(ids))).logits.numpy()
        worst = max(worst, float(np.abs(got - want).max()))
    return worst


def convert(out: str) -> dict:
    """Write the export (model.onnx, config.json, tokenizer files) to ``out``; returns check figures."""
    from . import export

    pkg = package_dir()
    os.makedirs(out, exist_ok=True)
    vocab_file = os.path.join(pkg, VOCAB)
    tok = build_tokenizer(vocab_file)
    seqs = example_sequences()
    probe = [spaced(s) for s in seqs.values()] + [p.text for p in masked_positions(seqs)[::97]]
    check_tokenizer(tok, vocab_file, probe)
    model = build_model(pkg)
    model.config.save_pretrained(out)
    export.save_tokenizer(tok, "bert", out)
    export.export_onnx(model, "bert", os.path.join(out, "model.onnx"))
    diff = check_export(model, out, probe[:8])
    if diff > 1e-3:
        raise RuntimeError(f"ONNX export differs from PyTorch by {diff}")
    return {"package": PACKAGE, "out": out, "tokenizer_texts_checked": len(probe), "onnx_vs_torch_max_abs": diff}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bertling_models.antiberty", description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="export directory to write (model.onnx, config.json, tokenizer.json, ...)")
    ap.add_argument("--positions", action="store_true", help="only print the masked positions as JSON lines")
    args = ap.parse_args(argv)
    if args.positions:
        for p in masked_positions():
            print(json.dumps(asdict(p)))
        return 0
    print(json.dumps(convert(args.out), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
