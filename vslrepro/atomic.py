"""Atomic file writes: write to a temporary file beside the target, then rename over it.

A run killed mid-write (SIGKILL, out of memory, a pre-empted node) never leaves a half-written
checkpoint or cache file behind: readers see the old file or the new one, nothing in between.

`exclusive(lock)` serializes the processes that build one shared artefact (the synthetic benchmark,
the object prior, a training run): the second waits for the first, then finds its result.
"""

from __future__ import annotations

import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from filelock import FileLock, Timeout


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


def atomic_write_text(path: str | Path, text: str) -> Path:
    """`Path(path).write_text(text)` (UTF-8), atomically."""
    return atomic_write(path, lambda stream: stream.write(text.encode("utf-8")))


@contextmanager
def exclusive(lock: str | Path, what: str) -> Iterator[None]:
    """Hold the inter-process file lock `lock` (created with its folder) for the `with` block.

    Another process holding it makes this one wait, saying on stderr that it waits for `what`. The
    lock is released when the block ends or the process dies (a kill never leaves it held).
    """
    lock = Path(lock)
    lock.parent.mkdir(parents=True, exist_ok=True)
    handle = FileLock(str(lock))
    try:
        handle.acquire(timeout=0)
    except Timeout:
        print(f"waiting for another process to finish {what} (lock {lock})", file=sys.stderr, flush=True)
        handle.acquire()
    try:
        yield
    finally:
        handle.release()
