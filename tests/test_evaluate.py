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
    skipped = pd.read_csv(path.with_name(path.stem + ".skipped.csv"), dtype=str)
    assert (skipped["id"] == victim).all() and skipped["file"].str.endswith(f"audio/{victim}.wav").all()
    assert len(samples) + len(skipped) == 192  # ... and listed, nothing substituted
    assert json.loads(path.with_suffix(".json").read_text())["skipped"] == len(skipped)
