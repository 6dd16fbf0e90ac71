"""Helpers for the Python-side tests: the bertling binary, the fixtures."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "models"))

ARCHS = ["albert", "distilbert", "bert", "roberta"]


def bertling_bin() -> str:
    path = os.environ.get("BERTLING_BIN", str(ROOT / "target" / "debug" / "bertling"))
    if not Path(path).exists():
        raise RuntimeError(f"{path} is missing: build it with `cargo build -p bertling-tools` (scripts/test.sh does)")
    return path


def run_bertling(*args: str, stdin: str | None = None) -> str:
    proc = subprocess.run([bertling_bin(), *args], input=stdin, capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(f"bertling {' '.join(args[:2])} failed: {proc.stderr}")
    return proc.stdout


def fill_json(model: Path, text: str, k: int = 5, logits: bool = True) -> dict:
    args = ["fill", str(model), text, "--json", "-k", str(k)]
    if logits:
        args.append("--logits")
    return json.loads(run_bertling(*args))
