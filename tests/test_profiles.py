"""Profiles: every shipped YAML parses and resolves; bad input names the file."""

import pytest

from vslrepro.paths import PARAMS_DIR
from vslrepro.profiles import PROFILES, dataset_config, load_profile


@pytest.mark.parametrize("name", PROFILES)
def test_shipped_profiles_load_and_resolve(name):
    params = load_profile(name)
    assert params["profile"] == name
    for dataset in params["datasets"]:
        cfg = dataset_config(params, dataset)
        assert cfg.name == dataset and cfg.flickr_list in ("249", "250")


def test_quick_and_smoke_differ_only_in_budget():
    smoke, quick = load_profile("smoke"), load_profile("quick")
    assert smoke["input"] == quick["input"] and smoke["model"] == quick["model"]
    assert quick["train"]["epochs"] > smoke["train"]["epochs"]


def test_unknown_profile_names_the_file():
    with pytest.raises(FileNotFoundError, match="nonexistent.yaml"):
        load_profile("nonexistent")


def test_missing_key_is_reported(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text((PARAMS_DIR / "smoke.yaml").read_text().replace("train:", "training:"))
    with pytest.raises(ValueError, match="missing top-level key 'train'"):
        load_profile(path)


def test_unknown_dataset_is_rejected():
    with pytest.raises(ValueError, match="unknown dataset"):
        dataset_config(load_profile("smoke"), "audioset")
