"""Localization methods by name: the registry.

Every method module decorates its class with `@register("<name>")`; `build_method(name, **cfg)`
builds one from a profile's configuration and `method_info(name)` says how it is trained.

    >>> from vslrepro.methods import build_method, method_info
    >>> method_info("ezvsl_ogl").trains_as
    'ezvsl'
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

METHODS: dict[str, type] = {}

T = TypeVar("T", bound=type)


def register(name: str) -> Callable[[T], T]:
    """Class decorator adding a `LocalizationMethod` subclass to `METHODS` under `name`.

    Sets the class attribute `name`. Registering the same name twice with a different class raises
    ValueError (re-registering the same class, e.g. on module reload, is allowed).
    """

    def decorate(cls: T) -> T:
        known = METHODS.get(name)
        if known is not None and known.__qualname__ != cls.__qualname__:
            raise ValueError(f"method name {name!r} is already registered by {known.__qualname__}")
        cls.name = name
        METHODS[name] = cls
        return cls

    return decorate


def _lookup(name: str) -> type:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known methods: {', '.join(sorted(METHODS))}")
    return METHODS[name]


def build_method(name: str, **cfg: Any):
    """Build the method registered as `name` with keyword configuration `cfg`.

    Raises:
        ValueError: for an unknown name (listing the known ones) or a configuration key the method
            does not accept (listing the accepted ones).
    """
    cls = _lookup(name)
    signature = inspect.signature(cls.__init__)
    try:
        signature.bind(None, **cfg)
    except TypeError as error:
        accepted = [p for p in signature.parameters if p != "self"]
        raise ValueError(f"bad configuration for method {name!r}: {error}; "
                         f"accepted parameters: {', '.join(accepted)}") from error
    return cls(**cfg)


@dataclass(frozen=True)
class MethodInfo:
    """How a registered method is trained and shown."""

    name: str
    display_name: str
    trainable: bool
    trains_as: str | None  # the registry name of the training run it reuses; None = its own / none
    stages: tuple[str, ...]


def method_info(name: str) -> MethodInfo:
    """Training facts and display name of the method registered as `name` (no model is built).

    Raises:
        ValueError: for an unknown name.
    """
    cls = _lookup(name)
    return MethodInfo(name=name, display_name=cls.display_name or name, trainable=bool(cls.trainable),
                      trains_as=cls.trains_as, stages=tuple(cls.stages))


# Method modules register themselves on import; they need `register` defined above.
from vslrepro.methods import ezvsl, ogl, references  # noqa: E402,F401
