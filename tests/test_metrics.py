"""Tests of vslrepro.metrics: hand-computed cases, a plain per-sample cIoU reference, properties."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import auc as sklearn_auc

from vslrepro import metrics as M
from vslrepro.seeding import numpy_generator

# ------------------------------------------------------------------------------------------------
# Plain references
# ------------------------------------------------------------------------------------------------

def ciou_reference(pred: np.ndarray, gt: np.ndarray, *, relative: bool, pred_size=0.5, pred_thr=0.5):
    """Per-sample cIoU written like the official NumPy code (normalize, np.sort threshold, ratio)."""
    out = []
    for p, g in zip(pred, gt):
        if relative:
            lo, hi = p.min(), p.max()
            if hi - lo != 0:
                p = (p - lo) / (hi - lo)
            thr = np.sort(p.flatten())[int(p.size * pred_size)]
        else:
            thr = pred_thr
        infer = np.zeros(p.shape)
        infer[p >= thr] = 1
        with np.errstate(invalid="ignore"):
            out.append(np.sum(infer * g) / (np.sum(g) + np.sum(infer * (g == 0))))
    return np.array(out)


def exact_reference(u, d, c, thr=0.5):
    """Exact-mode AP / max-F1 by an explicit loop over the distinct thresholds (high to low)."""
    points = []
    for delta in sorted(set(d.tolist()), reverse=True):
        det = d >= delta
        tp = int(np.sum(det & c & (u >= thr)))
        fp = int(np.sum(det)) - tp
        fn = int(np.sum(c & ~det))
        points.append((tp / (tp + fp), tp / (tp + fn) if tp + fn else 0.0))
    ap, prev_r = 0.0, 0.0
    for k, (_, r) in enumerate(points):
        ap += (r - prev_r) * max(p for p, _ in points[k:])
        prev_r = r
    f1 = max(2 * p * r / (p + r) if p + r else 0.0 for p, r in points)
    return ap, f1


# ------------------------------------------------------------------------------------------------
# cIoU
# ------------------------------------------------------------------------------------------------

def flickr_example():
    """A 4×4 prediction (0..15) and a Flickr-style consensus map with 1 and 0.5 weights."""
    pred = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    gt = np.zeros((1, 4, 4), dtype=np.float32)
    gt[0, 2, 0:2] = 1.0
    gt[0, 3, 0] = 1.0
    gt[0, 1, 2:4] = 0.5
    gt[0, 2, 2] = 0.5
    return pred, gt


def test_ciou_flickr_half_weights_by_hand():
    pred, gt = flickr_example()
    # Relative: threshold = sorted[8] -> B = rows 2-3. ΣB·G = 1+1+1+0.5 = 3.5, ΣG = 4.5,
    # B on G = 0: (2,3), (3,1), (3,2), (3,3) = 4 -> 3.5 / 8.5.
    assert M.ciou(pred, gt)[0] == pytest.approx(3.5 / 8.5, abs=1e-12)
    # Absolute at 12.5: B = (3,1), (3,2), (3,3) -> ΣB·G = 0, union = 4.5 + 3.
    assert M.ciou(pred, gt, binarize="absolute", pred_thr=12.5)[0] == 0.0
    # Absolute at 7.5: B = rows 2-3 again.
    assert M.ciou(pred, gt, binarize="absolute", pred_thr=7.5)[0] == pytest.approx(3.5 / 8.5)


def test_ciou_negative_and_nan_cases():
    gt = np.zeros((2, 4, 4), dtype=np.float32)
    pred = np.stack([np.arange(16, dtype=np.float32).reshape(4, 4)] * 2)
    # A negative: relative always selects pixels -> 0 / (0 + 8) = 0.
    assert M.ciou(pred, gt).tolist() == [0.0, 0.0]
    # Absolute with nothing above the threshold: 0 / 0 -> NaN, like the official code.
    assert np.isnan(M.ciou(pred, gt, binarize="absolute", pred_thr=100.0)).all()


def test_ciou_constant_map_selects_everything():
    pred = np.full((1, 4, 4), 3.0, dtype=np.float32)
    gt = np.zeros((1, 4, 4), dtype=np.float32)
    gt[0, :2] = 1.0
    assert M.ciou(pred, gt)[0] == pytest.approx(8 / 16)


@pytest.mark.parametrize("relative", [True, False])
def test_ciou_matches_plain_numpy(relative):
    rng = np.random.default_rng(0)
    pred = rng.normal(size=(37, 24, 24)).astype(np.float32)
    pred[3] = 1.0                                                   # a constant map
    pred[4] = rng.integers(0, 3, size=(24, 24))                     # heavy ties at the median
    gt = (rng.integers(0, 3, size=(37, 24, 24)) / 2).astype(np.float32)
    gt[5] = 0.0                                                     # a negative
    got = M.ciou(pred, gt, binarize="relative" if relative else "absolute", pred_thr=0.1)
    want = ciou_reference(pred, gt, relative=relative, pred_thr=0.1)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12, equal_nan=True)


def test_ciou_chunking_and_torch_input_do_not_change_results():
    rng = np.random.default_rng(1)
    pred = rng.random((50, 16, 16)).astype(np.float32)
    gt = (rng.random((50, 16, 16)) > 0.6).astype(np.float32)
    ref = M.ciou(pred, gt, chunk_size=256)
    for chunk in (1, 7, 50):
        np.testing.assert_array_equal(M.ciou(pred, gt, chunk_size=chunk), ref)
    np.testing.assert_array_equal(M.ciou(torch.from_numpy(pred), torch.from_numpy(gt)), ref)
    assert M.ciou(pred, gt).dtype == np.float64


@pytest.mark.parametrize("pred_size", [0.0, 0.25, 0.5, 0.9])
def test_topk_threshold_equals_sort_threshold_with_ties(pred_size):
    rng = np.random.default_rng(2)
    pred = rng.integers(0, 4, size=(20, 10, 10)).astype(np.float32)  # only 4 distinct values
    gt = (rng.random((20, 10, 10)) > 0.5).astype(np.float32)
    got = M.ciou(pred, gt, pred_size=pred_size)
    np.testing.assert_allclose(got, ciou_reference(pred, gt, relative=True, pred_size=pred_size), atol=1e-12)
    # and the rank-th value itself, as torch.kthvalue (k = rank + 1) finds it, equals the sorted one
    flat = torch.from_numpy(pred).flatten(1)
    rank = int(100 * pred_size)
    np.testing.assert_array_equal(flat.kthvalue(rank + 1, dim=1).values.numpy(),
                                  np.sort(pred.reshape(20, -1), axis=1)[:, rank])


def test_ciou_resize_bilinear_align_corners():
    rng = np.random.default_rng(3)
    small = rng.random((3, 7, 7)).astype(np.float32)
    gt = (rng.random((3, 28, 28)) > 0.5).astype(np.float32)
    up = F.interpolate(torch.from_numpy(small)[:, None], size=(28, 28), mode="bilinear",
                       align_corners=True)[:, 0].numpy()
    np.testing.assert_array_equal(M.ciou(small, gt, resize=True), M.ciou(up, gt))
    with pytest.raises(ValueError, match="resize=True"):
        M.ciou(small, gt)


def test_ciou_errors_name_the_sample():
    pred = np.zeros((5, 4, 4), dtype=np.float32)
    gt = np.zeros((5, 4, 4), dtype=np.float32)
    pred[3, 1, 1] = np.nan
    with pytest.raises(ValueError, match="sample 3 contains NaN"):
        M.ciou(pred, gt, chunk_size=2)
    pred[3, 1, 1] = 0
    gt[1, 0, 0] = -1
    with pytest.raises(ValueError, match="sample 1 has negative"):
        M.ciou(pred, gt)
    with pytest.raises(ValueError, match="pred_size"):
        M.ciou(pred, np.zeros_like(pred), pred_size=1.0)
    with pytest.raises(ValueError, match="binarize"):
        M.ciou(pred, np.zeros_like(pred), binarize="top")


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), st.integers(2, 6), st.integers(2, 6), st.integers(0, 2**32 - 1),
       st.sampled_from(["relative", "absolute"]))
def test_ciou_in_unit_interval(n, h, w, seed, mode):
    rng = np.random.default_rng(seed)
    pred = rng.normal(size=(n, h, w)).astype(np.float32)
    gt = (rng.integers(0, 3, size=(n, h, w)) / 2).astype(np.float32)
    got = M.ciou(pred, gt, binarize=mode, pred_thr=0.0)
    assert np.all(np.isnan(got) | ((got >= 0) & (got <= 1)))
    if mode == "relative":
        assert not np.isnan(got).any()


# ------------------------------------------------------------------------------------------------
# Confidence
# ------------------------------------------------------------------------------------------------

def test_confidence_max_and_topk_mean_like_official():
    rng = np.random.default_rng(4)
    maps = rng.normal(size=(6, 16, 16)).astype(np.float32) * 30
    np.testing.assert_array_equal(M.confidence(maps, "max"), maps.reshape(6, -1).max(axis=1))
    lo, hi = -1 / 0.03, 1 / 0.03
    want = [np.sort(((m - lo) / (hi - lo)).flatten())[-m.size // 4:].astype(np.float64).mean() for m in maps]
    np.testing.assert_allclose(M.confidence(maps, "topk_mean", bounds=(lo, hi)), want, rtol=1e-6)


def test_confidence_errors():
    maps = np.zeros((3, 4, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="bounds"):
        M.confidence(maps, "topk_mean")
    with pytest.raises(ValueError, match="hi > lo"):
        M.confidence(maps, "topk_mean", bounds=(1, 1))
    with pytest.raises(ValueError, match="kind"):
        M.confidence(maps, "mean")
    maps[2, 0, 0] = np.inf
    with pytest.raises(ValueError, match="sample 2"):
        M.confidence(maps)


# ------------------------------------------------------------------------------------------------
# summarize: hand-computed cases
# ------------------------------------------------------------------------------------------------

def test_summarize_worked_example_both_modes():
    u = np.array([0.9, 0.2, 0.7, 0.0, 0.0, 0.6])
    d = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    c = np.array([1, 1, 1, 0, 0, 1], dtype=bool)
    # (R, P) from high to low δ: (1/4, 1) (1/3, 1/2) (2/3, 2/3) (2/3, 1/2) (2/3, 2/5) (1, 1/2)
    ex = M.summarize(u, d, c)
    assert ex["ap"] == pytest.approx(1 / 4 + (1 / 12) * (2 / 3) + (1 / 3) * (2 / 3) + (1 / 3) * 0.5)
    assert ex["max_f1"] == pytest.approx(2 / 3)
    assert ex["locacc"] == ex["precision"] == 0.75
    assert (ex["n_pos"], ex["n_neg"]) == (4, 2)
    assert ex["mean_ciou"] == pytest.approx(0.6)
    # official: thresholds .8 .7 .6 .5 .4 (largest dropped); envelope 2/3 2/3 .5 .5 .5
    off = M.summarize(u, d, c, mode="official")
    assert off["ap"] == pytest.approx((2 / 3) * (1 / 3) + 0.5 * (1 / 3))
    assert off["f1_string"] == "66.7 50.0 57.1 66.7 40.0 40.0"
    assert off["max_f1"] == pytest.approx(2 / 3)
    # AUC against sklearn on the positives' LocAcc curve
    x = [0.05 * i for i in range(21)]
    y = [np.mean(u[c] >= t) for t in x]
    assert ex["auc"] == off["auc"] == sklearn_auc(x, y)


def test_all_correct():
    u = np.array([0.8, 0.9, 0.6, 0.7, 0.1, 0.0])
    d = np.array([0.9, 0.8, 0.7, 0.6, 0.2, 0.1])
    c = np.array([1, 1, 1, 1, 0, 0], dtype=bool)
    ex = M.summarize(u, d, c)
    assert (ex["ap"], ex["max_f1"], ex["locacc"]) == (1.0, 1.0, 1.0)
    # official: the first threshold (.8, the largest is dropped) already admits 2 of 4 positives,
    # and the segment from recall 0 to 2/4 is never counted: AP = 1 * (3/4 - 2/4) + 1 * (4/4 - 3/4)
    assert M.summarize(u, d, c, mode="official")["ap"] == pytest.approx(0.5)
    # negatives ranked first: thresholds .8 .7 .6 .2 .1 give (R, P) = (0, 0) (1/4, 1/3) (1/2, 1/2)
    # (3/4, 3/5) (1, 2/3); envelope 2/3 everywhere -> AP = 2/3; exact mode adds nothing above it.
    assert M.summarize(u, d[::-1].copy(), c, mode="official")["ap"] == pytest.approx(2 / 3)
    assert M.summarize(u, d[::-1].copy(), c)["ap"] == pytest.approx(2 / 3)


def test_all_wrong():
    u = np.array([0.1, 0.2, 0.3, 0.0])
    d = np.array([0.9, 0.8, 0.7, 0.6])
    c = np.array([1, 1, 1, 0], dtype=bool)
    for mode in M.MODES:
        s = M.summarize(u, d, c, mode=mode)
        assert (s["ap"], s["max_f1"], s["locacc"], s["precision"]) == (0.0, 0.0, 0.0, 0.0)
        # LocAcc(x) = 1, 1, 1, 2/3, 2/3, 1/3, 0 at x = 0 ... 0.3: the official grid point 0.05 * 6 is
        # 0.30000000000000004, so the cIoU 0.3 already fails there.
        area = 0.05 * (1 + 1 + (1 + 2 / 3) / 2 + 2 / 3 + (2 / 3 + 1 / 3) / 2 + (1 / 3) / 2)
        assert s["auc"] == pytest.approx(area, abs=1e-15)


def test_ties_in_confidence_enter_as_one_block():
    u = np.array([0.9, 0.1, 0.8, 0.0])
    d = np.array([0.5, 0.5, 0.3, 0.3])
    c = np.array([1, 1, 1, 0], dtype=bool)
    # δ = .5: TP 1, det 2, FN 1 -> (R, P) = (1/2, 1/2); δ = .3: TP 2, det 4, FN 0 -> (1, 1/2)
    ex = M.summarize(u, d, c)
    assert ex["ap"] == pytest.approx(0.5)
    assert ex["max_f1"] == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert ex["ap"] == exact_reference(u, d, c)[0]
    # official: thresholds sorted[:-1][::-1] = .5 .3 .3 -> the .5 block is admitted whole
    assert M.summarize(u, d, c, mode="official")["ap"] == pytest.approx(0.5 * 0.5)


def test_all_confidences_equal():
    """Official AP is 0 when every confidence is equal.

    Every official threshold is the same value, and `>=` admits every sample at each of them, so all
    (P_k, R_k) pairs are identical, every recall step R_{k+1} - R_k is 0 and AP = 0 — which is why a
    method without a real confidence shows AP 0.00 in Table 3. Exact mode has one threshold, with
    R = 1 (all detected) and P = TP / N, so AP = LocAcc · n_pos / N.
    """
    u = np.array([0.9, 0.1, 0.8, 0.0, 0.0, 0.7])
    c = np.array([1, 1, 1, 0, 0, 1], dtype=bool)
    d = np.full(6, 0.3)
    assert M.summarize(u, d, c, mode="official")["ap"] == 0.0
    ex = M.summarize(u, d, c)
    assert ex["ap"] == pytest.approx(0.75 * 4 / 6)
    assert ex["max_f1"] == pytest.approx(2 * 0.5 * 1 / 1.5)


def test_no_negatives_and_no_positives():
    u = np.array([0.9, 0.1, 0.6])
    d = np.array([0.3, 0.2, 0.1])
    s = M.summarize(u, d, np.ones(3, bool))
    assert s["n_neg"] == 0
    # (R, P) = (1/3, 1), (1/2, 1/2), (1, 2/3): R = TP / (TP + FN) and a detected miss is not an FN
    assert s["ap"] == pytest.approx(1 / 3 + (1 / 2 - 1 / 3) * 2 / 3 + (1 / 2) * 2 / 3)
    with pytest.raises(ValueError, match="no positive"):
        M.summarize(u, d, np.zeros(3, bool))


def test_single_sample():
    assert M.summarize([0.7], [0.2], [True])["ap"] == 1.0
    off = M.summarize([0.7], [0.2], [True], mode="official")
    assert off["ap"] == 0.0                      # no threshold after dropping the largest
    assert off["f1_list"] == [1.0]
    assert M.summarize([0.2], [0.2], [True])["ap"] == 0.0


def test_nan_ciou_counts_as_failure():
    s = M.summarize([np.nan, 0.8], [0.9, 0.1], [True, True])
    assert s["locacc"] == 0.5 and s["mean_ciou"] == pytest.approx(0.4)
    assert s["ap"] == pytest.approx(0.5)         # (R, P): (0, 0) then (1, 1/2)


def test_summarize_errors():
    with pytest.raises(ValueError, match="no samples"):
        M.summarize([], [], [])
    with pytest.raises(ValueError, match="lengths differ"):
        M.summarize([0.1, 0.2], [0.1], [True, False])
    with pytest.raises(ValueError, match="confidence of sample 1"):
        M.summarize([0.1, 0.2], [0.1, np.nan], [True, False])
    with pytest.raises(ValueError, match="outside"):
        M.summarize([1.5], [0.1], [True])
    with pytest.raises(ValueError, match="mode"):
        M.summarize([0.5], [0.1], [True], mode="voc")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0.0, 0.3, 0.5, 0.9, np.nan]), st.integers(0, 5), st.booleans()),
                min_size=1, max_size=40))
def test_exact_mode_matches_loop_reference(rows):
    u, d, c = (np.array(x) for x in zip(*rows))
    c = c.astype(bool)
    if not c.any():
        return
    s = M.summarize(u, d.astype(float), c)
    ap, f1 = exact_reference(u, d.astype(float), c)
    assert s["ap"] == pytest.approx(ap, abs=1e-12)
    assert s["max_f1"] == pytest.approx(f1, abs=1e-12)


samples_strategy = st.lists(
    st.tuples(st.sampled_from([0.0, 0.2, 0.5, 0.7, 1.0, np.nan]), st.integers(0, 6), st.booleans()),
    min_size=2, max_size=60)


@settings(max_examples=60, deadline=None)
@given(samples_strategy, st.randoms(use_true_random=False), st.sampled_from(M.MODES))
def test_permutation_invariance(rows, random, mode):
    u, d, c = (np.array(x) for x in zip(*rows))
    c = c.astype(bool)
    if not c.any():
        return
    perm = list(range(len(u)))
    random.shuffle(perm)
    a = M.summarize(u, d.astype(float), c, mode=mode)
    b = M.summarize(u[perm], d[perm].astype(float), c[perm], mode=mode)
    for key in ("locacc", "auc", "ap", "max_f1", "precision", "mean_ciou"):
        assert a[key] == pytest.approx(b[key], abs=1e-12), key


@settings(max_examples=80, deadline=None)
@given(samples_strategy, st.integers(0, 59), st.integers(1, 5))
def test_exact_ap_monotone_when_a_hit_gains_confidence(rows, pick, gain):
    u, d, c = (np.array(x) for x in zip(*rows))
    c = c.astype(bool)
    hits = np.flatnonzero(c & (u >= 0.5))
    if len(hits) == 0:
        return
    i = hits[pick % len(hits)]
    d = d.astype(float)
    raised = d.copy()
    raised[i] += gain
    assert M.summarize(u, raised, c)["ap"] >= M.summarize(u, d, c)["ap"] - 1e-12


# ------------------------------------------------------------------------------------------------
# Breakdowns and bootstrap
# ------------------------------------------------------------------------------------------------

def table(n_pos_hit=3, n_pos_miss=1):
    rows = []
    for i in range(n_pos_hit + n_pos_miss):
        rows.append({"video": f"p{i}", "positive": True, "neg_type": "",
                     "size": ["small", "large", "huge", "huge"][i % 4],
                     "ciou": 0.8 if i < n_pos_hit else 0.1, "confidence": 0.9 - 0.1 * i})
    for i, kind in enumerate(["real", "real", "easy", "hard"]):
        rows.append({"video": f"n{i}", "positive": False, "neg_type": kind, "size": "",
                     "ciou": 0.0, "confidence": 0.05 + 0.2 * i})
    return pd.DataFrame(rows)


def test_size_breakdown_by_hand():
    out = M.size_breakdown(table())
    assert list(out.index) == list(M.SIZE_BUCKETS)
    assert out["n"].tolist() == [1, 0, 1, 2]
    assert out.loc["small", "locacc"] == 1.0 and np.isnan(out.loc["medium", "locacc"])
    assert out.loc["huge", "locacc"] == 0.5
    bad = table()
    bad.loc[0, "size"] = "tiny"
    with pytest.raises(ValueError, match="'p0' has size 'tiny'"):
        M.size_breakdown(bad)


def test_negative_type_breakdown_protocol():
    samples = table()
    out = M.negative_type_breakdown(samples, seed=7)
    assert list(out.index) == ["real", "easy", "hard"]
    assert out["n_neg"].tolist() == [2, 1, 1] and out["n_pos"].tolist() == [2, 1, 1]
    assert (out["seed"] == 7).all()
    # recompute "real" by hand with the documented draw
    pos = samples[samples.positive]
    chosen = pos.iloc[numpy_generator(7, 0, purpose="positives").permutation(len(pos))[:2]]
    sub = pd.concat([chosen, samples[samples.neg_type == "real"]])
    want = M.summarize(sub.ciou, sub.confidence, sub.positive.to_numpy(bool))
    assert out.loc["real", "max_f1"] == want["max_f1"] and out.loc["real", "ap"] == want["ap"]
    many = M.negative_type_breakdown(samples, seed=7, n_draws=5, mode="official")
    assert {"max_f1_std", "max_f1_min", "max_f1_max", "ap_std"} <= set(many.columns)
    assert (many["max_f1_min"] <= many["max_f1"]).all() and (many["max_f1"] <= many["max_f1_max"]).all()


def test_bootstrap_is_stratified_and_seeded():
    rng = np.random.default_rng(0)
    n = 400
    samples = pd.DataFrame({"positive": np.arange(n) < 200, "ciou": rng.random(n),
                            "confidence": rng.random(n)})
    a = M.bootstrap(samples, n_boot=200, seed=3)
    b = M.bootstrap(samples, n_boot=200, seed=3, batch=17)
    pd.testing.assert_frame_equal(a, b)
    assert list(a.index) == ["locacc", "ap", "max_f1"]
    assert (a["low"] <= a["estimate"] + 0.05).all() and (a["estimate"] - 0.05 <= a["high"]).all()
    assert (a["low"] < a["high"]).all()
    # all positives hit: every replicate (n_pos positives drawn from positives) has LocAcc 1
    samples["ciou"] = np.where(samples.positive, 0.9, 0.0)
    c = M.bootstrap(samples, ("locacc", "precision"), n_boot=50, mode="official")
    assert (c[["low", "high", "estimate"]] == 1.0).all().all()
    with pytest.raises(ValueError, match="unknown statistic"):
        M.bootstrap(samples, ("f2",))


def test_pr_curve_by_hand():
    # confidences 0.9 (hit), 0.8 (positive, missed localization), 0.8 (negative), 0.1 (hit)
    u = np.array([0.9, 0.2, 0.0, 0.7])
    d = np.array([0.9, 0.8, 0.8, 0.1])
    c = np.array([True, True, False, True])
    recall, precision = M.pr_curve(u, d, c)
    # thresholds 0.9, 0.8, 0.1: TP 1, 1, 2; detected 1, 3, 4; FN 2, 1, 0
    np.testing.assert_allclose(recall, [1 / 3, 1 / 2, 1.0])
    np.testing.assert_allclose(precision, [1.0, 1 / 3, 1 / 2])


def test_max_f1_operating_point_is_where_the_exact_max_f1_is_reached():
    """A hand example (δ* and its counts), then random sets with ties: F1(δ*) is summarize's max-F1."""
    u = np.array([0.9, 0.8, 0.1, 0.0, 0.3, 0.0])
    d = np.array([5.0, 4.0, 3.0, 2.0, 1.0, 0.5])
    c = np.array([True, True, True, False, True, False])
    point = M.max_f1_operating_point(u, d, c)
    # δ = 4: TP 2, FP 0, FN 2 -> F1 2/3; δ = 3: TP 2, FP 1, FN 1 -> 2/3 as well: the higher δ wins
    # (δ = 5: 0.4; δ = 2 and 1: 4/7; δ = 0.5: 0.5)
    assert point == pytest.approx({"threshold": 4.0, "f1": 2 / 3, "precision": 1.0, "recall": 0.5})
    rng = np.random.default_rng(0)
    for _ in range(100):
        n = int(rng.integers(3, 40))
        u, d, c = rng.random(n), np.round(rng.random(n), 1), rng.random(n) < 0.5
        c[0] = True
        point = M.max_f1_operating_point(u, d, c)
        assert point["threshold"] in set(d)
        assert point["f1"] == pytest.approx(M.summarize(u, d, c)["max_f1"], abs=1e-12)
