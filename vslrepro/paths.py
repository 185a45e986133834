"""Where things live: the repository, the parameter files, results and the cache.

Paths resolve from the repository root, never from the working directory, so notebooks run by
papermill from any folder find the same files. The cache (generated data, tensor caches,
checkpoints) lives outside tracked files: `$VSLREPRO_CACHE` if set, else `<repo>/.cache`.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PARAMS_DIR = REPO_ROOT / "params"
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"


def results_dir(profile: str) -> Path:
    """`results/<profile>/` (or `$VSLREPRO_RESULTS/<profile>` when set, e.g. for tests)."""
    base = Path(os.environ.get("VSLREPRO_RESULTS", REPO_ROOT / "results"))
    return base / profile


def cache_dir() -> Path:
    """The cache root for data, tensors and checkpoints (never committed)."""
    return Path(os.environ.get("VSLREPRO_CACHE", REPO_ROOT / ".cache"))


def synthetic_data_dir(profile: str, scale: str, seed: int) -> Path:
    """Where the embedded synthetic benchmark of a profile is generated."""
    return cache_dir() / "data" / f"synth-{scale}-seed{seed}"


def runs_dir(profile: str) -> Path:
    """Training runs (checkpoints, histories) of a profile."""
    return cache_dir() / "runs" / profile
