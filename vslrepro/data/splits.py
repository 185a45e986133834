"""The three splits of a profile's dataset — train, validation, extended test — as tensor caches.

One place turns a profile + dataset name into (index, cache) pairs, so the trainer, the evaluate
stage, the benchmarks and the notebooks all read the same data the same way.

Incomplete splits (docs/data.md §8). Every split checks that the media of every listed sample exist
before anything is decoded. Without a `SkipLog` a split with missing or unreadable media raises an
`IncompleteDataError` naming the ids (all missing files are found at once; an unreadable file is
found while decoding, the first one stops). With a `SkipLog` (the caller allowed an incomplete
split) those samples are recorded there and left out; the cache is then built from the remaining
pairs, so restoring a file later gives another cache, never a stale one. A cache that an earlier,
allowed run built without some pairs is never handed silently to a caller that wants them all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from vslrepro.data.cache import AudioParams, TensorCache, build_cache
from vslrepro.data.errors import DataError, IncompleteDataError, SkipLog, describe_left_out
from vslrepro.data.lists import read_id_list
from vslrepro.data.testsets import check_media, extended_testset, positives_index
from vslrepro.paths import cache_dir
from vslrepro.profiles import DatasetConfig, dataset_config


def audio_params(params: dict[str, Any]) -> AudioParams:
    """The spectrogram settings of a profile."""
    spec = params["input"]
    return AudioParams(float(spec["audio_duration"]), int(spec["nperseg"]), int(spec["noverlap"]))


def tensor_dir(params: dict[str, Any], name: str) -> Path:
    return cache_dir() / "tensors" / name


def train_split(params: dict[str, Any], name: str, *, skip: SkipLog | None = None,
                progress: bool = False) -> TensorCache:
    """Training pairs (id, id) from the train list, cached for random 1.1x crops.

    Raises:
        IncompleteDataError: without `skip`, listed clips whose frame or WAV is missing (all of them
            named, up to a few) or unreadable; with `skip` they are recorded there and left out.
    """
    cfg = dataset_config(params, name)
    ids = read_id_list(cfg.train_list)
    if not ids:
        raise DataError(f"{cfg.train_list}: the training list is empty")
    found = SkipLog()
    for clip in ids:
        for path, kind in ((cfg.train_root / "frames" / f"{clip}.jpg", "frame"),
                           (cfg.train_root / "audio" / f"{clip}.wav", "audio")):
            if not path.is_file():
                found.add(clip, path, f"{path}: {kind} not found (id {clip}, listed in {cfg.train_list})")
    missing = found.ids
    pairs = [(i, i) for i in ids if i not in missing]
    _refuse_or_record(found, len(ids), len(ids) - len(pairs), f"training clips listed in {cfg.train_list}", skip)
    return _build(cfg.train_root, pairs, tensor_dir(params, name), "train", params, skip, progress)


def _refuse_or_record(found: SkipLog, listed: int, left_out: int, what: str, skip: SkipLog | None) -> None:
    """Raise `IncompleteDataError` for the samples in `found` (without `skip`), or record them in `skip`."""
    if not len(found):
        return
    if skip is None:
        raise IncompleteDataError(f"{left_out} of {listed} {what} lack media: {describe_left_out(found.entries)}")
    skip.entries.extend(found.entries)


def _build(root: Path, pairs: list[tuple[str, str]], folder: Path, mode: str, params: dict[str, Any],
           skip: SkipLog | None, progress: bool) -> TensorCache:
    """`build_cache` of `pairs`, then a check that it holds them all (or that `skip` names the rest).

    A cache is keyed by the pairs asked for; one built while skipping holds fewer (the unreadable
    ones were left out). Found again later, it must not pass for a complete one.
    """
    try:
        cache = build_cache(root, pairs, folder, mode=mode, size=params["input"]["image_size"],
                            audio=audio_params(params), skip=skip, progress=progress)
    except DataError as error:
        if skip is None and isinstance(error.__cause__, DataError):  # one sample could not be decoded
            raise IncompleteDataError(f"{error} (unreadable media under {root})") from error
        raise
    if len(cache) != len(pairs):
        kept = {tuple(p) for p in cache.pairs}
        absent = SkipLog()
        for video, sound in pairs:
            if (video, sound) not in kept:
                absent.add(video if video == sound else f"{video}/{sound}", "",
                           f"pair (video={video}, audio={sound}) was left out as unreadable when the "
                           f"cache {cache.folder} was built (delete that folder to decode it again)")
        recorded = skip.ids if skip is not None else set()
        missing = SkipLog([entry for entry in absent.entries if entry.id not in recorded])
        _refuse_or_record(missing, len(pairs), len(missing), f"pairs under {root}", skip)
    return cache


def _cached_index(params: dict[str, Any], cfg: DatasetConfig, index: pd.DataFrame, split: str, *,
                  skip: SkipLog | None, progress: bool) -> tuple[pd.DataFrame, TensorCache]:
    """Check the media of `index` (a `split` of dataset `cfg`), then cache its pairs for testing."""
    listed = len(index)
    found = SkipLog()
    kept = check_media(index, cfg.test_root, skip=found)
    files = index.attrs.get("files", {})
    source = files.get("extended_csv") or files.get("test_list") or "its index"
    _refuse_or_record(found, listed, listed - len(kept), f"{split} samples of {cfg.name} ({source})", skip)
    index = kept
    cache = _build(cfg.test_root, list(zip(index["video"], index["audio"])), tensor_dir(params, cfg.name),
                   "test", params, skip, progress)
    if len(cache) != len(index):  # pairs dropped on request while decoding
        kept = {tuple(p) for p in cache.pairs}
        mask = [(v, a) in kept for v, a in zip(index["video"], index["audio"])]
        attrs = index.attrs
        index = index[mask].reset_index(drop=True)
        index.attrs = attrs
    index.attrs["listed"] = listed  # rows of the list, before any sample was left out
    return index, cache


def validation_split(params: dict[str, Any], name: str, *, skip: SkipLog | None = None,
                     progress: bool = False) -> tuple[pd.DataFrame, TensorCache]:
    """Annotated positives used for early stopping (BEST): a validation list, the dataset's test
    positives, or another dataset's test positives (`val_from`: the official VGGSound training
    scripts validate on the Flickr-SoundNet test set). `index.attrs["dataset"]` says whose ground
    truth applies."""
    cfg = dataset_config(params, name)
    if cfg.val_from is not None and cfg.val_from != name:
        other = dataset_config(params, cfg.val_from)
        index = positives_index(other.name, other.metadata_root, flickr_list=other.flickr_list)
        return _cached_index(params, other, index, "validation", skip=skip, progress=progress)
    if cfg.val_list is None and cfg.val_annotations is None:
        index = positives_index(name, cfg.metadata_root, flickr_list=cfg.flickr_list)
    else:
        index = positives_index(name, cfg.metadata_root, test_list=cfg.val_list,
                                annotations=cfg.val_annotations, flickr_list=cfg.flickr_list)
    return _cached_index(params, cfg, index, "validation", skip=skip, progress=progress)


def test_split(params: dict[str, Any], name: str, *, skip: SkipLog | None = None,
               progress: bool = False) -> tuple[pd.DataFrame, TensorCache]:
    """The extended test set (positives + negatives) of a dataset."""
    cfg = dataset_config(params, name)
    index = extended_testset(name, cfg.metadata_root, flickr_list=cfg.flickr_list)
    return _cached_index(params, cfg, index, "test", skip=skip, progress=progress)
