"""EZ-VSL + OGL (object-guided localization) — Mo & Morgado, ECCV 2022, "Localizing Visual Sounds
the Easy Way", Sec. "Object-guided localization"; two official evaluation variants.

Original. OGL fuses EZ-VSL's audio-visual map S (cos/τ on the 7×7 grid) with an objectness map: a
*separate, freshly loaded* ImageNet ResNet-18 (not EZ-VSL's fine-tuned image encoder), whose layer4
map (B, 512, 7, 7) is reduced to the mean |feature| over channels, (B, 7, 7). Two official scripts
fuse the two maps differently:

- ``ezvsl_ogl`` — stoneMo/EZ-VSL `test.py:validate` (with `utils.py:normalize_img`): S and the
  objectness map are each upsampled to 224² (bilinear, align_corners=True), each min–max normalized
  per sample, fused as α·AV + (1 − α)·OBJ with α = 0.4 (every `scripts/test_*.sh`), and the sum is
  min–max normalized again. `normalize_img` leaves a constant map unchanged (no division by zero).
  It reports LocAcc only and computes no confidence.
- ``ezvsl_ogl_slavc`` — stoneMo/SLAVC `test.py:validate`: both maps upsampled to 224² with
  bicubic, align_corners=True; fixed-bound scores AV = (S + 1/τ)/(2/τ) = (cos + 1)/2 and
  OBJ = (o − 0)/(2.5 − 0) (no clamp); fused = α·AV + (1 − α)·OBJ with α = 0.9
  (`scripts/test_extended_*.sh`; the argparse default is 0.4); confidence = mean of the top ⌊n/4⌋
  values of the fused map.

Which table uses which: the paper profile evaluates both; Table 2's OGL row comes from
`ezvsl_ogl`, Tables 3–4's from `ezvsl_ogl_slavc` (the paper's Table 4 has no OGL row). The paper
prints the same OGL numbers as Table 2's NO-Early-Stop LocAcc and Table 3's Precision (72.80 /
37.86), which one map would produce; the split follows the official code that computes each kind of
metric, not the printed numbers.

Ours: one base class (`ObjectGuidedLocalization`) holds the object-map machinery (frozen backbone,
objectness, loading the "ezvsl" run's weights, building from a profile); the two registered
subclasses differ in upsampling, fusion and confidence, each following its script's order of
operations (upsample, normalize each part, fuse) in float32, as the originals. Deviations, and why:

- Confidence of `ezvsl_ogl`: its fused map is per-sample min–max normalized, so its maximum is 1 for
  every sample and it cannot rank samples; the original computes none. Ours returns the AV part's
  scores, i.e. exactly EZ-VSL's: "max" = max of the upsampled S, "topk_mean" = top-25 % mean of
  (S + 1/τ)/(2/τ). With the absolute binarization the fused map (already on [0, 1]) is thresholded as
  is (`map_bounds` (0, 1)); the original uses the relative (median) threshold only.
- Confidence of `ezvsl_ogl_slavc`: "topk_mean" as SLAVC (bounds (0, 1) on the fused score; our top-k
  takes ⌊n/4⌋ values, the same 12,544 pixels at 224²), plus "max" of the fused map.
- OBJ upper bound of `ezvsl_ogl_slavc`: 2.5 is the scale of the ImageNet ResNet-18 layer4 map and is
  kept for the resnet18 backbone (profile paper). For the small backbone (profiles smoke/quick, whose
  object backbone is the synthetic object prior) that number is meaningless: the upper bound is the
  99th percentile of the objectness values on (at most 512) validation frames of the dataset
  (`object_map_quantile`); the lower bound stays 0. A profile may set `obj_bounds` explicitly.
- Input size: the object map is not reshaped through a hard-coded 512×7×7, so the small backbone
  (56 px → 7×7) works; an object map of another resolution than S is upsampled separately to the
  output size anyway.
- The object backbone is the profile's pretrained image encoder (`vslrepro.pretrained`): ImageNet
  ResNet-18 for paper, the synthetic object prior for smoke/quick; frozen, always in eval mode.
- Not trainable: both reuse the "ezvsl" training run (`trains_as = "ezvsl"`); `load_weights` fills
  the AV model from that run's checkpoint (or an official EZ-VSL release).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from vslrepro.methods._backbones import build_image_encoder
from vslrepro.methods._base import Localization, LocalizationMethod, confidence_scores, unit_scale, upsample_maps
from vslrepro.methods._registry import register
from vslrepro.methods.ezvsl import EZVSL

IMAGENET_OBJ_BOUNDS = (0.0, 2.5)  # SLAVC test.py, for the ImageNet ResNet-18 layer4 map
CALIBRATION_FRAMES = 512          # validation frames used for the data-driven OBJ bound (small backbone)
CALIBRATION_QUANTILE = 0.99       # quantile of the objectness values used as that bound


def objectness(features: torch.Tensor) -> torch.Tensor:
    """The OGL objectness map: mean |feature| over channels, (B, C, h, w) -> (B, h, w)."""
    return features.abs().mean(dim=1)


def minmax_per_sample(maps: torch.Tensor) -> torch.Tensor:
    """(B, H, W) -> each map rescaled to (x − min)/(max − min); a constant map is left unchanged.

    This is EZ-VSL's `utils.py:normalize_img`, applied to every sample of the batch.
    """
    lo = maps.amin(dim=(1, 2), keepdim=True)  # (B, 1, 1)
    hi = maps.amax(dim=(1, 2), keepdim=True)  # (B, 1, 1)
    span = hi - lo
    constant = span == 0
    scaled = (maps - lo) / torch.where(constant, torch.ones_like(span), span)
    return torch.where(constant, maps, scaled)


@torch.no_grad()
def object_map_quantile(object_backbone: nn.Module, images: torch.Tensor, q: float = CALIBRATION_QUANTILE,
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
    values = []
    for i in range(0, images.shape[0], batch_size):
        maps = objectness(object_backbone(images[i:i + batch_size]))  # (b, h, w)
        values.append(maps.flatten().float().cpu())  # (b, h, w) -> (b·h·w,)
    object_backbone.train(was_training)
    return float(torch.quantile(torch.cat(values), q))


class ObjectGuidedLocalization(LocalizationMethod):
    """EZ-VSL's AV map fused with the objectness map of a frozen image encoder (evaluation only).

    The shared part of both OGL variants; subclasses set `upsample_mode` / `align_corners` and
    define `fuse` (and the confidence, if not that of the fused map).

    Args:
        av_model: a trained `EZVSL`; None → one built from `backbone`, `dim`, `tau` (fill it with
            `load_weights(<the "ezvsl" run's checkpoint>)` afterwards).
        object_backbone: the frozen pretrained image encoder giving (B, C, h, w); None → built with
            `build_image_encoder(backbone, object_weights)`.
        alpha: weight of the AV map in the fusion, in [0, 1].
        backbone, dim, tau: configuration of the `EZVSL` built when `av_model` is None.
        object_weights: weights of the object backbone built when `object_backbone` is None
            ("imagenet" or a path for resnet18; an object-prior path or state_dict for small).

    Raises:
        ValueError: for alpha outside [0, 1], or neither an object backbone nor its weights.
    """

    trainable = False
    trains_as = "ezvsl"
    map_bounds = (0.0, 1.0)

    def __init__(self, av_model: EZVSL | None = None, object_backbone: nn.Module | None = None,
                 alpha: float = 0.4, *, backbone: str = "small", dim: int | None = None,
                 tau: float = 0.03,
                 object_weights: str | Path | Mapping[str, torch.Tensor] | None = None) -> None:
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        if av_model is None:
            av_model = EZVSL(backbone=backbone, dim=dim, tau=tau)
        if object_backbone is None:
            if object_weights is None:
                raise ValueError(f"{type(self).__name__} needs a pretrained object backbone: pass "
                                 "object_backbone or object_weights ('imagenet'/a weights path for "
                                 "resnet18, the object-prior state_dict path for small)")
            object_backbone = build_image_encoder(av_model.backbone, object_weights)
        self.av_model = av_model
        self.object_backbone = object_backbone.requires_grad_(False).eval()
        self.alpha = float(alpha)

    # ------------------------------------------------------------------ weights

    def load_weights(self, checkpoint: str | Path) -> "ObjectGuidedLocalization":
        """Fill the AV model from an EZ-VSL checkpoint (ours or official), strictly; the object
        backbone keeps its pretrained weights."""
        self.av_model.load_weights(checkpoint)
        return self

    # ------------------------------------------------------------------ maps

    def train(self, mode: bool = True) -> "ObjectGuidedLocalization":
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
        """The fused map from the AV map S and the raw objectness map, both (B, H, W)."""
        raise NotImplementedError(f"{type(self).__name__} must implement fuse(av, obj)")

    def parts_at(self, image: torch.Tensor, spec: torch.Tensor,
                 size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(S, objectness), each (B, size, size), upsampled with the variant's mode (float32)."""
        av = upsample_maps(self.av_map(image, spec), size, self.upsample_mode, self.align_corners)
        obj = upsample_maps(self.object_map(image), size, self.upsample_mode, self.align_corners)
        return av, obj

    def raw_maps(self, image: torch.Tensor, spec: torch.Tensor) -> torch.Tensor:
        """(B, h, w) the fusion applied on S's own grid (for display; `localize` upsamples first,
        as the originals do)."""
        av, obj = self.av_map(image, spec).float(), self.object_map(image).float()
        if obj.shape[-2:] != av.shape[-2:]:  # object map of another resolution: bring it to S's grid
            obj = upsample_maps(obj, tuple(av.shape[-2:]), self.upsample_mode, self.align_corners)
        return self.fuse(av, obj)

    def maps_at(self, image: torch.Tensor, spec: torch.Tensor, size: int) -> torch.Tensor:
        """(B, size, size) the fused map: both parts upsampled, then normalized and fused."""
        return self.fuse(*self.parts_at(image, spec, size))


@register("ezvsl_ogl")
class EZVSLOGL(ObjectGuidedLocalization):
    """EZ-VSL + OGL as EZ-VSL `test.py`: minmax(α·minmax(AV) + (1 − α)·minmax(OBJ)), bilinear.

    The fused map is per-sample min–max normalized (maximum 1 for every sample), so it cannot rank
    samples and the original computes no confidence; `localize` returns the AV part's scores
    instead — EZ-VSL's own: "max" of the upsampled S and "topk_mean" of (S + 1/τ)/(2/τ).

    Args: see `ObjectGuidedLocalization` (alpha: EZ-VSL's scripts use 0.4, the default).
    """

    display_name = "EZ-VSL + OGL"
    hyperparameter_ranges = {"alpha": {"minimum": 0, "maximum": 1}}
    upsample_mode = "bilinear"
    align_corners = True

    def fuse(self, av: torch.Tensor, obj: torch.Tensor) -> torch.Tensor:
        """minmax(minmax(av)·α + minmax(obj)·(1 − α)), min–max per sample (constant maps kept)."""
        pred_av, pred_obj = minmax_per_sample(av), minmax_per_sample(obj)
        return minmax_per_sample(pred_av * self.alpha + pred_obj * (1.0 - self.alpha))

    def localize(self, image: torch.Tensor, spec: torch.Tensor, size: int = 224) -> Localization:
        """The fused map (B, size, size) and the AV part's confidences (see the class docstring)."""
        av, obj = self.parts_at(image, spec, size)
        return Localization(self.fuse(av, obj), confidence_scores(av, self.av_model.map_bounds))


@register("ezvsl_ogl_slavc")
class EZVSLOGLSLAVC(ObjectGuidedLocalization):
    """EZ-VSL + OGL as SLAVC `test.py`: α·(S + 1/τ)/(2/τ) + (1 − α)·(o − lo)/(hi − lo), bicubic.

    Confidences are those of the fused map with bounds (0, 1): "topk_mean" (SLAVC's top-25 % mean)
    and "max".

    Args:
        alpha: weight of the AV map (SLAVC's extended-set scripts: 0.9, the default).
        obj_bounds: (lo, hi) fixed bounds of the objectness map; None (the default): (0, 2.5) for
            the ImageNet ResNet-18 (SLAVC), and for the small backbone (0, hi) with hi set by
            `calibrate` from validation frames (`object_map_quantile`).
        others: see `ObjectGuidedLocalization`.

    Raises:
        ValueError: also for non-increasing `obj_bounds`.
    """

    display_name = "EZ-VSL + OGL (SLAVC)"
    upsample_mode = "bicubic"
    align_corners = True

    def __init__(self, av_model: EZVSL | None = None, object_backbone: nn.Module | None = None,
                 alpha: float = 0.9, obj_bounds: tuple[float, float] | None = None, *,
                 backbone: str = "small", dim: int | None = None, tau: float = 0.03,
                 object_weights: str | Path | Mapping[str, torch.Tensor] | None = None) -> None:
        super().__init__(av_model, object_backbone, alpha, backbone=backbone, dim=dim, tau=tau,
                         object_weights=object_weights)
        if obj_bounds is None and self.av_model.backbone == "resnet18":
            obj_bounds = IMAGENET_OBJ_BOUNDS
        self.obj_bounds: tuple[float, float] | None = None
        if obj_bounds is not None:
            lo, hi = float(obj_bounds[0]), float(obj_bounds[1])
            if not hi > lo:
                raise ValueError(f"obj_bounds must satisfy hi > lo, got {obj_bounds}")
            self.obj_bounds = (lo, hi)

    def calibration_frames(self) -> int:
        """Without bounds (the small backbone, none given): ≤ 512 validation frames set the upper one."""
        return CALIBRATION_FRAMES if self.obj_bounds is None else 0

    def calibrate(self, frames: torch.Tensor) -> None:
        """OBJ bounds (0, 99th percentile of the objectness over `frames`), (B, 3, S, S) normalized;
        bounds already set (given, or SLAVC's for resnet18) are kept."""
        if self.obj_bounds is None:
            self.obj_bounds = (0.0, object_map_quantile(self.object_backbone, frames, q=CALIBRATION_QUANTILE))

    def fuse(self, av: torch.Tensor, obj: torch.Tensor) -> torch.Tensor:
        """scores_av·α + scores_obj·(1 − α) with the fixed bounds (−1/τ, 1/τ) and `obj_bounds`.

        Raises:
            RuntimeError: before `calibrate` when no bounds were given (small backbone).
        """
        if self.obj_bounds is None:
            raise RuntimeError(f"{self.name}: no objectness bounds: give obj_bounds, or call calibrate(frames) "
                               "with validation frames first (vslrepro.factory does)")
        scores_av = unit_scale(av, self.av_model.map_bounds)
        scores_obj = unit_scale(obj, self.obj_bounds)
        return scores_av * self.alpha + scores_obj * (1.0 - self.alpha)
