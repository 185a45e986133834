"""The interface every localization method implements, and the two confidence scores.

A method is a `torch.nn.Module` used two ways (ARCHITECTURE.md, "Conventions"):

- training: `loss = method(image, spec)`, a scalar (trainable methods only);
- testing: `maps, confidence = method.localize(image, spec)`, where `maps` is (B, 224, 224) float32,
  upsampled the way the original method does, and `confidence` holds `"max"` and `"topk_mean"`,
  both computed on the raw (not per-sample normalized) map — a per-sample min–max map has a
  constant maximum and could not rank samples (design §5).

Inputs everywhere: `image` (B, 3, S, S) normalized with the ImageNet mean/std; `spec` (B, 1, F, T),
the log-spectrogram divided by 12 (methods.md §1.3).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class Localization(NamedTuple):
    """What `LocalizationMethod.localize` returns.

    maps: (B, size, size) float32, the map to binarize.
    confidence: {"max": (B,), "topk_mean": (B,)} float32 (some methods add more scores).
    """

    maps: torch.Tensor
    confidence: dict[str, torch.Tensor]


def confidence_scores(maps: torch.Tensor, bounds: tuple[float, float]) -> dict[str, torch.Tensor]:
    """The two confidence scores of design §5, computed on raw (un-normalized) maps.

    - ``max``: the largest value of the map (the paper's text: the MIL score).
    - ``topk_mean``: the mean of the top ⌊HW/4⌋ values of (map − lo)/(hi − lo), with fixed bounds
      (lo, hi) — SLAVC's `test.py` (methods.md §2.2). The normalization is affine and increasing,
      so the top-k of the raw map are the top-k of the normalized one.

    Args:
        maps: (B, H, W) raw maps (any float dtype).
        bounds: (lo, hi) with hi > lo, the fixed normalization bounds of the method's map.

    Returns:
        {"max": (B,), "topk_mean": (B,)} as float32.

    Raises:
        ValueError: if `maps` is not 3-D or the bounds are not increasing.
    """
    if maps.dim() != 3:
        raise ValueError(f"maps must be (B, H, W), got shape {tuple(maps.shape)}")
    lo, hi = float(bounds[0]), float(bounds[1])
    if not hi > lo:
        raise ValueError(f"map bounds must satisfy hi > lo, got {bounds}")
    flat = maps.float().flatten(1)  # (B, H, W) -> (B, HW)
    k = max(1, flat.shape[1] // 4)
    top = flat.topk(k, dim=1).values  # (B, k)
    return {
        "max": flat.max(dim=1).values,
        "topk_mean": ((top - lo) / (hi - lo)).mean(dim=1),
    }


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
    """Base class of every method: a registry name, training facts, maps and confidences.

    Class attributes (override in subclasses):
        name: the registry name ("ezvsl", "ezvsl_ogl", ...).
        display_name: the name printed in tables ("EZ-VSL").
        trainable: whether `forward` returns a training loss.
        trains_as: the registry name whose training run this method reuses (e.g. "ezvsl" for
            "ezvsl_ogl"); None when the method has its own run (or needs none).
        upsample_mode, align_corners: how the raw map is resized to the evaluation size, as the
            original test code does it (EZ-VSL: bilinear, align_corners=True).
        map_bounds: fixed (lo, hi) bounds of the raw map, used by the top-k confidence.
        stages: the training stages, in order (multi-stage methods list several).
    """

    name: str = ""
    display_name: str = ""
    trainable: bool = False
    trains_as: str | None = None
    upsample_mode: str = "bilinear"
    align_corners: bool | None = True
    map_bounds: tuple[float, float] = (0.0, 1.0)
    stages: tuple[str, ...] = ("main",)

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
