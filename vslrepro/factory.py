"""One factory turns a profile into a method: its arguments, its weights and its data-dependent set-up.

Methods know nothing about profiles (`vslrepro.methods`): their `__init__` takes plain keyword
arguments. This module fills them from a profile, by parameter name:

- the method's own entry under `methods:` / `references:` (its hyperparameters);
- for a method that reuses another's training run (`trains_as`), that method's hyperparameters too,
  where it accepts them (EZ-VSL + OGL builds EZ-VSL with EZ-VSL's `tau`); its own entry wins;
- `backbone` and `dim`: the profile's `model:` section; `seed`: the profile's seed — unless the
  method's entry sets them;
- `image_weights` (a fresh model to train only): the profile's pretrained image-encoder weights
  (`vslrepro.pretrained`: ImageNet for resnet18, the synthetic object prior for small);
- `object_weights`: the same weights, for a frozen object backbone (OGL).

A method evaluated at a checkpoint loads it with its own `load_weights`, then gets the frames its
`calibrate` asks for (`calibration_frames()`, e.g. OGL's objectness bound on the small backbone):
the first validation frames of the evaluated dataset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vslrepro.data.datasets import run_dataset
from vslrepro.data.formats.images import normalize_images
from vslrepro.data.splits import validation_split
from vslrepro.methods import LocalizationMethod, method_class
from vslrepro.pretrained import image_weights
from vslrepro.seeding import seed_everything

# __init__ parameters filled from the profile's settings when the method's entry does not set them
PROFILE_ARGUMENTS = ("backbone", "dim", "seed")


def hyperparameters(params: dict[str, Any], method: str) -> dict[str, Any]:
    """The hyperparameters a profile gives method `method`: its entry under `methods:` or
    `references:` (an empty entry, or a plain list of names, means "the defaults")."""
    for section in ("methods", "references"):
        entries = params.get(section) or {}
        if isinstance(entries, dict) and method in entries:
            return dict(entries[method] or {})
    return {}


def arguments(params: dict[str, Any], method: str) -> dict[str, Any]:
    """The keyword arguments of `method`'s `__init__` under profile `params`, without weights: what
    identifies the model a run trains (`vslrepro.layout.run_identity`)."""
    cls = method_class(method)
    accepted = cls.parameters_accepted()
    out = {name: int(params["seed"]) if name == "seed" else params["model"][name]
           for name in PROFILE_ARGUMENTS if name in accepted}
    if cls.trains_as:
        out.update({k: v for k, v in hyperparameters(params, cls.trains_as).items() if k in accepted})
    out.update(hyperparameters(params, method))
    return out


def untrained_model(params: dict[str, Any], method: str) -> LocalizationMethod:
    """`method` with its profile arguments and random weights (throughput benchmarks)."""
    return method_class(method).build(**arguments(params, method))


def training_model(params: dict[str, Any], method: str) -> LocalizationMethod:
    """A fresh model of `method` to train under profile `params`, its image encoder starting from
    the profile's pretrained weights when it takes `image_weights`.

    Raises:
        TypeError: for a method that is not trained on its own.
        ValueError: a stage schedule that does not fit `train.epochs` (`schedule_problems`).
    """
    cls = method_class(method)
    if cls.run_method() != method:
        raise TypeError(f"method {method!r} is not trained on its own"
                        + (f" (it reuses the {cls.trains_as!r} run)" if cls.trains_as else " (training-free)"))
    given = arguments(params, method)
    problems = cls.schedule_problems(given, int(params["train"]["epochs"]))
    if problems:
        raise ValueError(f"{method}: " + "; ".join(problems))
    if "image_weights" in cls.parameters_accepted():
        given["image_weights"] = image_weights(params)
    return cls.build(**given)


def fresh_model(params: dict[str, Any], method: str) -> LocalizationMethod:
    """`training_model` after seeding everything with the profile's seed, as a run starts it."""
    seed_everything(int(params["seed"]))
    return training_model(params, method)


def evaluation_model(params: dict[str, Any], dataset: str, method: str,
                     weights: str | Path | None) -> LocalizationMethod:
    """`method` ready for `localize` on `dataset` (eval mode).

    Args:
        params: the profile.
        dataset: the dataset it is evaluated on; the validation frames of the dataset its run
            trained on (`data.datasets.run_dataset`: the same one, or the one an evaluation-only
            test set names) calibrate a method that asks.
        weights: a checkpoint of the method's run (`best.pt` / `latest.pt`, or an original release);
            None for training-free methods.

    Raises:
        ValueError: weights given to a training-free method, or missing for a trained one.
    """
    cls = method_class(method)
    if cls.run_method() is None and weights is not None:
        raise ValueError(f"{method!r} is training-free: it takes no checkpoint ({weights})")
    if cls.run_method() is not None and weights is None:
        raise ValueError(f"{method!r} needs a checkpoint of the {cls.run_method()!r} run (best.pt, latest.pt "
                         "or a released checkpoint)")
    given = arguments(params, method)
    if "object_weights" in cls.parameters_accepted():
        given["object_weights"] = image_weights(params)
    model = cls.build(**given)
    if weights is not None:
        model.load_weights(weights)
    wanted = model.calibration_frames()
    if wanted:  # the validation frames of the dataset the evaluated run trained on
        _, cache = validation_split(params, run_dataset(params, dataset))
        frames = torch.from_numpy(cache.images[:wanted].copy())  # (n, 3, S, S) uint8
        model.calibrate(normalize_images(frames))
    return model.eval()
