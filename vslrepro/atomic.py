"""Atomic file writes: write to a temporary file beside the target, then rename over it.

A run killed mid-write (SIGKILL, out of memory, a pre-empted node) never leaves a half-written
checkpoint or cache file behind: readers see the old file or the new one, nothing in between.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch


def atomic_write(path: str | Path, write: Callable[[Any], None]) -> Path:
    """Call `write(handle)` on a temporary binary file in `path`'s folder, then rename it to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """`torch.save(obj, path)`, atomically."""
    return atomic_write(path, lambda stream: torch.save(obj, stream))


def atomic_np_save(array: np.ndarray, path: str | Path) -> Path:
    """`np.save(path, array)`, atomically."""
    return atomic_write(path, lambda stream: np.save(stream, array))
