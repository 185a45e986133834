"""LVS — Chen et al., CVPR 2021, "Localizing Visual Sounds the Hard Way".

Original (hche11/Localizing-Visual-Sounds-the-Hard-Way, an inference-only release: `model.py`
`AVENet.forward`, `models/base_models.py` `ResNet`, `test.py` `main`; see docs/methods/lvs.md):
- encoders: a ResNet-18 for each modality whose layer4 has stride 1 (image 224 px → 14×14; the audio
  network is the same class, so its layer4 has stride 1 too), no projection heads. Image: the 512-d
  layer4 features L2-normalized per cell, v_i(k). Audio: global max pool of layer4, L2 → a_i.
- response maps: A_ij(k) = ⟨v_i(k), a_j⟩ (cosines, no temperature); A_i = A_ii.
- differentiable tri-map on A_i with ε_p = 0.65, ε_n = 0.4, mask temperature 0.03:
  positive m⁺ = σ((A_i − ε_p)/0.03), hard negative m⁻ = 1 − σ((A_i − ε_n)/0.03).
- P_i = Σ_k m⁺A_i / Σ_k m⁺ (positive), H_i = Σ_k m⁻A_i / Σ_k m⁻ (hard negative: the own image's
  background), E_ij = Σ_k m⁺_ij A_ij / Σ_k m⁺_ij with m⁺_ij = σ((A_ij − ε_p)/0.03) (easy
  negatives, every pair of the batch); the diagonal of E is multiplied by (1 − 100) = −99.
- logits [P_i, E_i1 … E_iB, H_i] / 0.07 (`model.py` builds the tri-map and the H column under its
  `--tri_map` and `--Neg` flags, which the released `test.py` leaves off: no effect on the map;
  training follows the paper, with both). The released code stops at the logits; the loss is the
  cross-entropy with target 0 (the positive), as the paper's Eq. for L states.
- map: A_i (14×14), resized with `cv2.resize(..., INTER_LINEAR)` to 224² (half-pixel centres, i.e.
  bilinear with align_corners=False), min–max, median threshold (vslrepro.metrics does the last two).

Ours: the same features, tri-map and logits, with the encoders of `build_backbones` (`imgnet`,
`audnet`; `layer4_stride=1` as the original). Deviations and choices:
- paper vs code: the paper writes the easy negatives as the plain spatial mean of A_ij; the code uses
  the soft-foreground-weighted mean E_ij above. We follow the code.
- diagonal: kept as in the code (E_ii × −99 inside the logits). It removes the own pair from the
  negatives only because E_ii ≥ 0, which holds because both encoders end in a ReLU (non-negative
  features give non-negative cosines); with E_ii < 0 it would instead become a huge logit.
- Σ m A / Σ m is computed as Σ_k softmax_k(log σ(·)) A_k — the same ratio, written so that it is
  never 0/0 (the original's hard-negative mass 1 − σ(·) rounds to exactly 0 in float32 once every
  cell has A > ε_n + 17·0.03 ≈ 0.91, and then gives NaN); the background mask is σ((ε_n − A)/τ_m),
  equal to 1 − σ((A − ε_n)/τ_m) without the cancellation.
- initialization: the original re-initializes every conv/BN of both networks (Kaiming fan_out, BN
  weight ~ N(1, 0.02)) and never loads ImageNet (its loading lines are commented out), while the
  paper starts the image network from ImageNet. We follow the paper (`image_weights`, profile
  `paper`: ImageNet; smoke/quick: the synthetic object prior) and use the original's init otherwise.
- checkpoints: the original's ResNet class holds three conv1s (`conv1` 3-channel, `conv1_a`
  1-channel, `conv1_flow` 6-channel) and an `fc` in each network; the forward uses `conv1` for the
  image and `conv1_a` for the audio. `load_weights` renames `audnet.conv1_a` → `audnet.conv1` and
  drops the unused ones (`original_layout_state_dict`); everything else must match strictly.
- the small backbone (smoke/quick) with layer4_stride=1 gives 14×14 at 56 px, like ResNet-18 at 224.

Confidence: "max" = the maximum of the upsampled A_i, in cosine units (within [−1, 1]; bilinear
interpolation can only lower an interior peak slightly); "topk_mean" = SLAVC's top-25 % mean of
(A + 1)/2, i.e. map_bounds (−1, 1).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F

from vslrepro.methods._backbones import build_backbones, official_init_
from vslrepro.methods._base import LocalizationMethod
from vslrepro.methods._checkpoints import load_state_dict_file
from vslrepro.methods._registry import register


def response_maps(image_features: torch.Tensor, audio_features: torch.Tensor) -> torch.Tensor:
    """All-pairs response maps A_nm(k) = ⟨v_n(k), a_m⟩ (cosines: no temperature).

    Args:
        image_features: (N, C, h, w) L2-normalized over C.
        audio_features: (M, C) L2-normalized.

    Returns:
        (N, M, h, w) response maps.
    """
    return torch.einsum("nchw,mc->nmhw", image_features, audio_features)  # (N,C,h,w),(M,C) -> (N,M,h,w)


def _soft_masked_mean(responses: torch.Tensor, log_weights: torch.Tensor) -> torch.Tensor:
    """Σ_k w_k A_k / Σ_k w_k over the last two dims, from log w (a softmax: never 0/0)."""
    weights = torch.softmax(log_weights.flatten(-2), dim=-1)  # (..., h, w) -> (..., hw)
    return (weights * responses.flatten(-2)).sum(-1)  # (..., hw) -> (...)


def foreground_responses(responses: torch.Tensor, epsilon_pos: float, mask_tau: float) -> torch.Tensor:
    """Soft-foreground means Σ_k m A_nm(k) / Σ_k m with m = σ((A_nm − ε_p)/τ_m) (`model.py` sim1, sim).

    Args:
        responses: (N, M, h, w) response maps A_nm.
        epsilon_pos: ε_p, the positive threshold (original 0.65).
        mask_tau: τ_m, the mask temperature (original 0.03).

    Returns:
        (N, M): P_n on the diagonal (own pairs), E_nm off it.
    """
    return _soft_masked_mean(responses, F.logsigmoid((responses - epsilon_pos) / mask_tau))


def background_responses(own_responses: torch.Tensor, epsilon_neg: float, mask_tau: float) -> torch.Tensor:
    """Hard negatives H_n = Σ_k m⁻ A_n(k) / Σ_k m⁻, m⁻ = 1 − σ((A_n − ε_n)/τ_m) (`model.py` sim2).

    The own image's soft background: its mean response to its own sound.

    Args:
        own_responses: (N, h, w) maps A_n of each image with its own audio.
        epsilon_neg: ε_n, the negative threshold (original 0.4).
        mask_tau: τ_m, the mask temperature (original 0.03).

    Returns:
        (N,) the soft-background mean of each own map.
    """
    # 1 − σ(x) = σ(−x): the same mask without cancellation when A is far above ε_n
    return _soft_masked_mean(own_responses, F.logsigmoid((epsilon_neg - own_responses) / mask_tau))


def lvs_logits(responses: torch.Tensor, epsilon_pos: float, epsilon_neg: float, mask_tau: float,
               tau: float) -> torch.Tensor:
    """The original's logits [P_n, E_n1 … E_nN (diagonal × −99), H_n] / τ.

    Args:
        responses: (N, N, h, w) all-pairs maps A_nm; pair n is (image n, audio n).
        epsilon_pos, epsilon_neg, mask_tau: the tri-map thresholds and mask temperature.
        tau: the contrastive temperature (original 0.07).

    Returns:
        (N, N + 2) logits; column 0 is the positive.
    """
    n = responses.shape[0]
    foreground = foreground_responses(responses, epsilon_pos, mask_tau)  # (N, N)
    positive = foreground.diagonal()  # (N,) P_n = E_nn
    own = responses.diagonal().permute(2, 0, 1)  # (h, w, N) -> (N, h, w): A_n
    hard = background_responses(own, epsilon_neg, mask_tau)  # (N,)
    diagonal_mask = 1.0 - 100.0 * torch.eye(n, dtype=responses.dtype, device=responses.device)
    easy = foreground * diagonal_mask  # (N, N), own pair × −99 as in model.py
    return torch.cat([positive[:, None], easy, hard[:, None]], dim=1) / tau  # (N, 1 + N + 1)


def lvs_loss(responses: torch.Tensor, epsilon_pos: float, epsilon_neg: float, mask_tau: float,
             tau: float) -> torch.Tensor:
    """LVS's contrastive loss: cross-entropy of `lvs_logits` with the positive (column 0) as target.

    Args:
        responses: (N, N, h, w) all-pairs maps A_nm (see `response_maps`).
        epsilon_pos, epsilon_neg, mask_tau, tau: see `lvs_logits`.

    Returns:
        Scalar loss (mean over the N pairs).
    """
    logits = lvs_logits(responses, epsilon_pos, epsilon_neg, mask_tau, tau)
    target = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits, target)


# parameters of the original's ResNet that its forward never uses for the given modality
_ORIGINAL_UNUSED = ("imgnet.conv1_a.weight", "imgnet.conv1_flow.weight", "imgnet.fc.weight",
                    "imgnet.fc.bias", "audnet.conv1.weight", "audnet.conv1_flow.weight",
                    "audnet.fc.weight", "audnet.fc.bias")


def original_layout_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our key layout from the original's (base_models.ResNet with conv1/conv1_a/conv1_flow/fc).

    A state_dict with `audnet.conv1_a.weight` is in the original layout: that 1-channel conv becomes
    `audnet.conv1.weight`, and the unused parameters (`_ORIGINAL_UNUSED`) are dropped. Any other
    state_dict is returned unchanged.
    """
    if "audnet.conv1_a.weight" not in state:
        return dict(state)
    converted = {k: v for k, v in state.items() if k not in _ORIGINAL_UNUSED}
    converted["audnet.conv1.weight"] = converted.pop("audnet.conv1_a.weight")
    return converted


@register("lvs")
class LVS(LocalizationMethod):
    """LVS: `loss = model(image, spec)`; `maps, confidence = model.localize(image, spec)`.

    Args:
        backbone: "resnet18" (224 px, profile paper) or "small" (56 px, smoke/quick).
        epsilon_pos: ε_p, positive threshold of the tri-map (original 0.65).
        epsilon_neg: ε_n, hard-negative threshold (original 0.4); ε_n ≤ ε_p.
        mask_tau: temperature of the sigmoid masks (original 0.03).
        tau: contrastive temperature of the logits (original 0.07).
        layer4_stride: 1 (original: 14×14 maps) or 2 (7×7), for both encoders.
        image_weights: initial image-encoder weights (see `build_backbones`); None → the
            original's initialization.
    """

    display_name = "LVS"
    upsample_mode = "bilinear"
    align_corners = False  # cv2.resize INTER_LINEAR: half-pixel centres
    map_bounds = (-1.0, 1.0)  # cosines
    hyperparameter_ranges = {"epsilon_pos": {"minimum": -1, "maximum": 1}, "epsilon_neg": {"minimum": -1, "maximum": 1},
                             "mask_tau": {"exclusiveMinimum": 0}, "tau": {"exclusiveMinimum": 0},
                             "layer4_stride": {"enum": [1, 2]}}

    def __init__(self, backbone: str = "small", epsilon_pos: float = 0.65, epsilon_neg: float = 0.4,
                 mask_tau: float = 0.03, tau: float = 0.07, layer4_stride: int = 1,
                 image_weights: str | Path | Mapping[str, torch.Tensor] | None = None) -> None:
        super().__init__()
        if not -1.0 <= epsilon_neg <= epsilon_pos <= 1.0:
            raise ValueError(f"need -1 <= epsilon_neg <= epsilon_pos <= 1, got epsilon_neg="
                             f"{epsilon_neg}, epsilon_pos={epsilon_pos}")
        if mask_tau <= 0:
            raise ValueError(f"mask_tau must be positive, got {mask_tau}")
        if tau <= 0:
            raise ValueError(f"tau must be positive, got {tau}")
        image_net, audio_net, _, _ = build_backbones(backbone, image_weights, layer4_stride=layer4_stride)
        self.backbone, self.layer4_stride = backbone, layer4_stride
        self.epsilon_pos, self.epsilon_neg = float(epsilon_pos), float(epsilon_neg)
        self.mask_tau, self.tau = float(mask_tau), float(tau)
        self.imgnet = official_init_(image_net) if image_weights is None else image_net
        self.audnet = audio_net

    def load_weights(self, checkpoint: str | Path | Mapping) -> "LVS":
        """Fill the model strictly from ours (`best.pt`, `latest.pt`) or an original release.

        The original's `test.py` reads `checkpoint["model_state_dict"]` saved from an
        `nn.DataParallel` model ("module." prefix) in its own ResNet layout; both are handled
        (`original_layout_state_dict`). Files are read with `torch.load(weights_only=True)`.

        Raises:
            FileNotFoundError: the file does not exist.
            DataError: an unreadable file, or keys/shapes that do not fit (naming the file).
        """
        load_state_dict_file(self, checkpoint, convert=original_layout_state_dict)
        return self

    def image_features(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> (B, C, h, w) visual features, L2-normalized over C."""
        return F.normalize(self.imgnet(image), dim=1)

    def audio_features(self, spec: torch.Tensor) -> torch.Tensor:
        """(B, 1, F, T) -> (B, C) audio embeddings (global max pool), L2-normalized."""
        return F.normalize(self.audnet(spec), dim=1)

    def forward(self, image: torch.Tensor, spec: torch.Tensor) -> torch.Tensor:
        """The training loss (scalar) on a batch of matching (image, spec) pairs."""
        responses = response_maps(self.image_features(image), self.audio_features(spec))  # (B, B, h, w)
        return lvs_loss(responses, self.epsilon_pos, self.epsilon_neg, self.mask_tau, self.tau)

    def raw_maps(self, image: torch.Tensor, spec: torch.Tensor) -> torch.Tensor:
        """A_i: (B, h, w) cosine of each image's cells with its own audio."""
        v, a = self.image_features(image), self.audio_features(spec)
        return torch.einsum("bchw,bc->bhw", v, a)  # (B,C,h,w),(B,C) -> (B,h,w)
