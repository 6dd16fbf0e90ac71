"""Fixed input sets: fill-mask reference sentences and tokenizer test strings.

``[MASK]`` is the generic mask placeholder; it is replaced by each model's own mask token.
"""
from __future__ import annotations

MASK = "[MASK]"

REFERENCE_SENTENCES = [
    "The capital of France is [MASK].",
    "If you don't [MASK] at the sign, you will get a ticket.",
    "Paris is the [MASK] of France.",
    "[MASK] is a programming language.",
    "The function returns a [MASK]",
    "Return the [MASK] of the list.",
    "This module provides [MASK] for working with files.",
    "She opened the [MASK] and walked into the [MASK].",
    "The [MASK] method is called when the [MASK] is [MASK].",
    "[MASK] [MASK] [MASK]",
    "Hello, [MASK]!",
    "What is the [MASK] of this?",
    "I can't believe it's not [MASK]...",
    "THE QUICK BROWN FOX JUMPS OVER THE [MASK] DOG.",
    "The Quick Brown Fox jumps over the lazy [MASK].",
    "Raise a ValueError if the [MASK] is negative.",
    "In 1999, the company had 42 [MASK] and 3 offices.",
    "The socket is closed; the [MASK] is lost.",
    "\"Yes,\" he said, \"the [MASK] is ready.\"",
    "A list of strings, separated by [MASK], is returned.",
    "Use the --verbose [MASK] to print more details.",
    "The café served crème brûlée to the [MASK].",
    "Tokyo (東京) is the [MASK] of Japan.",
    "[MASK]",
    "Each thread has its own [MASK], and the lock protects the [MASK].",
    "Call close() when you are [MASK] with the file.",
    "x = [MASK] + 1",
]

_BASE_TOKENIZER_CASES = [
    "", " ", "  ", "\t", "\n", " \t\n ", "a", "A", ".", "Hello", "hello world", "Hello, world!",
    "  leading spaces", "trailing spaces   ", "  both  ", "multiple   spaces   between   words",
    "tabs\tbetween\twords", "new\nlines\nhere", "mixed \t\n whitespace \r\n runs", "\u00a0non-breaking\u00a0space",
    "zero\u200bwidth\u200bspace", "The capital of France is [MASK].", "[MASK]", "[MASK] at the start",
    "at the end [MASK]", "two [MASK] masks [MASK]", "adjacent [MASK][MASK] masks", "[MASK][MASK][MASK]",
    "spaced  [MASK]  mask", "no space before[MASK]after", "[MASK].", "([MASK])", "\"[MASK]\"", "[mask] lowercase",
    "[ MASK ] broken", "<mask> roberta style", "a <mask> b", "<s> </s> <pad> <unk> [CLS] [SEP] [PAD] [UNK]",
    "If you don't [MASK] at the sign, you will get a ticket.", "don't won't can't shouldn't y'all",
    "It's the dog's bone.", "rock 'n' roll", "``quoted'' text", "“curly quotes” and ‘single’", "em—dash and en–dash",
    "ellipsis… and ...", "!!!", "???!!!...", "...,,,;;;:::", "a-b-c-d", "snake_case_name", "CamelCaseName",
    "ALLCAPS WORDS HERE", "MiXeD cAsE", "e.g. i.e. etc.", "Mr. Smith went to Washington.", "U.S.A.",
    "café", "naïve", "résumé", "Crème Brûlée", "São Paulo", "Zürich", "Ångström", "ﬁ ligature", "Æsir œuvre",
    "e\u0301 combining acute", "a\u0308o\u0308u\u0308 combining diaeresis", "n\u0303 tilde", "Z\u0335\u0321a\u0336\u0322l\u0337go",
    "東京", "日本語のテキスト", "中文字符测试", "한국어 텍스트", "混合 English and 中文", "ﾊﾝｶｸ half-width katakana",
    "Ｆｕｌｌｗｉｄｔｈ　ｌｅｔｔｅｒｓ", "Ελληνικά γράμματα", "Русский текст", "עברית", "العربية", "हिन्दी", "ไทย",
    "😀", "emoji 😀 in text", "👍🏽 skin tone", "👨‍👩‍👧‍👦 family", "🇫🇷 flag", "❤️ heart", "text😀glued",
    "supercalifragilisticexpialidocious", "pneumonoultramicroscopicsilicovolcanoconiosis",
    "a" * 99, "a" * 100, "a" * 101, "b" * 250, "x" * 1000, "antidisestablishmentarianism " * 3,
    "0", "1", "42", "3.14159", "1,000,000", "2024-01-15", "12:30:45", "+1 (555) 123-4567", "1e-10", "0xFF", "100%",
    "$19.99", "€50", "£10", "¥1000", "#hashtag", "@mention", "user@example.com",
    "https://www.example.com/path?query=1&b=2#frag", "http://localhost:8080/", "ftp://files.example.org/a.txt",
    "C:\\Windows\\System32", "/usr/local/bin/python3", "~/.config/file.toml", "import numpy as np",
    "def f(x): return x ** 2", "if (a && b) || !c { return; }", "<html><body>hi</body></html>", "{\"key\": [1, 2, 3]}",
    "a=1;b=2;c=3", "x += 1  # comment", "foo.bar.baz()", "__init__", "**kwargs", "<<>>", "[]{}()", "|||", "~`^",
    "\\n literal backslash n", "\u2028line separator", "\u0000nul", "\u00adsoft\u00adhyphen", "\ufeffBOM",
    "control\u0007bell", "\u200e\u200fmarks", "ℌ𝔢𝔩𝔩𝔬 math letters", "①②③ circled", "½ ¼ ¾", "x² y³", "™ © ®",
    "The quick brown fox jumps over the lazy dog.", "THE QUICK BROWN FOX", "the quick brown fox",
    "Return a new list containing all items from the iterable in ascending order.",
    "This module provides a portable way of using operating system dependent functionality.",
    "Raise ValueError if the argument is not a valid integer.",
    "The [MASK] method is called when the [MASK] is [MASK].",
    "Each thread has its own [MASK], and the lock protects the [MASK].",
    "[MASK] [MASK] [MASK] [MASK] [MASK]", " [MASK]", "[MASK] ", "\t[MASK]\n", "word[MASK]word",
    "[MASK]'s", "the [MASK]-based approach", "[MASK]?!", "#[MASK]", "[MASK]😀", "東京[MASK]", "café [MASK] crème",
    "A sentence with a <mask> token and a [MASK] token.", "[CLS] already here [SEP]",
    "Hello\u3000ideographic space", "tab\t\t\tmany", "\n\n\nparagraphs\n\n\n", "  \t  \n  ",
    "Don't stop believing.", "I'm here; you're there.", "O'Reilly", "rock'n'roll", "jack-in-the-box",
    "state-of-the-art", "well-known", "re-enter", "co-operate", "e-mail", "T-shirt", "x-ray",
    "Ünïcödé wïth äccents", "ÀÁÂÃÄÅ àáâãäå", "ÇçÑñ", "ÿŸ", "ß Straße", "İstanbul ıi", "ﬀ ﬃ ﬄ",
    "a.b.c", "a,b,c", "a;b;c", "a:b:c", "a/b/c", "a\\b\\c", "a|b|c", "a--b", "a---b", "a__b",
    "version 3.11.7", "v1.2.3-beta+build.5", "Python3", "utf-8", "UTF8", "ISO-8859-1", "x86_64", "aarch64",
    "The year 2000 problem", "1st 2nd 3rd 4th", "Jan. 1, 1970", "10am 5pm", "3:00 p.m.",
    "Hello world" * 20, " ".join(["word"] * 200), "Lorem ipsum dolor sit amet, consectetur adipiscing elit.",
    "¿Dónde está la biblioteca?", "¡Hola!", "«guillemets»", "„German quotes“", "‹single›",
    "mixed 日本 and emoji 🎉 and accents é", "😀😀😀😀😀", "🎉🎊🎈", "✓ ✗ ★ ☆", "→ ← ↑ ↓", "∑ ∏ ∫ √ ∞",
    "α β γ δ", "ℵ₀", "°C °F", "µs ms", "Ω ohm", "€$£¥₹₿",
    "The file (see above) is opened in 'r' mode.", "Use [brackets] and {braces}.", "a [b] c", "[MASK",
    "MASK]", "[[MASK]]", "[MASK]]", "[[MASK]", "<mask>", "<mask><mask>", " <mask> ", "[MASK]<mask>",
]


def tokenizer_cases() -> list[str]:
    out, seen = [], set()
    for s in _BASE_TOKENIZER_CASES + REFERENCE_SENTENCES:
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def with_mask(text: str, mask_token: str) -> str:
    return text.replace(MASK, mask_token)
