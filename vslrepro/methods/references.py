"""Reference "methods" that look at nothing: a random map and a centre prior.

They bracket what the metrics can say. Neither is in the paper's tables as a method, but the
synthetic benchmark is calibrated against the centre prior (docs/synthetic.md), and a random map is
the chance level of LocAcc/AP/max-F1. Both accept (image, spec) like every method and ignore what
the inputs show; neither is trainable.

- `RandomMap`: i.i.d. uniform values on a 7×7 grid (EZ-VSL's resolution), upsampled like EZ-VSL
  (bilinear, align_corners=True). The random numbers of sample i come from a generator seeded with
  the key (seed, a hash of the bytes of image i and spec i) (`content_seed`, `vslrepro.seeding`):
  the same inputs give the same map for
  any batch size, batch order or device split, and different clips give independent maps. Its
  confidences ("max", "topk_mean" of the random map) are therefore random too, independent of
  whether the source is visible: AP and max-F1 sit at chance. (Inputs that differ in their bytes —
  e.g. frames normalized on GPU vs CPU — give other maps: reproducible for identical tensors only.)
- `CenterPrior`: a centred isotropic Gaussian, the same for every sample, evaluated directly at the
  output resolution. Its relative binarization is a centred disc of half the frame. Its confidence
  is the same constant for every sample, so AP is degenerate (0 with the official evaluator, whose
  thresholds cannot separate equal scores) — that is the point: it measures how much LocAcc a
  method gets for free from object placement, not detection.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from vslrepro.methods._base import LocalizationMethod
from vslrepro.methods._registry import register
from vslrepro.seeding import derive_seed


def content_seed(seed: int, *tensors: torch.Tensor) -> int:
    """A seed derived from `seed` and the exact bytes of `tensors` (as float32 on CPU): the key
    (seed, 64-bit BLAKE2b digest of the content as two 32-bit words), purpose "content"."""
    digest = hashlib.blake2b(digest_size=8)
    for tensor in tensors:
        data = tensor.detach().to("cpu", torch.float32).contiguous()
        digest.update(str(tuple(data.shape)).encode())
        digest.update(data.numpy().tobytes())
    words = np.frombuffer(digest.digest(), dtype="<u4")  # 8 bytes -> 2 uint32
    return derive_seed(seed, *words, purpose="content")


@register("random")
class RandomMap(LocalizationMethod):
    """Uniform random maps on a `resolution`×`resolution` grid, seeded per sample from its content.

    Args:
        seed: the seed mixed into every sample's content hash.
        resolution: side of the random grid (7, as EZ-VSL's map).
    """

    display_name = "Random map"
    trainable = False
    upsample_mode = "bilinear"
    align_corners = True
    map_bounds = (0.0, 1.0)

    def __init__(self, seed: int = 0, resolution: int = 7) -> None:
        super().__init__()
        if resolution < 1:
            raise ValueError(f"resolution must be >= 1, got {resolution}")
        self.seed, self.resolution = int(seed), int(resolution)

    def raw_maps(self, image: torch.Tensor, spec: torch.Tensor) -> torch.Tensor:
        """(B, r, r) uniform [0, 1) maps, one generator per sample seeded from (seed, image_i, spec_i)."""
        if image.shape[0] != spec.shape[0]:
            raise ValueError(f"image batch {image.shape[0]} and spec batch {spec.shape[0]} differ")
        maps = []
        for i in range(image.shape[0]):
            generator = torch.Generator().manual_seed(content_seed(self.seed, image[i], spec[i]))
            maps.append(torch.rand((self.resolution, self.resolution), generator=generator))
        return torch.stack(maps).to(image.device)  # B x (r, r) -> (B, r, r)


def gaussian_center_map(size: int, sigma: float) -> torch.Tensor:
    """exp(−d²/(2σ²)) at pixel centres, d the distance to the frame centre in units of the side.

    Args:
        size: side in pixels.
        sigma: standard deviation as a fraction of the side.

    Returns:
        (size, size) float32 map in (0, 1], symmetric about the centre.
    """
    coords = (torch.arange(size, dtype=torch.float64) + 0.5) / size - 0.5  # (size,) in (-0.5, 0.5)
    d2 = coords[:, None] ** 2 + coords[None, :] ** 2  # (size, 1) + (1, size) -> (size, size)
    return torch.exp(-d2 / (2.0 * sigma**2)).float()


@register("center")
class CenterPrior(LocalizationMethod):
    """A centred isotropic Gaussian map, identical for every sample (confidence constant).

    Args:
        sigma: standard deviation as a fraction of the frame side (0.25).
        resolution: side of the map returned by `raw_maps` (7, as EZ-VSL); `localize` evaluates the
            Gaussian directly at the output size instead of upsampling it.
    """

    display_name = "Centre prior"
    trainable = False
    map_bounds = (0.0, 1.0)

    def __init__(self, sigma: float = 0.25, resolution: int = 7) -> None:
        super().__init__()
        if sigma <= 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        self.sigma, self.resolution = float(sigma), int(resolution)

    def _batch(self, image: torch.Tensor, size: int) -> torch.Tensor:
        one = gaussian_center_map(size, self.sigma).to(image.device)
        return one.expand(image.shape[0], size, size).clone()  # (size, size) -> (B, size, size)

    def raw_maps(self, image: torch.Tensor, spec: torch.Tensor) -> torch.Tensor:
        """(B, r, r) the Gaussian on the `resolution` grid."""
        return self._batch(image, self.resolution)

    def maps_at(self, image: torch.Tensor, spec: torch.Tensor, size: int) -> torch.Tensor:
        """(B, size, size) the Gaussian evaluated at the output pixels."""
        return self._batch(image, size)
