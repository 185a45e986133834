"""Profiles: one YAML file in params/ fixes data, backbones, epochs and budgets.

`load_profile("quick")` returns the parsed file as a plain dict; `dataset_config(profile, name)`
resolves where one dataset's media and metadata live, for the embedded synthetic benchmark and
for real data in the community layout alike, so every later stage reads one structure.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from vslrepro.data.testsets import DATASETS
from vslrepro.paths import PARAMS_DIR, synthetic_data_dir

PROFILES = ("smoke", "quick", "paper")


def profile_path(profile: str | Path) -> Path:
    """`params/<profile>.yaml` for a profile name; a path ending in .yaml/.yml as it is."""
    path = Path(profile)
    return path if path.suffix in (".yaml", ".yml") else PARAMS_DIR / f"{profile}.yaml"


def load_profile(profile: str | Path) -> dict[str, Any]:
    """Parse `params/<profile>.yaml` (or a YAML path) into a dict.

    Raises:
        FileNotFoundError: naming the file and the profiles that exist.
    """
    path = profile_path(profile)
    if not path.is_file():
        known = sorted(p.stem for p in PARAMS_DIR.glob("*.yaml"))
        raise FileNotFoundError(f"profile file {path} not found (known profiles: {known})")
    params = yaml.safe_load(path.read_text())
    for key in ("profile", "seed", "data", "datasets", "input", "model", "train", "evaluate"):
        if key not in params:
            raise ValueError(f"{path}: missing top-level key {key!r}")
    return params


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
