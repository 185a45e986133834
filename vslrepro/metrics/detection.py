"""Dataset-level statistics: LocAcc, AUC, AP, max-F1, Precision (exact or official) and PR curves.

See `vslrepro.metrics` for the definitions and every difference between the two modes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from vslrepro.metrics.official import official_detection, official_f1_string

MODES = ("exact", "official")
AUC_THRESHOLDS = 0.05 * np.arange(21)                 # 0.05 * i, the same floats as the official list

def _exact_detection(hit: np.ndarray, conf: np.ndarray, positive: np.ndarray) -> dict[str, np.ndarray]:
    """Exact-mode AP and max-F1 for a batch of sample sets, every distinct confidence a threshold.

    Args:
        hit, conf, positive: (B, N) as in `official.official_detection`.

    Returns:
        {"ap": (B,), "max_f1": (B,)} float64.
    """
    b, n = conf.shape
    order = np.argsort(conf, axis=1, kind="stable")                 # (B, N) ascending
    sorted_conf = np.take_along_axis(conf, order, axis=1)
    # Counts with threshold δ = sorted[j], taken at the first index j of each tie block. (B, N)
    tp = np.cumsum(np.take_along_axis(hit, order, axis=1)[:, ::-1], axis=1)[:, ::-1]
    pos_detected = np.cumsum(np.take_along_axis(positive, order, axis=1)[:, ::-1], axis=1)[:, ::-1]
    block = np.ones((b, n), dtype=bool)                             # j starts a block of equal values
    block[:, 1:] = sorted_conf[:, 1:] != sorted_conf[:, :-1]
    detected = n - np.arange(n)                                     # (N,) TP + FP, always >= 1
    precision = tp / detected
    tp_fn = tp + positive.sum(axis=1, keepdims=True) - pos_detected  # TP + FN; 0 only when TP = 0
    recall = np.divide(tp, tp_fn, out=np.zeros((b, n)), where=tp_fn > 0)
    # Lower thresholds (smaller j) have higher recall: the envelope at block j is the max precision
    # over blocks j' <= j, and j's recall step is measured from the next block above (0 at the top).
    envelope = np.maximum.accumulate(np.where(block, precision, -np.inf), axis=1)
    above = np.minimum.accumulate(np.where(block, np.arange(n), n)[:, ::-1], axis=1)[:, ::-1]
    above = np.concatenate([above[:, 1:], np.full((b, 1), n)], axis=1)   # next block start > j
    recall_above = np.take_along_axis(np.concatenate([recall, np.zeros((b, 1))], axis=1), above, axis=1)
    step = np.where(block, recall - recall_above, 0.0)
    f1_den = precision + recall
    f1 = np.divide(2 * precision * recall, f1_den, out=np.zeros((b, n)), where=f1_den > 0)
    return {"ap": (step * envelope).sum(axis=1), "max_f1": np.where(block, f1, 0.0).max(axis=1)}


def _batch_statistics(u: np.ndarray, conf: np.ndarray, positive: np.ndarray, *, iou_thr: float,
                      mode: str) -> dict[str, np.ndarray]:
    """Every statistic of `summarize` for a batch of sample sets, each (B,) (+ "f1": (B, K) official)."""
    hit = positive & (u >= iou_thr)                                 # NaN cIoU fails >=
    n_pos = positive.sum(axis=1)
    stats = {"locacc": hit.sum(axis=1) / n_pos,
             "mean_ciou": np.where(positive, np.nan_to_num(u, nan=0.0), 0.0).sum(axis=1) / n_pos}
    # LocAcc(x) on the positives for x = 0, .05, ..., 1, then the trapezoid rule like sklearn's auc.
    curve = ((u[:, :, None] >= AUC_THRESHOLDS) & positive[:, :, None]).sum(axis=1) / n_pos[:, None]
    stats["auc"] = (np.diff(AUC_THRESHOLDS) * (curve[:, 1:] + curve[:, :-1]) / 2.0).sum(axis=1)
    if mode == "official":
        det = official_detection(hit, conf, positive)
        stats.update(ap=det["ap"], max_f1=det["f1"].max(axis=1), precision=det["precision"], f1=det["f1"])
    else:
        stats.update(_exact_detection(hit, conf, positive), precision=stats["locacc"])
    return stats


def _per_sample(ciou_: Any, conf: Any, positive: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated 1-D float64 cIoU, float64 confidence and bool positive arrays."""
    arrays = [np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x)
              for x in (ciou_, conf, positive)]
    for name, a in zip(("ciou", "confidence", "positive"), arrays):
        if a.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    if not len(arrays[0]) == len(arrays[1]) == len(arrays[2]):
        raise ValueError(f"lengths differ: ciou {len(arrays[0])}, confidence {len(arrays[1])}, "
                         f"positive {len(arrays[2])}")
    if len(arrays[0]) == 0:
        raise ValueError("no samples to summarize")
    u, d = arrays[0].astype(np.float64), arrays[1].astype(np.float64)
    if not np.isin(arrays[2], (0, 1)).all():
        raise ValueError("positive must hold booleans (or 0/1)")
    c = arrays[2].astype(bool)
    if not c.any():
        raise ValueError("no positive sample: LocAcc, AP and F1 are undefined without positives")
    if not np.isfinite(d).all():
        raise ValueError(f"confidence of sample {int(np.flatnonzero(~np.isfinite(d))[0])} is NaN or inf")
    bad = ~np.isnan(u) & ((u < 0) | (u > 1))
    if bad.any():
        raise ValueError(f"cIoU of sample {int(np.flatnonzero(bad)[0])} is {u[bad][0]}, outside [0, 1]")
    return u, d, c


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def summarize(ciou: Any, confidence: Any, positive: Any, *, iou_thr: float = 0.5,
              mode: str = "exact") -> dict[str, Any]:
    """Dataset-level metrics of the benchmark (paper Sec. 2, Tables 2–3).

    Args:
        ciou: (N,) per-sample cIoU (NaN allowed: it counts as a failed localization).
        confidence: (N,) finite confidence scores d_i.
        positive: (N,) bool, True for a visible sound source (c_i = 1).
        iou_thr: the cIoU threshold γ.
        mode: "exact" or "official" (see the module docstring for every difference).

    Returns:
        {"locacc", "auc", "ap", "max_f1", "precision", "mean_ciou"} floats, {"n_pos", "n_neg"} ints;
        in official mode also "f1_list" (the ~10 F1 values) and "f1_string" (as the official code
        prints them, percentages with one decimal).

    Raises:
        ValueError: empty input, no positives, mismatched lengths, non-finite confidence, cIoU
            outside [0, 1], unknown mode.
    """
    _check_mode(mode)
    u, d, c = _per_sample(ciou, confidence, positive)
    stats = _batch_statistics(u[None], d[None], c[None], iou_thr=iou_thr, mode=mode)
    out: dict[str, Any] = {k: float(stats[k][0]) for k in
                           ("locacc", "auc", "ap", "max_f1", "precision", "mean_ciou")}
    out.update(n_pos=int(c.sum()), n_neg=int((~c).sum()))
    if mode == "official":
        out.update(f1_list=stats["f1"][0].tolist(), f1_string=official_f1_string(stats["f1"][0]))
    return out


def pr_curve(ciou: Any, confidence: Any, positive: Any, *, iou_thr: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall at every distinct confidence threshold (exact sweep, high to low).

    TP/FP/FN as in `summarize`: recall = TP / (TP + FN), precision = TP / (TP + FP).

    Returns:
        (recall, precision), each (K,) float64 for the K distinct confidences, recall non-decreasing.
    """
    u, d, c = _per_sample(ciou, confidence, positive)
    order = np.argsort(-d, kind="stable")                     # high confidence first
    hit = (c & (u >= iou_thr))[order]
    tp = np.cumsum(hit)                                       # (N,) with threshold d[order[j]]
    detected = np.arange(1, len(d) + 1)
    fn = c.sum() - np.cumsum(c[order])
    last = np.r_[d[order][1:] != d[order][:-1], True]         # j ends a block of equal confidences
    tp, detected, fn = tp[last], detected[last], fn[last]
    recall = np.divide(tp, tp + fn, out=np.zeros(len(tp)), where=(tp + fn) > 0)
    return recall, tp / detected


def max_f1_operating_point(ciou: Any, confidence: Any, positive: Any, *, iou_thr: float = 0.5) -> dict[str, float]:
    """The confidence threshold at which the exact sweep reaches its max-F1 (a detector's operating point).

    The thresholds are the distinct confidences, as in `summarize(mode="exact")`; a sample counts as
    detected when d ≥ δ. Among thresholds with the same (maximal) F1 the highest is returned: the
    strictest detector that scores as well.

    Returns:
        {"threshold": δ*, "f1": F1(δ*) (= summarize's exact "max_f1"), "precision", "recall"}.

    Raises:
        ValueError: as `summarize` (empty input, no positives, non-finite confidence, ...).
    """
    u, d, c = _per_sample(ciou, confidence, positive)
    order = np.argsort(-d, kind="stable")                     # high confidence first
    hit = (c & (u >= iou_thr))[order]
    last = np.r_[d[order][1:] != d[order][:-1], True]         # j ends a block of equal confidences
    tp = np.cumsum(hit)[last]                                 # (K,) at threshold δ_k = d[order][last][k]
    detected = np.arange(1, len(d) + 1)[last]
    fn = (c.sum() - np.cumsum(c[order]))[last]
    precision = tp / detected
    recall = np.divide(tp, tp + fn, out=np.zeros(len(tp)), where=(tp + fn) > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(len(tp)),
                   where=(precision + recall) > 0)
    best = int(np.argmax(f1))                                 # first maximum: the highest threshold
    return {"threshold": float(d[order][last][best]), "f1": float(f1[best]),
            "precision": float(precision[best]), "recall": float(recall[best])}
