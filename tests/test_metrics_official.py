"""`summarize(mode="official")` against a plain, loop-by-loop reading of the SLAVC evaluator.

The reference below is written from the procedure of `stoneMo/SLAVC utils.py:EvaluatorFull`
(`calc_precision_recall`, `calc_ap`, `finalize_stats`; see docs/protocol.md §5) with Python lists
and for loops (a second, independent reading, deliberately unvectorized), and must agree to 1e-9
(in practice the numbers are bit-identical).
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from vslrepro import metrics as M


def precision_recall(positive, ciou, conf, threshold, iou_thr):
    """TP/FP/FN at one confidence threshold, `>=` everywhere; empty denominators give 1."""
    tp = fp = fn = 0
    for is_pos, u, d in zip(positive, ciou, conf):
        if not is_pos:
            if d >= threshold:
                fp += 1
        elif d >= threshold:
            if u >= iou_thr:       # NaN fails this comparison -> false positive
                tp += 1
            else:
                fp += 1
        else:
            fn += 1
    p = 1.0 if tp + fp == 0 else tp / (tp + fp)
    r = 1.0 if tp + fn == 0 else tp / (tp + fn)
    return p, r


def official_reference(positive, ciou, conf, iou_thr=0.5):
    """AP, F1 list, Precision-visible and LocAcc as the official evaluator computes them."""
    n = len(conf)
    # AP: sort ascending, drop the largest, walk from high to low with stride max(1, n // 200).
    ascending = sorted(conf)[:-1]
    stride = max(1, n // 200)
    thresholds = []
    i = len(ascending) - 1
    while i >= 0:
        thresholds.append(ascending[i])
        i -= stride
    precisions, recalls = [], []
    for t in thresholds:
        p, r = precision_recall(positive, ciou, conf, t, iou_thr)
        precisions.append(p)
        recalls.append(r)
    envelope = []
    for k in range(len(precisions)):
        envelope.append(max(precisions[k:]))
    ap = 0
    for k in range(len(envelope) - 1):
        ap = ap + envelope[k] * (recalls[k + 1] - recalls[k])
    # F1 at every (n // 10)-th sorted confidence, from the minimum.
    f1 = []
    for t in sorted(conf)[::max(1, n // 10)]:
        p, r = precision_recall(positive, ciou, conf, t, iou_thr)
        f1.append(2 * r * p / (r + p) if r + p > 0 else 0.0)
    # Precision-visible: everything detected, positives only.
    vis = [k for k in range(n) if positive[k]]
    precision, _ = precision_recall([True] * len(vis), [ciou[k] for k in vis], [conf[k] for k in vis],
                                    -1000, iou_thr)
    locacc = sum(1 for k in vis if ciou[k] >= iou_thr) / len(vis)
    return {"ap": ap, "f1": f1, "precision": precision, "locacc": locacc}


def random_samples(n, seed, *, n_levels=None, neg_fraction=0.5, with_nan=True):
    """Per-sample lists with ties (confidences on a coarse grid) and negatives."""
    rng = random.Random(seed)
    positive = [rng.random() >= neg_fraction for _ in range(n)]
    positive[rng.randrange(n)] = True
    ciou = []
    for is_pos in positive:
        if not is_pos:
            ciou.append(0.0 if rng.random() < 0.8 or not with_nan else math.nan)
        elif with_nan and rng.random() < 0.05:
            ciou.append(math.nan)
        else:
            ciou.append(rng.choice([0.5, rng.random()]))       # exact 0.5 ties the threshold
    levels = n_levels or max(2, n // 3)
    conf = [rng.randrange(levels) / levels + (0.3 if p else 0.0) * rng.random() for p in positive]
    return positive, ciou, conf


SIZES = [1, 2, 3, 7, 10, 11, 199, 200, 201, 399, 450, 1000]


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_official_mode_equals_loop_reading(n, seed):
    positive, ciou, conf = random_samples(n, seed)
    want = official_reference(positive, ciou, conf)
    got = M.summarize(np.array(ciou), np.array(conf), np.array(positive), mode="official")
    assert got["ap"] == pytest.approx(want["ap"], abs=1e-9)
    assert got["f1_list"] == pytest.approx(want["f1"], abs=1e-9)
    assert got["max_f1"] == pytest.approx(max(want["f1"]), abs=1e-9)
    assert got["precision"] == pytest.approx(want["precision"], abs=1e-9)
    assert got["locacc"] == pytest.approx(want["locacc"], abs=1e-9)
    # not only close: the same floating-point operations in the same order
    assert got["ap"] == want["ap"] and got["f1_list"] == want["f1"]


@pytest.mark.parametrize("n", [2, 5, 200, 450])
def test_official_mode_heavy_ties_and_equal_confidences(n):
    positive, ciou, conf = random_samples(n, 9, n_levels=3)
    got = M.summarize(np.array(ciou), np.array(conf), np.array(positive), mode="official")
    assert got["ap"] == official_reference(positive, ciou, conf)["ap"]
    equal = [0.25] * n
    got = M.summarize(np.array(ciou), np.array(equal), np.array(positive), mode="official")
    assert got["ap"] == official_reference(positive, ciou, equal)["ap"] == 0.0


@pytest.mark.parametrize("iou_thr", [0.3, 0.75])
def test_official_mode_other_iou_thresholds(iou_thr):
    positive, ciou, conf = random_samples(301, 4, with_nan=False)
    want = official_reference(positive, ciou, conf, iou_thr)
    got = M.summarize(ciou, conf, positive, mode="official", iou_thr=iou_thr)
    assert (got["ap"], got["f1_list"]) == (want["ap"], want["f1"])


def test_official_f1_string_format():
    positive, ciou, conf = random_samples(50, 5)
    got = M.summarize(np.array(ciou), np.array(conf), np.array(positive), mode="official")
    want = official_reference(positive, ciou, conf)["f1"]
    assert got["f1_string"] == " ".join(f"{f * 100:.1f}" for f in want)


def test_official_precision_reads_theta_minus_1000():
    """"Precision" is P at θ = -1000: with every confidence below it nothing is detected, and the
    official empty-denominator rule makes P = 1 (exact mode reports LocAcc instead)."""
    positive, ciou, conf = random_samples(40, 6, with_nan=False)
    low = [d - 5000 for d in conf]
    want = official_reference(positive, ciou, low)
    got = M.summarize(ciou, low, positive, mode="official")
    assert got["precision"] == want["precision"] == 1.0
    assert M.summarize(ciou, low, positive)["precision"] == got["locacc"] < 1.0
