"""EZ-VSL — Mo & Morgado, ECCV 2022, "Localizing Visual Sounds the Easy Way".

Original (stoneMo/EZ-VSL `model.py`, `test.py`; see docs/methods/ezvsl.md):
- image: ImageNet ResNet-18 trunk (`imgnet`) → 1×1 conv (`img_proj`, 512 → dim) → L2 over channels
  → v (B, D, 7, 7); audio: spectrogram ResNet-18 with global max pool (`audnet`) → Linear
  (`aud_proj`, 512 → dim) → L2 → a (B, D).
- S_nm(k) = ⟨v_n(k), a_m⟩/τ, τ = 0.03; MIL logit ℓ_nm = max_k S_nm(k);
  L = CE(ℓ, diag) + CE(ℓᵀ, diag): symmetric InfoNCE through the spatial max, in-batch negatives.
- map: S_nn on the 7×7 grid; `test.py` upsamples it bilinearly with align_corners=True
  (`train.py:validate` uses bicubic, align_corners=False — we follow test.py), then min–max and
  median threshold (done by vslrepro.metrics).
- Adam, lr 1e-4, batch 128, dim 512 (the trainer's and the profiles' business).

Ours: the same model, loss and map, with the same parameter names, so the official checkpoints
(`imgnet.*`, `img_proj.*`, `audnet.*`, `aud_proj.*`, possibly under "model" and "module.") load with
`load_official_checkpoint`. Deviations:
- the image map is not reshaped through a hard-coded 512×7×7, so any input size works; the small
  backbone (profiles smoke/quick) gives 7×7 at 56 px with dim 128;
- confidence (the original has none): "max" = max of the upsampled S_nn (in units of cos/τ),
  "topk_mean" = SLAVC's top-25 % mean of (S + 1/τ)/(2/τ) = (cos + 1)/2, i.e. map_bounds (−1/τ, 1/τ);
- negatives are the whole batch the loss sees; under DDP the trainer decides whether that is the
  per-GPU batch (as the original: no all-gather) — see vslrepro.train.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vslrepro.methods._backbones import build_backbones, official_init_
from vslrepro.methods._base import LocalizationMethod
from vslrepro.methods._checkpoints import load_state_dict_file
from vslrepro.methods._registry import register


def mil_similarity(image_features: torch.Tensor, audio_features: torch.Tensor, tau: float) -> torch.Tensor:
    """All-pairs similarity maps S_nm(k) = ⟨v_n(k), a_m⟩/τ.

    Args:
        image_features: (N, D, h, w) L2-normalized over D.
        audio_features: (M, D) L2-normalized.
        tau: temperature.

    Returns:
        (N, M, h, w) similarity maps.
    """
    return torch.einsum("ndhw,md->nmhw", image_features, audio_features) / tau  # (N,D,h,w),(M,D) -> (N,M,h,w)


def mil_contrastive_loss(image_features: torch.Tensor, audio_features: torch.Tensor,
                         tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """EZ-VSL's max-pooled cross-modal MIL loss (symmetric InfoNCE over the batch).

    Args:
        image_features: (B, D, h, w) L2-normalized visual features.
        audio_features: (B, D) L2-normalized audio embeddings; pair n is (image n, audio n).
        tau: temperature.

    Returns:
        (loss, logits): the scalar loss CE(ℓ, diag) + CE(ℓᵀ, diag) and the MIL logits ℓ (B, B),
        ℓ_nm = max_k S_nm(k) (rows: images, columns: audios).
    """
    similarity = mil_similarity(image_features, audio_features, tau)  # (B, B, h, w)
    logits = similarity.flatten(2).max(dim=2).values  # (B, B, hw) -> (B, B)
    target = torch.arange(logits.shape[0], device=logits.device)
    loss = F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)
    return loss, logits


@register("ezvsl")
class EZVSL(LocalizationMethod):
    """EZ-VSL: `loss = model(image, spec)`; `maps, confidence = model.localize(image, spec)`.

    Args:
        backbone: "resnet18" (ImageNet-style, 224 px, profile paper) or "small" (56 px).
        dim: embedding size; None → 512 for resnet18, 128 for small.
        tau: temperature τ (official 0.03).
        image_weights: initial weights of the image encoder: for resnet18 "imagenet" or a path to a
            torchvision ResNet-18 state_dict; for small a path to (or a) object-prior state_dict
            (vslrepro.objectprior); None → random initialization.
    """

    display_name = "EZ-VSL"
    hyperparameter_ranges = {"dim": {"minimum": 1}, "tau": {"exclusiveMinimum": 0}}
    upsample_mode = "bilinear"
    align_corners = True

    def __init__(self, backbone: str = "small", dim: int | None = None, tau: float = 0.03,
                 image_weights: str | Path | Mapping[str, torch.Tensor] | None = None) -> None:
        super().__init__()
        if tau <= 0:
            raise ValueError(f"tau must be positive, got {tau}")
        image_net, audio_net, image_channels, audio_channels = build_backbones(backbone, image_weights)
        dim = dim if dim is not None else (512 if backbone == "resnet18" else 128)
        self.backbone, self.dim, self.tau = backbone, dim, float(tau)
        self.imgnet = image_net
        self.img_proj = nn.Conv2d(image_channels, dim, kernel_size=(1, 1))
        self.audnet = audio_net
        self.aud_proj = nn.Linear(audio_channels, dim)
        official_init_(self.img_proj)
        official_init_(self.aud_proj)
        self.map_bounds = (-1.0 / self.tau, 1.0 / self.tau)

    def image_features(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> (B, D, h, w) visual features, L2-normalized over D."""
        return F.normalize(self.img_proj(self.imgnet(image)), dim=1)

    def audio_features(self, spec: torch.Tensor) -> torch.Tensor:
        """(B, 1, F, T) -> (B, D) audio embeddings, L2-normalized."""
        return F.normalize(self.aud_proj(self.audnet(spec)), dim=1)

    def forward(self, image: torch.Tensor, spec: torch.Tensor) -> torch.Tensor:
        """The training loss (scalar) on a batch of matching (image, spec) pairs."""
        loss, _ = mil_contrastive_loss(self.image_features(image), self.audio_features(spec), self.tau)
        return loss

    def raw_maps(self, image: torch.Tensor, spec: torch.Tensor) -> torch.Tensor:
        """S_nn: (B, h, w) similarity of each image's cells with its own audio, in units of cos/τ."""
        v, a = self.image_features(image), self.audio_features(spec)
        return torch.einsum("bdhw,bd->bhw", v, a) / self.tau  # (B,D,h,w),(B,D) -> (B,h,w)


def load_official_checkpoint(model: EZVSL, checkpoint: str | Path | Mapping) -> EZVSL:
    """Load an official EZ-VSL checkpoint (or one of ours) into `model`, strictly.

    Args:
        model: an `EZVSL` with the checkpoint's backbone and dim (official: backbone="resnet18", dim=512).
        checkpoint: a path to a `.pth` file, or the loaded dict; keys `imgnet.*`, `img_proj.*`,
            `audnet.*`, `aud_proj.*`, optionally nested under "model" and prefixed "module." (DDP);
            numpy scalars pickled under numpy 1.x beside the weights are fine
            (`vslrepro.methods._checkpoints`).

    Returns:
        The model, filled.

    Raises:
        FileNotFoundError: if the file does not exist.
        DataError: naming the checkpoint and listing missing/unexpected keys or mismatched shapes.
    """
    load_state_dict_file(model, checkpoint)
    return model
