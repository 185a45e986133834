"""The three splits of a profile's dataset — train, validation, extended test — as tensor caches.

One place turns a profile + dataset name into (index, cache) pairs, so the trainer, the evaluate
stage, the benchmarks and the notebooks all read the same data the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from vslrepro.data.cache import AudioParams, TensorCache, build_cache
from vslrepro.data.errors import DataError, SkipLog
from vslrepro.data.lists import read_id_list
from vslrepro.data.testsets import check_media, extended_testset, positives_index
from vslrepro.paths import cache_dir
from vslrepro.profiles import DatasetConfig, dataset_config


def audio_params(params: dict[str, Any]) -> AudioParams:
    """The spectrogram settings of a profile."""
    spec = params["input"]
    return AudioParams(float(spec["audio_duration"]), int(spec["nperseg"]), int(spec["noverlap"]),
                       sample_rate=int(spec["sample_rate"]), resample=bool(spec.get("resample_audio", False)))


def tensor_dir(params: dict[str, Any], name: str) -> Path:
    return cache_dir() / "tensors" / name


def train_split(params: dict[str, Any], name: str, *, skip: SkipLog | None = None,
                progress: bool = False) -> TensorCache:
    """Training pairs (id, id) from the train list, cached for random 1.1x crops."""
    cfg = dataset_config(params, name)
    ids = read_id_list(cfg.train_list)
    if not ids:
        raise DataError(f"{cfg.train_list}: the training list is empty")
    return build_cache(cfg.train_root, [(i, i) for i in ids], tensor_dir(params, name), mode="train",
                       size=params["input"]["image_size"], audio=audio_params(params), skip=skip,
                       progress=progress)


def _cached_index(params: dict[str, Any], cfg: DatasetConfig, index: pd.DataFrame, *,
                  skip: SkipLog | None, progress: bool) -> tuple[pd.DataFrame, TensorCache]:
    listed = len(index)
    index = check_media(index, cfg.test_root, skip=skip)
    index.attrs["listed"] = listed  # rows of the list, before any sample was skipped
    cache = build_cache(cfg.test_root, list(zip(index["video"], index["audio"])),
                        tensor_dir(params, cfg.name), mode="test",
                        size=params["input"]["image_size"], audio=audio_params(params), skip=skip,
                        progress=progress)
    if len(cache) != len(index):  # pairs dropped on request while decoding
        kept = {tuple(p) for p in cache.pairs}
        mask = [(v, a) in kept for v, a in zip(index["video"], index["audio"])]
        attrs = index.attrs
        index = index[mask].reset_index(drop=True)
        index.attrs = attrs
    index.attrs["listed"] = listed
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
        return _cached_index(params, other, index, skip=skip, progress=progress)
    if cfg.val_list is None and cfg.val_annotations is None:
        index = positives_index(name, cfg.metadata_root, flickr_list=cfg.flickr_list)
    else:
        index = positives_index(name, cfg.metadata_root, test_list=cfg.val_list,
                                annotations=cfg.val_annotations, flickr_list=cfg.flickr_list)
    return _cached_index(params, cfg, index, skip=skip, progress=progress)


def test_split(params: dict[str, Any], name: str, *, skip: SkipLog | None = None,
               progress: bool = False) -> tuple[pd.DataFrame, TensorCache]:
    """The extended test set (positives + negatives) of a dataset."""
    cfg = dataset_config(params, name)
    index = extended_testset(name, cfg.metadata_root, flickr_list=cfg.flickr_list)
    return _cached_index(params, cfg, index, skip=skip, progress=progress)
