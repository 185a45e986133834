"""SLAVC — Mo & Morgado, NeurIPS 2022, "A Closer Look at Weakly-Supervised Audio-Visual Source
Localization".

Original (stoneMo/SLAVC `model.py:SLAVC`, `train.py:train/validate`, `test.py:validate`,
`scripts/train_vggsound144k.sh`; see docs/methods/slavc.md):
- encoders as EZ-VSL's: ImageNet ResNet-18 trunk (`imgnet`) → (B, 512, 7, 7); spectrogram ResNet-18
  with a global max pool (`audnet`) → (B, 512).
- two heads per modality on the shared trunk: `img_proj1/2` (1×1 conv 512 → dim) and `aud_proj1/2`
  (Linear 512 → dim), each followed by L2 normalization. Dropout `img_dropout` (p = 0.9 in the
  script) acts on the visual trunk map before both heads, `aud_dropout` (p = 0) on the audio vector.
- momentum (EMA) copies of both trunks and all four heads (`momentum_imgnet`, `momentum_img_proj1`,
  ...), started as copies, never optimized (requires_grad=False). Every forward with
  mode='train' first sets θ̄ ← m·θ̄ + (1 − m)·θ for the *parameters* (m = 0.999 for both modalities in
  the script; BN running statistics are not averaged: the copies' own train-mode forwards update
  them), then runs the momentum branch under no_grad through the *same* dropout modules.
- objective, τ = 0.03, with S^j_nm(k) = ⟨v^j_n(k), a^j_m⟩/τ for head j:
      ℓ_nm(v, a) = log Σ_k softmax_m(S¹_nm(k)) · softmax_k(S²_nm(k))
      L = CE(ℓ(v̄, a), diag) + CE(ℓ(v, ā), diag)
  (bars: momentum features). Both terms are cross-entropies over the audios m of each image n
  (rows); "a2i"/"i2a" in the code only name which side is the momentum target.
- map: S̄_n = ½(S¹_nn + S²_nn), from the online encoders unless `--use_mom_eval`; `test.py` (no
  `--use_mom_eval`) upsamples it bicubically with align_corners=True, scores (S̄ + 1/τ)/(2/τ) =
  (cos + 1)/2 and takes the mean of the top 25 % as the confidence. `train.py:validate` uses the
  momentum encoders (the script passes `--use_mom_eval`) and bicubic with align_corners=False.

Ours: the same modules, attribute names and update order (online features, EMA update, momentum
features), so released checkpoints (`train.py` saves `{"model": DDP state_dict ("module." keys),
"optimizer", "epoch", "best_Precision", "best_AP", "best_F1"}`) load strictly with `load_weights`.
The momentum copies are parameters with requires_grad=False, so they are in the state_dict (an exact
resume) and Adam skips them (no gradient). Deviations, and why:
- the EMA runs in every forward in train mode (`self.training`) instead of on a `mode='train'`
  argument: our trainer calls `forward` only for training and validates through `localize`;
- `localize` uses the online encoders by default (`use_momentum_eval=False`, as `test.py`, which
  produced the reported numbers); our training-time validation goes through `localize` too, so BEST
  is selected on online maps where the original selected on momentum maps. Set
  `use_momentum_eval=True` for the original's validation maps (then testing uses them as well);
- the log-mixture is computed in log space, logsumexp_k(log_softmax_m S¹ + log_softmax_k S²), the
  same number as the code's log(Σ softmax·softmax) without its underflow for small τ;
- the trunk map is not reshaped through a hard-coded 512×7×7, so any input size and the small
  backbone (profiles smoke/quick, 56 px → 7×7, dim 128) work.
Confidence (from the raw map S̄, in units of cos/τ, `map_bounds` (−1/τ, 1/τ)): "max" = max of the
upsampled S̄; "topk_mean" = SLAVC's own score, the mean of the top 25 % of (S̄ + 1/τ)/(2/τ).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vslrepro.methods._backbones import build_backbones, official_init_
from vslrepro.methods._base import LocalizationMethod
from vslrepro.methods._registry import register

IMAGE_PARTS = ("imgnet", "img_proj1", "img_proj2")  # averaged with momentum_img
AUDIO_PARTS = ("audnet", "aud_proj1", "aud_proj2")  # averaged with momentum_aud


def head_similarity(image_features: torch.Tensor, audio_features: torch.Tensor, tau: float) -> torch.Tensor:
    """All-pairs similarities of one head, S_nm(k) = ⟨v_n(k), a_m⟩/τ, cells flattened.

    Args:
        image_features: (N, D, h, w) L2-normalized over D.
        audio_features: (M, D) L2-normalized.
        tau: temperature.

    Returns:
        (N, M, h·w) similarities.
    """
    cells = image_features.flatten(2)  # (N, D, h, w) -> (N, D, hw)
    return torch.matmul(audio_features, cells) / tau  # (M, D) @ (N, D, hw) -> (N, M, hw)


def mixture_logits(image_heads: tuple[torch.Tensor, torch.Tensor],
                   audio_heads: tuple[torch.Tensor, torch.Tensor], tau: float) -> torch.Tensor:
    """SLAVC's logits ℓ_nm = log Σ_k softmax_m(S¹_nm(k)) · softmax_k(S²_nm(k)).

    Head 1 is a per-cell softmax over the audios m (which audio belongs here?), head 2 a softmax over
    the cells k (where is audio m?); ℓ_nm is the log-probability that the attended cells identify
    audio m. Computed in log space (logsumexp of summed log-softmaxes): the same value as the code's
    `log((softmax * softmax).sum(2))`.

    Args:
        image_heads: (v¹, v²), each (N, D, h, w) L2-normalized.
        audio_heads: (a¹, a²), each (M, D) L2-normalized.
        tau: temperature.

    Returns:
        (N, M) logits (rows: images, columns: audios).
    """
    log_p1 = head_similarity(image_heads[0], audio_heads[0], tau).log_softmax(dim=1)  # over audios m
    log_p2 = head_similarity(image_heads[1], audio_heads[1], tau).log_softmax(dim=2)  # over cells k
    return torch.logsumexp(log_p1 + log_p2, dim=2)  # (N, M, hw) -> (N, M)


def slavc_loss(image_heads: tuple[torch.Tensor, torch.Tensor], audio_heads: tuple[torch.Tensor, torch.Tensor],
               momentum_image_heads: tuple[torch.Tensor, torch.Tensor],
               momentum_audio_heads: tuple[torch.Tensor, torch.Tensor], tau: float) -> torch.Tensor:
    """L = CE(ℓ(v̄, a), diag) + CE(ℓ(v, ā), diag), both over the audios of each image.

    Args:
        image_heads, audio_heads: online (v¹, v²) (B, D, h, w) and (a¹, a²) (B, D); pair n is
            (image n, audio n).
        momentum_image_heads, momentum_audio_heads: the same from the momentum encoders (targets).
        tau: temperature.

    Returns:
        The scalar loss.
    """
    image_to_audio = mixture_logits(image_heads, momentum_audio_heads, tau)  # (B, B), momentum audio
    audio_to_image = mixture_logits(momentum_image_heads, audio_heads, tau)  # (B, B), momentum images
    target = torch.arange(image_to_audio.shape[0], device=image_to_audio.device)
    return F.cross_entropy(audio_to_image, target) + F.cross_entropy(image_to_audio, target)


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy of `module` (weights and BN statistics) whose parameters take no gradient."""
    return copy.deepcopy(module).requires_grad_(False)


@register("slavc")
class SLAVC(LocalizationMethod):
    """SLAVC: `loss = model(image, spec)` (train mode also steps the EMA); `localize` as `test.py`.

    Args:
        backbone: "resnet18" (ImageNet-style, 224 px, profile paper) or "small" (56 px).
        dim: embedding size of every head; None → 512 for resnet18, 128 for small.
        tau: temperature τ (official 0.03).
        dropout_img: dropout on the visual trunk map, before both heads (script: 0.9).
        dropout_aud: dropout on the audio trunk vector (script: 0).
        momentum_img, momentum_aud: EMA momentum m of the visual / audio parts (script: 0.999; 1
            freezes the targets at their initial weights).
        use_momentum_eval: `raw_maps`/`localize` from the momentum encoders (`--use_mom_eval`, the
            original's training-time validation) instead of the online ones (`test.py`, default).
        image_weights: initial weights of the image trunk (see `EZVSL`); the momentum copy starts
            from the same weights.

    Raises:
        ValueError: for τ ≤ 0, a dropout outside [0, 1), a momentum outside [0, 1] or an unknown backbone.
    """

    display_name = "SLAVC"
    hyperparameter_ranges = {"dim": {"minimum": 1}, "tau": {"exclusiveMinimum": 0},
                             "dropout_img": {"minimum": 0, "exclusiveMaximum": 1},
                             "dropout_aud": {"minimum": 0, "exclusiveMaximum": 1},
                             "momentum_img": {"minimum": 0, "maximum": 1}, "momentum_aud": {"minimum": 0, "maximum": 1}}
    upsample_mode = "bicubic"
    align_corners = True

    def __init__(self, backbone: str = "small", dim: int | None = None, tau: float = 0.03,
                 dropout_img: float = 0.9, dropout_aud: float = 0.0, momentum_img: float = 0.999,
                 momentum_aud: float = 0.999, use_momentum_eval: bool = False,
                 image_weights: str | Path | Mapping[str, torch.Tensor] | None = None) -> None:
        super().__init__()
        if tau <= 0:
            raise ValueError(f"tau must be positive, got {tau}")
        for name, p in (("dropout_img", dropout_img), ("dropout_aud", dropout_aud)):
            if not 0.0 <= p < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {p}")
        for name, m in (("momentum_img", momentum_img), ("momentum_aud", momentum_aud)):
            if not 0.0 <= m <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {m}")
        if not isinstance(use_momentum_eval, bool):
            raise ValueError(f"use_momentum_eval must be true or false, got {use_momentum_eval!r}")
        image_net, audio_net, image_channels, audio_channels = build_backbones(backbone, image_weights)
        dim = dim if dim is not None else (512 if backbone == "resnet18" else 128)
        self.backbone, self.dim, self.tau = backbone, dim, float(tau)
        self.momentum_img, self.momentum_aud = float(momentum_img), float(momentum_aud)
        self.use_momentum_eval = use_momentum_eval
        self.map_bounds = (-1.0 / self.tau, 1.0 / self.tau)

        # online encoders: shared trunks, two heads per modality
        self.imgnet = image_net
        self.img_dropout = nn.Dropout(p=dropout_img)
        self.img_proj1 = official_init_(nn.Conv2d(image_channels, dim, kernel_size=(1, 1)))
        self.img_proj2 = official_init_(nn.Conv2d(image_channels, dim, kernel_size=(1, 1)))
        self.audnet = audio_net
        self.aud_proj1 = official_init_(nn.Linear(audio_channels, dim))
        self.aud_proj2 = official_init_(nn.Linear(audio_channels, dim))
        self.aud_dropout = nn.Dropout(p=dropout_aud)

        # momentum (EMA) encoders: start equal to the online ones, never optimized
        self.momentum_imgnet = frozen_copy(self.imgnet)
        self.momentum_img_proj1 = frozen_copy(self.img_proj1)
        self.momentum_img_proj2 = frozen_copy(self.img_proj2)
        self.momentum_audnet = frozen_copy(self.audnet)
        self.momentum_aud_proj1 = frozen_copy(self.aud_proj1)
        self.momentum_aud_proj2 = frozen_copy(self.aud_proj2)

    # ------------------------------------------------------------------ encoders

    def _part(self, name: str, momentum: bool) -> nn.Module:
        return getattr(self, f"momentum_{name}" if momentum else name)

    def image_features(self, image: torch.Tensor, momentum: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, S, S) -> (v¹, v²), each (B, D, h, w) L2-normalized over D; dropout on the trunk
        map (both branches share `img_dropout`, active in train mode only)."""
        trunk = self.img_dropout(self._part("imgnet", momentum)(image))  # (B, C, h, w)
        return (F.normalize(self._part("img_proj1", momentum)(trunk), dim=1),
                F.normalize(self._part("img_proj2", momentum)(trunk), dim=1))

    def audio_features(self, spec: torch.Tensor, momentum: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 1, F, T) -> (a¹, a²), each (B, D) L2-normalized; dropout on the trunk vector."""
        trunk = self.aud_dropout(self._part("audnet", momentum)(spec))  # (B, C)
        return (F.normalize(self._part("aud_proj1", momentum)(trunk), dim=1),
                F.normalize(self._part("aud_proj2", momentum)(trunk), dim=1))

    @torch.no_grad()
    def update_momentum(self) -> None:
        """θ̄ ← m·θ̄ + (1 − m)·θ for the parameters of every momentum part (not the BN buffers)."""
        for names, m in ((IMAGE_PARTS, self.momentum_img), (AUDIO_PARTS, self.momentum_aud)):
            for name in names:
                online = list(self._part(name, False).parameters())
                target = list(self._part(name, True).parameters())
                torch._foreach_mul_(target, m)
                torch._foreach_add_(target, online, alpha=1.0 - m)

    # ------------------------------------------------------------------ training and testing

    def forward(self, image: torch.Tensor, spec: torch.Tensor) -> torch.Tensor:
        """The training loss (scalar); in train mode the EMA step comes first, as in `model.py`."""
        image_heads, audio_heads = self.image_features(image), self.audio_features(spec)
        with torch.no_grad():
            if self.training:
                self.update_momentum()
            momentum_image_heads = self.image_features(image, momentum=True)
            momentum_audio_heads = self.audio_features(spec, momentum=True)
        return slavc_loss(image_heads, audio_heads, momentum_image_heads, momentum_audio_heads, self.tau)

    def raw_maps(self, image: torch.Tensor, spec: torch.Tensor) -> torch.Tensor:
        """S̄ = ½(S¹_nn + S²_nn): (B, h, w) in units of cos/τ, from the online encoders (or the
        momentum ones with `use_momentum_eval`)."""
        (v1, v2), (a1, a2) = (self.image_features(image, self.use_momentum_eval),
                              self.audio_features(spec, self.use_momentum_eval))
        s1 = torch.einsum("bdhw,bd->bhw", v1, a1) / self.tau  # (B,D,h,w),(B,D) -> (B,h,w)
        s2 = torch.einsum("bdhw,bd->bhw", v2, a2) / self.tau
        return (s1 + s2) / 2
