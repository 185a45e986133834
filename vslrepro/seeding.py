"""Seeding: one explicit call, never at import time, and one way to derive a seed from a key.

Every random choice of the package comes from the profile's seed and a key saying what it is for,
always through numpy's `SeedSequence`: `derive_seed` (an int, for torch), `numpy_generator` and
`torch_generator`. A key is (seed, ...) — (seed, epoch, sample index) for a training crop, (seed,
epoch) for an epoch's batch order — plus a `purpose` that keeps two uses of the same key apart
(`PURPOSES`: in-model draws of an epoch, a k-means round, re-initialized weights, a draw of
positives, a random map; it goes into the SeedSequence's spawn key, so it can never collide with a
key of numbers alone). Derived this way, keys never collide the way `seed * 1000 + epoch` does (seed
0's epoch 1000 is seed 1's epoch 0).
"""

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


PURPOSES = ("model", "kmeans", "reinit", "positives", "content")  # what a derived seed is for


def seed_sequence(*key: int, purpose: str | None = None) -> np.random.SeedSequence:
    """numpy's SeedSequence of a key of non-negative ints, `purpose` (one of PURPOSES) in its
    spawn key; None for the training crops and batch orders (a key of numbers alone)."""
    if purpose is not None and purpose not in PURPOSES:
        raise ValueError(f"unknown seed purpose {purpose!r}; expected one of {PURPOSES}")
    spawn = () if purpose is None else (PURPOSES.index(purpose) + 1,)
    return np.random.SeedSequence([int(v) for v in key], spawn_key=spawn)


def derive_seed(*key: int, purpose: str | None = None) -> int:
    """A 32-bit seed from a key, e.g. `derive_seed(seed, epoch, purpose="model")`."""
    return int(seed_sequence(*key, purpose=purpose).generate_state(1)[0])


def numpy_generator(*key: int, purpose: str | None = None) -> np.random.Generator:
    """A numpy Generator drawn from the SeedSequence of a key (see `seed_sequence`)."""
    return np.random.default_rng(seed_sequence(*key, purpose=purpose))


def torch_generator(*key: int, purpose: str | None = None) -> torch.Generator:
    """A CPU torch Generator seeded with `derive_seed(*key, purpose=purpose)`."""
    return torch.Generator().manual_seed(derive_seed(*key, purpose=purpose))
