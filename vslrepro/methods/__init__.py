"""Localization methods: one module per method, and the public names every other layer uses.

Every method module (a module of this package whose name does not start with "_") holds one
`LocalizationMethod` subclass registered with `@register("<name>")`; importing this package imports
them all, so a new method is one new file here (no list to extend). The private modules hold what
the methods share: the contract (`_base`), the registry (`_registry`), the encoders (`_backbones`),
checkpoint reading (`_checkpoints`) and k-means (`_kmeans`). Other layers import from this package
only, never from a private module.

Methods take plain arguments (backbone, dim, hyperparameters, weights); turning a profile into a
method is `vslrepro.factory`'s job.

    >>> from vslrepro.methods import method_class
    >>> method_class("ezvsl_ogl").run_method()
    'ezvsl'
"""

from __future__ import annotations

import importlib
import pkgutil

from vslrepro.methods._backbones import BACKBONES, build_backbones, build_image_encoder
from vslrepro.methods._base import Localization, LocalizationMethod, confidence_scores, unit_scale, upsample_maps
from vslrepro.methods._checkpoints import load_state_dict_file, load_weights_file
from vslrepro.methods._registry import METHODS, display_name, method_class, register

__all__ = ["BACKBONES", "METHODS", "Localization", "LocalizationMethod", "build_backbones", "build_image_encoder",
           "build_method", "confidence_scores", "display_name", "load_state_dict_file", "load_weights_file",
           "method_class", "register", "unit_scale", "upsample_maps"]


def build_method(name: str, **arguments):
    """Build the method registered as `name` with keyword arguments (see `LocalizationMethod.build`).

    Raises:
        ValueError: for an unknown name (listing the known ones) or an argument the method does not
            accept (listing the accepted ones).
    """
    return method_class(name).build(**arguments)


def _import_method_modules() -> None:
    """Import every public module of this package: method modules register themselves on import."""
    for module in sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")):
        importlib.import_module(f"{__name__}.{module}")


_import_method_modules()
