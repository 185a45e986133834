"""Per-sample evaluation: run a method over a test set and write one row per sample.

`score_samples` is the single code path used by training-time validation and by the evaluate
stage: batched inference on CPU or GPU, ground-truth maps built per batch from the boxes
(`vslrepro.data.testsets.gt_maps`; a 10k extended set never holds 10k 224×224 maps in memory), cIoU
and every confidence score of the method per sample. `evaluate` wires it to a profile, a dataset,
a method and a checkpoint (ours or an official file), and writes the per-sample CSV that the
table builders read, with its provenance record and, when an incomplete test set was allowed, the
list of samples left out (paths from `vslrepro.layout`).

Coverage: a test set whose listed samples lack media is refused, naming them, unless the caller
allows an incomplete test set (`allow_incomplete`; CLI `evaluate --allow-incomplete`, alias
`--skip-bad`; profile `evaluate.allow_incomplete: true`). Then the samples are left out, never
replaced, and the provenance record says "evaluated N of M listed" with the ids left out; the
tables repeat it under each table (`vslrepro.results.coverage_notes`).

Binarization (docs/protocol.md): `relative` keeps the top `1 − pred_size` of each min–max
normalized map; `absolute` thresholds the map at `pred_thr` on the method's [0, 1] scale,
(map − lo)/(hi − lo) with the method's fixed `map_bounds` — for EZ-VSL (S + 1/τ)/(2/τ) = (cos + 1)/2,
as SLAVC's `test.py` does — never on the raw cos/τ values.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from vslrepro import layout, metrics
from vslrepro.data.caches import CachedPairs, TensorCache
from vslrepro.data.datasets import run_dataset
from vslrepro.data.errors import IncompleteDataError, SkipLog
from vslrepro.data.formats.images import normalize_images
from vslrepro.data.splits import test_split
from vslrepro.data.testsets import gt_maps
from vslrepro.factory import evaluation_model
from vslrepro.methods import unit_scale
from vslrepro.provenance import environment


@torch.no_grad()
def score_samples(method: torch.nn.Module, index: pd.DataFrame, cache: TensorCache, dataset: str, *,
                  batch_size: int = 128, device: str | torch.device = "cpu", image_size: int = 224,
                  binarize: str = "relative", pred_size: float = 0.5, pred_thr: float = 0.5,
                  progress: bool = False) -> pd.DataFrame:
    """cIoU and confidences of `method` on every row of `index` (aligned with `cache.pairs`).

    Args:
        method: a `LocalizationMethod` (its `map_bounds` scale the map for `absolute`).
        index: rows with `video`, `audio`, `positive`; `index.attrs["boxes"]` maps video id -> boxes.
        cache: test-mode tensor cache holding the same (video, audio) pairs in the same order.
        dataset: whose ground-truth convention applies (`Dataset.gt_map`).

    Returns:
        A copy of `index` with columns `ciou` and `confidence_<kind>` for every score the method gives.
    """
    pairs = list(zip(index["video"], index["audio"]))
    if pairs != [tuple(p) for p in cache.pairs]:
        raise ValueError(f"index and cache {cache.folder} hold different (video, audio) pairs")
    loader = DataLoader(CachedPairs(cache, size=image_size, train=False), batch_size=batch_size,
                        shuffle=False)
    if progress:
        loader = tqdm(loader, desc=f"evaluating {getattr(method, 'name', 'method')}", leave=False)
    method.eval()
    bounds = getattr(method, "map_bounds", (0.0, 1.0))
    ious: list[np.ndarray] = []
    scores: dict[str, list[np.ndarray]] = {}
    for images, specs, rows in loader:
        images = normalize_images(images.to(device))
        maps, confidence = method.localize(images, specs.to(device))
        if binarize == "absolute":
            maps = unit_scale(maps.float(), bounds)
        gt = torch.from_numpy(gt_maps(index.iloc[rows.numpy()], dataset))  # (b, 224, 224)
        ious.append(metrics.ciou(maps.float(), gt.to(maps.device), binarize=binarize,
                                 pred_size=pred_size, pred_thr=pred_thr))
        for kind, values in confidence.items():
            scores.setdefault(kind, []).append(values.float().cpu().numpy())
    out = index.copy()
    out["ciou"] = np.concatenate(ious)
    for kind, values in scores.items():
        out[f"confidence_{kind}"] = np.concatenate(values)
    return out


def write_samples(samples: pd.DataFrame, path: str | Path, *, primary_confidence: str,
                  provenance: dict[str, Any]) -> Path:
    """Write the per-sample CSV (with `confidence` = the primary score) and its provenance JSON."""
    column = f"confidence_{primary_confidence}"
    if column not in samples:
        raise ValueError(f"primary confidence {primary_confidence!r} not among "
                         f"{[c for c in samples if c.startswith('confidence_')]}")
    samples = samples.copy()
    samples.insert(samples.columns.get_loc("ciou") + 1, "confidence", samples[column])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    samples.to_csv(path, index=False, float_format="%.6g")
    layout.samples_record(path).write_text(json.dumps(provenance, indent=2, default=str) + "\n")
    return path


def weights_file(params: dict[str, Any], dataset: str, method: str, checkpoint: str,
                 run: str | Path | None = None) -> Path | None:
    """The checkpoint file behind `checkpoint`: None ("none"), `<run>/best.pt` / `latest.pt` of the
    profile's run (or of `run`), or `checkpoint` itself when it names a file (an official release)."""
    if checkpoint == "none":
        return None
    if checkpoint in ("best", "latest"):
        folder = Path(run) if run is not None else layout.run_dir(params, dataset, method)
        path = layout.checkpoint_file(folder, checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {path} not found: train the run first "
                                    f"(python -m vslrepro train --profile {params['profile']} --dataset "
                                    f"{run_dataset(params, dataset)} --method {layout.run_method(method)})")
        return path
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {checkpoint!r} is neither best/latest/none nor a file")
    return path


def checkpoint_label(checkpoint: str) -> str:
    """The checkpoint's name in result file names: best/latest/none, or `<file stem>-file`."""
    return checkpoint if checkpoint in ("best", "latest", "none") else f"{Path(checkpoint).stem}-file"


def evaluate(params: dict[str, Any], dataset: str, method: str, checkpoint: str, *,
             run: str | Path | None = None, out: str | Path | None = None,
             device: str | torch.device | None = None, progress: bool = False,
             allow_incomplete: bool | None = None) -> Path:
    """Evaluate `method` at `checkpoint` on `dataset`'s extended test set; write the per-sample CSV.

    A missing or unreadable frame/WAV stops the evaluation with an error naming it. With
    `allow_incomplete` (None: the profile's `evaluate.allow_incomplete`, default false) such samples
    are left out and listed in the skip log (`layout.skip_log`), and the provenance record counts
    them ("listed", "evaluated", "skipped", "complete") and names them ("left_out") — never replaced
    by another sample. WAVs resampled on the profile's request (`input.resample_audio`) are listed
    there too.

    Returns:
        The per-sample CSV path.

    Raises:
        IncompleteDataError: listed samples lack media and an incomplete test set is not allowed.
    """
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    weights = weights_file(params, dataset, method, checkpoint, run)
    model = evaluation_model(params, dataset, method, weights).to(dev)
    ev = params["evaluate"]
    if allow_incomplete is None:
        allow_incomplete = bool(ev.get("allow_incomplete", False))
    skip = SkipLog() if allow_incomplete else None
    try:
        index, cache = test_split(params, dataset, skip=skip, progress=progress)
    except IncompleteDataError as error:
        raise error.with_hint("to evaluate the other samples and record which were left out, pass "
                              "--allow-incomplete (or set evaluate.allow_incomplete: true in the profile)") from None
    listed = int(index.attrs.get("listed", len(index)))
    samples = score_samples(model, index, cache, dataset, batch_size=ev["batch_size"], device=dev,
                            image_size=params["input"]["image_size"], binarize=ev["binarize"],
                            pred_size=ev["pred_size"], pred_thr=ev["pred_thr"], progress=progress)
    path = Path(out) if out else layout.samples_csv(params, dataset, method, checkpoint_label(checkpoint))
    log = layout.skip_log(path)
    log.unlink(missing_ok=True)
    if skip is not None and len(skip):
        skip.write_csv(log)
    provenance = {"dataset": dataset, "method": method, "checkpoint": checkpoint_label(checkpoint),
                  "weights": str(weights) if weights else None, "list_variant": index.attrs.get("list_variant"),
                  "listed": listed, "evaluated": len(samples), "skipped": listed - len(samples),
                  "complete": len(samples) == listed,
                  "left_out": sorted(skip.ids) if skip is not None else [],
                  "skip_log": str(log) if log.is_file() else None,
                  "resampled_audio": cache.resampled,  # WAVs resampled on load (input.resample_audio)
                  "params": params,
                  "environment": environment()}
    return write_samples(samples, path, primary_confidence=ev["confidence"], provenance=provenance)


@torch.no_grad()
def localize_rows(model: torch.nn.Module, index: pd.DataFrame, cache: TensorCache, rows: np.ndarray,
                  dataset: str) -> dict[str, Any]:
    """Frames, maps, ground truth and confidences of a few rows of a test set (for figures).

    Returns:
        {"images": uint8 (n, S, S, 3), "maps": (n, 224, 224), "gt": (n, 224, 224),
         "confidence": {kind: (n,)}}.
    """
    images = torch.from_numpy(cache.images[rows].copy())                      # (n, 3, S, S) uint8
    specs = torch.from_numpy(cache.specs[rows].copy())                        # (n, 1, F, T)
    maps, confidence = model.eval().localize(normalize_images(images), specs)
    return {"images": images.permute(0, 2, 3, 1).numpy(),                     # (n, S, S, 3)
            "maps": maps.cpu().numpy(), "gt": gt_maps(index.iloc[rows], dataset),
            "confidence": {k: v.cpu().numpy() for k, v in confidence.items()}}
