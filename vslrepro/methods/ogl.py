"""EZ-VSL + OGL (object-guided localization) — Mo & Morgado, ECCV 2022, Sec. "Object-guided localization".

Original (stoneMo/EZ-VSL `test.py`; methods.md §3.7):
- a *separate, freshly loaded* ImageNet ResNet-18 (not the fine-tuned `imgnet`) gives an objectness
  map: the mean |feature| over the 512 channels of its layer4 map, (B, 7, 7);
- the AV map S_nn and the object map are upsampled (bilinear, align_corners=True), each min–max
  normalized *per sample*, fused as minmax(α·AV + (1 − α)·OBJ) with α = 0.4 in every test script
  (60 % of the weight on the object prior).
- Per-sample min–max maps have a constant maximum, so the original fused map has no confidence.

Ours: SLAVC's fixed-bound variant (SLAVC `test.py`, methods.md §2.2), so that a confidence exists
for the extended test sets: AV normalized as (S + 1/τ)/(2/τ) = (cos + 1)/2, OBJ as
clamp((o − lo)/(hi − lo), 0, 1), fused map = α·AV + (1 − α)·OBJ, both upsampled before normalizing
(as SLAVC). The fused map is what gets binarized; for the relative (top-50 %) binarization the
per-sample min–max of the original is implied by the metric, so the localization of "+OGL" matches
EZ-VSL's up to the fixed-vs-per-sample normalization of the two parts. Confidences ("max",
"topk_mean") come from the fused map with bounds (0, 1). Deviations, and why:
- α = 0.4 (EZ-VSL's scripts) by default; SLAVC uses 0.9.
- OBJ bounds: SLAVC uses (0, 2.5) for the ImageNet ResNet-18 (our default). For the small backbone
  that scale is meaningless: the caller sets hi from data, e.g. the 99th percentile of object-map
  values on the validation set (`object_map_quantile`); the clamp keeps the rare larger values in
  [0, 1] (SLAVC does not clamp; with its 2.5 bound it hardly matters).
- The object backbone is the object prior of the profile (ImageNet ResNet-18 for paper, the synthetic
  object prior for smoke/quick), frozen and always in eval mode.
- Not trainable: it reuses the "ezvsl" training run (`trains_as = "ezvsl"`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from vslrepro.methods import register
from vslrepro.methods.backbones import build_image_encoder
from vslrepro.methods.base import LocalizationMethod, upsample_maps
from vslrepro.methods.ezvsl import EZVSL

IMAGENET_OBJ_BOUNDS = (0.0, 2.5)  # SLAVC test.py, for the ImageNet ResNet-18 layer4 map


def objectness(features: torch.Tensor) -> torch.Tensor:
    """The OGL objectness map: mean |feature| over channels, (B, C, h, w) -> (B, h, w)."""
    return features.abs().mean(dim=1)


@torch.no_grad()
def object_map_quantile(object_backbone: nn.Module, images: torch.Tensor, q: float = 0.99,
                        batch_size: int = 256) -> float:
    """The q-quantile of all objectness values over `images` — a data-driven OBJ upper bound.

    Args:
        object_backbone: the frozen image encoder, (B, 3, S, S) -> (B, C, h, w).
        images: (N, 3, S, S) ImageNet-normalized frames (e.g. the validation set).
        q: the quantile in (0, 1].
        batch_size: images per forward pass.

    Returns:
        The quantile as a float (pass it as `obj_bounds=(0.0, value)`).
    """
    if not 0.0 < q <= 1.0:
        raise ValueError(f"q must be in (0, 1], got {q}")
    if images.shape[0] == 0:
        raise ValueError("object_map_quantile needs at least one image")
    was_training = object_backbone.training
    object_backbone.eval()
    values = [objectness(object_backbone(images[i:i + batch_size])).flatten().float().cpu()
              for i in range(0, images.shape[0], batch_size)]
    object_backbone.train(was_training)
    return float(torch.quantile(torch.cat(values), q))


@register("ezvsl_ogl")
class EZVSLOGL(LocalizationMethod):
    """EZ-VSL's AV map fused with an object-prior objectness map (evaluation only).

    Args:
        av_model: a trained `EZVSL`; None → one built from `backbone`, `dim`, `tau` (load the "ezvsl"
            run's checkpoint into `.av_model` afterwards).
        object_backbone: the frozen pretrained image encoder giving (B, C, h, w); None → built with
            `build_image_encoder(backbone, object_weights)`.
        alpha: weight of the AV map in the fusion (EZ-VSL scripts 0.4; SLAVC 0.9).
        obj_bounds: (lo, hi) fixed bounds of the objectness map (SLAVC: (0, 2.5) for ImageNet
            ResNet-18; for the small backbone set hi from data, see `object_map_quantile`).
        backbone, dim, tau: configuration of the `EZVSL` built when `av_model` is None.
        object_weights: weights of the object backbone built when `object_backbone` is None
            ("imagenet" or a path for resnet18; an object-prior path or state_dict for small).

    Raises:
        ValueError: for alpha outside [0, 1], non-increasing bounds, or no object weights.
    """

    display_name = "EZ-VSL + OGL"
    trainable = False
    trains_as = "ezvsl"
    upsample_mode = "bilinear"
    align_corners = True
    map_bounds = (0.0, 1.0)

    def __init__(self, av_model: EZVSL | None = None, object_backbone: nn.Module | None = None,
                 alpha: float = 0.4, obj_bounds: tuple[float, float] = IMAGENET_OBJ_BOUNDS, *,
                 backbone: str = "small", dim: int | None = None, tau: float = 0.03,
                 object_weights: str | Path | Mapping[str, torch.Tensor] | None = None) -> None:
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        if not float(obj_bounds[1]) > float(obj_bounds[0]):
            raise ValueError(f"obj_bounds must satisfy hi > lo, got {obj_bounds}")
        if av_model is None:
            av_model = EZVSL(backbone=backbone, dim=dim, tau=tau)
        if object_backbone is None:
            if object_weights is None:
                raise ValueError("EZVSLOGL needs a pretrained object backbone: pass object_backbone "
                                 "or object_weights ('imagenet'/a weights path for resnet18, the "
                                 "object-prior state_dict path for small)")
            object_backbone = build_image_encoder(av_model.backbone, object_weights)
        self.av_model = av_model
        self.object_backbone = object_backbone.requires_grad_(False).eval()
        self.alpha = float(alpha)
        self.obj_bounds = (float(obj_bounds[0]), float(obj_bounds[1]))

    def train(self, mode: bool = True) -> "EZVSLOGL":
        """Set train/eval mode of the AV model; the frozen object backbone always stays in eval."""
        super().train(mode)
        self.object_backbone.eval()
        return self

    def object_map(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> (B, h, w) raw objectness (mean |feature| of the frozen backbone)."""
        return objectness(self.object_backbone(image))

    def av_map(self, image: torch.Tensor, spec: torch.Tensor) -> torch.Tensor:
        """(B, h, w) the EZ-VSL map S_nn in units of cos/τ."""
        return self.av_model.raw_maps(image, spec)

    def fuse(self, av: torch.Tensor, obj: torch.Tensor) -> torch.Tensor:
        """α·(S + 1/τ)/(2/τ) + (1 − α)·clamp((o − lo)/(hi − lo), 0, 1) for maps of equal shape."""
        tau = self.av_model.tau
        av_score = (av + 1.0 / tau) / (2.0 / tau)  # = (cos + 1)/2
        lo, hi = self.obj_bounds
        obj_score = ((obj - lo) / (hi - lo)).clamp(0.0, 1.0)
        return self.alpha * av_score + (1.0 - self.alpha) * obj_score

    def raw_maps(self, image: torch.Tensor, spec: torch.Tensor) -> torch.Tensor:
        """(B, h, w) the fused map at the model's resolution (for display; `localize` upsamples first)."""
        av, obj = self.av_map(image, spec), self.object_map(image)
        if obj.shape[-2:] != av.shape[-2:]:  # object prior of another resolution: bring it to av's grid
            obj = upsample_maps(obj, tuple(av.shape[-2:]), self.upsample_mode, self.align_corners)
        return self.fuse(av.float(), obj.float())

    def maps_at(self, image: torch.Tensor, spec: torch.Tensor, size: int) -> torch.Tensor:
        """(B, size, size) fused map: each part upsampled, then normalized and fused (SLAVC order)."""
        av = upsample_maps(self.av_map(image, spec), size, self.upsample_mode, self.align_corners)
        obj = upsample_maps(self.object_map(image), size, self.upsample_mode, self.align_corners)
        return self.fuse(av, obj)
