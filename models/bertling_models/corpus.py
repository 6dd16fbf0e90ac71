"""Training text for the trained tokenizers: docstrings of the Python standard library.

Source: the ``.py`` files of the running CPython's standard library (``sysconfig``
'stdlib' path), excluding ``site-packages``, ``test``/``tests`` packages and
``lib2to3`` test data.  Licence: Python Software Foundation License (PSF-2.0),
a permissive licence.  The corpus is deterministic for a given CPython version
(files are walked in sorted order); the build records the version and a SHA-256
of the text in the fixture metadata.
"""
from __future__ import annotations

import ast
import hashlib
import os
import re
import sys
import sysconfig
import warnings

SOURCE = "CPython standard-library docstrings"
LICENCE = "PSF-2.0 (Python Software Foundation License)"

_EXCLUDE_DIRS = {"site-packages", "test", "tests", "idle_test", "__pycache__", "dist-packages"}


def stdlib_dir() -> str:
    return sysconfig.get_paths()["stdlib"]


def _iter_py_files(root: str):
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _EXCLUDE_DIRS)
        for name in sorted(filenames):
            if name.endswith(".py"):
                yield os.path.join(dirpath, name)


def _docstrings(source: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=True)
            if doc:
                yield doc


_WS = re.compile(r"\s+")


def docstring_lines() -> list[str]:
    """Paragraphs of stdlib docstrings, whitespace-collapsed, deduplicated, in file order."""
    seen = set()
    out = []
    for path in _iter_py_files(stdlib_dir()):
        try:
            with open(path, encoding="utf-8") as f:
                src = f.read()
            docs = list(_docstrings(src))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for doc in docs:
            for para in doc.split("\n\n"):
                para = _WS.sub(" ", para).strip()
                if len(para) < 20 or para in seen:
                    continue
                seen.add(para)
                out.append(para)
    return out


def corpus_info(lines: list[str]) -> dict:
    h = hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()
    return {
        "source": SOURCE,
        "licence": LICENCE,
        "python": sys.version.split()[0],
        "paragraphs": len(lines),
        "characters": sum(len(x) for x in lines),
        "sha256": h,
    }


if __name__ == "__main__":
    ls = docstring_lines()
    print(corpus_info(ls))
