"""Profiles: every shipped YAML validates and resolves; bad input is refused with one line naming the
file and the key; a user's profile file reaches the notebooks whole and writes under its own name."""

import json
import os

import nbformat
import pytest

from vslrepro import pipeline
from vslrepro.config import ProfileError
from vslrepro.data.datasets import locate as dataset_config
from vslrepro.paths import PARAMS_DIR, REPO_ROOT
from vslrepro.profiles import PROFILES, load_profile, profile_argument

SMOKE = (PARAMS_DIR / "smoke.yaml").read_text()


def user_profile(tmp_path, text: str, name: str = "mine.yaml"):
    """A user's copy of a profile, named `mine` so that it may load (a copy named smoke may not)."""
    path = tmp_path / name
    path.write_text(text.replace("profile: smoke", "profile: mine"))
    return path


def refused(path) -> str:
    """The one-line message a bad profile file is refused with."""
    with pytest.raises(ProfileError) as error:
        load_profile(path)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    return message


@pytest.mark.parametrize("name", PROFILES)
def test_shipped_profiles_load_and_resolve(name):
    params = load_profile(name)
    assert params["profile"] == name and profile_argument(name) == name
    assert profile_argument(PARAMS_DIR / f"{name}.yaml") == name  # stage parameters stay the name
    for dataset in params["datasets"]:
        cfg = dataset_config(params, dataset)
        assert cfg.name == dataset and cfg.list_variant in (("249", "250") if dataset == "flickr" else (None,))


def test_quick_and_smoke_differ_only_in_budget():
    smoke, quick = load_profile("smoke"), load_profile("quick")
    assert smoke["input"] == quick["input"] and smoke["model"] == quick["model"]
    assert quick["train"]["epochs"] > smoke["train"]["epochs"]


def test_unknown_profile_names_the_file():
    with pytest.raises(FileNotFoundError, match="nonexistent.yaml"):
        load_profile("nonexistent")


def test_unknown_top_level_key(tmp_path):
    message = refused(user_profile(tmp_path, SMOKE + "learning_rate: 0.1\n"))
    assert "learning_rate: unknown key; allowed: data, datasets," in message


def test_unknown_method_key_is_refused_at_load_time(tmp_path):
    message = refused(user_profile(tmp_path, SMOKE.replace("    alpha: 0.4", "    ogl_aplha: 0.4")))
    assert "methods.ezvsl_ogl.ogl_aplha: unknown key; allowed: alpha," in message


def test_unknown_method_name(tmp_path):
    message = refused(user_profile(tmp_path, SMOKE.replace("  ezvsl:\n", "  ezvls:\n")))
    assert "methods.ezvls: unknown key (did you mean 'ezvsl'?)" in message


@pytest.mark.parametrize("old, new, key, allowed", [
    ("batch_size: 64", "batch_size: 0", "train.batch_size: 0", "an integer >= 1"),
    ("epochs: 4                  # fixed", "epochs: -3  # fixed", "train.epochs: -3", "an integer >= 1"),
    ("epochs: 4                  # fixed", "epochs: 4.0  # fixed", "train.epochs: 4.0", "an integer >= 1"),
    ("image_size: 56", "image_size: 0", "input.image_size: 0", "an integer >= 1"),
    ("iou_thr: 0.5", "iou_thr: 1.5", "evaluate.iou_thr: 1.5", "a number in [0, 1]"),
    ("lr: 0.0005", "lr: fast", "train.lr: 'fast'", "a number > 0"),
    ("tau: 0.03                # temperature (paper: 0.03)\n  ezvsl_ogl:", "tau: fast\n  ezvsl_ogl:",
     "methods.ezvsl.tau: 'fast'", "a number"),
    ("mode: exact", "mode: fast", "evaluate.mode: 'fast'", "one of 'exact', 'official'"),
    ("tau: 0.03                # temperature (paper: 0.03)\n  ezvsl_ogl:", "tau: 0\n  ezvsl_ogl:",
     "methods.ezvsl.tau: 0", "a number > 0"),
    ("dropout_img: 0.9", "dropout_img: 1.5", "methods.slavc.dropout_img: 1.5", "a number in [0, 1)"),
    ("alpha: 0.4", "alpha: -0.4", "methods.ezvsl_ogl.alpha: -0.4", "a number in [0, 1]"),
    ("margin: 5.0", "margin: 0", "methods.dmc.margin: 0", "a number > 0"),
    ("sample_rate: 8000", "sample_rate: 0", "input.sample_rate: 0", "an integer >= 1"),
])
def test_impossible_values(tmp_path, old, new, key, allowed):
    assert old in SMOKE
    message = refused(user_profile(tmp_path, SMOKE.replace(old, new, 1)))
    assert f"{key} is not allowed; allowed: {allowed}" in message


def test_empty_file(tmp_path):
    assert "the file is empty" in refused(user_profile(tmp_path, ""))


def test_malformed_yaml(tmp_path):
    message = refused(user_profile(tmp_path, SMOKE.replace("[flickr, vggss]", "[flickr, vggss", 1)))
    assert "not valid YAML" in message and "line 9" in message and "line 8" in message


def test_typo_in_a_required_key(tmp_path):
    message = refused(user_profile(tmp_path, SMOKE.replace("train:", "trian:")))
    assert "trian: unknown key (did you mean 'train'?)" in message and "train: missing" in message
    message = refused(user_profile(tmp_path, SMOKE.replace("  batch_size: 64", "  batch_sise: 64")))
    assert "train.batch_sise: unknown key (did you mean 'batch_size'?)" in message
    assert "train.batch_size: missing" in message


def test_real_data_needs_its_roots(tmp_path):
    message = refused(user_profile(tmp_path, SMOKE.replace("source: synthetic", "source: real")))
    assert "data.flickr: missing" in message and "data.vggss: missing" in message


def test_a_copy_cannot_take_a_shipped_profiles_name(tmp_path):
    path = tmp_path / "smoke.yaml"
    path.write_text(SMOKE.replace("n_boot: 200", "n_boot: 50"))
    assert "do not overwrite results/smoke/" in refused(path)


def test_a_user_profile_runs_whole_under_its_own_name(tmp_path, monkeypatch):
    """The notebooks get the user's file (absolute path), results go to results/mine/; the shipped
    profiles keep their name as the notebooks' parameter."""
    monkeypatch.setenv("VSLREPRO_RESULTS", str(tmp_path / "results"))
    path = user_profile(tmp_path, SMOKE.replace("n_boot: 200", "n_boot: 50"))
    ran = []

    def fake(stage, executed, log, threads):
        ran.append(stage)
        raise RuntimeError("not run in this test")

    pipeline.reproduce(str(path), only=["00"], log=lambda *_: None, execute=fake)
    assert [stage.parameters for stage in ran] == [{"profile": str(path)}]
    assert (tmp_path / "results" / "mine").is_dir() and not (tmp_path / "results" / "smoke").exists()
    assert {stage.parameters["profile"] for stage in pipeline.plan(load_profile("smoke"))} == {"smoke"}


def test_a_user_profile_reaches_the_notebook(tmp_path, monkeypatch, smoke_params):
    """01_testsets run by papermill on a user's file shows that file's profile name, backbone and
    datasets, and writes Table 1 under results/mine/ (about 10 s: one kernel, no training)."""
    monkeypatch.setenv("VSLREPRO_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
    path = user_profile(tmp_path, SMOKE.replace("[flickr, vggss]", "[vggss]", 1)
                        .replace("backbone: small", "backbone: resnet18"))
    stage = next(s for s in pipeline.plan(load_profile(path), profile_argument(path)) if s.key == "testsets")
    executed = tmp_path / "testsets.ipynb"
    pipeline.execute_notebook(stage, executed, tmp_path / "testsets.log")
    texts = [output.get("text", "") or json.dumps(output.get("data", {}))
             for cell in nbformat.read(executed, as_version=4).cells if cell.cell_type == "code"
             for output in cell.outputs]
    assert any("profile mine: data synthetic, backbone resnet18" in text for text in texts)
    assert any("'vggss'" in text and "'flickr'" not in text for text in texts if "{" in text)
    assert (tmp_path / "results" / "mine" / "tables" / "table1.csv").is_file()
    assert not (tmp_path / "results" / "smoke").exists()


def test_hyperparameter_ranges_name_parameters_the_method_takes():
    """A range on a parameter `__init__` does not take is a programming error, caught at schema build."""
    from vslrepro.config import hyperparameter_schema as method_schema
    from vslrepro.methods import LocalizationMethod

    class Misnamed(LocalizationMethod):
        hyperparameter_ranges = {"tua": {"exclusiveMinimum": 0}}

        def __init__(self, tau: float = 0.1) -> None:
            super().__init__()

    with pytest.raises(TypeError, match=r"names \['tua'\]"):
        method_schema(Misnamed)
