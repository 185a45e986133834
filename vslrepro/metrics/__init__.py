"""The evaluation protocol: cIoU, confidence scores, LocAcc/AUC/AP/max-F1/Precision and breakdowns.

Paper, Sec. 2 ("Evaluation metrics"); docs/protocol.md. Per test sample i: a localization map P_i, a
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
- `official`: bit-compatible with SLAVC `EvaluatorFull` (see `vslrepro.metrics.official`).
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

Modules: `maps` (per-sample cIoU and confidence from maps), `detection` (dataset-level statistics
and PR curves), `official` (the official evaluator's AP/F1, bit-compatible), `breakdowns` (size and
negative-type breakdowns, bootstrap intervals).
"""

from vslrepro.metrics.breakdowns import NEG_TYPES, SIZE_BUCKETS, bootstrap, negative_type_breakdown, size_breakdown
from vslrepro.metrics.detection import AUC_THRESHOLDS, MODES, max_f1_operating_point, pr_curve, summarize
from vslrepro.metrics.maps import ciou, confidence

__all__ = ["ciou", "confidence", "summarize", "pr_curve", "max_f1_operating_point", "size_breakdown",
           "negative_type_breakdown", "bootstrap", "SIZE_BUCKETS", "NEG_TYPES", "AUC_THRESHOLDS", "MODES"]
