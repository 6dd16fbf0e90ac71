"""Torch-free regeneration of base-size exports from the committed skeletons."""
import hashlib
import os

import pytest

from bertling_models import skeleton

SKELETONS = [a for a in ("albert", "distilbert") if os.path.exists(os.path.join(skeleton.skeleton_dir(a), "skeleton.json"))]


# DistilBERT's regeneration (362 MB) is exercised by tests/python/test_base_models.py.
def test_regen_loads_and_runs(tmp_path):
    skeleton.regen(skeleton.skeleton_dir("albert"), str(tmp_path))
    res = skeleton.check_runs(str(tmp_path))
    assert len(res["top5"]) == 5


def test_regen_is_deterministic(tmp_path):
    if "albert" not in SKELETONS:
        pytest.skip("no albert skeleton")
    shas = []
    for d in ("a", "b"):
        out = tmp_path / d
        skeleton.regen(skeleton.skeleton_dir("albert"), str(out))
        shas.append(hashlib.sha256((out / "model.onnx").read_bytes()).hexdigest())
    assert shas[0] == shas[1]


@pytest.mark.parametrize("arch", SKELETONS)
def test_skeleton_small(arch):
    total = sum(os.path.getsize(os.path.join(skeleton.skeleton_dir(arch), f))
                for f in os.listdir(skeleton.skeleton_dir(arch)))
    assert total < 1_000_000, total
