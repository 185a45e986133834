"""Profiles: one YAML file fixes data, backbones, epochs and budgets.

`load_profile("quick")` (or a path to any YAML file) returns the parsed file as a plain dict, checked
against the schema in `vslrepro.params_schema`: a typo, a wrong type or an impossible value stops
with one `ProfileError` line naming the file and the key. `dataset_config(profile, name)` resolves
where one dataset's media and metadata live, for the embedded synthetic benchmark and for real data
in the community layout alike, so every later stage reads one structure.

A profile is named by its own `profile:` value: results go to `results/<profile>/`, training runs
to `<cache>/runs/<profile>/`, the object prior to `<cache>/objectprior/<profile>-seed<seed>.pt`.
No file may take the name of another file's profile in `params/` (a copy of smoke.yaml would
overwrite `results/smoke/`). The pipeline hands each notebook `profile_argument(file)`, which loads
that same file again: a profile in `params/` by its name, any other file by its absolute path.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from vslrepro.data.testsets import DATASETS
from vslrepro.params_schema import ProfileError, validate
from vslrepro.paths import PARAMS_DIR, synthetic_data_dir

PROFILES = ("smoke", "quick", "paper")


def profile_path(profile: str | Path) -> Path:
    """`params/<profile>.yaml` for a profile name; a path ending in .yaml/.yml as it is (made absolute)."""
    path = Path(profile)
    return path.absolute() if path.suffix in (".yaml", ".yml") else PARAMS_DIR / f"{profile}.yaml"


def profile_argument(profile: str | Path) -> str:
    """What a notebook receives to load this profile: the name of a file in `params/` (so the
    shipped profiles' stage parameters do not depend on where the repository lives), else the
    file's absolute path."""
    path = profile_path(profile)
    return path.stem if path.resolve() == (PARAMS_DIR / f"{path.stem}.yaml").resolve() else str(path)


def load_profile(profile: str | Path) -> dict[str, Any]:
    """Parse and check `params/<profile>.yaml` (or a YAML path) into a dict.

    Raises:
        FileNotFoundError: naming the file and the profiles that exist.
        ProfileError: (a ValueError) one line naming the file and what is wrong: malformed YAML, an
            empty file, a key missing, unknown or of the wrong type or value (`params_schema`), or
            the name of a profile in `params/` taken by another file.
    """
    path = profile_path(profile)
    if not path.is_file():
        known = sorted(p.stem for p in PARAMS_DIR.glob("*.yaml"))
        raise FileNotFoundError(f"profile file {path} not found (known profiles: {known})")
    try:
        params = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ProfileError(f"{path}: not valid YAML: {_yaml_problem(error)}") from None
    if params is None:
        raise ProfileError(f"{path}: the file is empty; a profile is a YAML mapping (see params/smoke.yaml)")
    validate(params, path)
    taken = PARAMS_DIR / f"{params['profile']}.yaml"
    if taken.is_file() and taken.resolve() != path.resolve():
        raise ProfileError(f"{path}: profile: {params['profile']!r} is the name of {taken}; give this file its "
                           f"own profile: name so that its results do not overwrite results/{params['profile']}/")
    return params


def _yaml_problem(error: yaml.YAMLError) -> str:
    """A YAML parse error on one line: what, where, and while parsing what (if known)."""
    def at(mark) -> str:
        return f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""

    problem = getattr(error, "problem", None)
    if not problem:
        return " ".join(str(error).split())
    context = getattr(error, "context", None)
    within = f" ({context}{at(getattr(error, 'context_mark', None))})" if context else ""
    return f"{problem}{at(getattr(error, 'problem_mark', None))}{within}"


@dataclass(frozen=True)
class DatasetConfig:
    """Where one dataset lives.

    Attributes:
        name: "flickr" or "vggss".
        train_root: folder with frames/ and audio/ of the training clips.
        train_list: file with one training id per line.
        test_root: folder with frames/ and audio/ of the (extended) test clips.
        metadata_root: folder holding metadata/ (and Annotations/ for Flickr).
        val_list: annotated validation ids for early stopping (None: the test positives).
        val_annotations: validation annotations (VGG-SS json; Flickr uses Annotations/).
        flickr_list: "250" or "249".
        val_from: validate on the test positives of this dataset instead (e.g. "flickr" for
            VGG-SS, as the official VGGSound training scripts do); None: this dataset's own.
    """

    name: str
    train_root: Path
    train_list: Path
    test_root: Path
    metadata_root: Path
    val_list: Path | None
    val_annotations: Path | None
    flickr_list: str
    val_from: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {k: (str(v) if v is not None else None) for k, v in asdict(self).items()}


def synthetic_root(params: dict[str, Any]) -> Path:
    """Folder of the embedded synthetic benchmark of a profile (docs/synthetic.md)."""
    return synthetic_data_dir(params["profile"], params["data"]["synth_scale"], params["seed"])


def dataset_config(params: dict[str, Any], name: str) -> DatasetConfig:
    """Resolve the paths of dataset `name` for a profile."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {DATASETS}")
    data = params["data"]
    flickr_list = str(data.get("flickr_list", "250"))
    if data["source"] == "synthetic":
        root = synthetic_root(params) / name
        meta = root / "metadata"
        val_list = meta / ("flickr_val.csv" if name == "flickr" else "vggss_val.csv")
        val_annotations = None if name == "flickr" else meta / "vggss_val.json"
        if name == "vggss":
            val_list = None  # the ids come from the val json itself
        return DatasetConfig(name, root, meta / f"{name}_train.txt", root, root,
                             val_list, val_annotations, flickr_list)
    if data["source"] != "real":
        raise ValueError(f"data.source must be 'synthetic' or 'real', got {data['source']!r}")
    entry = data.get(name)
    if not entry:
        raise ValueError(f"profile {params['profile']!r}: data.{name} is not configured")
    metadata_root = Path(entry.get("metadata_root", entry["test_root"]))
    val = str(entry.get("val", "test"))
    val_from = val[: -len("_test")] if val.endswith("_test") and val[: -len("_test")] in DATASETS else None
    val_list = None if val == "test" or val_from else metadata_root / val
    return DatasetConfig(name, Path(entry["train_root"]), metadata_root / entry["train_list"],
                         Path(entry["test_root"]), metadata_root, val_list, None, flickr_list, val_from)
