"""Session fixtures for the Python-side tests."""
from __future__ import annotations

from pathlib import Path

import pytest

from bertling_cli import ARCHS, ROOT, run_bertling


@pytest.fixture(scope="session")
def compiled_models(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("compiled")
    models = {}
    for arch in ARCHS:
        path = out / f"{arch}.bertling"
        run_bertling("compile", str(ROOT / "models" / "fixtures" / arch), "-o", str(path),
                     "--precision", "fp32")
        models[arch] = path
    return models
