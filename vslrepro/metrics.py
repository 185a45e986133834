"""The evaluation protocol: cIoU, confidence scores, LocAcc/AUC/AP/max-F1/Precision and breakdowns.

Paper, Sec. 2 ("Evaluation metrics"); design.md §5. Per test sample i: a localization map P_i, a
ground-truth map G_i (consensus weights in [0, 1], all zeros for negatives), a confidence d_i and a flag
c_i (1 = a visible sound source). With u_i the cIoU and γ the cIoU threshold (0.5):

    TP = {c=1, d >= δ, u >= γ}   FP = {c=1, d >= δ, u < γ} ∪ {c=0, d >= δ}   FN = {c=1, d < δ}
    P(δ) = |TP| / (|TP| + |FP|)   R(δ) = |TP| / (|TP| + |FN|)

(the paper writes `>` and `<=`; the official code and we use `>=` and `<`). A mislocalized detection is
a false positive, not a false negative, so R(δ) reaches 1 once every sample is detected whatever the
localization. LocAcc = mean over positives of [u >= γ]; AUC = trapezoid area under LocAcc(x) for
x in {0, .05, ..., 1}; Precision (Table 3) = P with every sample detected, on the positives = LocAcc.

Two modes for AP and max-F1 (LocAcc, AUC, Precision and mean cIoU are the same in both):

- `exact`: every distinct confidence is a threshold (tied confidences enter together as one block);
  AP is the standard all-point interpolated AP: recall steps start at 0 and each step is weighted by
  the precision envelope max_{R' >= R} P; max-F1 is the max over all thresholds.
- `official`: bit-compatible with SLAVC `EvaluatorFull` (see `vslrepro.metrics_official`).
  Differences from `exact`:
  1. AP thresholds are every s-th sorted confidence (s = max(1, N // 200)) from the second-largest
     down, not every distinct value; the largest confidence is never a threshold.
  2. The recall segment from 0 to the first threshold's recall is never counted (that threshold
     already admits >= 2 samples), so a perfect ranking scores AP < 1 (e.g. 1 - 2/N).
  3. Each recall segment is weighted by the envelope at its *lower*-recall end (exact: higher end).
  4. The minimum confidence is a threshold only when (N - 2) % s == 0, so the curve can stop short.
  5. All-equal confidences (e.g. a method without a confidence score) give AP = 0; exact mode gives
     P·R at the single threshold = LocAcc · n_pos / N. N <= 2 gives AP = 0.
  6. max-F1 is the max over ~10 thresholds `sorted(d)[::max(1, N // 10)]`, not over all of them.
  7. Empty denominators give P = 1 / R = 1 (exact mode never has an empty detected set; a 0/0 recall,
     which only happens with TP = 0, is 0 there).
  8. Precision is read at θ = -1000 on the positives: it equals LocAcc unless confidences fall below
     -1000 (those samples are not detected; with none detected, P = 1). Exact mode: LocAcc.
  Both modes are vectorized (one sort and cumulative sums per sample set; no loop over thresholds).

Edge cases (both modes): a NaN cIoU (0/0: empty ground truth and empty binary map, which only the
absolute binarization can produce) fails `u >= γ`, and counts as 0 in mean cIoU. No positives, an empty
input or NaN/inf confidences raise ValueError; no negatives is fine.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from vslrepro.metrics_official import official_detection, official_f1_string

__all__ = ["ciou", "confidence", "summarize", "size_breakdown", "negative_type_breakdown", "bootstrap",
           "SIZE_BUCKETS", "NEG_TYPES", "AUC_THRESHOLDS", "MODES"]

MODES = ("exact", "official")
SIZE_BUCKETS = ("small", "medium", "large", "huge")   # ground-truth area < 32², < 96², < 144², rest
NEG_TYPES = ("real", "easy", "hard", "automated")     # "automated": pair whose classes are unknown
AUC_THRESHOLDS = 0.05 * np.arange(21)                 # 0.05 * i, the same floats as the official list


# ----------------------------------------------------------------------------------------------------
# Per-sample scores from maps
# ----------------------------------------------------------------------------------------------------

def _as_maps(x: Any, name: str) -> torch.Tensor:
    """A (N, H, W) tensor view of `x` (numpy arrays are shared, not copied)."""
    t = torch.from_numpy(x) if isinstance(x, np.ndarray) else torch.as_tensor(x)
    if t.dim() != 3:
        raise ValueError(f"{name} must have shape (N, H, W), got {tuple(t.shape)}")
    return t


def _work_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """float64 when any input is float64, else float32 (half precision is upcast)."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def _first_bad(chunk: torch.Tensor, offset: int, name: str, *, negative: bool = False) -> None:
    """Raise ValueError naming the first sample of `chunk` (index offset + i) with NaN/inf (or < 0)."""
    flat = chunk.flatten(1)
    checks = [(~torch.isfinite(flat).all(dim=1), "contains NaN or inf")]          # (c,) each
    if negative:
        checks.append(((flat < 0).any(dim=1), "has negative weights"))
    for bad, what in checks:
        if bool(bad.any()):
            raise ValueError(f"{name} of sample {offset + int(bad.nonzero()[0, 0])} {what}")


def _chunk_range(flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row (min, max) of a (c, HW) chunk, each (c, 1); NaN propagates into both.

    (Two reductions: on CPU they are an order of magnitude faster than `torch.aminmax`.)
    """
    return flat.amin(dim=1, keepdim=True), flat.amax(dim=1, keepdim=True)


class _Buffers:
    """Work tensors reused across chunks (fresh allocations per chunk cost page faults on CPU)."""

    def __init__(self, rows: int, cols: int, keep: int, dtype: torch.dtype, device: torch.device) -> None:
        new = lambda *shape, dt=dtype: torch.empty(shape, dtype=dt, device=device)  # noqa: E731
        self.work, self.binary, self.zero = new(rows, cols), new(rows, cols), new(rows, cols)
        self.top = (new(rows, keep), new(rows, keep, dt=torch.long)) if keep else None


def ciou(pred: Any, gt: Any, *, binarize: str = "relative", pred_size: float = 0.5,
         pred_thr: float = 0.5, resize: bool = False, chunk_size: int = 256,
         device: str | torch.device | None = None) -> np.ndarray:
    """Consensus IoU of every prediction map with its ground-truth map (Senocak et al. 2018).

    cIoU = Σ(B·G) / (ΣG + Σ(B·[G = 0])), with B the binarized prediction:
    - `relative` (EZ-VSL's test code, SLAVC's README command): per-map min–max normalization (a
      constant map is left as it is), threshold t = the value at ascending rank int(H·W·pred_size)
      (the median for 0.5), B = P >= t, i.e. the top (1 - pred_size) of the pixels plus ties. t is
      found with `topk` (the minimum of the H·W - rank largest values is the rank-th smallest; the
      same value `torch.kthvalue(rank + 1)` gives, and faster on CPU), not a full sort.
    - `absolute`: B = P >= pred_thr on the map as given.

    Chunked over N with work buffers reused across chunks (3 float32 maps plus the top-k values and
    indices per chunk row: about 220 MB at chunk_size 256 and 224×224, independent of N), on `device`
    (default: pred's device), so large CPU arrays can be scored on a GPU. Sums accumulate in the working
    dtype (float32 unless an input is float64): exact for weights that are multiples of 0.5, such as
    the Flickr consensus maps.

    Args:
        pred: (N, H, W) prediction maps, numpy or torch.
        gt: (N, H', W') ground-truth weights >= 0 (all zeros for a negative).
        binarize: "relative" or "absolute".
        pred_size: fraction of pixels below the relative threshold, in [0, 1).
        pred_thr: absolute threshold.
        resize: bilinearly resize pred to gt's (H', W') (align_corners=True) before binarizing;
            without it pred and gt must have the same shape.
        chunk_size: samples processed at once.
        device: where to compute.

    Returns:
        (N,) float64 cIoU in [0, 1]; NaN where the ratio is 0/0 (an empty ground truth with an empty
        binary map: only the absolute mode can produce it, as in the official code).

    Raises:
        ValueError: bad shapes or options, NaN/inf in a map or negative ground-truth weights (naming
            the first bad sample).
    """
    if binarize not in ("relative", "absolute"):
        raise ValueError(f"binarize must be 'relative' or 'absolute', got {binarize!r}")
    if not 0.0 <= pred_size < 1.0:
        raise ValueError(f"pred_size must be in [0, 1), got {pred_size}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    pred_t, gt_t = _as_maps(pred, "pred"), _as_maps(gt, "gt")
    n, (h, w) = gt_t.shape[0], gt_t.shape[1:]
    if pred_t.shape[0] != n or (not resize and pred_t.shape[1:] != gt_t.shape[1:]):
        raise ValueError(f"pred {tuple(pred_t.shape)} and gt {tuple(gt_t.shape)} do not match"
                         + ("" if resize else " (pass resize=True to resize pred to gt's size)"))
    device = torch.device(device) if device is not None else pred_t.device
    dtype = _work_dtype(pred_t, gt_t)
    keep = h * w - int(h * w * pred_size)       # pixels at or above the rank int(HW·pred_size)
    buf = _Buffers(min(chunk_size, n), h * w, keep if binarize == "relative" else 0, dtype, device)
    out = np.empty(n, dtype=np.float64)
    with torch.no_grad():
        for start in range(0, n, chunk_size):
            p = pred_t[start:start + chunk_size].to(device=device, dtype=dtype)   # (c, h0, w0)
            g = gt_t[start:start + chunk_size].to(device=device, dtype=dtype).flatten(1)  # (c, H*W)
            c = len(p)
            lo, hi = _chunk_range(p.flatten(1))                                    # (c, 1) each
            g_sum = g.sum(dim=1)                                                   # (c,) ΣG
            if not bool(torch.isfinite(torch.cat([lo, hi])).all() and torch.isfinite(g_sum).all()
                        and g.amin() >= 0):
                _first_bad(p, start, "prediction map")
                _first_bad(g, start, "ground-truth map", negative=True)
            if resize and p.shape[1:] != (h, w):
                p = F.interpolate(p[:, None], size=(h, w), mode="bilinear", align_corners=True)[:, 0]
                lo, hi = _chunk_range(p.flatten(1))
            p = p.flatten(1)                                                       # (c, H*W)
            if binarize == "relative":
                span = hi - lo
                # (P - lo) / span like the official code; a constant map becomes all zeros instead of
                # staying as is, which selects every pixel either way.
                span = torch.where(span > 0, span, torch.ones_like(span))
                norm = torch.sub(p, lo, out=buf.work[:c]).div_(span)                # (c, H*W) in [0, 1]
                values, indices = buf.top[0][:c], buf.top[1][:c]
                torch.topk(norm, keep, dim=1, sorted=False, out=(values, indices))
                binary = torch.ge(norm, values.amin(dim=1, keepdim=True), out=buf.binary[:c])
            else:
                binary = torch.ge(p, pred_thr, out=buf.binary[:c])                # B as 0/1 floats
            inter = torch.mul(binary, g, out=buf.work[:c]).sum(dim=1)              # Σ B·G
            zero = torch.eq(g, 0, out=buf.zero[:c])                                # [G = 0]
            union = g_sum + zero.mul_(binary).sum(dim=1)                           # ΣG + Σ B·[G = 0]
            out[start:start + c] = (inter.double() / union.double()).cpu().numpy()
    return out


def confidence(maps: Any, kind: str = "max", *, bounds: tuple[float, float] | None = None,
               topk_fraction: float = 0.25, chunk_size: int = 256,
               device: str | torch.device | None = None) -> np.ndarray:
    """Confidence score d_i of each localization map (paper Sec. 2: "the maximum value").

    Always computed on the raw similarity map (or a *fixed*-bounds rescaling of it), never on a
    per-sample min–max normalized map, whose maximum is 1 for every sample.

    - `max`: max of the map (after the fixed rescaling when `bounds` is given; it does not change
      the ranking).
    - `topk_mean` (official SLAVC test code): mean of the top ⌊H·W·topk_fraction⌋ values of
      (map - lo) / (hi - lo) with the method's fixed bounds, e.g. (-1/τ, 1/τ) for cosine/τ maps.
      (The official code takes the top ceil(H·W/4); the same 12,544 pixels at 224×224.)

    Args:
        maps: (N, H, W) raw maps, numpy or torch.
        kind: "max" or "topk_mean".
        bounds: (lo, hi), hi > lo; required for topk_mean.
        topk_fraction: fraction of pixels averaged by topk_mean, in (0, 1].
        chunk_size: samples processed at once.
        device: where to compute (default: the maps' device).

    Returns:
        (N,) float64.

    Raises:
        ValueError: unknown kind, missing/invalid bounds, bad fraction, NaN/inf in a map.
    """
    if kind not in ("max", "topk_mean"):
        raise ValueError(f"kind must be 'max' or 'topk_mean', got {kind!r}")
    if kind == "topk_mean" and bounds is None:
        raise ValueError("topk_mean needs the method's fixed bounds=(lo, hi), e.g. (-1/tau, 1/tau)")
    if bounds is not None:
        lo, hi = map(float, bounds)
        if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
            raise ValueError(f"bounds must be finite with hi > lo, got {bounds}")
    if not 0.0 < topk_fraction <= 1.0:
        raise ValueError(f"topk_fraction must be in (0, 1], got {topk_fraction}")
    maps_t = _as_maps(maps, "maps")
    n, hw = maps_t.shape[0], maps_t.shape[1] * maps_t.shape[2]
    device = torch.device(device) if device is not None else maps_t.device
    dtype = _work_dtype(maps_t)
    k = max(1, int(hw * topk_fraction))
    out = np.empty(n, dtype=np.float64)
    buf = _Buffers(min(chunk_size, n), 0, k if kind == "topk_mean" else 0, dtype, device)
    with torch.no_grad():
        for start in range(0, n, chunk_size):
            m = maps_t[start:start + chunk_size].to(device=device, dtype=dtype).flatten(1)  # (c, H*W)
            c = len(m)
            if not bool(torch.isfinite(torch.cat(_chunk_range(m))).all()):
                _first_bad(m, start, "map")
            # The fixed rescaling is increasing, so the top-k of the rescaled map is the rescaled
            # top-k of the raw map: rescale only the k values kept.
            if kind == "max":
                top = m.amax(dim=1, keepdim=True)                                  # (c, 1)
            else:
                top = torch.topk(m, k, dim=1, sorted=False, out=(buf.top[0][:c], buf.top[1][:c]))[0]
            if bounds is not None:
                top = (top - lo) / (hi - lo)
            out[start:start + c] = top.double().mean(dim=1).cpu().numpy()
    return out


# ----------------------------------------------------------------------------------------------------
# Dataset-level statistics
# ----------------------------------------------------------------------------------------------------

def _exact_detection(hit: np.ndarray, conf: np.ndarray, positive: np.ndarray) -> dict[str, np.ndarray]:
    """Exact-mode AP and max-F1 for a batch of sample sets, every distinct confidence a threshold.

    Args:
        hit, conf, positive: (B, N) as in `metrics_official.official_detection`.

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


# ----------------------------------------------------------------------------------------------------
# Breakdowns and confidence intervals over a per-sample table
# ----------------------------------------------------------------------------------------------------

def _columns(samples: pd.DataFrame, needed: Sequence[str]) -> None:
    missing = [c for c in needed if c not in samples.columns]
    if missing:
        raise ValueError(f"per-sample table lacks column(s) {missing}; it has {list(samples.columns)}")


def size_breakdown(samples: pd.DataFrame, *, iou_thr: float = 0.5) -> pd.DataFrame:
    """LocAcc per ground-truth size bucket, over the positives (official `finalize_stats` subsets).

    Args:
        samples: per-sample table with columns `positive`, `size` (small/medium/large/huge) and `ciou`.
        iou_thr: the cIoU threshold γ.

    Returns:
        DataFrame indexed by size bucket (all four, in order) with columns `n` (positives) and
        `locacc` (NaN for an empty bucket).

    Raises:
        ValueError: a missing column, or a positive whose size is not a known bucket (naming it).
    """
    _columns(samples, ("positive", "size", "ciou"))
    pos = samples[samples["positive"].astype(bool)]
    unknown = ~pos["size"].isin(SIZE_BUCKETS)
    if unknown.any():
        row = pos[unknown].iloc[0]
        raise ValueError(f"positive {row.get('video', row.name)!r} has size {row['size']!r}, "
                         f"not one of {SIZE_BUCKETS}")
    hit = pos["ciou"].to_numpy(dtype=np.float64) >= iou_thr
    rows = []
    for bucket in SIZE_BUCKETS:
        mask = (pos["size"] == bucket).to_numpy()
        rows.append({"size": bucket, "n": int(mask.sum()),
                     "locacc": float(hit[mask].mean()) if mask.any() else np.nan})
    return pd.DataFrame(rows).set_index("size")


def negative_type_breakdown(samples: pd.DataFrame, *, seed: int = 0, n_draws: int = 1,
                            mode: str = "exact", iou_thr: float = 0.5,
                            score: str = "confidence") -> pd.DataFrame:
    """max-F1 and AP per negative type, each type's negatives padded with as many positives (Table 4).

    For each `neg_type` present (real, easy, hard, automated) and each draw d: that type's n_t negatives
    plus n_t positives drawn without replacement as the first n_t of
    `numpy.random.default_rng(seed + d).permutation(n_pos)` (so within a draw, the positives of a smaller
    type are a subset of those of a larger one). When n_t > n_pos, all positives are used (`n_pos` says so).

    Args:
        samples: per-sample table with `positive`, `neg_type`, `ciou` and the `score` column.
        seed: base seed; draw d uses seed + d.
        n_draws: number of positive draws; > 1 adds the std/min/max over draws.
        mode: "exact" or "official".
        iou_thr: the cIoU threshold γ.
        score: the confidence column to use.

    Returns:
        DataFrame indexed by neg_type with columns n_neg, n_pos, max_f1, ap (means over draws), seed,
        n_draws, and with n_draws > 1 also max_f1_std/min/max and ap_std/min/max.

    Raises:
        ValueError: missing columns, no positives or negatives, unknown negative type, n_draws < 1.
    """
    _check_mode(mode)
    _columns(samples, ("positive", "neg_type", "ciou", score))
    if n_draws < 1:
        raise ValueError(f"n_draws must be >= 1, got {n_draws}")
    positive = samples["positive"].astype(bool).to_numpy()
    pos, neg = samples[positive], samples[~positive]
    if pos.empty or neg.empty:
        raise ValueError(f"need positives and negatives, got {len(pos)} and {len(neg)}")
    unknown = sorted(set(neg["neg_type"]) - set(NEG_TYPES))
    if unknown:
        raise ValueError(f"unknown negative type(s) {unknown}; expected {NEG_TYPES}")
    rows = []
    for neg_type in [t for t in NEG_TYPES if (neg["neg_type"] == t).any()]:
        negs = neg[neg["neg_type"] == neg_type]
        n_take = min(len(negs), len(pos))
        draws = []
        for draw in range(n_draws):
            chosen = pos.iloc[np.random.default_rng(seed + draw).permutation(len(pos))[:n_take]]
            subset = pd.concat([chosen, negs])
            s = summarize(subset["ciou"].to_numpy(), subset[score].to_numpy(),
                          subset["positive"].to_numpy(dtype=bool), iou_thr=iou_thr, mode=mode)
            draws.append((s["max_f1"], s["ap"]))
        values = np.array(draws)                                          # (n_draws, 2)
        row = {"neg_type": neg_type, "n_neg": len(negs), "n_pos": n_take,
               "max_f1": values[:, 0].mean(), "ap": values[:, 1].mean(), "seed": seed, "n_draws": n_draws}
        if n_draws > 1:
            for j, name in enumerate(("max_f1", "ap")):
                row.update({f"{name}_std": values[:, j].std(ddof=1), f"{name}_min": values[:, j].min(),
                            f"{name}_max": values[:, j].max()})
        rows.append(row)
    return pd.DataFrame(rows).set_index("neg_type")


BOOTSTRAP_STATISTICS = ("locacc", "auc", "ap", "max_f1", "precision", "mean_ciou")


def bootstrap(samples: pd.DataFrame, statistic: Sequence[str] = ("locacc", "ap", "max_f1"), *,
              n_boot: int = 1000, seed: int = 0, level: float = 0.95, mode: str = "exact",
              iou_thr: float = 0.5, score: str = "confidence", batch: int = 64) -> pd.DataFrame:
    """Percentile bootstrap confidence intervals, resampling positives and negatives separately.

    Each replicate draws n_pos positives from the positives and n_neg negatives from the negatives,
    with replacement (stratified: every replicate has both, in the original numbers). Replicates are
    scored `batch` at a time with the same vectorized code as `summarize`.

    Args:
        samples: per-sample table with `positive`, `ciou` and the `score` column.
        statistic: names among locacc, auc, ap, max_f1, precision, mean_ciou.
        n_boot: number of replicates.
        seed: seed of the numpy Generator drawing the replicates.
        level: confidence level of the interval.
        mode: "exact" or "official".
        iou_thr: the cIoU threshold γ.
        score: the confidence column to use.
        batch: replicates scored at once (memory ~ batch · N · 100 bytes).

    Returns:
        DataFrame indexed by statistic with columns estimate (on the full table), low, high, std,
        level, n_boot, seed, mode.

    Raises:
        ValueError: unknown statistic or mode, bad level/n_boot, missing columns, invalid samples.
    """
    _check_mode(mode)
    _columns(samples, ("positive", "ciou", score))
    statistic = [statistic] if isinstance(statistic, str) else list(statistic)
    unknown = [s for s in statistic if s not in BOOTSTRAP_STATISTICS]
    if unknown:
        raise ValueError(f"unknown statistic(s) {unknown}; choose from {BOOTSTRAP_STATISTICS}")
    if not 0 < level < 1 or n_boot < 1:
        raise ValueError(f"need 0 < level < 1 and n_boot >= 1, got level={level}, n_boot={n_boot}")
    u, d, c = _per_sample(samples["ciou"].to_numpy(), samples[score].to_numpy(),
                          samples["positive"].to_numpy())
    estimate = summarize(u, d, c, iou_thr=iou_thr, mode=mode)
    pos_idx, neg_idx = np.flatnonzero(c), np.flatnonzero(~c)
    rng = np.random.default_rng(seed)
    draws = np.concatenate([pos_idx[rng.integers(0, len(pos_idx), (n_boot, len(pos_idx)))],
                            neg_idx[rng.integers(0, max(len(neg_idx), 1), (n_boot, len(neg_idx)))]],
                           axis=1)                                          # (n_boot, N)
    values = {s: np.empty(n_boot) for s in statistic}
    for start in range(0, n_boot, batch):
        idx = draws[start:start + batch]                                    # (b, N)
        stats = _batch_statistics(u[idx], d[idx], c[idx], iou_thr=iou_thr, mode=mode)
        for s in statistic:
            values[s][start:start + len(idx)] = stats[s]
    alpha = (1 - level) / 2
    rows = [{"statistic": s, "estimate": estimate[s], "low": np.quantile(values[s], alpha),
             "high": np.quantile(values[s], 1 - alpha),
             "std": values[s].std(ddof=1) if n_boot > 1 else np.nan,
             "level": level, "n_boot": n_boot, "seed": seed, "mode": mode} for s in statistic]
    return pd.DataFrame(rows).set_index("statistic")
