"""The evaluate stage on data in the community layout given as a `real` profile: per-sample CSV,
bad media as a clear error naming the sample or — on request — a recorded gap ("N of M"), never a
substitution; training on a list with missing media likewise."""

from __future__ import annotations

import hashlib
import json
import shutil

import pandas as pd
import pytest
import yaml

from vslrepro import factory, layout, stages
from vslrepro.data.datasets import synthetic_root
from vslrepro.data.errors import IncompleteDataError


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
    assert meta["list_variant"] == "250" and meta["skipped"] == 0
    assert meta["complete"] is True and meta["left_out"] == []


def test_missing_wav_is_named_or_skipped_on_request(real_profile, tmp_path, monkeypatch):
    profile, root = real_profile
    monkeypatch.setenv("VSLREPRO_RESULTS", str(tmp_path / "results"))
    index = pd.read_csv(root / "metadata" / "flickr_test.csv", header=None, dtype=str)
    victim = index.iloc[5, 0]
    (root / "audio" / f"{victim}.wav").unlink()
    with pytest.raises(IncompleteDataError, match=f"id {victim}.*--allow-incomplete") as refused:
        stages.evaluate(profile, "flickr", "center", "none", progress=False)
    assert f"{victim}.wav" in str(refused.value) and not (tmp_path / "results").exists()
    path = stages.evaluate(profile, "flickr", "center", "none", progress=False, allow_incomplete=True)
    samples = pd.read_csv(path, keep_default_na=False, dtype={"video": str, "audio": str})
    assert victim not in set(samples["audio"])  # every row that needs the file is left out ...
    log = tmp_path / "results" / "userdata" / "skipped" / path.name  # its own place, not samples/
    skipped = pd.read_csv(log, dtype=str)
    assert (skipped["id"] == victim).all() and skipped["file"].str.endswith(f"audio/{victim}.wav").all()
    assert len(samples) + len(skipped) == 192  # ... and listed, nothing substituted
    record = json.loads(path.with_suffix(".json").read_text())
    assert (record["listed"], record["evaluated"], record["skipped"]) == (192, len(samples), len(skipped))
    assert record["complete"] is False and record["left_out"] == [victim]
    assert sorted(p.name for p in path.parent.iterdir()) == ["flickr_center_none.csv", "flickr_center_none.json"]


def test_tables_after_a_skip_build_and_state_the_coverage(real_profile, tmp_path, monkeypatch, capsys):
    """An unreadable frame: `evaluate` refuses, naming the sample and the option; with
    `--allow-incomplete` (or the profile's `evaluate.allow_incomplete`, or the old `--skip-bad`)
    it runs, and `tables` say "N of M" under every table."""
    from vslrepro.__main__ import main

    profile, root = real_profile
    monkeypatch.setenv("VSLREPRO_RESULTS", str(tmp_path / "results"))
    victim = pd.read_csv(root / "metadata" / "flickr_test.csv", header=None, dtype=str).iloc[7, 0]
    (root / "frames" / f"{victim}.jpg").write_bytes(b"not a jpeg")
    command = ["evaluate", "--profile", str(profile), "--dataset", "flickr", "--checkpoint", "none"]
    assert main([*command, "--method", "center"]) == 2
    error = capsys.readouterr().err
    assert f"{victim}.jpg" in error and "--allow-incomplete" in error, error
    assert main([*command, "--method", "center", "--allow-incomplete"]) == 0
    assert main([*command, "--method", "random", "--skip-bad"]) == 0  # the former name still works
    allowing = yaml.safe_load(profile.read_text())
    allowing["evaluate"]["allow_incomplete"] = True
    profile.write_text(yaml.safe_dump(allowing))
    assert main([*command, "--method", "random"]) == 0  # the profile allows it
    assert main(["tables", "--profile", str(profile)]) == 0
    tables = tmp_path / "results" / "userdata" / "tables"
    evaluated = len(pd.read_csv(tmp_path / "results" / "userdata" / "samples" / "flickr_center_none.csv"))
    assert evaluated < 192
    for name in ("table2", "table3", "table4", "intervals"):
        text = (tables / f"{name}.md").read_text()
        for method in ("Centre prior", "Random map"):
            assert f"flickr / {method} / none: evaluated on {evaluated} of 192 listed samples" in text, text
        assert f"(ids {victim}" in text


def test_training_on_a_list_with_missing_media_only_on_request(real_profile, tmp_path, monkeypatch):
    """A training clip without its WAV: training stops naming it; `allow_incomplete` trains on the
    others and run.json records the list used and its counts; the run folder does not depend on
    the permission; resuming or finding the run with another list of clips is refused."""
    # Random image-encoder init: this profile has no synthetic object set to pretrain a prior on.
    monkeypatch.setattr(factory, "image_weights", lambda params, device=None: None)
    monkeypatch.setenv("VSLREPRO_CACHE", str(tmp_path / "cache"))
    profile, root = real_profile
    params = yaml.safe_load(profile.read_text())
    params["train"]["epochs"] = 1
    profile.write_text(yaml.safe_dump(params))
    ids = (root / "metadata" / "flickr_train.txt").read_text().split()
    victim = ids[3]
    (root / "audio" / f"{victim}.wav").unlink()
    out = tmp_path / "run"
    with pytest.raises(IncompleteDataError, match=f"1 of {len(ids)} training clips.*id {victim}.*--allow-incomplete"):
        stages.train(profile, "flickr", "ezvsl", out=out, progress=False)
    assert not (out / "latest.pt").exists()

    run = stages.train(profile, "flickr", "ezvsl", out=out, progress=False, allow_incomplete=True)
    record = json.loads((run / "run.json").read_text())
    assert record["params"]["train"]["allow_incomplete"] is True
    train = record["data"]["train"]
    counts = (train["listed"], train["used"], train["left_out"], train["left_out_ids"])
    assert counts == (len(ids), len(ids) - 1, 1, [victim])
    used = (run / train["used_list"]).read_text().split()
    assert used == [i for i in ids if i != victim]
    assert train["used_sha256"] == hashlib.sha256("\n".join(used).encode()).hexdigest()
    assert pd.read_csv(run / train["skip_log"], dtype=str)["id"].tolist() == [victim]
    assert record["data"]["validation"]["left_out"] == 0
    allowing = {**params, "train": {**params["train"], "allow_incomplete": True}}
    assert layout.run_key(allowing, "ezvsl") == layout.run_key(params, "ezvsl")

    shutil.copy(root / "audio" / f"{ids[0]}.wav", root / "audio" / f"{victim}.wav")  # the list used changes
    with pytest.raises(RuntimeError, match="another list of clips"):
        stages.train(profile, "flickr", "ezvsl", out=out, progress=False, allow_incomplete=True)
