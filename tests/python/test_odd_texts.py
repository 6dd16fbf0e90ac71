"""Texts unlike the reference sentences, on every fixture: accents, scripts without spaces, emoji,
zero-width and non-breaking spaces, ligatures, tabs and line breaks, special tokens typed as text,
masks glued to words or to each other, and lengths up to the position limit. bertling must
tokenize each as the export's tokenizer.json does (Python `tokenizers`) and answer as onnxruntime
runs the export: same ids, same mask positions, logits within 1e-4, same top 5."""
from __future__ import annotations

import pytest

from bertling_cli import ARCHS, ROOT, assert_answers_as_onnxruntime

from bertling_models.ort import load_tokenizer, mask_token_id

TEXTS = [
    "{m}",
    "{m} {m} {m}",
    "{m}{m}",
    "Héllo wörld, the café is {m}.",
    "我爱{m}。",
    "I love 🍕 and {m}!",
    "   leading and trailing spaces {m}   ",
    "line one\n\tline {m}\r\nend",
    "word{m}word",
    "a{m}",
    "{m}a",
    "zero\u200bwidth {m} and\u00a0non-breaking\u00a0spaces",
    "e\u0301e\u0301 combining and ﬁ ligature {m}",
    "مرحبا {m} بالعالم",
    "ALL CAPS SHOUTING {m}!!!",
    "numbers 3.14159 and 1,000,000 {m}",
    "url https://example.com/{m}?q=1",
    "[CLS] [SEP] [UNK] <s> </s> <pad> {m}",
    "[mask] and <MASK> are text, {m} is not",
    "supercalifragilisticexpialidocious {m}",
]


def _texts(arch: str) -> list[str]:
    tok = load_tokenizer(str(ROOT / "models" / "fixtures" / arch))
    m = tok.id_to_token(mask_token_id(tok))
    texts = [t.format(m=m) for t in TEXTS]
    # At the position limit: 512 tokens with the special ones.
    filler = [" x"] * 600
    lo, hi = 0, len(filler)
    while lo < hi:  # the most filler that still fits
        mid = (lo + hi + 1) // 2
        if len(tok.encode(m + "".join(filler[:mid])).ids) <= 512:
            lo = mid
        else:
            hi = mid - 1
    texts.append(m + "".join(filler[:lo]))
    return texts


@pytest.mark.parametrize("arch", ARCHS)
def test_odd_texts_answer_as_onnxruntime(arch, compiled_models):
    export = str(ROOT / "models" / "fixtures" / arch)
    for text in _texts(arch):
        assert_answers_as_onnxruntime(compiled_models[arch], export, text)
