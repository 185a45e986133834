"""The dataset registry: every dataset class by its name (the contract is in `.base`)."""

from __future__ import annotations

from typing import Callable, TypeVar

DATASETS: dict[str, type] = {}

T = TypeVar("T", bound=type)


def register_dataset(name: str) -> Callable[[T], T]:
    """Class decorator adding a `Dataset` subclass to `DATASETS` under `name` (sets its `name`).

    Registering the same name twice with a different class raises ValueError (re-registering the
    same class, e.g. on module reload, is allowed).
    """

    def decorate(cls: T) -> T:
        known = DATASETS.get(name)
        if known is not None and known.__qualname__ != cls.__qualname__:
            raise ValueError(f"dataset name {name!r} is already registered by {known.__qualname__}")
        cls.name = name
        DATASETS[name] = cls
        return cls

    return decorate


def dataset_class(name: str) -> type:
    """The class registered as `name`.

    Raises:
        ValueError: for an unknown name, listing the known ones.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    return DATASETS[name]


def dataset_names() -> list[str]:
    """The registered names, in registration order (the order of table columns)."""
    return list(DATASETS)
