"""English training and held-out text for the default model, from permissively licensed offline sources.

Every source is a Debian package or the running CPython; licences were checked in
``/usr/share/doc/<package>/copyright``:

* ``fortunes`` (+ ``fortunes-min``) 1:1.99.1-7.3 -- BSD licence (fortune-mod).  The fortune files in
  ``/usr/share/games/fortunes`` (not the ``-off`` set, which is another package).
* ``wordnet-base`` 1:3.0-37 -- WordNet 3.0 licence (permissive, BSD-like).  Glosses and quoted usage
  examples from ``/usr/share/wordnet/data.{noun,verb,adj,adv}``.
* ``python3.11-doc`` 3.11.2-6+deb12u9 -- the Python documentation, PSF License v2.  The reStructuredText
  sources in ``/usr/share/doc/python3.11/html/_sources``, markup stripped, code blocks dropped.
* CPython standard-library docstrings (``corpus.docstring_lines``) -- PSF License v2.

No share-alike (CC-BY-SA, GFDL, GPL) text is used.  Sentences are deduplicated and split by a hash of
their text: 1% validation (checkpoint choice), 2% test (the reported numbers), 97% training.
"""
from __future__ import annotations

import glob
import hashlib
import os
import re

from . import corpus

FORTUNES_DIR = "/usr/share/games/fortunes"
WORDNET_DIR = "/usr/share/wordnet"
PYDOC_DIR = "/usr/share/doc/python3.11/html/_sources"

SOURCES = {
    "fortunes": {"package": "fortunes, fortunes-min 1:1.99.1-7.3", "licence": "BSD-3-Clause (fortune-mod)",
                 "path": FORTUNES_DIR},
    "wordnet": {"package": "wordnet-base 1:3.0-37", "licence": "WordNet-3.0 (permissive)", "path": WORDNET_DIR},
    "pydoc": {"package": "python3.11-doc 3.11.2-6+deb12u9", "licence": "PSF-2.0", "path": PYDOC_DIR},
    "docstrings": {"package": "CPython standard library (running interpreter)", "licence": "PSF-2.0",
                   "path": "sysconfig stdlib"},
}

_WS = re.compile(r"\s+")
_SENT = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[A-Z\"'(])")
_ALPHA = re.compile(r"[A-Za-z]")


def _sentences(text: str):
    text = _WS.sub(" ", text).strip()
    for s in _SENT.split(text):
        s = s.strip()
        if s:
            yield s


def _good(s: str) -> bool:
    words = s.split()
    if not (4 <= len(words) <= 60):
        return False
    letters = len(_ALPHA.findall(s))
    if letters < 0.6 * len(s.replace(" ", "")):
        return False
    if any(c in s for c in "{}<>|\\=_$@#~^"):
        return False
    return True


def fortunes_text():
    names = sorted(n for n in os.listdir(FORTUNES_DIR)
                   if "." not in n and os.path.isfile(os.path.join(FORTUNES_DIR, n)))
    for n in names:
        if n in ("ascii-art", "translate-me"):
            continue
        with open(os.path.join(FORTUNES_DIR, n), encoding="utf-8", errors="replace") as f:
            data = f.read()
        for entry in data.split("\n%\n"):
            # drop attribution lines ("-- Mark Twain") and quotes of dialogue markers
            lines = [ln for ln in entry.split("\n") if not ln.strip().startswith("--")]
            yield from _sentences(" ".join(lines))


_WN_EX = re.compile(r'"([^"]+)"')


def wordnet_text():
    for pos in ("noun", "verb", "adj", "adv"):
        with open(os.path.join(WORDNET_DIR, "data." + pos), encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("  ") or "|" not in line:
                    continue  # licence header
                gloss = line.split("|", 1)[1]
                for ex in _WN_EX.findall(gloss):
                    yield from _sentences(ex)
                defin = _WN_EX.sub("", gloss).split(";")[0].strip()
                if defin:
                    yield defin[0].upper() + defin[1:] + "."


_ROLE = re.compile(r":[a-z:]+:`~?([^`<]*?)(?:\s*<[^>]*>)?`")
_LIT = re.compile(r"``([^`]*)``")
_EMPH = re.compile(r"\*\*?([^*]+)\*\*?")
_LINK = re.compile(r"`([^`<]*?)\s*(?:<[^>]*>)?`_*")


def _rst_paragraphs(src: str):
    para: list[str] = []
    in_block = False
    block_indent = 0
    for raw in src.split("\n"):
        line = raw.rstrip()
        indent = len(line) - len(line.lstrip())
        if in_block:
            if line and indent <= block_indent:
                in_block = False
            else:
                continue
        stripped = line.strip()
        if not stripped:
            if para:
                yield " ".join(para)
                para = []
            continue
        if stripped.startswith(".."):
            if para:
                yield " ".join(para)
                para = []
            in_block, block_indent = True, indent
            continue
        if re.fullmatch(r"[=\-~^*+#`'\".:_]{3,}", stripped) or stripped.startswith(("+-", "|", ">>>", "...")):
            if para:
                yield " ".join(para)
                para = []
            continue
        para.append(stripped)
        if stripped.endswith("::"):
            yield " ".join(para)[:-1]
            para = []
            in_block, block_indent = True, indent
    if para:
        yield " ".join(para)


def _rst_clean(p: str) -> str:
    p = _ROLE.sub(r"\1", p)
    p = _LIT.sub(r"\1", p)
    p = _LINK.sub(r"\1", p)
    p = _EMPH.sub(r"\1", p)
    return p


def pydoc_text():
    for path in sorted(glob.glob(os.path.join(PYDOC_DIR, "**", "*.txt"), recursive=True)):
        with open(path, encoding="utf-8", errors="replace") as f:
            src = f.read()
        for p in _rst_paragraphs(src):
            yield from _sentences(_rst_clean(p))


def docstrings_text():
    for p in corpus.docstring_lines():
        yield from _sentences(p)


READERS = {"fortunes": fortunes_text, "wordnet": wordnet_text, "pydoc": pydoc_text, "docstrings": docstrings_text}


def split_of(s: str) -> str:
    h = int.from_bytes(hashlib.sha256(s.encode("utf-8")).digest()[:4], "little") % 100
    return "test" if h < 2 else "val" if h < 3 else "train"


def build(out_dir: str) -> dict:
    """Write ``{train,val,test}.tsv`` (source<TAB>sentence) into ``out_dir``; return the manifest."""
    os.makedirs(out_dir, exist_ok=True)
    seen: set[str] = set()
    files = {k: open(os.path.join(out_dir, k + ".tsv"), "w", encoding="utf-8") for k in ("train", "val", "test")}
    stats: dict = {}
    for name, reader in READERS.items():
        h = hashlib.sha256()
        st = {"sentences": 0, "characters": 0, "train": 0, "val": 0, "test": 0}
        for s in reader():
            s = s.replace("\t", " ")
            if not _good(s) or s.lower() in seen:
                continue
            seen.add(s.lower())
            sp = split_of(s)
            files[sp].write(f"{name}\t{s}\n")
            h.update(s.encode("utf-8") + b"\n")
            st["sentences"] += 1
            st["characters"] += len(s)
            st[sp] += 1
        st["sha256"] = h.hexdigest()
        stats[name] = {**SOURCES[name], **st}
    for f in files.values():
        f.close()
    return stats


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(build(sys.argv[1] if len(sys.argv) > 1 else "/tmp/bertling-text"), indent=1))
