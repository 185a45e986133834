"""Tests of vslrepro.data.builder: the extended-set recipe (docs/protocol.md §9), csv round trip."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vslrepro.data.builder import build_extended_testset, write_extended_csv
from vslrepro.data.errors import DataError
from vslrepro.data.testsets import extended_testset


def _positives(n: int, n_classes: int, prefix: str = "p") -> pd.DataFrame:
    return pd.DataFrame({"id": [f"{prefix}{i:04d}" for i in range(n)],
                         "class": [f"class {i % n_classes}" for i in range(n)]})


def _check_recipe(out: pd.DataFrame, positives: pd.DataFrame, real: list[str], hard_fraction: float,
                  pool: pd.DataFrame | None = None) -> None:
    """Every invariant of the recipe, checked row by row (a second, plain reading of the rules)."""
    pool = positives if pool is None else pool
    cls = dict(zip(positives["id"], positives["class"])) | dict(zip(pool["id"], pool["class"]))
    assert list(out.columns) == ["video", "audio", "label"]
    assert len(out) == len(positives)
    assert (out["label"] == "non-sounding").all()
    assert list(out["video"][: len(real)]) == real and list(out["audio"][: len(real)]) == real
    auto = out.iloc[len(real):]
    assert auto["video"].is_unique  # each positive frame used at most once
    assert set(auto["video"]) <= set(positives["id"])
    assert set(auto["audio"]) <= set(pool["id"])
    assert (auto["video"] != auto["audio"]).all()  # always another clip's audio
    hard = sum(cls[v] == cls[a] for v, a in zip(auto["video"], auto["audio"]))
    assert hard == round(hard_fraction * len(auto))


def test_recipe_counts_and_types():
    positives, real = _positives(40, 4), [f"r{i}" for i in range(8)]
    out = build_extended_testset(positives, real, seed=3)
    _check_recipe(out, positives, real, 0.25)
    cls = dict(zip(positives["id"], positives["class"]))
    auto = out.iloc[8:]
    same = [cls[v] == cls[a] for v, a in zip(auto["video"], auto["audio"])]
    assert sum(same) == 8 and len(same) - sum(same) == 24  # 25 % of 32 hard, 75 % easy


def test_seeded_and_deterministic():
    positives = _positives(60, 5)
    first = build_extended_testset(positives, ["r1"], seed=7)
    again = build_extended_testset(positives, ["r1"], seed=7)
    other = build_extended_testset(positives, ["r1"], seed=8)
    pd.testing.assert_frame_equal(first, again)
    assert not first.equals(other)


def test_audio_pool_is_used_instead_of_positives():
    positives, pool = _positives(30, 3), _positives(50, 3, prefix="a")
    out = build_extended_testset(positives, [], seed=0, audio_pool=pool)
    _check_recipe(out, positives, [], 0.25, pool)
    assert set(out["audio"]) <= set(pool["id"])


def test_singleton_class_gives_no_hard_negative_but_others_do():
    positives = pd.concat([_positives(20, 2), pd.DataFrame({"id": ["lonely"], "class": ["rare"]})],
                          ignore_index=True)
    for seed in range(5):
        out = build_extended_testset(positives, [], seed=seed, hard_fraction=0.5)
        _check_recipe(out, positives, [], 0.5)
        row = out[out["video"] == "lonely"]
        if len(row):  # it can only have been used as an easy negative
            assert positives.set_index("id").loc[row["audio"].iloc[0], "class"] != "rare"


def test_hard_impossible_raises():
    positives = pd.DataFrame({"id": ["a", "b", "c", "d"], "class": ["w", "x", "y", "z"]})
    with pytest.raises(DataError, match="hard negatives"):
        build_extended_testset(positives, [], seed=0)
    single_class = _positives(8, 1)
    with pytest.raises(DataError, match="easy negatives"):
        build_extended_testset(single_class, [], seed=0)


@pytest.mark.parametrize(
    ("positives", "real", "match"),
    [
        (_positives(3, 2), ["r1", "r2", "r3", "r4"], "4 real negatives for 3 positives"),
        (pd.DataFrame({"id": ["a", "a", "b"], "class": ["x", "y", "x"]}), [], r"positives: duplicate id.*'a'"),
        (_positives(6, 2), ["r1", "r1"], r"real_negatives: duplicate id.*'r1'"),
        (_positives(6, 2), ["p0001"], r"p0001.*also positives"),
        (pd.DataFrame({"id": ["a", "b"]}), [], "missing column"),
        (pd.DataFrame({"id": ["a", None], "class": ["x", "y"]}), [], "row 1 has an empty id"),
    ],
)
def test_bad_input_raises(positives, real, match):
    with pytest.raises(DataError, match=match):
        build_extended_testset(positives, real, seed=0)


def test_bad_hard_fraction():
    with pytest.raises(ValueError, match="hard_fraction"):
        build_extended_testset(_positives(6, 2), [], seed=0, hard_fraction=1.5)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 60), n_classes=st.integers(2, 8), n_real=st.integers(0, 10),
       hard_fraction=st.sampled_from([0.0, 0.25, 0.5, 1.0]), seed=st.integers(0, 2**32 - 1))
def test_recipe_invariants_property(n, n_classes, n_real, hard_fraction, seed):
    positives, real = _positives(n, n_classes), [f"r{i}" for i in range(min(n_real, n))]
    n_hard = round(hard_fraction * (n - len(real)))
    sizes = positives["class"].value_counts()
    can_be_hard = int(sizes[sizes >= 2].sum())  # frames whose class has another clip
    if n_hard > can_be_hard:
        with pytest.raises(DataError, match="hard negatives"):
            build_extended_testset(positives, real, seed=seed, hard_fraction=hard_fraction)
        return
    out = build_extended_testset(positives, real, seed=seed, hard_fraction=hard_fraction)
    _check_recipe(out, positives, real, hard_fraction)


def test_write_csv_format(tmp_path):
    df = pd.DataFrame({"video": ["a", "b"], "audio": ["a", "c"], "label": ["non-sounding"] * 2})
    path = write_extended_csv(df, tmp_path / "meta" / "x_test_plus_silent.csv")
    assert path.read_bytes() == b"video,audio,label\na,a,non-sounding\nb,c,non-sounding\n"
    with pytest.raises(DataError, match="missing column"):
        write_extended_csv(df.drop(columns="audio"), tmp_path / "y.csv")
    with pytest.raises(DataError, match="row 1 has an empty value"):
        write_extended_csv(df.assign(audio=["a", ""]), tmp_path / "y.csv")


def test_round_trip_through_extended_testset(tmp_path):
    """extended_testset reading the written csv gives exactly the built pairs and negative types."""
    rng = np.random.default_rng(0)
    positives = _positives(48, 4, prefix="vid")
    real = [f"neg{i}" for i in range(7)]
    meta = tmp_path / "metadata"
    meta.mkdir()
    entries = [{"file": clip, "class": label, "bbox": [[0.1, 0.2, 0.6, float(rng.uniform(0.5, 0.9))]]}
               for clip, label in zip(positives["id"], positives["class"])]
    (meta / "vggss.json").write_text(json.dumps(entries))
    (meta / "vggss_test.csv").write_text("".join(f"{clip}\n" for clip in positives["id"]))
    classes = pd.concat([positives, pd.DataFrame({"id": real, "class": "class 0"})])
    classes.to_csv(meta / "classes.csv", index=False)
    built = build_extended_testset(positives, real, seed=11)
    write_extended_csv(built, meta / "vggss_test_plus_silent.csv")

    index = extended_testset("vggss", tmp_path)
    negatives = index[~index["positive"]].reset_index(drop=True)
    assert list(zip(negatives["video"], negatives["audio"])) == list(zip(built["video"], built["audio"]))
    cls = dict(zip(classes["id"], classes["class"]))
    expected = ["real" if v == a else ("hard" if cls[v] == cls[a] else "easy")
                for v, a in zip(built["video"], built["audio"])]
    assert list(negatives["neg_type"]) == expected
    counts = negatives["neg_type"].value_counts().to_dict()
    assert counts == {"real": 7, "hard": 10, "easy": 31}  # 41 automated: round(10.25) hard
    assert index["positive"].sum() == 48
