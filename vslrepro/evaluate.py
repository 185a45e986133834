"""Per-sample evaluation: run a method over a test set and write one row per sample (design §5).

`score_samples` is the single code path used by training-time validation and by the evaluate
stage: batched inference on CPU or GPU, ground-truth maps built per batch from the boxes (a 10k
extended set never holds 10k 224x224 maps in memory), cIoU and every confidence score of the
method per sample. `evaluate_run` wires it to a profile, a dataset, a method and a checkpoint,
and writes the per-sample CSV that the table builders read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from vslrepro import metrics
from vslrepro.data.annotations import gt_map
from vslrepro.data.cache import CachedPairs, TensorCache, normalize_images


def _gt_batch(dataset: str, boxes: dict[str, np.ndarray], videos: list[str], positive: np.ndarray) -> np.ndarray:
    maps = np.zeros((len(videos), 224, 224), dtype=np.float32)
    for row, (video, is_positive) in enumerate(zip(videos, positive)):
        if is_positive:
            maps[row] = gt_map(dataset, boxes[video])
    return maps


@torch.no_grad()
def score_samples(method: torch.nn.Module, index: pd.DataFrame, cache: TensorCache, dataset: str, *,
                  batch_size: int = 128, device: str | torch.device = "cpu", image_size: int = 224,
                  binarize: str = "relative", pred_size: float = 0.5, pred_thr: float = 0.5,
                  progress: bool = False) -> pd.DataFrame:
    """cIoU and confidences of `method` on every row of `index` (aligned with `cache.pairs`).

    Args:
        index: rows with `video`, `audio`, `positive`; `index.attrs["boxes"]` maps video id -> boxes.
        cache: test-mode tensor cache holding the same (video, audio) pairs in the same order.

    Returns:
        A copy of `index` with columns `ciou` and `confidence_<kind>` for every score the method gives.
    """
    pairs = list(zip(index["video"], index["audio"]))
    if pairs != [tuple(p) for p in cache.pairs]:
        raise ValueError(f"index and cache {cache.folder} hold different (video, audio) pairs")
    boxes = index.attrs.get("boxes", {})
    positive = index["positive"].to_numpy(bool)
    videos = index["video"].tolist()
    loader = DataLoader(CachedPairs(cache, size=image_size, train=False), batch_size=batch_size,
                        shuffle=False)
    if progress:
        from tqdm.auto import tqdm
        loader = tqdm(loader, desc=f"evaluating {getattr(method, 'name', 'method')}", leave=False)
    method.eval()
    ious: list[np.ndarray] = []
    scores: dict[str, list[np.ndarray]] = {}
    for images, specs, rows in loader:
        rows = rows.numpy()
        images = normalize_images(images.to(device))
        maps, confidence = method.localize(images, specs.to(device))
        gt = torch.from_numpy(_gt_batch(dataset, boxes, [videos[r] for r in rows], positive[rows]))
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
    path.with_suffix(".json").write_text(json.dumps(provenance, indent=2, default=str) + "\n")
    return path
