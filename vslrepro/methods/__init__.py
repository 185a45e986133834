"""Localization methods by name: the registry.

Every method module decorates its class with `@register("<name>")`; `method_class(name)` returns
the class, which owns everything about the method (the contract is in `vslrepro.methods.base`):
its display name, whether and how it trains, how it is built from a profile and loaded for
evaluation. `build_method(name, **cfg)` builds one from keyword arguments.

    >>> from vslrepro.methods import method_class
    >>> method_class("ezvsl_ogl").run_method()
    'ezvsl'

A new method is one module under `vslrepro/methods/` (every module of the package is imported
here, so it registers itself) and its parameters in `params/*.yaml`; a class registered anywhere
else (e.g. in a test) works the same way.
"""

from __future__ import annotations

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


def method_class(name: str) -> type:
    """The class registered as `name`.

    Raises:
        ValueError: for an unknown name, listing the known ones.
    """
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known methods: {', '.join(sorted(METHODS))}")
    return METHODS[name]


def display_name(name: str) -> str:
    """The table name of a method (its registry name when it is not registered, or has none)."""
    cls = METHODS.get(name)
    return (cls.display_name or name) if cls is not None else name


def build_method(name: str, **cfg: Any):
    """Build the method registered as `name` with keyword configuration `cfg`.

    Raises:
        ValueError: for an unknown name (listing the known ones) or a configuration key the method
            does not accept (listing the accepted ones).
    """
    return method_class(name).build(**cfg)


def _import_method_modules() -> None:
    """Import every module of this package: method modules register themselves on import, so a new
    method is one new file here (no list of modules to extend)."""
    import importlib
    import pkgutil

    for module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
        importlib.import_module(f"{__name__}.{module}")


_import_method_modules()  # after `register` is defined, which the modules use
