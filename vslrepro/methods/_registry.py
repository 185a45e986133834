"""The method registry: every method class by its name.

A method module decorates its class with `@register("<name>")`; `method_class(name)` returns the
class, which owns everything about the method (the contract is in `vslrepro.methods._base`).
"""

from __future__ import annotations

from typing import Callable, TypeVar

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
