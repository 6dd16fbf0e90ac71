"""Brute-force reference for text completion (`Model::complete` in runtime/src/complete.rs).

Independent of the Rust search: candidates are enumerated from the vocabulary itself (tokenizer.json),
and every candidate word of at most `max_pieces` pieces consistent with the typed prefix is scored
exhaustively with the PyTorch model (no pruning, no beam). The scoring (docs/completion.md):

- prefix = the trailing run of word characters (``str.isalnum``, or a combining mark U+0300..U+036F)
  of the text; context = the text before it; what precedes the prefix: text start, whitespace, or
  something else ("glued").
- a candidate is n pieces: a first piece, then n-1 continuation pieces; each piece's spelling (its
  marker ``##`` / ``▁`` / ``Ġ`` removed, byte-level pieces decoded to UTF-8) is non-empty and all
  letters or numbers (``str.isalnum``); the word (the concatenated spellings) starts with the normalized prefix and is at most
  64 bytes; the first piece is a word start (WordPiece: always a non-``##`` piece; Metaspace: a ``▁``
  piece after whitespace or at the text start, else a piece without ``▁``; byte-level: a ``Ġ`` piece
  after whitespace, else a piece without ``Ġ``).
- ids = tokenizer(context + mask token) with that mask replaced by n masks; score =
  sum_i log_softmax(logits at mask i, with masks 1..i-1 filled with the candidate's pieces)[piece i].
- a word's score is the max over the piece sequences spelling it; top-k by (-score, word bytes).
"""
from __future__ import annotations

import json
import os
import unicodedata

import numpy as np

from . import architectures, tokenization
from .fixtures import FIXTURES_DIR

MAX_WORD = 64
REFERENCE_FILE = "completion_reference.json"
TOP_K = 5

# The fixed prefixes: mid-word, after a space, empty, accents, capitals, punctuation, digits.
PREFIXES = [
    "",
    "The",
    "The ",
    "Please insert your ca",
    "Please insert your card ",
    "Return the val",
    "Return the value of the ",
    "The function ret",
    "This module provides ",
    "This module prov",
    "Hello, wor",
    "Hello,wor",
    "(see the docu",
    "THE QUICK BROWN FO",
    "The Quick Brown Fox jumps over the L",
    "Raise a ValueError if the argu",
    "In 1999, the company had 4",
    "The café served crème brû",
    "Le café est trè",
    "Cafe\u0301 au la",
    "Über",
    "\"Yes,\" he said, \"the ",
    "Call close() when you are d",
    "x = ",
    "If the file is not fou",
    "Each thread has its own l",
    "a",
    "S",
    "The socket is closed; the conn",
    "Use the --verbose opt",
]

# Long typed prefixes (few first pieces fit them) scored with words of up to 3 pieces.
PREFIXES_3 = [
    "Raise a ValueError if the argu",
    "This module prov",
    "Return the val",
    "If the file is not fou",
    "The function ret",
]


def is_word_char(c: str) -> bool:
    return c.isalnum() or 0x300 <= ord(c) <= 0x36F


def split_prefix(text: str):
    start = len(text)
    while start > 0 and is_word_char(text[start - 1]):
        start -= 1
    if start == 0:
        before = "start"
    elif text[start - 1].isspace():
        before = "space"
    else:
        before = "glued"
    return start, before


def _byte_decoder():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


class Vocabulary:
    """Each id's kind ('start', 'cont' or None) and spelling, from tokenizer.json."""

    def __init__(self, tokenizer_json: str):
        from tokenizers import Tokenizer

        with open(tokenizer_json, encoding="utf-8") as f:
            spec = json.load(f)
        self.tok = Tokenizer.from_file(tokenizer_json)
        model, pre = spec["model"], spec.get("pre_tokenizer") or {}
        added = {t["id"] for t in spec["added_tokens"]}
        if model["type"] == "WordPiece":
            self.style, cont = "wordpiece", model.get("continuing_subword_prefix", "##")
            self.start_of_text_is_start = True
        elif pre.get("type") == "Metaspace":
            self.style, repl = "metaspace", pre["replacement"]
            self.start_of_text_is_start = pre.get("prepend_scheme", "always") != "never"
        elif pre.get("type") == "ByteLevel":
            self.style, dec = "bytelevel", _byte_decoder()
            self.start_of_text_is_start = bool(pre.get("add_prefix_space"))
        else:
            raise ValueError(f"unknown tokenizer style: {model['type']} / {pre.get('type')}")
        size = self.tok.get_vocab_size(with_added_tokens=True)
        self.kinds, self.spellings = [], []
        for i in range(size):
            piece = self.tok.id_to_token(i) or ""
            kind, s = None, ""
            if i in added:
                pass
            elif self.style == "wordpiece":
                kind, s = ("cont", piece[len(cont):]) if cont and piece.startswith(cont) else ("start", piece)
            elif self.style == "metaspace":
                kind, s = ("start", piece[len(repl):]) if piece.startswith(repl) else ("cont", piece)
            else:
                try:
                    raw = bytes(dec[c] for c in piece).decode("utf-8")
                    kind, s = ("start", raw[1:]) if raw.startswith(" ") else ("cont", raw)
                except (KeyError, UnicodeDecodeError):
                    kind, s = None, ""
            if not (s and all(c.isalnum() for c in s)):
                kind, s = None, ""
            self.kinds.append(kind)
            self.spellings.append(s)
        self.by_kind = {k: [i for i, x in enumerate(self.kinds) if x == k] for k in ("start", "cont")}

    def normalize(self, text: str) -> str:
        n = self.tok.normalizer
        return n.normalize_str(text) if n is not None else text

    def first_kind(self, before: str) -> str:
        if self.style == "wordpiece" or before == "space":
            return "start"
        if before == "start" and self.start_of_text_is_start:
            return "start"
        return "cont"


class TorchScorer:
    """log_softmax rows of the PyTorch model at one position, for a batch of id sequences."""

    def __init__(self, model, arch: str):
        self.model, self.arch = model, arch

    def __call__(self, ids_batch, types, position: int, chunk: int = 512):
        import torch

        out = []
        for a in range(0, len(ids_batch), chunk):
            ids = torch.tensor(ids_batch[a:a + chunk])
            feeds = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
            if "token_type_ids" in architectures.ONNX_INPUTS[self.arch]:
                feeds["token_type_ids"] = torch.tensor([types] * len(ids))
            with torch.no_grad():
                logits = self.logits_at(feeds, position).double()
            out.append(torch.log_softmax(logits, dim=-1).numpy())
        return np.concatenate(out)

    def logits_at(self, feeds, position: int):
        """The model's own encoder and masked-LM head, the head applied at one position only (the
        full forward computes the vocabulary projection at every position; same numbers)."""
        m = self.model
        h = m.base_model(**feeds)[0][:, position]
        if self.arch == "bert":
            return m.cls(h)
        if self.arch == "albert":
            return m.predictions(h)
        if self.arch == "roberta":
            return m.lm_head(h)
        h = m.vocab_layer_norm(m.activation(m.vocab_transform(h)))
        return m.vocab_projector(h)


class OrtScorer:
    """The same rows from the committed ONNX fixture under onnxruntime (torch-free CI check)."""

    def __init__(self, fixture_dir: str, arch: str):
        import onnxruntime

        self.sess = onnxruntime.InferenceSession(os.path.join(fixture_dir, "model.onnx"))
        self.arch = arch

    def __call__(self, ids_batch, types, position: int, chunk: int = 256):
        out = []
        for a in range(0, len(ids_batch), chunk):
            ids = np.array(ids_batch[a:a + chunk], dtype=np.int64)
            feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
            if "token_type_ids" in architectures.ONNX_INPUTS[self.arch]:
                feeds["token_type_ids"] = np.array([types] * len(ids), dtype=np.int64)
            logits = self.sess.run(["logits"], feeds)[0][:, position, :].astype(np.float64)
            m = logits.max(axis=-1, keepdims=True)
            out.append(logits - m - np.log(np.exp(logits - m).sum(axis=-1, keepdims=True)))
        return np.concatenate(out)


def normalized_list(vocab: Vocabulary, words):
    return sorted({w for w in (vocab.normalize(x.strip()) for x in words) if w})


def brute_force(vocab: Vocabulary, scorer, mask_token: str, text: str, k: int = TOP_K, max_pieces: int = 2,
                only=None, prefer=None, bias: float = 0.0, stop=None) -> dict:
    """Every candidate word of <= max_pieces pieces consistent with the prefix, scored exhaustively."""
    start, before = split_prefix(text)
    prefix = vocab.normalize(text[start:])
    context = text[:start]
    enc = vocab.tok.encode((context + "[MASK]").replace("[MASK]", mask_token))
    mask_id = vocab.tok.token_to_id(mask_token)
    ids, types = list(enc.ids), list(enc.type_ids)
    at = max(i for i, t in enumerate(ids) if t == mask_id)
    first = vocab.by_kind[vocab.first_kind(before)]
    cont = vocab.by_kind["cont"]
    words = {}  # word -> (score, pieces)
    candidates = 0
    passes = 0
    if len(prefix.encode()) > MAX_WORD:
        return {"text": text, "prefix": "", "prefix_start": len(text[:start].encode()), "words": [], "scores": [],
                "pieces": [], "candidates": 0, "passes": 0, "gap_5_6": None}

    def consistent(word: str, final: bool) -> bool:
        if len(word.encode()) > MAX_WORD:
            return False
        return word.startswith(prefix) if final else (word.startswith(prefix) or prefix.startswith(word))

    spell = vocab.spellings
    by_spelling = {}
    for i, x in enumerate(spell):
        if x:
            by_spelling.setdefault(x, []).append(i)
    stop = set(stop or [])
    for n in range(1, max_pieces + 1):
        # partial sequences of length j, each with its score; extend level by level, exhaustively.
        partial = [((), "", 0.0)]
        for j in range(n):
            final = j == n - 1
            allowed = first if j == 0 else cont
            seqs = [ids[:at] + list(p) + [mask_id] * (n - j) + ids[at + 1:] for p, _, _ in partial]
            row_types = types[:at] + [types[at]] * n + types[at + 1:]
            if not seqs:
                break
            rows = scorer(seqs, row_types, at + j)
            passes += len(seqs)
            nxt = []
            for (p, w, s), row in zip(partial, rows):
                idx = [i for i in allowed if consistent(w + spell[i], final)]
                if not final:
                    nxt.extend((p + (i,), w + spell[i], s + float(row[i])) for i in idx)
                    continue
                candidates += len(idx)
                idx = np.array(idx, dtype=np.int64)
                adjusted = row[idx].astype(np.float64)
                # Word lists act per word: the ids in this row whose word is listed.
                listed = lambda words: np.isin(idx, [i for x in words if x.startswith(w)
                                                     for i in by_spelling.get(x[len(w):], ())])
                if stop:
                    adjusted[listed(stop)] = -np.inf
                if only is not None:
                    adjusted[~listed(only)] = -np.inf
                if prefer:
                    adjusted[listed(prefer)] += bias
                # Within one row all words differ, so a word in the overall top k+1 is in its row's
                # top k+1: keeping each row's best k+3 is exact (2 spare for ties).
                keep = np.flatnonzero(np.isfinite(adjusted))
                if len(keep) > k + 3:
                    keep = keep[np.argpartition(-adjusted[keep], k + 3)[:k + 3]]
                for j in keep.tolist():
                    i = int(idx[j])
                    word, score = w + spell[i], s + float(adjusted[j])
                    if word not in words or score > words[word][0]:
                        words[word] = (score, p + (i,))
            partial = nxt
    ranked = [(-s, w.encode(), w, p) for w, (s, p) in words.items()]
    ranked.sort()
    top = ranked[:k + 1]
    scores = [-r[0] for r in top]
    gaps = [scores[i] - scores[i + 1] for i in range(len(scores) - 1)]
    return {"text": text, "prefix": prefix, "prefix_start": len(context.encode()),
            "words": [r[2] for r in top[:k]], "scores": scores[:k], "pieces": [list(r[3]) for r in top[:k]],
            "candidates": candidates, "passes": passes, "min_gap_top6": min(gaps) if gaps else None}


def option_cases(vocab: Vocabulary):
    """A few requests with a word list (restrict / bias) and a stop list, per fixture."""
    menu = ["card", "cash", "cancel", "Café", "coffee", "value", "values", "the", "list", "class", "Return"]
    stop = ["the", "a", "of", "to", "and", "is", "in"]
    return [
        {"text": "Please insert your ca", "only": menu},
        {"text": "Return the ", "only": menu},
        {"text": "Return the ", "prefer": menu, "bias": 3.0},
        {"text": "The ", "stop": stop},
        {"text": "", "stop": stop, "prefer": menu, "bias": 1.5},
    ]


def fixture_scorer(arch: str, fixtures_dir: str = FIXTURES_DIR):
    """The PyTorch model of a fixture, rebuilt from its seed (checked against references.json)."""
    from . import export

    d = os.path.join(fixtures_dir, arch)
    with open(os.path.join(d, "fixture_meta.json"), encoding="utf-8") as f:
        meta = json.load(f)
    with open(os.path.join(d, "references.json"), encoding="utf-8") as f:
        refs = json.load(f)
    model = export.build_model(arch, "tiny", meta["model_vocab_size"], seed=meta["seed"])
    scorer = TorchScorer(model, arch)
    import torch

    case = refs["cases"][0]
    enc_types = Vocabulary(os.path.join(d, "tokenizer.json")).tok.encode(case["text"]).type_ids
    feeds = {"input_ids": torch.tensor([case["input_ids"]])}
    feeds["attention_mask"] = torch.ones_like(feeds["input_ids"])
    if "token_type_ids" in architectures.ONNX_INPUTS[arch]:
        feeds["token_type_ids"] = torch.tensor([enc_types])
    with torch.no_grad():
        row = model(**feeds).logits[0, case["mask_positions"][0]].numpy()
    for t, l in case["masks"][0]["torch_logits_top"]:
        assert abs(float(row[t]) - l) < 1e-5, (arch, t, float(row[t]), l)
    with torch.no_grad():
        head = scorer.logits_at(feeds, case["mask_positions"][0]).numpy()[0]
    assert np.abs(head - row).max() < 1e-5, (arch, "head at one position vs full forward")
    return scorer


def build_reference(arch: str, scorer=None, fixtures_dir: str = FIXTURES_DIR, max_pieces: int = 2) -> dict:
    d = os.path.join(fixtures_dir, arch)
    vocab = Vocabulary(os.path.join(d, "tokenizer.json"))
    scorer = scorer or fixture_scorer(arch, fixtures_dir)
    mask = tokenization.MASK_TOKEN[arch]
    cases_out = []
    for text in PREFIXES:
        r = brute_force(vocab, scorer, mask, text, max_pieces=max_pieces)
        r["options"], r["max_pieces"] = {}, max_pieces
        cases_out.append(r)
    for c in option_cases(vocab):
        opts = {key: c[key] for key in ("only", "prefer", "bias", "stop") if key in c}
        r = brute_force(vocab, scorer, mask, c["text"], max_pieces=max_pieces,
                        only=normalized_list(vocab, c["only"]) if "only" in c else None,
                        prefer=normalized_list(vocab, c["prefer"]) if "prefer" in c else None,
                        bias=c.get("bias", 0.0),
                        stop=normalized_list(vocab, c["stop"]) if "stop" in c else None)
        r["options"], r["max_pieces"] = opts, max_pieces
        cases_out.append(r)
    for text in PREFIXES_3:
        r = brute_force(vocab, scorer, mask, text, max_pieces=3)
        r["options"], r["max_pieces"] = {}, 3
        cases_out.append(r)
    return {"architecture": arch, "mask_token": mask, "top_k": TOP_K, "max_pieces": max_pieces,
            "max_word_bytes": MAX_WORD, "style": vocab.style,
            "start_pieces": len(vocab.by_kind["start"]), "cont_pieces": len(vocab.by_kind["cont"]),
            "scorer": "PyTorch (transformers) " + architectures.MLM_CLASS[arch] + " rebuilt from the fixture seed",
            "cases": cases_out}


def write_references(archs=architectures.ARCHS, fixtures_dir: str = FIXTURES_DIR):
    from .references import write_json

    for arch in archs:
        ref = build_reference(arch, fixtures_dir=fixtures_dir)
        write_json(os.path.join(fixtures_dir, arch, REFERENCE_FILE), ref, indent=1)
        gaps = [c["min_gap_top6"] for c in ref["cases"] if c["min_gap_top6"] is not None]
        print(f"{arch}: {len(ref['cases'])} cases, {sum(c['candidates'] for c in ref['cases'])} candidates scored, "
              f"{sum(c['passes'] for c in ref['cases'])} sequences run, min top-6 gap {min(gaps):.2e}", flush=True)


if __name__ == "__main__":
    import sys

    write_references(tuple(sys.argv[1:]) or architectures.ARCHS)
