"""Helpers for the Python-side tests: the bertling binary, the fixtures."""
from __future__ import annotations

import json
import os
import shutil
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


def reference_texts(arch: str) -> list[str]:
    """The texts of a fixture's references.json (sentences with masks)."""
    refs = json.loads((ROOT / "models" / "fixtures" / arch / "references.json").read_text())
    return [c["text"] for c in refs["cases"]]


def copy_fixture(arch: str, tmp_path: Path):
    """A fixture's export copied to tmp_path/export, and its model.onnx loaded (to rewrite)."""
    import onnx

    export = tmp_path / "export"
    shutil.copytree(ROOT / "models" / "fixtures" / arch, export)
    return export, onnx.load(str(export / "model.onnx"))


def assert_answers_as_onnxruntime(model: Path, export, text: str):
    """`bertling fill` on `model` gives, for `text`, the ids of the export's tokenizer.json, its
    mask positions (at least one), logits within 1e-4 of the largest |logit| (at least 1) of
    onnxruntime's on the export, and onnxruntime's top 5."""
    import numpy as np

    from bertling_models.ort import ort_mask_logits

    ids, ort_logits = ort_mask_logits(str(export), text)
    ours = fill_json(model, text)
    assert ours["input_ids"] == ids, repr(text)
    positions = sorted(ort_logits)
    assert positions, repr(text)
    assert [m["position"] for m in ours["masks"]] == positions, repr(text)
    for mask, pos in zip(ours["masks"], positions):
        want = ort_logits[pos]
        got = np.asarray(mask["logits"], dtype=np.float32)
        diff = float(np.max(np.abs(got - want)))
        assert diff <= 1e-4 * max(1.0, float(np.max(np.abs(want)))), f"{model.name} {text!r}: {diff}"
        top5 = list(np.argsort(-want.astype(np.float64), kind="stable")[:5])
        assert [p["token"] for p in mask["predictions"]] == top5, repr(text)


def assert_compile_refused(export, tmp_path: Path, *needles: str):
    """`bertling compile` refuses the export (exit 1), its message holding every needle, without
    a panic or an output file."""
    out = tmp_path / "x.bertling"
    proc = subprocess.run([bertling_bin(), "compile", str(export), "-o", str(out)], capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr
    assert all(n in proc.stderr for n in needles), proc.stderr
    assert "panicked" not in proc.stderr
    assert not out.exists()
