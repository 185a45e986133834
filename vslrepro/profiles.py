"""Profiles: one YAML file fixes data, backbones, epochs and budgets.

`load_profile("quick")` (or a path to any YAML file) returns the parsed file as a plain dict, checked
against the complete schema: the protocol's sections (`vslrepro.config`), the `data:` and
`datasets:` sections from the dataset registry (each dataset's entry keys), and the `model:`,
`methods:` and `references:` sections from the method registry (each method's hyperparameters and
their ranges). It is put together here, above both registries. A typo, a wrong type, an impossible
value or a combination that cannot train (a stage schedule longer than the run) stops with one
`ProfileError` line naming the file and the key. Where each dataset then lives is
`vslrepro.data.datasets.locate`.

A profile is named by its own `profile:` value: results go to `results/<profile>/`, training runs
to `<cache>/runs/<profile>/`, the object prior to `<cache>/objectprior/<profile>-seed<seed>.pt`.
No file may take the name of another file's profile in `params/` (a copy of smoke.yaml would
overwrite `results/smoke/`). The pipeline hands each notebook `profile_argument(file)`, which loads
that same file again: a profile in `params/` by its name, any other file by its absolute path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from vslrepro.config import PATH, ProfileError, hyperparameter_schema, protocol_sections, section, validate
from vslrepro.data.datasets import DATASETS, synthetic_datasets
from vslrepro.data.synthetic import SCALES
from vslrepro.factory import arguments
from vslrepro.methods import BACKBONES, METHODS
from vslrepro.paths import PARAMS_DIR

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
            empty file, a key missing, unknown or of the wrong type or value (`profile_schema`), a
            method whose stage schedule does not fit `train.epochs` (`schedule_problems`), or the
            name of a profile in `params/` taken by another file.
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
    validate_profile(params, path)
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


def _methods_section() -> dict[str, Any]:
    """`methods:` / `references:`: registered names with their hyperparameters (or a list of names)."""
    return {"type": ["object", "array", "null"],
            "properties": {name: hyperparameter_schema(cls) for name, cls in sorted(METHODS.items())},
            "additionalProperties": False, "items": {"enum": sorted(METHODS)}, "uniqueItems": True}


def _data_section() -> dict[str, Any]:
    """`data:`: the source, the synthetic benchmark's scale, each dataset's entry (real data) and
    test-list choice, and the ImageNet weights."""
    variants = {cls.variant_key: {"enum": [*cls.list_variants, *(int(v) for v in cls.list_variants if v.isdigit())]}
                for cls in DATASETS.values() if cls.variant_key}
    properties = {"source": {"enum": ["synthetic", "real"]}, "synth_scale": {"enum": sorted(SCALES)}, **variants,
                  **{name: cls.entry_schema for name, cls in DATASETS.items()}, "imagenet_weights": PATH}
    return {**section(properties, required=("source",)),
            # the synthetic benchmark needs its scale
            "if": {"properties": {"source": {"const": "synthetic"}}, "required": ["source"]},
            "then": {"required": ["synth_scale"]}}


def profile_schema() -> dict[str, Any]:
    """The JSON schema of a profile, with the datasets and methods registered now (tests may
    register more)."""
    def source_is(source: str) -> dict[str, Any]:
        return {"properties": {"data": {"properties": {"source": {"const": source}}, "required": ["source"]}},
                "required": ["data"]}

    # real data: every dataset the profile lists needs its roots under data:
    real_data_needs = [{"if": {**source_is("real"), "properties": {**source_is("real")["properties"],
                                                                    "datasets": {"contains": {"const": name}}},
                               "required": ["data", "datasets"]},
                        "then": {"properties": {"data": {"required": [name]}}}} for name in DATASETS]
    # the synthetic benchmark has a counterpart of some datasets only
    synthetic_only = {"if": source_is("synthetic"),
                      "then": {"properties": {"datasets": {"items": {"enum": [c.name for c in synthetic_datasets()]}}}}}
    # the small backbone starts from the object prior, which needs its settings
    small_needs_prior = {"if": {"properties": {"model": {"properties": {"backbone": {"const": "small"}},
                                                         "required": ["backbone"]}}, "required": ["model"]},
                         "then": {"required": ["object_prior"]}}
    sections = protocol_sections()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **section({**sections, "data": _data_section(),
                   "datasets": {"type": "array", "items": {"enum": list(DATASETS)}, "minItems": 1, "uniqueItems": True},
                   "model": section({"backbone": {"enum": list(BACKBONES)},
                                     "dim": {"type": ["integer", "null"], "minimum": 1}}),
                   "methods": _methods_section(), "references": _methods_section()},
                  required=("profile", "seed", "data", "datasets", "input", "model", "train", "evaluate")),
        "allOf": [small_needs_prior, synthetic_only, *real_data_needs],
    }


def validate_profile(params: Any, source: str | Path) -> None:
    """Check a parsed profile: the schema (`profile_schema`), then the combinations no schema states
    (`dataset_problems`, `schedule_problems`).

    Raises:
        ProfileError: one line naming `source`, the key paths and what is wrong.
    """
    validate(params, source, profile_schema())
    problems = dataset_problems(params) + schedule_problems(params)
    if problems:
        raise ProfileError(f"{source}: " + "; ".join(problems))


def dataset_problems(params: dict[str, Any]) -> list[str]:
    """`data.<name>.runs_from: ...` for an evaluation-only test set whose runs come from a dataset the
    profile does not train (its evaluations would have no checkpoints)."""
    problems = []
    for name in params["datasets"]:
        cls = DATASETS[name]
        if cls.trainable or params["data"]["source"] != "real":
            continue
        source = (params["data"].get(name) or {}).get("runs_from", cls.default_runs_from)
        trained = [other for other in params["datasets"] if DATASETS[other].trainable]
        if source not in trained:
            problems.append(f"data.{name}.runs_from: {source!r} is not a dataset the profile trains "
                            f"(datasets: {', '.join(trained) or 'none with training runs'})")
    return problems


def schedule_problems(params: dict[str, Any]) -> list[str]:
    """`methods.<name>: <problem>` for every method with its own run whose stage schedule cannot
    train for `train.epochs` (`LocalizationMethod.schedule_problems`), e.g. CoarsetoFine's stage 1
    taking every epoch."""
    problems = []
    for section_name in ("methods", "references"):
        for name in params.get(section_name) or []:
            cls = METHODS[name]
            if cls.run_method() == name:
                epochs = int(params["train"]["epochs"])
                problems += [f"{section_name}.{name}: {problem}"
                             for problem in cls.schedule_problems(arguments(params, name), epochs)]
    return problems
