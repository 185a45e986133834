"""DMC — Hu, Nie & Li, CVPR 2019, "Deep Multimodal Clustering for Unsupervised Audiovisual Learning".

Original: there is no standalone release. The code read is the first author's re-implementation in
DTaoo/Discriminative-Sounding-Objects-Localization, folder `compared model/` (with a space):
`dmc_model.py` (`DMC_NET`, `Cluster_layer`) and `location_dmc_stage_one.py` (`batch_organize`,
`ContrastiveLoss`, the training loop); see docs/methods/dmc.md.
- both modalities give conv maps (a ResNet-18 variant from `music-exp/model/base_model.py`, 15×15 at
  224 px, trained from scratch); each map is read as a set of cell vectors and passed through a
  per-cell Linear 512 → 512 (`fc_v_1`, `fc_a_1`); the vectors are NOT normalized.
- `Cluster_layer` (soft k-means): K centres start at the vectors of cells 0, ⌊L/K⌋, 2⌊L/K⌋, …;
  4 unrolled iterations of: Euclidean distance √max(‖μ‖² − 2⟨μ, x⟩ + ‖x‖², 1e-10), assignment
  softmax over the centres of −30·distance (`beta=-30`), centres = assignment-weighted means.
  K_v = 2 visual centres, K_a = 1 audio centre (which is just the mean of the audio cells).
- score d = min_c ‖μ_v,c − μ_a‖; `ContrastiveLoss`: ½[y·d² + (1 − y)·max(0, 5 − √(d² + 1e-9))²],
  mean over 2B pairs: `batch_organize` interleaves (audio i, own frame, y = 1) and (audio i, a frame
  of another video, y = 0), the other video drawn uniformly from the whole training set.
- unused layers (`fc_v_2`, `fc_a_2`, `fc_av`, the pools) sit in the module but never in forward.
- Adam (0.9, 0.999), lr 1e-4, weight decay 1e-4, batch 32 clips (64 pairs).
- the code returns the assignments and the distances but never extracts a map.

Ours: the same heads, clustering, score and loss with the original's names (`fc_v_1`, `fc_a_1`)
and defaults, on the benchmark's shared encoders (`imgnet`, `audnet`; vslrepro.methods._backbones).
Deviations:
- encoders: the shared ResNet-18s (paper profile: 7×7 maps at 224 px, ImageNet-initialized image
  net, as every baseline of the benchmark) or the small CNN (smoke/quick); the Linear heads map the
  encoder's channels to `dim` (512 for resnet18 as the original, the profile's dim for small).
  The audio side uses the encoder's conv map before its global pool (small: `audnet.stages`;
  resnet18: conv1 … layer4), as DMC clusters audio cells. No original checkpoint exists to load,
  and the original backbone's keys/shapes (`conv1_v`, 3×3 conv1) differ from ours anyway.
- mismatched pairs come from the batch: audio i is paired with the frame of sample
  j = (i + r_i) mod B, r_i uniform in {1, …, B − 1} from torch's global RNG, i.e. uniform over the
  other clips, independently per clip, as the original draws from the dataset. The frames are
  encoded once (B images, not 2B): the clustering of a frame does not depend on the audio, so the
  distances are the same; only the BatchNorm batch (B frames instead of B + B) and the negative's
  separate augmentation differ.
- audio input: the benchmark's shared log-spectrogram (B, 1, 257 frequencies, T frames), log/12,
  as every method here gets it; the original feeds a (B, 1, 201 frames, 64 mel bands) log-mel in
  dB, time first (`music-exp/data/cut_audios.py`). Only the audio encoder sees the difference.
- the unused layers are left out (DistributedDataParallel would need find_unused_parameters).
- the clustering runs in float32 even under bf16 autocast (the distance expansion cancels), and the
  centre update divides by max(Σ assignments, float32 tiny): where the original would give 0/0 = NaN
  (an empty cluster) ours gives a zero centre; nothing else changes.
- map [inference]: the visual assignment of the centre nearest to the audio centre, on the encoder
  grid; resized bilinearly with align_corners=False, like `cv2.resize` in the DSOL evaluation code
  (`music-exp/eval.py`). `map_bounds` = (0, 1): assignments are probabilities.
- confidence (the original has none): the maximum of an assignment map is ≈ 1 for every sample, so
  "the maximum of the similarity map" cannot rank samples. Both scores are computed on the evidence
  map E(k) = σ(margin − d)·A(k) ∈ [0, 1] (bounds (0, 1)): "max" = max_k E(k) ≈ σ(margin − d) — a
  monotone transform of −d, so AP ranks by the matched distance, and ≥ 0.5 exactly where d ≤ margin,
  the loss's own decision boundary; "topk_mean" = SLAVC's top-25 % mean of E. The binarized map is
  A itself (per-sample min–max and the absolute 0.5 cut are both cluster membership).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vslrepro.methods._backbones import build_backbones
from vslrepro.methods._base import Localization, LocalizationMethod, confidence_scores, upsample_maps
from vslrepro.methods._registry import register


def euclidean_distances(centres: torch.Tensor, vectors: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Distances the way `Cluster_layer` computes them: √max(‖μ‖² − 2⟨μ, x⟩ + ‖x‖², eps).

    Args:
        centres: (B, K, D).
        vectors: (B, L, D).
        eps: floor under the squared distance (keeps the gradient of √ finite).

    Returns:
        (B, K, L) distances.
    """
    squared = (centres.pow(2).sum(2, keepdim=True)                 # (B, K, 1)
               - 2 * torch.bmm(centres, vectors.transpose(1, 2))   # (B, K, D) @ (B, D, L) -> (B, K, L)
               + vectors.pow(2).sum(2).unsqueeze(1))               # (B, L) -> (B, 1, L)
    return torch.sqrt(torch.clamp(squared, min=eps))


def soft_kmeans(vectors: torch.Tensor, clusters: int, iters: int = 4,
                sharpness: float = 30.0) -> tuple[torch.Tensor, torch.Tensor]:
    """DMC's differentiable soft k-means (`Cluster_layer.forward`).

    Centres start at the vectors of cells 0, ⌊L/K⌋, 2⌊L/K⌋, … (a spatial prior: with K = 2 on a
    7×7 grid, the top-left and the central cell); each iteration assigns every cell by a softmax over
    the centres of −sharpness·distance and moves the centres to the assignment-weighted means.

    Args:
        vectors: (B, L, D) cell vectors.
        clusters: K, with 1 ≤ K ≤ L.
        iters: unrolled iterations (≥ 1).
        sharpness: the original's −beta (30).

    Returns:
        (centres (B, K, D), assignments (B, K, L)): the assignments are those of the last iteration,
        computed from the centres before its update, as the original returns them.

    Raises:
        ValueError: K outside [1, L] or iters < 1.
    """
    cells = vectors.shape[1]
    if not 1 <= clusters <= cells:
        raise ValueError(f"cannot form {clusters} clusters from {cells} cells")
    if iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")
    step = cells // clusters
    centres = vectors[:, [step * c for c in range(clusters)]]  # (B, L, D) -> (B, K, D)
    tiny = torch.finfo(vectors.dtype).tiny
    for _ in range(iters):
        assign = torch.softmax(-sharpness * euclidean_distances(centres, vectors), dim=1)  # (B, K, L)
        weight = assign.sum(2, keepdim=True).clamp_min(tiny)  # (B, K, 1); 0/0 in the original
        centres = torch.bmm(assign, vectors) / weight  # (B, K, L) @ (B, L, D) -> (B, K, D)
    return centres, assign


def matched_distance(visual_centres: torch.Tensor,
                     audio_centre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """d = min_c ‖μ_v,c − μ_a‖ and the index of that visual centre.

    Args:
        visual_centres: (B, K_v, D).
        audio_centre: (B, 1, D).

    Returns:
        (d (B,), nearest (B,) long).
    """
    distances = euclidean_distances(visual_centres, audio_centre)[..., 0]  # (B, K_v, 1) -> (B, K_v)
    d, nearest = distances.min(dim=1)
    return d, nearest


def margin_loss(distance: torch.Tensor, same: torch.Tensor, margin: float = 5.0) -> torch.Tensor:
    """DMC's `ContrastiveLoss`: mean of ½[y·d² + (1 − y)·max(0, margin − √(d² + 1e-9))²].

    Args:
        distance: (N,) distances d.
        same: (N,) float labels y (1 = matched pair, 0 = mismatched).
        margin: the margin (original 5).

    Returns:
        The scalar loss.
    """
    squared = distance.pow(2)
    return 0.5 * (same * squared + (1 - same) * F.relu(margin - (squared + 1e-9).sqrt()).pow(2)).mean()


def mismatched_indices(batch: int) -> torch.Tensor:
    """For each clip i, another clip j ≠ i of the batch, uniform and independent (torch's global RNG).

    Raises:
        ValueError: batch < 2 (no other clip).
    """
    if batch < 2:
        raise ValueError(f"DMC pairs each audio with another clip's frame: batch size must be >= 2, "
                         f"got {batch}")
    return (torch.arange(batch) + torch.randint(1, batch, (batch,))) % batch


def cell_vectors(feature_map: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B, hw, C), the cells in row-major order (as the original's view/permute)."""
    return feature_map.flatten(2).transpose(1, 2)


@register("dmc")
class DMC(LocalizationMethod):
    """DMC: `loss = model(image, spec)`; `maps, confidence = model.localize(image, spec)`.

    Args:
        backbone: "resnet18" (224 px, profile paper) or "small" (56 px, smoke/quick).
        dim: output size of the per-cell Linear heads; None → 512 for resnet18 (the original), 128
            for small.
        visual_clusters: K_v (original 2); the audio has one centre (the original's default).
        iters: soft k-means iterations (original 4).
        sharpness: assignment softmax of −sharpness·distance (original beta = −30).
        margin: margin of the loss on mismatched pairs (original 5), in the units of the
            unnormalized features.
        image_weights: initial weights of the image encoder (see `backbones.build_image_encoder`).
    """

    display_name = "DMC"
    upsample_mode = "bilinear"
    align_corners = False
    map_bounds = (0.0, 1.0)
    hyperparameter_ranges = {"dim": {"minimum": 1}, "visual_clusters": {"minimum": 1}, "iters": {"minimum": 1},
                             "sharpness": {"exclusiveMinimum": 0}, "margin": {"exclusiveMinimum": 0}}

    def __init__(self, backbone: str = "small", dim: int | None = None, visual_clusters: int = 2,
                 iters: int = 4, sharpness: float = 30.0, margin: float = 5.0,
                 image_weights: str | Path | Mapping[str, torch.Tensor] | None = None) -> None:
        super().__init__()
        if dim is not None and (int(dim) != dim or dim < 1):
            raise ValueError(f"dim must be a positive integer, got {dim}")
        if int(visual_clusters) != visual_clusters or visual_clusters < 1:
            raise ValueError(f"visual_clusters must be a positive integer, got {visual_clusters}")
        if int(iters) != iters or iters < 1:
            raise ValueError(f"iters must be a positive integer, got {iters}")
        if not sharpness > 0:
            raise ValueError(f"sharpness must be positive (the original's beta = -sharpness), "
                             f"got {sharpness}")
        if not margin > 0:
            raise ValueError(f"margin must be positive, got {margin}")
        image_net, audio_net, image_channels, audio_channels = build_backbones(backbone, image_weights)
        dim = int(dim) if dim is not None else (512 if backbone == "resnet18" else 128)
        self.backbone, self.dim = backbone, dim
        self.visual_clusters, self.iters = int(visual_clusters), int(iters)
        self.sharpness, self.margin = float(sharpness), float(margin)
        self.imgnet = image_net
        self.audnet = audio_net
        self.fc_v_1 = nn.Linear(image_channels, dim)  # PyTorch's default init, as the original
        self.fc_a_1 = nn.Linear(audio_channels, dim)

    def audio_map(self, spec: torch.Tensor) -> torch.Tensor:
        """(B, 1, F, T) -> (B, C, f, t): the audio encoder's conv map before its global pool."""
        net = self.audnet
        if self.backbone == "small":
            return net.stages(spec)  # (B, 1, F, T) -> (B, C, F/16, T/16)
        x = net.maxpool(net.relu(net.bn1(net.conv1(spec))))  # (B, 1, F, T) -> (B, 64, F/4, T/4)
        return net.layer4(net.layer3(net.layer2(net.layer1(x))))  # -> (B, 512, F/32, T/32)

    def cluster(self, image: torch.Tensor, spec: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[int, int]]:
        """Visual centres and assignments, the audio centre, and the image grid.

        Returns:
            (visual centres (B, K_v, D), visual assignments (B, K_v, hw), audio centre (B, 1, D),
            (h, w)), all float32.
        """
        image_map = self.imgnet(image)  # (B, C, h, w)
        visual = self.fc_v_1(cell_vectors(image_map))  # (B, hw, C) -> (B, hw, D)
        audio = self.fc_a_1(cell_vectors(self.audio_map(spec)))  # (B, ft, C) -> (B, ft, D)
        with torch.autocast(image.device.type, enabled=False):  # the distance expansion needs fp32
            visual_centres, assign = soft_kmeans(visual.float(), self.visual_clusters, self.iters,
                                                 self.sharpness)
            audio_centre, _ = soft_kmeans(audio.float(), 1, self.iters, self.sharpness)  # = mean of the cells
        return visual_centres, assign, audio_centre, tuple(image_map.shape[2:])

    def forward(self, image: torch.Tensor, spec: torch.Tensor) -> torch.Tensor:
        """The training loss on B matching (image, spec) pairs plus B in-batch mismatched ones."""
        other = mismatched_indices(image.shape[0]).to(image.device)  # (B,) before any other draw
        visual_centres, _, audio_centre, _ = self.cluster(image, spec)
        d_matched, _ = matched_distance(visual_centres, audio_centre)  # (B,)
        d_mismatched, _ = matched_distance(visual_centres[other], audio_centre)  # (B,)
        # (B, 2) -> (2B,): own, other, own, other, ... as batch_organize interleaves them
        distance = torch.stack([d_matched, d_mismatched], dim=1).flatten()
        same = torch.tensor([1.0, 0.0], device=distance.device).repeat(image.shape[0])  # (2B,) 1, 0, 1, 0, …
        return margin_loss(distance, same, self.margin)

    def match(self, image: torch.Tensor, spec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The assignment map of the visual centre nearest to the audio centre, and that distance.

        Returns:
            (maps (B, h, w) in [0, 1], d (B,)).
        """
        visual_centres, assign, audio_centre, (h, w) = self.cluster(image, spec)
        d, nearest = matched_distance(visual_centres, audio_centre)
        batch = torch.arange(assign.shape[0], device=assign.device)
        rows = assign[batch, nearest]  # (B, K_v, hw) -> (B, hw)
        return rows.view(-1, h, w), d  # (B, hw) -> (B, h, w)

    def raw_maps(self, image: torch.Tensor, spec: torch.Tensor) -> torch.Tensor:
        """(B, h, w) assignment of each cell to the visual cluster matched to the audio."""
        return self.match(image, spec)[0]

    def localize(self, image: torch.Tensor, spec: torch.Tensor, size: int = 224) -> Localization:
        """Upsampled assignment maps; confidences of the evidence map σ(margin − d)·A (module docstring).

        Returns:
            Localization(maps (B, size, size) float32 in [0, 1], {"max": (B,), "topk_mean": (B,)}).
        """
        assign, d = self.match(image, spec)
        maps = upsample_maps(assign, size, self.upsample_mode, self.align_corners).float()
        evidence = maps * torch.sigmoid(self.margin - d.float())[:, None, None]  # (B, S, S) * (B, 1, 1)
        return Localization(maps, confidence_scores(evidence, self.map_bounds))
