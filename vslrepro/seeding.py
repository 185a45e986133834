"""Seeding: one explicit call, never at import time."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator

import numpy as np
import torch


def seed_everything(seed: int, *, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch; ask torch for deterministic kernels where it has them."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    if deterministic:
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


@contextlib.contextmanager
def cpu_threads(threads: int | None) -> Iterator[None]:
    """Run torch's CPU kernels on exactly `threads` threads inside the block (None: leave as is).

    A CPU training run's numbers depend on this count: kernels split their sums across threads, and
    a few hundred optimizer steps amplify the last-bit differences (a smoke EZ-VSL run: epoch-2 loss
    7.10563 on 1 thread, 7.10562 on 2, and Flickr-like LocAcc 36.5 vs 33.3 at the end). Profiles
    therefore fix it (`train.cpu_threads`), so that the pipeline, the CLI, the tests and the teaching
    notebooks train the same run whatever the machine's core count.
    """
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)
