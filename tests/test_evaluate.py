"""The evaluate stage on data in the community layout given as a `real` profile: per-sample CSV,
bad media as a clear error or — on request — a recorded skip, never a substitution."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
import yaml

from vslrepro import stages
from vslrepro.data.errors import DataError
from vslrepro.profiles import synthetic_root


@pytest.fixture
def real_profile(tmp_path, smoke_params):
    """The smoke Flickr-like set copied elsewhere and described the way a user describes real data."""
    root = tmp_path / "Flickr"
    shutil.copytree(synthetic_root(smoke_params) / "flickr", root)
    params = {**smoke_params, "profile": "userdata", "datasets": ["flickr"],
              "methods": {}, "references": {"center": {}, "random": {}},
              "data": {"source": "real", "flickr_list": "250",
                       "flickr": {"train_root": str(root), "train_list": "metadata/flickr_train.txt",
                                  "test_root": str(root), "metadata_root": str(root),
                                  "val": "metadata/flickr_val.csv"}}}
    path = tmp_path / "userdata.yaml"
    path.write_text(yaml.safe_dump(params))
    return path, root


def test_reference_rows_on_user_data(real_profile, tmp_path, monkeypatch):
    profile, _ = real_profile
    monkeypatch.setenv("VSLREPRO_RESULTS", str(tmp_path / "results"))
    path = stages.evaluate(profile, "flickr", "center", "none", progress=False)
    samples = pd.read_csv(path, keep_default_na=False)
    assert len(samples) == 192 and samples["positive"].sum() == 96
    assert {"ciou", "confidence", "confidence_max", "confidence_topk_mean"} <= set(samples.columns)
    assert samples.loc[~samples["positive"], "ciou"].eq(0).all()  # negatives have no ground truth
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["flickr_list"] == "250" and meta["skipped"] == 0


def test_missing_wav_is_named_or_skipped_on_request(real_profile, tmp_path, monkeypatch):
    profile, root = real_profile
    monkeypatch.setenv("VSLREPRO_RESULTS", str(tmp_path / "results"))
    index = pd.read_csv(root / "metadata" / "flickr_test.csv", header=None, dtype=str)
    victim = index.iloc[5, 0]
    (root / "audio" / f"{victim}.wav").unlink()
    with pytest.raises(DataError, match=f"{victim}.wav"):
        stages.evaluate(profile, "flickr", "center", "none", progress=False)
    path = stages.evaluate(profile, "flickr", "center", "none", progress=False, skip_bad=True)
    samples = pd.read_csv(path, keep_default_na=False, dtype={"video": str, "audio": str})
    assert victim not in set(samples["audio"])  # every row that needs the file is left out ...
    log = tmp_path / "results" / "userdata" / "skipped" / path.name  # its own place, not samples/
    skipped = pd.read_csv(log, dtype=str)
    assert (skipped["id"] == victim).all() and skipped["file"].str.endswith(f"audio/{victim}.wav").all()
    assert len(samples) + len(skipped) == 192  # ... and listed, nothing substituted
    record = json.loads(path.with_suffix(".json").read_text())
    assert (record["listed"], record["evaluated"], record["skipped"]) == (192, len(samples), len(skipped))
    assert sorted(p.name for p in path.parent.iterdir()) == ["flickr_center_none.csv", "flickr_center_none.json"]


def test_tables_after_a_skip_build_and_state_the_skipped_count(real_profile, tmp_path, monkeypatch):
    """`evaluate --skip-bad` on a damaged copy, then `tables`: they build and say what was left out."""
    from vslrepro.__main__ import main

    profile, root = real_profile
    monkeypatch.setenv("VSLREPRO_RESULTS", str(tmp_path / "results"))
    victim = pd.read_csv(root / "metadata" / "flickr_test.csv", header=None, dtype=str).iloc[7, 0]
    (root / "frames" / f"{victim}.jpg").write_bytes(b"not a jpeg")
    for method in ("center", "random"):
        assert main(["evaluate", "--profile", str(profile), "--dataset", "flickr", "--method", method,
                     "--checkpoint", "none", "--skip-bad"]) == 0
    assert main(["tables", "--profile", str(profile)]) == 0
    tables = tmp_path / "results" / "userdata" / "tables"
    rows = 192 - len(pd.read_csv(tmp_path / "results" / "userdata" / "samples" / "flickr_center_none.csv"))
    assert rows >= 1
    for name in ("table2", "table3", "table4"):
        text = (tables / f"{name}.md").read_text()
        assert f"Centre prior / none: {rows} of 192 listed samples were left out" in text, text
