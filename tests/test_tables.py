"""Tests of vslrepro.tables on small handmade indexes and a tiny synthetic long per-sample table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vslrepro import metrics
from vslrepro import tables as T


def index(sizes, neg_types):
    rows = [{"video": f"p{i}", "positive": True, "size": s, "neg_type": ""} for i, s in enumerate(sizes)]
    rows += [{"video": f"n{i}", "positive": False, "size": "", "neg_type": t}
             for i, t in enumerate(neg_types)]
    return pd.DataFrame(rows)


def test_table1_counts_by_hand():
    a = index(["small", "medium", "medium", "huge"], ["real", "easy", "easy", "hard"])
    out = T.table1({"Set A": a})
    assert list(out.columns) == list(T.TABLE1_COLUMNS)
    assert out.loc["Set A"].tolist() == [1, 2, 0, 1, 4, 1, 2, 1, 4, 8]
    assert all(dtype.kind == "i" for dtype in out.dtypes)
    b = index(["large"], ["automated", "real"])
    both = T.table1({"Set A": a, "Set B": b})
    assert list(both.columns) == [*T.TABLE1_COLUMNS[:8], "Automated Neg (class unknown)",
                                  "Total Neg", "Total"]
    assert both.loc["Set B"].tolist() == [0, 0, 1, 0, 1, 1, 0, 0, 1, 2, 3]
    assert both.loc["Set A", "Automated Neg (class unknown)"] == 0


def test_table1_rejects_unknown_labels():
    with pytest.raises(ValueError, match="'Set A': 'p0' has size 'tiny'"):
        T.table1({"Set A": index(["tiny"], [])})
    with pytest.raises(ValueError, match="'n0' has neg_type 'silent'"):
        T.table1({"Set A": index(["small"], ["silent"])})


def run(dataset, method, checkpoint, ciou, conf, neg_conf, neg_types=("real", "real", "easy", "hard")):
    n_pos = len(ciou)
    return pd.DataFrame({
        "dataset": dataset, "method": method, "checkpoint": checkpoint,
        "video": [f"p{i}" for i in range(n_pos)] + [f"n{i}" for i in range(len(neg_conf))],
        "positive": [True] * n_pos + [False] * len(neg_conf),
        "neg_type": [""] * n_pos + list(neg_types), "size": ["huge"] * n_pos + [""] * len(neg_conf),
        "ciou": list(ciou) + [0.0] * len(neg_conf), "confidence": list(conf) + list(neg_conf)})


@pytest.fixture()
def long():
    negs = [0.5, 0.4, 0.3, 0.2]
    return pd.concat([
        run("flickr", "ezvsl", "best", [0.9, 0.6, 0.2, 0.1], [0.9, 0.8, 0.7, 0.6], negs),
        run("flickr", "ezvsl", "latest", [0.9, 0.1, 0.2, 0.1], [0.9, 0.8, 0.7, 0.6], negs),
        run("flickr", "center", "none", [0.6] * 4, [0.5] * 4, [0.7, 0.3, 0.2, 0.6]),
        run("vggss", "ezvsl", "latest", [0.6, 0.6, 0.6, 0.6], [0.9, 0.8, 0.7, 0.6], negs),
    ], ignore_index=True)


def test_table2_values(long):
    out = T.table2(long)
    assert list(out.index) == ["EZ-VSL", "Centre prior"]
    assert list(out.columns) == [("Flickr-SoundNet", "Early Stop"), ("Flickr-SoundNet", "NO Early Stop"),
                                 ("VGG-SS", "Early Stop"), ("VGG-SS", "NO Early Stop")]
    assert out.loc["EZ-VSL", ("Flickr-SoundNet", "Early Stop")] == 50.0
    assert out.loc["EZ-VSL", ("Flickr-SoundNet", "NO Early Stop")] == 25.0
    assert out.loc["Centre prior", ("Flickr-SoundNet", "Early Stop")] == 100.0   # "none" fills both
    assert out.loc["Centre prior", ("Flickr-SoundNet", "NO Early Stop")] == 100.0
    assert np.isnan(out.loc["EZ-VSL", ("VGG-SS", "Early Stop")])                 # no best checkpoint
    assert np.isnan(out.loc["Centre prior", ("VGG-SS", "NO Early Stop")])


def test_table3_values(long):
    out = T.table3(long)
    assert out.shape == (2, 6)
    # EZ-VSL latest: (R, P) = (1/4, 1) (1/3, 1/2) (1/2, 1/3) (1, 1/4) then negatives at R = 1
    ap = 1 / 4 + (1 / 12) * (1 / 2) + (1 / 6) * (1 / 3) + (1 / 2) * (1 / 4)
    assert out.loc["EZ-VSL", ("Extended Flickr-SoundNet", "AP")] == pytest.approx(100 * ap)
    assert out.loc["EZ-VSL", ("Extended Flickr-SoundNet", "max-F1")] == pytest.approx(40.0)
    assert out.loc["EZ-VSL", ("Extended Flickr-SoundNet", "Precision")] == 25.0
    # every positive above every negative and localized: perfect
    assert out.loc["EZ-VSL", ("Extended VGG-SS", "AP")] == pytest.approx(100.0)
    official = T.table3(long, mode="official")
    rows = long[(long.method == "ezvsl") & (long.checkpoint == "latest") & (long.dataset == "flickr")]
    want = metrics.summarize(rows.ciou, rows.confidence, rows.positive.to_numpy(bool), mode="official")
    assert official.loc["EZ-VSL", ("Extended Flickr-SoundNet", "AP")] == 100 * want["ap"]
    # the best checkpoint on request
    best = T.table3(long, checkpoint="best")
    assert best.loc["EZ-VSL", ("Extended Flickr-SoundNet", "Precision")] == 50.0


def test_table4_values(long):
    out = T.table4(long)
    assert list(out.columns.get_level_values("Metric")[:3]) == ["Real Neg", "Automated Easy Neg",
                                                                 "Automated Hard Neg"]
    # Centre prior (all positives: cIoU .6, confidence .5):
    # real: negatives .7/.3 + 2 positives -> best δ = .5: P = 2/3, R = 1 -> F1 = .8
    # easy: negative .2 + 1 positive -> F1 = 1; hard: negative .6 + 1 positive -> P = 1/2, R = 1
    row = out.loc["Centre prior"]
    assert row[("Extended Flickr-SoundNet", "Real Neg")] == pytest.approx(80.0)
    assert row[("Extended Flickr-SoundNet", "Automated Easy Neg")] == pytest.approx(100.0)
    assert row[("Extended Flickr-SoundNet", "Automated Hard Neg")] == pytest.approx(200 / 3)
    assert out.attrs["seed"] == 0
    many = T.table4(long, n_draws=4, seed=1)
    assert many.attrs["std"].shape == many.shape
    assert many.loc["Centre prior", ("Extended Flickr-SoundNet", "Real Neg")] == pytest.approx(80.0)


def test_missing_columns_are_named(long):
    with pytest.raises(ValueError, match="checkpoint"):
        T.table2(long.drop(columns="checkpoint"))
    with pytest.raises(ValueError, match="confidence_topk_mean"):
        T.table3(long, score="confidence_topk_mean")


def test_paper_values_transcribed():
    ref = T.paper_values()
    def value(table, method, dataset, column):
        row = ref[(ref.table == table) & (ref.method == method) & (ref.dataset == dataset)
                  & (ref.column == column)]
        assert len(row) == 1
        return row.iloc[0]
    assert value(3, "ezvsl", "flickr", "AP").value == 46.30
    assert value(3, "ezvsl_ogl_slavc", "vggss", "Precision").value == 37.86  # SLAVC test.py's fusion
    assert value(2, "ezvsl_ogl", "vggss", "NO Early Stop").value == 37.86     # EZ-VSL test.py's fusion
    assert value(3, "coarsetofine", "vggss", "AP").value == 0.0
    assert value(4, "dmc", "flickr", "Automated Hard Neg").value == 43.70
    star = value(2, "attention10k", "vggss", "Early Stop")
    assert star.value == 18.52 and "18.50" in star.note
    assert value(1, "", "Extended VGG-SS", "Total").value == 10316
    # "-" in the paper: no row
    assert ref[(ref.table == 2) & (ref.method == "coarsetofine") & (ref.column == "Early Stop")].empty
    assert ref.groupby("table").size().to_dict() == {1: 40, 2: 28, 3: 42, 4: 30}


def test_with_paper_values_side_by_side(long):
    out = T.with_paper_values(T.table3(long), 3)
    assert out.columns.names == ["Dataset", "Metric", "Source"]
    assert out.loc["EZ-VSL", ("Extended Flickr-SoundNet", "AP", "paper")] == 46.30
    assert out.loc["EZ-VSL", ("Extended Flickr-SoundNet", "AP", "ours")] == T.table3(long).loc[
        "EZ-VSL", ("Extended Flickr-SoundNet", "AP")]
    assert np.isnan(out.loc["DSOL", ("Extended Flickr-SoundNet", "AP", "ours")])
    assert list(out.index) == ["CoarsetoFine", "LVS", "Attention10k", "DMC", "DSOL", "EZ-VSL",
                               "EZ-VSL + OGL (SLAVC)", "Centre prior"]  # Table 3's order, then ours
    assert out.loc["EZ-VSL + OGL (SLAVC)", ("Extended VGG-SS", "Precision", "paper")] == 37.86
    t2 = T.with_paper_values(T.table2(long), 2)
    assert any("18.50 reported in the LVS paper" in n for n in t2.attrs["notes"])
    assert np.isnan(t2.loc["HardPos", ("Flickr-SoundNet", "NO Early Stop", "paper")])
    t1 = T.with_paper_values(T.table1({"Ours": index(["huge"], ["real"])}), 1)
    assert t1.loc["Paper: Extended Flickr-SoundNet", "Real Neg"] == 42
    with pytest.raises(ValueError, match="table_id"):
        T.with_paper_values(T.table3(long), 5)


def test_export_writes_three_files(long, tmp_path):
    table = T.with_paper_values(T.table2(long), 2)
    paths = T.export(table, tmp_path / "tables" / "table2", caption="Table 2: LocAcc & early stopping")
    assert sorted(paths) == ["csv", "md", "tex"] and all(p.exists() for p in paths.values())
    back = pd.read_csv(paths["csv"], header=[0, 1, 2], index_col=0)
    assert back.shape == table.shape
    md = paths["md"].read_text()
    assert md.startswith("Table 2: LocAcc & early stopping")
    assert "| EZ-VSL" in md and "79.60" in md and "–" in md
    tex = paths["tex"].read_text()
    assert r"\toprule" in tex and r"\caption{Table 2: LocAcc \& early stopping}" in tex
    assert "50.00" in tex and "EZ-VSL + OGL" in tex
    t1 = T.export(T.table1({"Ours": index(["huge"], ["real"])}), tmp_path / "table1")
    assert "| Ours" in t1["md"].read_text()
