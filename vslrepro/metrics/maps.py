"""Per-sample scores from maps: cIoU (relative or absolute binarization) and confidence scores.

Batched and chunked torch code, on the device of the inputs; see `vslrepro.metrics` for the protocol.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


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
