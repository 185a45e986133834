"""HardPos — Senocak, Ryu, Kim & Kweon, ICASSP 2022, "Learning Sound Localization Better from
Semantically Similar Samples" (arXiv 2202.03007).

Original: **no code was released** (neither in the authors' later repository kaistmm/SSLalignment,
which wraps LVS, EZ-VSL, SLAVC, SSL-TIE and FNAC, nor anywhere else we searched). Everything below
comes from the paper text as far as we could retrieve it, and from our own decisions where it says
nothing; docs/methods/hardpos.md tells which is which in more detail.

What we could read of the paper: the abstract (arXiv 2202.03007) and the loss equations of its
method section, reproduced verbatim in a reader's notes (ucasmjc/Paper-Reading,
`Paper/Sound_Source_Localization/README.md` §24 and `image/24.png`). The surrounding prose (how α is
indexed, K, which features are compared, the experiment settings) we could not retrieve.

From the paper (marked [paper]):
- [paper] built on LVS (vslrepro.methods.lvs): cosine response maps α between the image cells and an
  audio embedding, a soft foreground mask m = σ((α − ε)/τ_m), masked-mean responses.
- [paper] hard positives: for each sample i, its top-K most similar samples *within one modality*:
  P_iA from the audio embeddings, P_iV from the visual embeddings (a reader's notes: "for each
  sample, the dot product with all other samples in the same modality; the top K are its hard
  positives").
- [paper] four positive responses, each a masked mean ⟨m, α⟩/|m|:
      P_b = α_ii (the pair itself), P_a = α_ji (j ∈ P_iA), P_v = α_ik (k ∈ P_iV),
      P_c = α_jk (j ∈ P_iA, k ∈ P_iV);
  positive mass P_i = exp(P_b) + exp(P_a) + exp(P_v) + exp(P_c);
  negative mass N_i = Σ_{l ∈ N_i} exp(⟨1, α_il⟩/hw) (the *plain* spatial mean, as in the LVS paper);
  L = −(1/B) Σ_i log P_i / (P_i + N_i) (LVS's form of the loss).
- [paper] the negative mass has no background ("hard negative") term: LVS's tri-map hard negative is
  not part of HardPos's equations. (`background_negative=True` adds it back, as an ablation.)

Deviation from the written equations (default `easy_negatives="foreground"`):
- [ours] the easy negatives are the *masked* means ⟨m_il, α_il⟩/|m_il|, the same statistic as the
  positives and what LVS's released `model.py` computes (its E_ij), instead of the plain mean. With
  the plain mean the objective has a shortcut: a map with a few strong cells for *every* pair makes
  every masked mean (positive) large and every plain mean (negative) small, whatever the audio. On
  the quick synthetic Flickr the plain form drove the loss to 0.006 in 4 epochs while validation
  LocAcc fell from 43.7 to 38.7 % (the centre prior scores ≈ 51); the masked form reached 85.3 %
  after one epoch, like LVS. `easy_negatives="plain"` gives the equations as written.

Our decisions (marked [ours]):
- [ours] α_xy = α(image x, audio y) = the `response_maps` layout (rows: images), as in LVS's
  `model.py` and the reader's notes ("visual hp with audio", "visual with audio hp"). So for anchor
  image i: P_a pairs the *image* of i's audio neighbour j with i's audio, P_v pairs i's image with
  the *audio* of its visual neighbour k, P_c pairs image j with audio k — each neighbour is moved
  to the other modality, which is what makes it a new positive (a_j ≈ a_i would add nothing).
- [ours] N_i = the batch minus {i} ∪ P_iA ∪ P_iV: every mined neighbour leaves the negatives
  (the paper writes a set N_i without defining it; its point is that hard positives were wrongly
  counted as negatives).
- [ours] mining uses the model's *own current* embeddings, detached (no gradient through the choice
  of neighbours), within the batch (no memory bank), and no label-supervised or pretrained encoder:
  audio = the L2-normalized audio embedding a_i; visual = the spatial mean of the L2-normalized
  feature map v_i(k), L2-normalized again. Similarity = cosine; the sample itself is excluded.
- [ours] K = 1 per modality (`k_audio`, `k_visual`), so 4 positives per anchor; with K > 1 every
  (j, k) combination is a P_c term. K is clamped to B − 1 for tiny batches.
- [ours] every logit is divided by τ = 0.07, LVS's released temperature (the equations show none);
  ε_p = 0.65 and τ_m = 0.03 are LVS's released values.
- [ours] all of LVS's choices (encoders with layer4 stride 1, no projection heads, initialization,
  checkpoint layout, masked means computed without 0/0) are inherited unchanged from `LVS`.

Map and confidence: exactly LVS's — the map is α_ii (h×w cosines: 14×14 at 224 px, or at 56 px with
the small backbone), upsampled bilinearly with align_corners=False; "max" = its maximum (a cosine),
"topk_mean" = SLAVC's top-25 % mean of (α + 1)/2 (map_bounds (−1, 1)).

Model parity: there is no original model; HardPos *is* LVS's network, so its state_dict layout is
LVS's (an LVS checkpoint, ours or an original release, loads into HardPos and gives the same maps).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F

from vslrepro.methods._registry import register
from vslrepro.methods.lvs import LVS, background_responses, foreground_responses, response_maps

EASY_NEGATIVES = ("foreground", "plain")


def pooled_image_embeddings(image_features: torch.Tensor) -> torch.Tensor:
    """Global visual embeddings for mining: spatial mean of the cell features, L2-normalized.

    Args:
        image_features: (B, C, h, w) L2-normalized over C.

    Returns:
        (B, C) L2-normalized.
    """
    return F.normalize(image_features.mean(dim=(2, 3)), dim=1)  # (B, C, h, w) -> (B, C)


def nearest_neighbours(embeddings: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of each sample's k most similar *other* samples (cosine, self excluded).

    Args:
        embeddings: (B, C) L2-normalized; used detached (mining passes no gradient).
        k: neighbours per sample; clamped to B − 1.

    Returns:
        (B, min(k, B − 1)) int64 indices, most similar first (ties: torch.topk's order).
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    e = embeddings.detach()
    similarity = e @ e.t()  # (B, C), (C, B) -> (B, B)
    similarity.fill_diagonal_(float("-inf"))  # never one's own neighbour
    return similarity.topk(min(k, e.shape[0] - 1), dim=1).indices


def hardpos_logits(responses: torch.Tensor, audio_neighbours: torch.Tensor,
                   visual_neighbours: torch.Tensor, epsilon_pos: float, mask_tau: float, tau: float,
                   background: torch.Tensor | None = None,
                   easy_negatives: str = "foreground") -> tuple[torch.Tensor, torch.Tensor]:
    """Positive and negative logits of HardPos for every anchor i of the batch.

    Args:
        responses: (B, B, h, w) α_nm = response of image n with audio m (cosines).
        audio_neighbours: (B, Ka) P_iA, indices mined from the audio embeddings.
        visual_neighbours: (B, Kv) P_iV, indices mined from the visual embeddings.
        epsilon_pos, mask_tau: foreground threshold and mask temperature of the masked means.
        tau: contrastive temperature.
        background: optional (B,) extra negative per anchor (LVS's hard negative), in cosine units.
        easy_negatives: "foreground" (the masked mean ⟨m_il, α_il⟩/|m_il|, like the positives and
            like LVS's code) or "plain" (⟨1, α_il⟩/hw, as HardPos's equations write it).

    Returns:
        (positives, negatives), both divided by tau:
        positives (B, 1 + Ka + Kv + Ka·Kv) = [P_b, P_a…, P_v…, P_c…] (masked means);
        negatives (B, B [+ 1]) = the easy-negative responses α_il, −inf where
        l ∈ {i} ∪ P_iA ∪ P_iV, then the background column if given.
    """
    if easy_negatives not in EASY_NEGATIVES:
        raise ValueError(f"easy_negatives must be one of {EASY_NEGATIVES}, got {easy_negatives!r}")
    b = responses.shape[0]
    anchors = torch.arange(b, device=responses.device)
    a_nb, v_nb = audio_neighbours, visual_neighbours
    foreground = foreground_responses(responses, epsilon_pos, mask_tau)  # (B, B), image n × audio m
    p_b = foreground.diagonal()[:, None]  # (B, 1): image i, audio i
    p_a = foreground[a_nb, anchors[:, None]]  # (B, Ka): image j ∈ P_iA, audio i
    p_v = foreground[anchors[:, None], v_nb]  # (B, Kv): image i, audio k ∈ P_iV
    p_c = foreground[a_nb[:, :, None], v_nb[:, None, :]].flatten(1)  # (B, Ka, Kv) -> (B, Ka·Kv)
    positives = torch.cat([p_b, p_a, p_v, p_c], dim=1) / tau

    is_negative = ~torch.eye(b, dtype=torch.bool, device=responses.device)  # (B, B), row = anchor
    is_negative[anchors[:, None], a_nb] = False  # hard positives leave the negatives
    is_negative[anchors[:, None], v_nb] = False
    if easy_negatives == "foreground":
        easy = foreground  # (B, B): ⟨m_il, α_il⟩/|m_il|
    else:
        easy = responses.mean(dim=(2, 3))  # (B, B, h, w) -> (B, B): ⟨1, α_il⟩/hw
    negatives = (easy / tau).masked_fill(~is_negative, float("-inf"))
    if background is not None:
        negatives = torch.cat([negatives, background[:, None] / tau], dim=1)  # (B, B + 1)
    return positives, negatives


def hardpos_loss(responses: torch.Tensor, audio_neighbours: torch.Tensor,
                 visual_neighbours: torch.Tensor, epsilon_pos: float, mask_tau: float, tau: float,
                 background: torch.Tensor | None = None, easy_negatives: str = "foreground") -> torch.Tensor:
    """L = −mean_i log P_i / (P_i + N_i), P_i = Σ exp(positives), N_i = Σ exp(negatives).

    Args: see `hardpos_logits`.

    Returns:
        Scalar loss (mean over the B anchors).
    """
    positives, negatives = hardpos_logits(responses, audio_neighbours, visual_neighbours,
                                          epsilon_pos, mask_tau, tau, background, easy_negatives)
    log_p = torch.logsumexp(positives, dim=1)  # (B,) log P_i
    log_all = torch.logsumexp(torch.cat([positives, negatives], dim=1), dim=1)  # (B,) log(P_i + N_i)
    return (log_all - log_p).mean()


@register("hardpos")
class HardPos(LVS):
    """HardPos: LVS's network trained with semantically similar in-batch samples as extra positives.

    Args:
        backbone: "resnet18" (224 px, profile paper) or "small" (56 px, smoke/quick).
        k_audio: hard positives per anchor mined from the audio embeddings (ours: 1).
        k_visual: hard positives per anchor mined from the visual embeddings (ours: 1).
        epsilon_pos: ε_p, foreground threshold of the masked means (LVS: 0.65).
        epsilon_neg: ε_n, LVS's background threshold, used only with background_negative (LVS: 0.4).
        mask_tau: temperature of the sigmoid masks (LVS: 0.03).
        tau: contrastive temperature (LVS code: 0.07).
        background_negative: add LVS's hard negative (own-image background) to N_i (paper: no).
        easy_negatives: "foreground" (masked means, as LVS's code; ours) or "plain" (spatial
            means, HardPos's equations).
        layer4_stride: 1 (LVS: 14×14 maps at 224 px) or 2 (7×7), for both encoders.
        image_weights: initial image-encoder weights (see `build_backbones`).
    """

    display_name = "HardPos"
    hyperparameter_ranges = {"k_audio": {"minimum": 0}, "k_visual": {"minimum": 0},
                             "epsilon_pos": {"minimum": -1, "maximum": 1}, "epsilon_neg": {"minimum": -1, "maximum": 1},
                             "mask_tau": {"exclusiveMinimum": 0}, "tau": {"exclusiveMinimum": 0},
                             "easy_negatives": {"enum": list(EASY_NEGATIVES)}, "layer4_stride": {"enum": [1, 2]}}

    def __init__(self, backbone: str = "small", k_audio: int = 1, k_visual: int = 1,
                 epsilon_pos: float = 0.65, epsilon_neg: float = 0.4, mask_tau: float = 0.03,
                 tau: float = 0.07, background_negative: bool = False, easy_negatives: str = "foreground",
                 layer4_stride: int = 1,
                 image_weights: str | Path | Mapping[str, torch.Tensor] | None = None) -> None:
        for name, k in (("k_audio", k_audio), ("k_visual", k_visual)):
            if isinstance(k, bool) or not isinstance(k, int) or k < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {k!r}")
        if not isinstance(background_negative, bool):
            raise ValueError(f"background_negative must be true or false, got {background_negative!r}")
        if easy_negatives not in EASY_NEGATIVES:
            raise ValueError(f"easy_negatives must be one of {EASY_NEGATIVES}, got {easy_negatives!r}")
        super().__init__(backbone, epsilon_pos=epsilon_pos, epsilon_neg=epsilon_neg, mask_tau=mask_tau,
                         tau=tau, layer4_stride=layer4_stride, image_weights=image_weights)
        self.k_audio, self.k_visual = k_audio, k_visual
        self.background_negative, self.easy_negatives = background_negative, easy_negatives

    def hard_positives(self, image_features: torch.Tensor,
                       audio_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(P_iA, P_iV): (B, Ka) and (B, Kv) neighbour indices from the detached embeddings."""
        audio = nearest_neighbours(audio_features.detach(), self.k_audio)
        visual = nearest_neighbours(pooled_image_embeddings(image_features.detach()), self.k_visual)
        return audio, visual

    def forward(self, image: torch.Tensor, spec: torch.Tensor) -> torch.Tensor:
        """The training loss (scalar) on a batch of matching (image, spec) pairs."""
        v, a = self.image_features(image), self.audio_features(spec)
        audio_nb, visual_nb = self.hard_positives(v, a)
        responses = response_maps(v, a)  # (B, B, h, w)
        background = None
        if self.background_negative:
            own = responses.diagonal().permute(2, 0, 1)  # (h, w, B) -> (B, h, w)
            background = background_responses(own, self.epsilon_neg, self.mask_tau)
        return hardpos_loss(responses, audio_nb, visual_nb, self.epsilon_pos, self.mask_tau, self.tau,
                            background, self.easy_negatives)
