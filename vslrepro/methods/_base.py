"""The interface every localization method implements: the plug-in contract.

A method is one module under `vslrepro/methods/` holding one `LocalizationMethod` subclass,
registered by name with `@register("<name>")`. The class owns everything about itself, so that no
other module branches on a method name:

- **what it is**: `display_name` (the row name in every table), `trainable` (it has a training
  loss and its own run; the default), `trains_as` (the registry name of another method whose
  training run it reuses, e.g. EZ-VSL + OGL reuses EZ-VSL's), `upsample_mode` / `align_corners`
  (how its raw map is resized to 224², as the original test code does), `map_bounds` (the fixed
  [lo, hi] range of its raw map, which puts it on a [0, 1] scale for the top-k confidence and the
  absolute binarization) and `hyperparameter_ranges` (the allowed values of its hyperparameters,
  checked when a profile loads);
- **how it is built**: `__init__` takes plain keyword arguments. A few names are filled from the
  profile by `vslrepro.factory` when the method asks for them: `backbone`, `dim`, `seed`,
  `image_weights` (the pretrained image encoder it starts training from) and `object_weights` (a
  frozen pretrained encoder, as OGL's). Everything else is the method's own entry under `methods:`
  in `params/<profile>.yaml`. A method that reuses another's run also receives that method's
  hyperparameters (OGL gets EZ-VSL's `tau`);
- **how it is loaded and set up**: `load_weights(file)` (ours or an original release),
  `calibration_frames()` / `calibrate(frames)` (set-up from validation frames before evaluation,
  none by default) and `schedule_problems(arguments, epochs)` (a stage schedule that does not fit
  the training length, found when the profile loads);
- **how it is used**: `loss = method(image, spec)` in training, `maps, confidence =
  method.localize(image, spec)` at test time, and `begin_epoch(epoch, data)` before each training
  epoch (a hook for methods with a stage schedule, with a pass over the training set; a no-op by
  default).

`maps` is (B, 224, 224) float32, upsampled the way the original method does; `confidence` holds at
least `"max"` and `"topk_mean"`, both computed on the raw (not per-sample normalized) map — a
per-sample min–max map has a constant maximum and could not rank samples (paper Sec. 2; see
docs/protocol.md).

Inputs everywhere: `image` (B, 3, S, S) normalized with the ImageNet mean/std; `spec` (B, 1, F, T),
the log-spectrogram divided by 12 (docs/data.md).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from vslrepro import metrics
from vslrepro.methods._checkpoints import load_state_dict_file


class Localization(NamedTuple):
    """What `LocalizationMethod.localize` returns.

    maps: (B, size, size) float32, the map to binarize.
    confidence: {"max": (B,), "topk_mean": (B,)} float32 (some methods add more scores).
    """

    maps: torch.Tensor
    confidence: dict[str, torch.Tensor]


def confidence_scores(maps: torch.Tensor, bounds: tuple[float, float]) -> dict[str, torch.Tensor]:
    """The two confidence scores of the protocol, computed on raw (un-normalized) maps.

    Thin wrapper over `vslrepro.metrics.confidence` (the one implementation):
    - ``max``: the largest value of the map (the paper's text: the maximum of the similarity map).
    - ``topk_mean``: the mean of the top ⌊HW/4⌋ values of (map − lo)/(hi − lo), with fixed bounds
      (lo, hi) — SLAVC `test.py`.

    Args:
        maps: (B, H, W) raw maps (any float dtype).
        bounds: (lo, hi) with hi > lo, the fixed normalization bounds of the method's map.

    Returns:
        {"max": (B,), "topk_mean": (B,)} as float32 tensors on the maps' device.

    Raises:
        ValueError: if `maps` is not 3-D or the bounds are not increasing.
    """
    if maps.dim() != 3:
        raise ValueError(f"maps must be (B, H, W), got shape {tuple(maps.shape)}")
    lo, hi = float(bounds[0]), float(bounds[1])
    if not hi > lo:
        raise ValueError(f"map bounds must satisfy hi > lo, got {bounds}")
    raw = maps.detach().float()
    scores = {"max": metrics.confidence(raw, "max"),
              "topk_mean": metrics.confidence(raw, "topk_mean", bounds=(lo, hi))}
    return {kind: torch.from_numpy(values).float().to(maps.device) for kind, values in scores.items()}


def unit_scale(maps: torch.Tensor, bounds: tuple[float, float]) -> torch.Tensor:
    """(map − lo)/(hi − lo): maps on their method's [0, 1] scale (fixed bounds, not per sample)."""
    lo, hi = float(bounds[0]), float(bounds[1])
    return (maps - lo) / (hi - lo)


def upsample_maps(maps: torch.Tensor, size: int | tuple[int, int], mode: str,
                  align_corners: bool | None) -> torch.Tensor:
    """Resize (B, h, w) maps to (B, size, size) with `torch.nn.functional.interpolate`.

    Args:
        maps: (B, h, w) maps.
        size: output side in pixels, or (H, W).
        mode: an interpolate mode ("bilinear", "bicubic", "nearest", ...).
        align_corners: passed through (must be None for "nearest").

    Returns:
        (B, H, W) float32 maps.
    """
    if maps.dim() != 3:
        raise ValueError(f"maps must be (B, h, w), got shape {tuple(maps.shape)}")
    out_size = (size, size) if isinstance(size, int) else tuple(size)
    grid = maps.float().unsqueeze(1)  # (B, h, w) -> (B, 1, h, w)
    out = F.interpolate(grid, size=out_size, mode=mode, align_corners=align_corners)
    return out.squeeze(1)  # (B, 1, H, W) -> (B, H, W)


class LocalizationMethod(nn.Module):
    """Base class of every method (the contract is in the module docstring).

    Class attributes (override in subclasses):
        name: the registry name ("ezvsl", "ezvsl_ogl", ...), set by `register`.
        display_name: the name printed in tables ("EZ-VSL").
        trainable: whether `forward` returns a training loss and the method has its own run (the
            common case, hence the default; references and OGL set False).
        trains_as: the registry name whose training run this method reuses (e.g. "ezvsl" for
            "ezvsl_ogl"); None when the method has its own run (or needs none).
        upsample_mode, align_corners: how the raw map is resized to the evaluation size, as the
            original test code does it (EZ-VSL: bilinear, align_corners=True).
        map_bounds: fixed (lo, hi) bounds of the raw map: (map − lo)/(hi − lo) is the method's
            [0, 1] scale (top-k confidence, absolute binarization).
        hyperparameter_ranges: allowed values of the `__init__` parameters (JSON-schema fragments,
            `{"tau": {"exclusiveMinimum": 0}}`): a profile outside them is refused when it loads,
            naming the key.
    """

    name: str = ""
    display_name: str = ""
    trainable: bool = True
    trains_as: str | None = None
    upsample_mode: str = "bilinear"
    align_corners: bool | None = True
    map_bounds: tuple[float, float] = (0.0, 1.0)
    hyperparameter_ranges: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------ building

    @classmethod
    def build(cls, **arguments: Any) -> "LocalizationMethod":
        """`cls(**arguments)`, with an error naming the method and its accepted parameters on a bad key."""
        signature = inspect.signature(cls.__init__)
        try:
            signature.bind(None, **arguments)
        except TypeError as error:
            accepted = [p for p in signature.parameters if p not in ("self", "args", "kwargs")]
            raise ValueError(f"bad configuration for method {cls.name!r}: {error}; "
                             f"accepted parameters: {', '.join(accepted)}") from error
        return cls(**arguments)

    @classmethod
    def parameters_accepted(cls) -> dict[str, inspect.Parameter]:
        """The keyword parameters of `__init__` (what a profile or the factory may pass), by name."""
        parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]  # [0]: self
        return {p.name: p for p in parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}

    @classmethod
    def argument(cls, arguments: dict[str, Any], name: str) -> Any:
        """`arguments[name]`, else the default of `__init__`'s parameter `name`."""
        return arguments[name] if name in arguments else cls.parameters_accepted()[name].default

    @classmethod
    def run_method(cls) -> str | None:
        """The registry name of the training run this method's weights come from (None: none)."""
        return cls.trains_as or (cls.name if cls.trainable else None)

    @classmethod
    def checkpoints(cls) -> tuple[str, ...]:
        """The checkpoints evaluated: BEST and LATEST with a training run, "none" without."""
        return ("best", "latest") if cls.run_method() else ("none",)

    @classmethod
    def schedule_problems(cls, arguments: dict[str, Any], epochs: int) -> list[str]:
        """What makes these constructor `arguments` unable to train for `epochs` epochs, one
        sentence per problem naming the parameter (e.g. a stage schedule longer than the run);
        none by default. Checked when a profile loads, before any stage runs."""
        return []

    def load_weights(self, checkpoint: str | Path) -> "LocalizationMethod":
        """Fill the model from a checkpoint file, strictly (our `best.pt`/`latest.pt` or a state_dict).

        Accepts `{"model": state_dict, ...}` or a bare state_dict; a leading "module." (DDP) is
        stripped. Loaded with `torch.load(weights_only=True)` (no pickled code runs).

        Raises:
            FileNotFoundError: the file does not exist.
            DataError: naming the file and the mismatched keys or shapes.
        """
        load_state_dict_file(self, checkpoint)
        return self

    def calibration_frames(self) -> int:
        """How many validation frames `calibrate` needs before evaluation (0, the default: none)."""
        return 0

    def calibrate(self, frames: torch.Tensor) -> None:
        """Set-up that depends on the data, from up to `calibration_frames()` ImageNet-normalized
        validation frames (B, 3, S, S) of the evaluated dataset (e.g. OGL's objectness bound on the
        small backbone). The default needs none."""

    def begin_epoch(self, epoch: int, data: Any = None) -> None:
        """Called by the trainer before training epoch `epoch` (0-based), also after a resume.

        A hook for methods whose objective follows a schedule (e.g. a second training stage);
        the default does nothing. `data` is a `vslrepro.train.TrainingData`: `data.batches()` is a
        deterministic, un-augmented pass over the training set, for a method that needs the whole
        set at a stage boundary (e.g. clustering its features). Whatever such a pass computes must be
        kept in the module's state (a buffer), so that it is checkpointed and a resume later in the
        stage continues from it instead of recomputing it from other weights.
        """

    # ------------------------------------------------------------------ training and testing

    def forward(self, image: torch.Tensor, spec: torch.Tensor) -> torch.Tensor:
        """The scalar training loss; only trainable methods define it.

        Raises:
            TypeError: for a method that is not trainable (evaluation-only references, OGL).
        """
        raise TypeError(f"method {self.name!r} is not trainable: it has no training loss "
                        f"(use localize(image, spec) to evaluate it)")

    def raw_maps(self, image: torch.Tensor, spec: torch.Tensor) -> torch.Tensor:
        """(B, h, w) localization maps at the model's own resolution, before upsampling."""
        raise NotImplementedError(f"{type(self).__name__} must implement raw_maps(image, spec)")

    def maps_at(self, image: torch.Tensor, spec: torch.Tensor, size: int) -> torch.Tensor:
        """(B, size, size) raw maps resized with the method's `upsample_mode` (not normalized)."""
        return upsample_maps(self.raw_maps(image, spec), size, self.upsample_mode, self.align_corners)

    def localize(self, image: torch.Tensor, spec: torch.Tensor, size: int = 224) -> Localization:
        """Maps to binarize and confidence scores for a batch (call under `torch.no_grad()`).

        Args:
            image: (B, 3, S, S) ImageNet-normalized frames.
            spec: (B, 1, F, T) log-spectrograms / 12.
            size: side of the output maps (224 in the evaluation protocol).

        Returns:
            Localization(maps (B, size, size) float32, {"max": (B,), "topk_mean": (B,)}), the scores
            computed on the upsampled raw map with the fixed `map_bounds`.
        """
        maps = self.maps_at(image, spec, size).float()
        return Localization(maps, confidence_scores(maps, self.map_bounds))
