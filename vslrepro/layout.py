"""The stage contract: run keys, run folders and every file a pipeline stage writes or reads.

One module says where things live, so that the stage that writes a file and the stage that reads
it call the same function, and `pipeline.plan()` derives each stage's inputs from here:

    cache (never committed; `$VSLREPRO_CACHE`, default `<repo>/.cache`)
      runs/<profile>/<dataset>_<method>_<run key>/   best.pt, latest.pt, history.csv, run.json
    results/<profile>/   (`$VSLREPRO_RESULTS/<profile>` when set)
      samples/<dataset>_<method>_<checkpoint>.csv   one row per test sample (+ .json: provenance)
      skipped/<dataset>_<method>_<checkpoint>.csv   samples left out by `evaluate --allow-incomplete`
      tables/table{1..4}.{csv,md,tex}, tables/intervals.*
      figures/*.png, history_<dataset>_<method>.csv
      notebooks/<stage>.ipynb, stamps/<stage>.json, logs/<stage>.log, pipeline_status.json

A training run is keyed by everything it depends on: the profile's seed, data, input, model,
object-prior and training settings, the method's own hyperparameters, and the source code that
trains it (`training_code_digest`). Changing any of these gives a new run folder, so a finished
run is never reused silently after the training code changed.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vslrepro.data.datasets import run_dataset
from vslrepro.factory import arguments
from vslrepro.methods import method_class
from vslrepro.paths import cache_dir, results_dir

# The package modules that decide what a training run computes, besides the method's own classes.
TRAINING_MODULES = (
    "vslrepro.train", "vslrepro.evaluate", "vslrepro.factory", "vslrepro.seeding", "vslrepro.pretrained",
    "vslrepro.objectprior", "vslrepro.methods._base", "vslrepro.methods._backbones",
    "vslrepro.methods._checkpoints", "vslrepro.methods._kmeans", "vslrepro.data.caches.build",
    "vslrepro.data.caches.decode", "vslrepro.data.caches.decoded", "vslrepro.data.caches.compressed",
    "vslrepro.data.caches.pairs", "vslrepro.data.formats.images", "vslrepro.data.formats.audio",
    "vslrepro.data.splits", "vslrepro.metrics.maps",
)
RUN_SECTIONS = ("seed", "data", "input", "model", "object_prior", "train")


def _module_source(name: str) -> str:
    """The source of module `name`; for a module without source (e.g. a class defined in an
    interactive session) its name only, with a loud warning: its runs cannot follow code changes."""
    module = sys.modules.get(name) or importlib.import_module(name)
    try:
        return inspect.getsource(module)
    except (OSError, TypeError):
        warnings.warn(f"the source of module {name!r} is not available: training runs of its methods "
                      f"are keyed by its name only and will be reused after its code changes; define "
                      f"methods in a .py file to key runs by their code", stacklevel=3)
        return f"<no source: {name}>"


def training_code_digest(method: str) -> str:
    """Hash of the source code that trains `method`: the trainer, data and backbone modules, and
    the module of every class in the method's class hierarchy (outside torch)."""
    digest = hashlib.sha256()
    modules = list(TRAINING_MODULES)
    for cls in method_class(method).__mro__:
        if cls.__module__.split(".")[0] not in ("torch", "builtins") and cls.__module__ not in modules:
            modules.append(cls.__module__)
    for name in modules:
        digest.update(name.encode())
        digest.update(_module_source(name).encode())
    return digest.hexdigest()[:12]


# The evaluate settings that validation reads, which decide which epoch is BEST.
VALIDATION_SETTINGS = ("binarize", "pred_size", "pred_thr", "iou_thr")


# Profile keys of RUN_SECTIONS that permit something without changing what a run computes: left
# out of its identity. `train.allow_incomplete` lets a run train on the clips that exist; the list
# actually used is recorded (run.json) and checked on resume by `vslrepro.train`.
PERMISSIONS = {"train": ("allow_incomplete",)}


def run_identity(params: dict[str, Any], method: str) -> dict[str, Any]:
    """What a training run of `method` depends on: profile sections (less `PERMISSIONS`), its
    hyperparameters, its code, and the validation settings that select its BEST epoch."""
    sections = {k: params.get(k) for k in RUN_SECTIONS}
    for section, keys in PERMISSIONS.items():
        if isinstance(sections.get(section), dict):
            sections[section] = {k: v for k, v in sections[section].items() if k not in keys}
    return {"method": method, "profile": sections,
            "method_config": arguments(params, method), "code": training_code_digest(method),
            "validation": {k: params["evaluate"][k] for k in VALIDATION_SETTINGS}}


def run_key(params: dict[str, Any], method: str) -> str:
    """A short hash of `run_identity`."""
    text = json.dumps(run_identity(params, method), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def run_method(method: str) -> str:
    """The registry name whose training run `method` uses (itself, or its `trains_as`).

    Raises:
        ValueError: for a training-free method.
    """
    base = method_class(method).run_method()
    if base is None:
        raise ValueError(f"{method!r} is training-free: it has no training run")
    return base


def run_dir(params: dict[str, Any], dataset: str, method: str) -> Path:
    """The cache folder of the training run that `method` uses on `dataset` under this profile: the
    run trained on `dataset`, or on the dataset an evaluation-only test set names (`runs_from`)."""
    base = run_method(method)
    source = run_dataset(params, dataset)
    return cache_dir() / "runs" / params["profile"] / f"{source}_{base}_{run_key(params, base)}"


def checkpoint_file(run: str | Path, checkpoint: str) -> Path:
    """`<run>/best.pt` or `<run>/latest.pt`."""
    if checkpoint not in ("best", "latest"):
        raise ValueError(f"checkpoint must be 'best' or 'latest' here, got {checkpoint!r}")
    return Path(run) / f"{checkpoint}.pt"


# ------------------------------------------------------------------------------------ results

def results(params: dict[str, Any]) -> Path:
    """`results/<profile>/`."""
    return results_dir(params["profile"])


def samples_csv(params: dict[str, Any], dataset: str, method: str, checkpoint: str) -> Path:
    """The per-sample results of one evaluation."""
    return results(params) / "samples" / f"{dataset}_{method}_{checkpoint}.csv"


def samples_record(csv: str | Path) -> Path:
    """The provenance JSON written beside a per-sample CSV."""
    return Path(csv).with_suffix(".json")


def skip_log(csv: str | Path) -> Path:
    """Where the samples left out of the per-sample CSV `csv` are listed: a `skipped/` folder beside
    `samples/` (for a CSV outside a `samples/` folder: `<stem>.skipped.csv` beside it)."""
    csv = Path(csv)
    if csv.parent.name == "samples":
        return csv.parent.parent / "skipped" / csv.name
    return csv.with_name(f"{csv.stem}.skipped.csv")


def table_stem(params: dict[str, Any], name: str) -> Path:
    """`results/<profile>/tables/<name>` (export adds .csv, .md, .tex)."""
    return results(params) / "tables" / name


def figure(params: dict[str, Any], name: str) -> Path:
    """`results/<profile>/figures/<name>.png`."""
    return results(params) / "figures" / f"{name}.png"


def history_copy(params: dict[str, Any], dataset: str, method: str) -> Path:
    """The committed copy of a run's history (the run folder itself is in the cache)."""
    return results(params) / f"history_{dataset}_{method}.csv"


def stage_files(params: dict[str, Any], key: str) -> dict[str, Path]:
    """The executed notebook, stamp and stderr log of pipeline stage `key`."""
    base = results(params)
    return {"notebook": base / "notebooks" / f"{key}.ipynb", "stamp": base / "stamps" / f"{key}.json",
            "log": base / "logs" / f"{key}.log"}


# ------------------------------------------------------------------------------------ the plan

@dataclass(frozen=True)
class Evaluation:
    """One evaluation of the profile: a method at a checkpoint on a dataset's extended test set."""

    dataset: str
    method: str
    checkpoint: str


def evaluated_methods(params: dict[str, Any]) -> list[str]:
    """The profile's methods, then its training-free references, in the order the profile lists them."""
    return list(params.get("methods") or []) + list(params.get("references") or [])


def trained_methods(params: dict[str, Any]) -> list[str]:
    """The training runs the profile needs (one per method with a run, reused by `trains_as`)."""
    runs: list[str] = []
    for method in evaluated_methods(params):
        base = method_class(method).run_method()
        if base is not None and base not in runs:
            runs.append(base)
    return runs


def trained_datasets(params: dict[str, Any]) -> list[str]:
    """The profile's datasets with training runs (an evaluation-only test set evaluates another's)."""
    return [name for name in params["datasets"] if run_dataset(params, name) == name]


def evaluations(params: dict[str, Any], dataset: str | None = None,
                method: str | None = None) -> list[Evaluation]:
    """Every evaluation of the profile (optionally of one dataset and/or method), in plan order."""
    out = []
    for name in params["datasets"]:
        for evaluated in evaluated_methods(params):
            if (dataset is None or name == dataset) and (method is None or evaluated == method):
                out += [Evaluation(name, evaluated, c) for c in method_class(evaluated).checkpoints()]
    return out
