"""AP and F1 exactly as the official SLAVC evaluator computes them (`utils.py:EvaluatorFull`).

The official code (`stoneMo/SLAVC utils.py:EvaluatorFull`: `calc_precision_recall`, `calc_ap`,
`finalize_stats`; docs/protocol.md §5) loops over thresholds in Python and recounts every sample at
each one. Here the same numbers come from one sort and cumulative sums, for a batch of B independent
sample sets at once (B = 1 for `metrics.summarize`, B = many bootstrap replicates for
`metrics.bootstrap`).
The procedure, for N samples (positives and negatives together):

- counts at a confidence threshold θ, with `>=` everywhere:
  TP = #{positive, d >= θ, u >= γ}; FP = #{positive, d >= θ, u < γ} + #{negative, d >= θ};
  FN = #{positive, d < θ}; P = TP / (TP + FP), or 1 when that is 0; R = TP / (TP + FN), or 1 when
  that is 0. A NaN cIoU fails `u >= γ`, so a detected positive with NaN cIoU is a false positive.
- AP: thresholds = `np.sort(d)[:-1][::-s]` with s = max(1, N // 200), i.e. the ascending sort without
  its largest value, walked from high to low with stride s; P̂_k = max_{j >= k} P_j (envelope);
  AP = sum_{k=0}^{K-2} P̂_k (R_{k+1} - R_k), summed left to right like Python's `sum`. With N <= 2 there
  is at most one threshold and AP = 0; with all confidences equal every (P_k, R_k) is the same and AP = 0.
- F1: thresholds = `sorted(d)[::max(1, N // 10)]` (ascending, starting at the minimum), F1 = 2RP/(R+P),
  or 0 when R + P = 0. The official code prints the list as percentages with one decimal; the reader
  takes the max.
- Precision (the "Precision-visible" number): P at θ = -1000 on the positives only.

Every floating-point operation is the one the official code performs, in the same order, so the results
are bit-identical to it (tests/test_metrics_official.py checks this against a plain loop implementation).
"""

from __future__ import annotations

import numpy as np

PRECISION_THRESHOLD = -1000.0  # θ at which the official code reads "Precision": everything detected


def _safe_ratio(num: np.ndarray, den: np.ndarray, *, empty: float) -> np.ndarray:
    """num / den as float64, with `empty` where den == 0 (integer inputs: exact IEEE division)."""
    out = np.full(np.broadcast(num, den).shape, empty, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0, casting="unsafe")
    return out


class _SortedCounts:
    """Detection counts at every sorted-confidence threshold, for a batch of sample sets.

    Args:
        hit: (B, N) bool, positive with cIoU >= γ (a true positive when detected).
        confidence: (B, N) float64, finite.
        positive: (B, N) bool.
    """

    def __init__(self, hit: np.ndarray, confidence: np.ndarray, positive: np.ndarray) -> None:
        b, n = confidence.shape
        order = np.argsort(confidence, axis=1, kind="stable")  # (B, N) ascending
        self.sorted = np.take_along_axis(confidence, order, axis=1)
        hit_s = np.take_along_axis(hit, order, axis=1)
        pos_s = np.take_along_axis(positive, order, axis=1)
        # Suffix sums: how many hits / positives sit at sorted index >= j.  (B, N)
        self.hit_suffix = np.cumsum(hit_s[:, ::-1], axis=1, dtype=np.int64)[:, ::-1]
        self.pos_suffix = np.cumsum(pos_s[:, ::-1], axis=1, dtype=np.int64)[:, ::-1]
        # First sorted index of each value's tie block: `d >= sorted[j]` admits the whole block.
        new_value = np.ones((b, n), dtype=bool)
        new_value[:, 1:] = self.sorted[:, 1:] != self.sorted[:, :-1]
        self.first = np.maximum.accumulate(np.where(new_value, np.arange(n), 0), axis=1)
        self.n = n
        self.n_pos = positive.sum(axis=1, dtype=np.int64)[:, None]  # (B, 1)

    def precision_recall(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Official (P, R) at the thresholds sorted[:, positions]; each (B, K) float64."""
        start = self.first[:, positions]                       # (B, K) first admitted index
        tp = np.take_along_axis(self.hit_suffix, start, axis=1)
        detected = self.n - start                              # TP + FP
        fn = self.n_pos - np.take_along_axis(self.pos_suffix, start, axis=1)
        precision = _safe_ratio(tp, detected, empty=1.0)
        recall = _safe_ratio(tp, tp + fn, empty=1.0)
        return precision, recall


def official_ap(counts: _SortedCounts) -> np.ndarray:
    """AP of SLAVC `EvaluatorFull.calc_ap`, (B,) float64."""
    n = counts.n
    stride = max(1, n // 200)
    positions = np.arange(n - 2, -1, -stride)                 # sort()[:-1][::-stride]
    if positions.size < 2:                                     # no recall segment at all
        return np.zeros(counts.sorted.shape[0])
    precision, recall = counts.precision_recall(positions)    # (B, K), θ decreasing along K
    envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]  # max over j >= k
    terms = envelope[:, :-1] * (recall[:, 1:] - recall[:, :-1])            # (B, K-1)
    return np.cumsum(terms, axis=1)[:, -1]                    # sequential, like Python's sum


def official_f1(counts: _SortedCounts) -> np.ndarray:
    """F1 list of SLAVC `EvaluatorFull.finalize_stats`, (B, K) float64, thresholds ascending."""
    positions = np.arange(0, counts.n, max(1, counts.n // 10))
    precision, recall = counts.precision_recall(positions)
    den = recall + precision
    f1 = np.zeros_like(den)
    np.divide(2 * recall * precision, den, out=f1, where=den > 0)  # same operation order as 2*r*p/(r+p)
    return f1


def official_precision(hit: np.ndarray, confidence: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """"Precision-visible": P at θ = -1000 over the positives only, (B,) float64."""
    detected = positive & (confidence >= PRECISION_THRESHOLD)
    tp = (detected & hit).sum(axis=1)
    return _safe_ratio(tp, detected.sum(axis=1), empty=1.0)


def official_detection(hit: np.ndarray, confidence: np.ndarray,
                       positive: np.ndarray) -> dict[str, np.ndarray]:
    """AP, F1 list and Precision of the official evaluator for a batch of sample sets.

    Args:
        hit: (B, N) bool, positive with cIoU >= γ (NaN cIoU must already be False).
        confidence: (B, N) float64, finite.
        positive: (B, N) bool.

    Returns:
        {"ap": (B,), "f1": (B, K) with K = len(sorted(d)[::max(1, N // 10)]), "precision": (B,)}.
    """
    counts = _SortedCounts(hit, confidence, positive)
    return {"ap": official_ap(counts), "f1": official_f1(counts),
            "precision": official_precision(hit, confidence, positive)}


def official_f1_string(f1: np.ndarray) -> str:
    """The F1 list as the official code writes it: space-separated percentages with one decimal."""
    return " ".join(f"{f * 100:.1f}" for f in np.asarray(f1).tolist())
