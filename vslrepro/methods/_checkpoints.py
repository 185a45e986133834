"""Reading checkpoint and weight files safely: ours, torchvision's and the official releases.

Every file is read with `torch.load(weights_only=True)`, which refuses to run pickled code. The
official EZ-VSL / SLAVC `best.pth` files also hold numpy scalars (`best_cIoU`, `best_Auc`) pickled
under numpy 1.x, i.e. by the names `numpy.core.multiarray.scalar` and `numpy.dtype`; numpy 2 moved
the first to `numpy._core`, so those names are allow-listed explicitly, under both spellings. Only
these constructors of plain numbers are allowed, nothing that can execute code.

A checkpoint is `{"model": state_dict, ...}` (ours: also "epoch", "optimizer", "history", "best";
official: also "optimizer", "epoch", "best_cIoU", "best_Auc") or a bare state_dict; keys saved from a
DistributedDataParallel model carry a "module." prefix, which is stripped (as the official
`test.py` does).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.serialization import safe_globals

from vslrepro.data.errors import DataError

_NUMPY_CORE = getattr(np, "_core", None) or np.core
_SCALAR_TYPES = (np.float64, np.float32, np.float16, np.int64, np.int32, np.int16, np.int8, np.uint8,
                 np.bool_)
# (object, the name under which a pickle may refer to it); numpy 1.x wrote "numpy.core...".
SAFE_NUMPY_GLOBALS: list[Any] = [
    _NUMPY_CORE.multiarray.scalar,
    (_NUMPY_CORE.multiarray.scalar, "numpy.core.multiarray.scalar"),
    np.dtype,
    *(type(np.dtype(t)) for t in _SCALAR_TYPES),
]


def load_weights_file(path: str | Path) -> Any:
    """`torch.load` a checkpoint or state_dict file onto the CPU, safely (weights_only=True).

    Raises:
        FileNotFoundError: if `path` does not exist.
        DataError: naming the file if it cannot be unpickled as plain tensors/containers/numbers.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        with safe_globals(SAFE_NUMPY_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # UnpicklingError, RuntimeError (not a zip/pickle), EOFError, ...
        raise DataError(f"cannot read weights file {path} ({type(error).__name__}: {error}); "
                        f"{_way_out(path)}") from error


def _way_out(path: Path) -> str:
    """What to do about an unreadable weights file, by what the file is."""
    if path.name in ("latest.pt", "best.pt"):
        return (f"the file is truncated or damaged: delete the run folder {path.parent} and train again "
                "(its other checkpoint cannot be trusted to match)")
    return ("the file is truncated, damaged or not a PyTorch checkpoint: copy or download it again "
            "(torch.load must read it with weights_only=True)")


def model_state_dict(checkpoint: Mapping, source: str = "<checkpoint>") -> dict[str, torch.Tensor]:
    """The model state_dict inside a checkpoint dict (or a bare state_dict), without "module.".

    The state_dict is the "model" entry (ours, EZ-VSL's and SLAVC's `train.py`), the
    "model_state_dict" entry (LVS's released files), or the dict itself.

    Raises:
        DataError: naming `source` when that entry is not a state_dict.
    """
    entry = next((key for key in ("model", "model_state_dict") if key in checkpoint), None)
    state = checkpoint[entry] if entry else checkpoint
    if not isinstance(state, Mapping):
        raise DataError(f"checkpoint {source}: entry {entry!r} is a {type(state).__name__}, not a state_dict")
    return {(key[len("module."):] if key.startswith("module.") else key): value
            for key, value in state.items()}


def _listed(keys: list[str]) -> str:
    return f"{keys[:10]}" + (f" (+{len(keys) - 10} more)" if len(keys) > 10 else "")


def load_state_dict_strict(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> nn.Module:
    """`model.load_state_dict(state, strict=True)` with an error naming `source` and the bad keys.

    Raises:
        DataError: missing/unexpected keys or mismatched shapes.
    """
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise DataError(f"checkpoint {source} does not fit {type(model).__name__}: missing keys "
                        f"{_listed(missing)}, unexpected keys {_listed(unexpected)}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:  # shape mismatches (e.g. another embedding size)
        raise DataError(f"checkpoint {source} does not fit {type(model).__name__}: {error}") from error
    return model


def load_state_dict_file(model: nn.Module, checkpoint: str | Path | Mapping,
                         convert: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None
                         ) -> nn.Module:
    """Fill `model` strictly from a checkpoint file (or an already loaded checkpoint dict).

    Args:
        convert: maps an original release's key layout onto the model's (applied to the state_dict
            after "module." is stripped); None loads the keys as they are.

    Raises:
        FileNotFoundError: the file does not exist.
        DataError: an unreadable file, or keys/shapes that do not fit (naming the file).
    """
    source = "<state_dict>" if isinstance(checkpoint, Mapping) else str(checkpoint)
    if not isinstance(checkpoint, Mapping):
        checkpoint = load_weights_file(checkpoint)
    if not isinstance(checkpoint, Mapping):
        raise DataError(f"checkpoint {source} holds a {type(checkpoint).__name__}, not a dict")
    state = model_state_dict(checkpoint, source)
    return load_state_dict_strict(model, convert(state) if convert else state, source)
