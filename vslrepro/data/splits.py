"""A profile's data: generated or checked (`ensure_data`), and the three splits of each dataset —
train, validation, extended test — as tensor caches.

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

import json
from pathlib import Path
from typing import Any

import pandas as pd

from vslrepro.data.caches import (
    AudioParams,
    CompressedCache,
    TensorCache,
    build_cache,
    cache_key,
    free_bytes,
    projected_bytes,
)
from vslrepro.data.datasets import DatasetConfig, locate, synthetic_root
from vslrepro.data.errors import DataError, IncompleteDataError, SkipLog, describe_left_out
from vslrepro.data.formats.lists import read_id_list
from vslrepro.data.formats.media import media_files
from vslrepro.data.synthetic import generate
from vslrepro.data.testsets import check_media, extended_testset, positives_index
from vslrepro.paths import cache_dir


def ensure_data(params: dict[str, Any]) -> dict[str, Any]:
    """The profile's data, ready: the embedded synthetic benchmark generated (once; its manifest is
    returned), or the real roots checked to exist (their locations are returned).

    Raises:
        FileNotFoundError: real roots that are not there, all of them named.
    """
    if params["data"]["source"] == "synthetic":
        root = synthetic_root(params)
        if not (root / "manifest.json").is_file():
            generate(root, scale=params["data"]["synth_scale"], seed=int(params["seed"]))
        return json.loads((root / "manifest.json").read_text())
    missing = []
    for name in params["datasets"]:
        cfg = locate(params, name)
        for path in (cfg.train_root, cfg.train_list, cfg.test_root, cfg.metadata_root / "metadata"):
            if path is not None and not Path(path).exists():
                missing.append(f"{name}: {path}")
    if missing:
        raise FileNotFoundError("profile " + params["profile"] + " points at data that is not there:\n  "
                                + "\n  ".join(missing) + "\nedit the data section of its YAML file")
    return {"source": "real", "datasets": {name: locate(params, name).as_dict() for name in params["datasets"]}}


def audio_params(params: dict[str, Any]) -> AudioParams:
    """The spectrogram settings of a profile."""
    spec = params["input"]
    return AudioParams(float(spec["audio_duration"]), int(spec["nperseg"]), int(spec["noverlap"]),
                       sample_rate=int(spec["sample_rate"]), resample=bool(spec.get("resample_audio", False)))


def train_storage(params: dict[str, Any]) -> str:
    """How the profile's train caches are stored: `input.train_storage`, "decoded" when absent."""
    return params["input"].get("train_storage", "decoded")


def tensor_dir(params: dict[str, Any], name: str) -> Path:
    return cache_dir() / "tensors" / name


def _train_pairs(params: dict[str, Any], name: str) -> list[tuple[str, str]]:
    """The (id, id) pairs of the dataset's training list (all of them, media present or not)."""
    cfg = locate(params, name)
    if cfg.train_list is None:
        raise ValueError(f"{name} is an evaluation-only test set: it has no training list")
    ids = read_id_list(cfg.train_list)
    if not ids:
        raise DataError(f"{cfg.train_list}: the training list is empty")
    return [(i, i) for i in ids]


def train_split(params: dict[str, Any], name: str, *, skip: SkipLog | None = None,
                progress: bool = False) -> TensorCache | CompressedCache:
    """Training pairs (id, id) from the train list, cached for random 1.1x crops, stored as the
    profile says (`input.train_storage`).

    Raises:
        IncompleteDataError: without `skip`, listed clips whose frame or WAV is missing (all of them
            named, up to a few) or unreadable; with `skip` they are recorded there and left out.
    """
    cfg = locate(params, name)
    listed = _train_pairs(params, name)
    found = SkipLog()
    for clip, _ in listed:
        for path, kind in zip(media_files(cfg.train_root, clip, clip, cfg.media), ("frame", "audio")):
            if not path.is_file():
                found.add(clip, path, f"{path}: {kind} not found (id {clip}, listed in {cfg.train_list})")
    missing = found.ids
    pairs = [pair for pair in listed if pair[0] not in missing]
    _refuse_or_record(found, len(listed), len(listed) - len(pairs), f"training clips listed in {cfg.train_list}",
                      skip)
    return _build(cfg.train_root, pairs, tensor_dir(params, name), "train", params, skip, progress,
                  storage=train_storage(params), media=cfg.media)


def _refuse_or_record(found: SkipLog, listed: int, left_out: int, what: str, skip: SkipLog | None) -> None:
    """Raise `IncompleteDataError` for the samples in `found` (without `skip`), or record them in `skip`."""
    if not len(found):
        return
    if skip is None:
        raise IncompleteDataError(f"{left_out} of {listed} {what} lack media: {describe_left_out(found.entries)}")
    skip.entries.extend(found.entries)


def _build(root: Path, pairs: list[tuple[str, str]], folder: Path, mode: str, params: dict[str, Any],
           skip: SkipLog | None, progress: bool, storage: str = "decoded",
           media: tuple[str, str] = ("frames", "audio")) -> TensorCache | CompressedCache:
    """`build_cache` of `pairs`, then a check that it holds them all (or that `skip` names the rest).

    A cache is keyed by the pairs asked for; one built while skipping holds fewer (the unreadable
    ones were left out). Found again later, it must not pass for a complete one.
    """
    try:
        cache = build_cache(root, pairs, folder, mode=mode, size=params["input"]["image_size"],
                            audio=audio_params(params), skip=skip, progress=progress, storage=storage,
                            media=media)
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
    kept = check_media(index, cfg.test_root, skip=found, media=cfg.media)
    files = index.attrs.get("files", {})
    source = files.get("extended_csv") or files.get("test_list") or "its index"
    _refuse_or_record(found, listed, listed - len(kept), f"{split} samples of {cfg.name} ({source})", skip)
    index = kept
    cache = _build(cfg.test_root, list(zip(index["video"], index["audio"])), tensor_dir(params, cfg.name),
                   "test", params, skip, progress, media=cfg.media)
    if len(cache) != len(index):  # pairs dropped on request while decoding
        kept = {tuple(p) for p in cache.pairs}
        mask = [(v, a) in kept for v, a in zip(index["video"], index["audio"])]
        attrs = index.attrs
        index = index[mask].reset_index(drop=True)
        index.attrs = attrs
    index.attrs["listed"] = listed  # rows of the list, before any sample was left out
    return index, cache


def _validation_index(params: dict[str, Any], name: str) -> tuple[DatasetConfig, pd.DataFrame]:
    """The dataset whose media the validation split reads, and the split's index."""
    cfg = locate(params, name)
    if cfg.val_from is not None and cfg.val_from != name:
        other = locate(params, cfg.val_from)
        return other, positives_index(other.name, other.metadata_root, annotations=other.annotations,
                                      variant=other.list_variant)
    if cfg.val_list is None and cfg.val_annotations is None:
        return cfg, positives_index(name, cfg.metadata_root, annotations=cfg.annotations, variant=cfg.list_variant)
    return cfg, positives_index(name, cfg.metadata_root, test_list=cfg.val_list,
                                annotations=cfg.val_annotations, variant=cfg.list_variant)


def validation_split(params: dict[str, Any], name: str, *, skip: SkipLog | None = None,
                     progress: bool = False) -> tuple[pd.DataFrame, TensorCache]:
    """Annotated positives used for early stopping (BEST): a validation list, the dataset's test
    positives, or another dataset's test positives (`val_from`: the official VGGSound training
    scripts validate on the Flickr-SoundNet test set). `index.attrs["dataset"]` says whose ground
    truth applies."""
    cfg, index = _validation_index(params, name)
    return _cached_index(params, cfg, index, "validation", skip=skip, progress=progress)


def test_split(params: dict[str, Any], name: str, *, skip: SkipLog | None = None,
               progress: bool = False) -> tuple[pd.DataFrame, TensorCache]:
    """The extended test set (positives + negatives) of a dataset."""
    cfg = locate(params, name)
    index = extended_testset(name, cfg.metadata_root, annotations=cfg.annotations, variant=cfg.list_variant)
    return _cached_index(params, cfg, index, "test", skip=skip, progress=progress)


# ---------------------------------------------------------------- disk footprint (--dry-run)

def cache_footprints(params: dict[str, Any], datasets: list[str]) -> list[dict[str, Any]]:
    """The tensor caches that training on `datasets` builds — each dataset's train and validation
    splits — with their projected size on disk (`cache.projected_bytes`: file sizes and image
    headers, nothing decoded) and whether they are built already (the same key, finished).
    A cache shared by two datasets (a VGGSound run validating on the Flickr test positives, as a
    Flickr run does) is listed once. The test splits, read later by `evaluate`, are not included.
    """
    size, audio = params["input"]["image_size"], audio_params(params)
    rows, seen = [], set()

    def add(dataset: str, split: str, cfg: DatasetConfig, root: Path, pairs: list[tuple[str, str]], mode: str,
            storage: str, folder: Path) -> None:
        target = folder / cache_key(root, pairs, mode, size, audio, storage=storage, media=cfg.media)
        if target in seen:
            return
        seen.add(target)
        projection = projected_bytes(root, pairs, mode=mode, size=size, audio=audio, storage=storage, media=cfg.media)
        rows.append({"dataset": dataset, "split": split, "storage": storage, **projection,
                     "built": (target / "done.json").is_file(), "folder": target})

    for name in datasets:
        cfg = locate(params, name)
        add(name, "train", cfg, cfg.train_root, _train_pairs(params, name), "train", train_storage(params),
            tensor_dir(params, name))
        val_cfg, index = _validation_index(params, name)
        add(name, f"validation ({val_cfg.name} media)", val_cfg, val_cfg.test_root,
            list(zip(index["video"], index["audio"])), "test", "decoded", tensor_dir(params, val_cfg.name))
    return rows


def footprint_report(params: dict[str, Any], datasets: list[str]) -> tuple[str, bool]:
    """A table of `cache_footprints` with the free space of the cache folder's disk, and whether
    the caches still to be built fit in it."""
    rows = cache_footprints(params, datasets)
    free = free_bytes(cache_dir() / "tensors")
    needed = sum(row["bytes"] for row in rows if not row["built"])
    lines = [f"tensor caches of profile {params['profile']} (train storage: {train_storage(params)}):",
             f"  {'dataset':8} {'split':28} {'storage':10} {'pairs':>8} {'GB':>8} {'KB/pair':>8}  state"]
    for row in rows:
        per_pair = row["bytes"] / max(row["pairs"], 1) / 1e3
        state = "built" if row["built"] else "to build"
        if row["missing"]:
            state += f", {row['missing']} pair(s) with a missing file"
        lines.append(f"  {row['dataset']:8} {row['split']:28} {row['storage']:10} {row['pairs']:8d} "
                     f"{row['bytes'] / 1e9:8.2f} {per_pair:8.1f}  {state}")
    total = sum(row["bytes"] for row in rows)
    lines.append(f"  total {total / 1e9:.2f} GB, still to write {needed / 1e9:.2f} GB; free under "
                 f"{cache_dir()}: {free / 1e9:.2f} GB")
    if train_storage(params) == "compressed_flac":
        lines.append("  (compressed_flac: the audio is counted at its int16 size, an upper bound of its FLAC size)")
    fits = needed <= free
    if not fits:
        lines.append(f"refusing to start: the caches need {needed / 1e9:.2f} GB and {free / 1e9:.2f} GB are free; "
                     "free space, set VSLREPRO_CACHE to a larger disk, or store less (input.train_storage: "
                     "compressed or compressed_flac; docs/data.md §10)")
    return "\n".join(lines), fits
