"""bertling's tokenization against the Python `tokenizers` library, live, on every tokenizer case and
on generated random strings, for all four tokenizer families."""
from __future__ import annotations

import json
import random
import zlib

import pytest
from tokenizers import Tokenizer

from bertling_cli import ARCHS, ROOT, run_bertling

from bertling_models.cases import tokenizer_cases


def random_texts(seed: int, n: int) -> list[str]:
    rng = random.Random(seed)
    alphabet = (
        list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:!?'\"()-_\t\n")
        + list("éèàüöñçßøåÆŒ東京日本語中文한국어😀👍🏽🇫🇷\u0301\u200b\u00a0")
        + ["[MASK]", " [MASK] ", "<mask>", "##", "▁", "Ġ", "[CLS]", "</s>"]
    )
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80))) for _ in range(n)]


@pytest.mark.parametrize("arch", ARCHS)
def test_token_ids_match_python_tokenizers(arch, compiled_models):
    export = ROOT / "models" / "fixtures" / arch
    tok = Tokenizer.from_file(str(export / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    mask = "<mask>" if arch == "roberta" else "[MASK]"
    texts = list(tokenizer_cases()) + random_texts(zlib.crc32(arch.encode()), 200)
    assert len(texts) >= 400
    stdin = "".join(json.dumps(t) + "\n" for t in texts)
    lines = run_bertling("tokenize", str(compiled_models[arch]), stdin=stdin).splitlines()
    assert len(lines) == len(texts)
    for text, line in zip(texts, lines):
        ours = json.loads(line)
        enc = tok.encode(text.replace("[MASK]", mask))
        assert ours["ids"] == enc.ids, repr(text)
        assert [tuple(o) for o in ours["offsets"]] == [tuple(o) for o in enc.offsets], repr(text)
