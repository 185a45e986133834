"""Figures: each function writes a PNG, and neither importing the module nor drawing touches global state."""

from __future__ import annotations

import subprocess
import sys

import matplotlib as mpl
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from vslrepro import figures


def _rc() -> dict:
    return {k: mpl.rcParams[k] for k in mpl.rcParams if k != "backend"}  # reading "backend" resolves it


def test_import_keeps_the_backend():
    code = ("import matplotlib; matplotlib.use('svg'); import vslrepro.figures; "
            "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend()")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.fixture
def frames(tmp_path):
    """Three tiny JPEG frames and their test-set index: two positives (one box each), one negative."""
    (tmp_path / "frames").mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c"):
        Image.fromarray(rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)).save(tmp_path / "frames" / f"{name}.jpg")
    index = pd.DataFrame({"video": ["a", "b", "c"], "positive": [True, True, False],
                          "class": ["dog", "cat", ""], "size": ["small", "large", ""],
                          "neg_type": ["", "", "silent"], "audio_class": ["", "", ""]})
    index.attrs["boxes"] = {"a": [(10, 20, 100, 120)], "b": [(0, 0, 224, 224)]}
    return tmp_path, index


def test_every_figure_is_written_without_global_state(tmp_path, frames):
    import matplotlib.pyplot as plt

    root, index = frames
    before = _rc()
    history = pd.DataFrame({"epoch": [1, 2, 3], "loss": [1.0, 0.6, 0.5], "val_locacc": [0.2, 0.5, 0.4]})
    recall = np.linspace(0, 1, 11)
    rng = np.random.default_rng(1)
    gts = np.zeros((2, 224, 224), np.float32)
    gts[0, 50:150, 60:160] = 1
    written = [
        figures.data_preview(root, index, tmp_path / "out" / "data.png", n=4, title="preview"),
        figures.training_curves(history, tmp_path / "out" / "training.png", title="curves"),
        figures.pr_curves({"A": (recall, 1 - recall / 2), "B": (recall, 1 - recall)}, tmp_path / "out" / "pr.png"),
        figures.pr_curves({}, tmp_path / "out" / "pr_empty.png"),
        figures.overlays(rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8), rng.random((2, 224, 224)), gts,
                         ["pos", "neg"], tmp_path / "out" / "overlays.png"),
    ]
    for path in written:
        assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
        with Image.open(path) as image:
            assert max(image.size) < 1000  # 100 dpi, small
    assert _rc() == before
    assert plt.get_fignums() == []
