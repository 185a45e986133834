"""Breakdowns over a per-sample table: LocAcc by size bucket, Table 4's per-negative-type protocol,
and stratified bootstrap confidence intervals."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from vslrepro.metrics.detection import _batch_statistics, _check_mode, _per_sample, summarize
from vslrepro.seeding import numpy_generator

SIZE_BUCKETS = ("small", "medium", "large", "huge")   # ground-truth area < 32², < 96², < 144², rest
NEG_TYPES = ("real", "easy", "hard", "automated")     # "automated": pair whose classes are unknown

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

    For each `neg_type` present (real, easy, hard, automated) and each draw d: that type's n_t
    negatives plus n_t positives drawn without replacement as the first n_t of
    `seeding.numpy_generator(seed, d, purpose="positives").permutation(n_pos)` (so within a draw,
    the positives of a smaller type are a subset of those of a larger one). When n_t > n_pos, all
    positives are used (`n_pos` says so).

    Args:
        samples: per-sample table with `positive`, `neg_type`, `ciou` and the `score` column.
        seed: base seed; draw d uses the key (seed, d) (`seeding.numpy_generator`).
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
            chosen = pos.iloc[numpy_generator(seed, draw, purpose="positives").permutation(len(pos))[:n_take]]
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
