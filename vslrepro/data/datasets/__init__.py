"""Datasets by name: the registry, and where each dataset lives under a profile.

Every dataset module (a module of this package that is not `base` or `registry`) holds one
`Dataset` subclass registered with `@register_dataset("<name>")` (the contract is in `.base`);
importing this package imports them all, so a new test set is one new file here. Nothing outside
the dataset modules branches on a dataset's name: tables, the command line and the profile schema
take names, display names and entry keys from the registry.

    >>> from vslrepro.data.datasets import dataset_class
    >>> dataset_class("flickr").ground_truth
    'consensus'
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from vslrepro.data.datasets.base import Dataset, DatasetConfig, Positives, SyntheticStyle, synthetic_root
from vslrepro.data.datasets.registry import DATASETS, dataset_class, dataset_names, register_dataset

__all__ = ["DATASETS", "Dataset", "DatasetConfig", "Positives", "SyntheticStyle", "dataset_class", "dataset_names",
           "display_name", "extended_name", "locate", "register_dataset", "run_dataset", "synthetic_datasets",
           "synthetic_root"]


def locate(params: dict[str, Any], name: str) -> DatasetConfig:
    """Where dataset `name` lives under profile `params` (`Dataset.locate`).

    Raises:
        ValueError: an unknown dataset, or one the profile does not configure.
    """
    return dataset_class(name).locate(params)


def run_dataset(params: dict[str, Any], name: str) -> str:
    """The dataset whose training runs are evaluated on `name`: itself, or the `runs_from` of an
    evaluation-only test set."""
    cls = dataset_class(name)
    if cls.trainable:
        return name
    source = cls.locate(params).runs_from
    if source is None or not dataset_class(source).trainable:
        raise ValueError(f"data.{name}.runs_from must name a dataset with training runs, got {source!r}")
    return source


def display_name(name: str) -> str:
    """The table name of a dataset's test set (its registry name when it is not registered)."""
    return DATASETS[name].display_name if name in DATASETS else name


def extended_name(name: str) -> str:
    """The table name of a dataset's extended test set (its registry name when it is not registered)."""
    return DATASETS[name].extended_name if name in DATASETS else name


def synthetic_datasets() -> list[type[Dataset]]:
    """The datasets the embedded synthetic benchmark has a counterpart of, in registration order."""
    return [cls for cls in DATASETS.values() if cls.synthetic is not None]


def _import_dataset_modules() -> None:
    """Import every dataset module of this package: each registers itself on import."""
    for module in sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name not in ("base", "registry")):
        importlib.import_module(f"{__name__}.{module}")


_import_dataset_modules()
