"""Build an extended test set (`*_test_plus_silent.csv`) from positives, classes and real negatives.

The paper's recipe (Sec. 2, "Extended Flickr-SoundNet/VGG-SS"; docs/protocol.md §9): the test
set's positives (clips whose sound source is visible) are complemented by as many negatives:

1. the hand-picked *real* negatives, clips whose own sound has no visible source (a row with
   `video == audio`);
2. then *automated* negatives until #negatives == #positives: the frame of a positive clip paired with
   the audio of a different clip, `hard_fraction` (25 %) of them from a clip of the same class (hard),
   the rest from a clip of another class (easy).

The official csv only lists the negatives (every row labelled `non-sounding`); the positives come
from the test list. Each positive frame is used at most once; the audio clip is drawn uniformly (with
replacement) from the pool of candidates of the right class.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from vslrepro.data.errors import DataError

LABEL = "non-sounding"
COLUMNS = ("video", "audio", "label")


def _check_clips(table: pd.DataFrame, what: str) -> pd.DataFrame:
    """Validate an (id, class) table: both columns present, no missing value, no duplicate id."""
    missing = {"id", "class"} - set(table.columns)
    if missing:
        raise DataError(f"{what}: missing column(s) {sorted(missing)} (need 'id' and 'class')")
    table = table[["id", "class"]]
    empty = table["id"].isna() | table["class"].isna()
    table = table.astype({"id": str, "class": str})
    empty |= (table["id"].str.strip() == "") | (table["class"].str.strip() == "")
    if empty.any():
        row = int(np.flatnonzero(empty.to_numpy())[0])
        raise DataError(f"{what}: row {row} has an empty id or class")
    duplicated = table["id"][table["id"].duplicated()]
    if len(duplicated):
        raise DataError(f"{what}: duplicate id(s) {sorted(set(duplicated))[:5]}")
    return table.reset_index(drop=True)


def _choose(rng: np.random.Generator, candidates: np.ndarray, n: int, what: str) -> np.ndarray:
    """Pick n distinct frame indices from candidates at random, or raise naming what is short."""
    if n > len(candidates):
        raise DataError(f"cannot build {n} {what} negatives: only {len(candidates)} positive frames can give one")
    return np.sort(rng.choice(candidates, size=n, replace=False))


def build_extended_testset(
    positives: pd.DataFrame,
    real_negatives: Sequence[str],
    *,
    seed: int,
    hard_fraction: float = 0.25,
    audio_pool: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Build an extended test set's negatives with the paper's recipe (Sec. 2; docs/protocol.md §9).

    Args:
        positives: the test positives, columns `id` (clip id) and `class` (its class label).
        real_negatives: ids of the hand-picked clips with no visible source; each becomes a row with
            `video == audio == id`, in the order given.
        seed: seed of the numpy Generator that picks frames and audios; same seed, same result.
        hard_fraction: fraction of the automated negatives whose audio comes from a clip of the same
            class as the frame (the paper's 25 %); the count is `round(hard_fraction * n_automated)`.
        audio_pool: clips (`id`, `class`) whose audio may be paired with a positive frame; defaults
            to the positives themselves. The audio clip is always a different clip than the frame's.

    Returns:
        DataFrame with columns `video, audio, label` (label always "non-sounding"): the real negatives
        first, then the automated negatives in the order of their frame in `positives`. It has as
        many rows as `positives`.

    Raises:
        DataError: missing columns, empty or duplicate ids, a real negative that is also a positive,
            more real negatives than positives, or not enough clips of the right class to give the
            hard or easy negatives asked for (classes with a single clip cannot give a hard
            negative; the hard ones are then drawn from the classes that can).
        ValueError: hard_fraction outside [0, 1].
    """
    if not 0.0 <= hard_fraction <= 1.0:
        raise ValueError(f"hard_fraction must lie in [0, 1], got {hard_fraction}")
    positives = _check_clips(positives, "positives")
    pool = positives if audio_pool is None else _check_clips(audio_pool, "audio_pool")
    real = [str(r) for r in real_negatives]
    duplicated = sorted({r for r in real if real.count(r) > 1})
    if duplicated:
        raise DataError(f"real_negatives: duplicate id(s) {duplicated[:5]}")
    overlap = sorted(set(real) & set(positives["id"]))
    if overlap:
        raise DataError(f"real_negatives: id(s) {overlap[:5]} are also positives (a visible source)")
    n_pos, n_real = len(positives), len(real)
    if n_real > n_pos:
        raise DataError(f"{n_real} real negatives for {n_pos} positives: #negatives would exceed #positives")
    n_auto = n_pos - n_real
    n_hard = round(hard_fraction * n_auto)
    n_easy = n_auto - n_hard

    rng = np.random.default_rng(seed)
    frame_ids = positives["id"].to_numpy()  # (P,)
    frame_cls = positives["class"].to_numpy()  # (P,)
    pool_ids = pool["id"].to_numpy()  # (A,)
    pool_cls = pool["class"].to_numpy()  # (A,)
    same_class = {c: np.flatnonzero(pool_cls == c) for c in set(frame_cls)}
    other_class = {c: np.flatnonzero(pool_cls != c) for c in set(frame_cls)}

    def candidates(index: int, hard: bool) -> np.ndarray:
        """Pool indices whose audio may go with frame `index`: same class (minus itself) or other class."""
        if hard:
            own = same_class[frame_cls[index]]
            return own[pool_ids[own] != frame_ids[index]]
        return other_class[frame_cls[index]]

    n_same = np.array([len(candidates(i, hard=True)) for i in range(n_pos)])  # (P,)
    n_other = np.array([len(other_class[c]) for c in frame_cls])  # (P,)
    hard_frames = _choose(rng, np.flatnonzero(n_same > 0), n_hard, "hard")
    left = np.setdiff1d(np.flatnonzero(n_other > 0), hard_frames)
    easy_frames = _choose(rng, left, n_easy, "easy")

    rows = [(r, r, LABEL) for r in real]
    kind = np.zeros(n_pos, dtype=np.int8)  # 0 unused, 1 hard, 2 easy
    kind[hard_frames], kind[easy_frames] = 1, 2
    for index in np.flatnonzero(kind):
        audio = rng.choice(candidates(index, hard=kind[index] == 1))
        rows.append((frame_ids[index], pool_ids[audio], LABEL))
    return pd.DataFrame(rows, columns=list(COLUMNS))


def write_extended_csv(df: pd.DataFrame, path: str | Path) -> Path:
    """Write an extended test set as the official `*_test_plus_silent.csv` (header `video,audio,label`, LF).

    Args:
        df: rows with columns `video`, `audio`, `label`, e.g. from `build_extended_testset`.
        path: the csv to write; its parent folder is created.

    Returns:
        The path written.

    Raises:
        DataError: a column is missing or a value is empty.
    """
    missing = set(COLUMNS) - set(df.columns)
    if missing:
        raise DataError(f"extended test set for {path}: missing column(s) {sorted(missing)}")
    values = df[list(COLUMNS)].astype(str)
    empty = (values == "") | df[list(COLUMNS)].isna()
    if empty.to_numpy().any():
        row = int(np.flatnonzero(empty.to_numpy().any(axis=1))[0])
        raise DataError(f"extended test set for {path}: row {row} has an empty value")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(values.itertuples(index=False, name=None))
    return path
