"""DSOL — Hu et al., NeurIPS 2020, "Discriminative Sounding Objects Localization via Self-supervised
Audiovisual Matching".

Original (DTaoo/Discriminative-Sounding-Objects-Localization, `music-exp/`: `model/location_model.py`
`Location_Net_stage_one/two`, `model/base_model2.py`, `training_stage_one.py`,
`training_stage_two.py`, `test_stage_two.py`, `tools.py`, `eval.py`; see docs/methods/dsol.md):
- encoders: ResNet-18s with layer strides 1/2/2/1 (`base_model2`): 512×14×14 image maps F at 224 px
  (ImageNet-initialized); the audio map is globally max-pooled to a 512-d vector (from scratch).
- location head: v = Conv1×1(ReLU(Conv1×1(F))) 512 → 128 → 128 per cell (`conv_v_1`, `conv_v_2`);
  a = FC(ReLU(FC(max-pooled audio))) 512 → 128 → 128 (`fc_a_1`, `fc_a_2`); both L2-normalized;
  map m(k) = σ(w·⟨v(k), a⟩) with w a bias-free 1×1 conv (`conv_av`) set to 5; clip score
  s = max_k m(k).
- stage 1 (`training_stage_one.py`): each audio with its own frame (y = 1) and with a frame of another
  video (y = 0), interleaved (`batch_organize`); BCE(s, y). From the epoch after `init_num` (= 1)
  on, each location epoch is followed by a clustering round: over the training set (eval mode), the
  object feature of a sample is the spatial mean over ALL cells of F·1[m > 0.05], the mask dilated
  to the 4-neighbours of its interior cells (`location_dilation`); these features, L2-normalized,
  are clustered by `sklearn.cluster.KMeans(K = 11)`; the per-cluster means of the raw object features
  form the object dictionary (K × 512); fresh classifiers (`v_class_layer` on the avg-pooled F,
  `a_class_layer` on the max-pooled audio, weights N(0, 0.01), bias 0) are trained with CE on the
  cluster ids for `class_iter` = 3 epochs, by their own Adam (lr 1e-3, wd 1e-4) while the location
  optimizer (lr 1e-4, wd 1e-4, `params[:-4]`) moves the encoders.
- stage 2 (`training_stage_two.py`, 5 epochs from a stage-1 checkpoint, on 2×2 "cocktail-party"
  mosaics with mixed audio): the own mosaic's s → 1; the map of the audio with another mosaic is
  2×2 max-pooled and each of the 4 scores → 0; L_loc = ½(BCE_pos + BCE_neg). Class-aware maps
  o_c(k) = α⟨F(k), d_c⟩ + β (`obj_conv`, a Conv3d 1×1: one scalar affine), times m(k) in training
  (`minimize=True`), average-pooled to K logits; L_cat = KLDivLoss (element mean over B×K) between
  the softmax of the audio class logits of a FROZEN copy of the stage-1 model and the log-softmax
  of the pooled logits (positives only). L = L_cat + 0.5·L_loc; one Adam (lr 1e-4, wd 1e-4).
- test: single source (`tools.py`): m resized to 224 (`cv2.resize`), binarized at 0.1·max;
  stage 2 (`test_stage_two.py`, `eval.py`): class maps softmax_c(3·o_c) (with the ×m) per category.

Ours: the same heads, map, losses and clustering, under the original's names (`conv_v_1`, `conv_v_2`,
`fc_a_1`, `fc_a_2`, `conv_av`, `v_class_layer`, `a_class_layer`, `obj_conv`), on the benchmark's
shared encoders (`imgnet`, `audnet`, vslrepro.methods._backbones) with `layer4_stride=1` — for the
ResNet-18 exactly the original's 14×14 geometry. Both stages run in ONE training run of the trainer:
epochs [0, init_epochs) are location-only, [init_epochs, stage_one_epochs) are stage 1 with a
clustering round at the start of each, and [stage_one_epochs, train.epochs) are stage 2 (none if
stage_one_epochs ≥ train.epochs: the "stage 1 only" variant). `begin_epoch` does the rounds and the
stage switch; whatever they compute lives in buffers (`centroids`, `dictionary`, `clustered_epoch`,
`stage`) or in the frozen teacher (`teacher_audnet`, `teacher_a_class_layer`), so it is checkpointed:
a resume recomputes a round only for the epoch it restarts (from the same weights, seeded by
(seed, epoch): the same result), and never rebuilds the teacher in stage 2.

Deviations and choices (each also in docs/methods/dsol.md):
- data: single-source synthetic (or real) pairs, no MUSIC solos or cocktail-party mixtures. Stage 2's
  positive is the natural frame with its own sound (one sounding object, the rest silent); its
  negative is a 2×2 mosaic of four other clips' frames of the batch (each downscaled 2× by a 2×2
  mean), whose four quadrants are all "silent" for that sound; no audio is mixed. The KL target is
  the frozen stage-1 audio classifier's posterior on the single sound.
- in-batch mismatched frames (stage 1): audio i with the frame of clip j = (i + r_i) mod B, r_i
  uniform in {1, …, B − 1} (torch's global RNG), frames encoded once (B images, not 2B): BatchNorm
  sees B frames instead of 2B; stage 2 encodes the B frames and B mosaics together, as the original.
- one loss per batch under the trainer's one Adam (train.lr, train.weight_decay over all parameters):
  stage-1 round epochs optimize L_loc + CE_v + CE_a on every batch, where the original alternates one
  location epoch with `class_iter` = 3 classification epochs, with the classifiers on their own Adam
  at lr 1e-3; the classifiers are re-initialized at each round as in the original, but keep the
  trainer's Adam moments from the previous round (the original builds a fresh Adam for them).
- pseudo labels: the forward pass has no sample indices, so a batch sample's label is the nearest
  k-means centroid of its current (detached, augmented, train-mode) normalized object feature — the
  k-means `predict` the original applies to its validation set — instead of its label from the
  round's pass. The round's pass itself is un-augmented (central crops, eval mode).
- k-means: the package's seeded torch k-means (`vslrepro.methods._kmeans`: k-means++ seeding,
  `kmeans_restarts` runs, Lloyd iterations, the lowest inertia kept; an empty cluster takes the point
  farthest from its centre) instead of scikit-learn's unseeded KMeans; same objective.
- the teacher of stage 2 is the audio branch only (`audnet` + `a_class_layer` snapshotted at the
  stage switch): the original's frozen full stage-1 model feeds only its audio logits to the loss.
  Its dictionary comes from the last round of stage 1, whose cluster ids the teacher's classifier
  was trained on (the original pairs the epoch-10 dictionary with the epoch-10 classifier).
- `obj_conv` starts at α = 1, β = 0 instead of PyTorch's default U(−1, 1) for each: with α < 0 the
  class evidence is anti-correlated with the dictionary similarity, and L_cat then drives m off the
  objects (quick, Flickr, seed 0, in a trial with 14×14 maps and 5 stage-1 epochs: the default draw
  gave α = −0.55 and the validation LocAcc of m fell from 0.83 to 0.13 in the first stage-2 epoch,
  to 0.57 with α = 1; β cancels in the softmax over classes).
- BCE on logits (s = σ(max_k w·⟨v, a⟩), since σ is increasing) instead of on probabilities: the same
  loss without the original's clamp of log(0) at −100.
- audio input: the benchmark's shared log-spectrogram (257 frequencies × T, log/12), not the original's
  201 × 64 dB log-mel; only the audio encoder sees it. With layer4_stride=1 the small backbone
  gives 14×14 maps at 56 px; the smoke/quick profiles use 2 (7×7 maps, 3× cheaper on CPU).
- under torchrun, parameters a stage does not use (the classifiers, `obj_conv`) enter the loss with
  weight 0: DistributedDataParallel without find_unused_parameters needs a gradient for every
  parameter in every step. A single process leaves their gradients None, as the original.
- evaluation: the benchmark's protocol (median binarization), not `tools.py`'s 0.1·max. The map is
  the one the original evaluates at the model's stage: in stage 1, m (`tools.py` scores the
  stage-1 model's m on single sources); in stage 2, the class-aware map softmax_c(3·o_c·m) of the
  category the frozen audio classifier hears (`eval.py` scores stage 2's class maps of the
  annotated categories; a single-source benchmark has no category labels, so the sound's own
  prediction picks the map). On quick (validation, LATEST): Flickr 0.71 LocAcc with it vs 0.41
  with m, VGG-SS 0.32 vs 0.17 — stage 2 moves the localization into the class maps, m becomes a gate.
- confidence: "max" = s = max_k m(k) on the raw grid in both stages, the original's own
  audio-visual correspondence probability (its `av_output`, which its eval rounds against the pair
  labels); "topk_mean" = SLAVC's top-25 % mean of the upsampled evaluated map (bounds (0, 1)).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from vslrepro.methods._backbones import build_backbones
from vslrepro.methods._base import Localization, LocalizationMethod, confidence_scores, upsample_maps
from vslrepro.methods._checkpoints import load_state_dict_file
from vslrepro.methods._kmeans import cluster_means, kmeans, squared_distances
from vslrepro.methods._registry import register
from vslrepro.seeding import torch_generator

# ---------------------------------------------------------------- object features


def dilate_mask(mask: torch.Tensor) -> torch.Tensor:
    """The original's `location_dilation`: every set cell that is NOT on the border also sets its
    four neighbours (border cells stay as they are and spread nothing).

    Args:
        mask: (B, h, w) bool.

    Returns:
        (B, h, w) bool.
    """
    interior = torch.zeros_like(mask)
    interior[:, 1:-1, 1:-1] = mask[:, 1:-1, 1:-1]
    spread = mask.clone()
    spread[:, :-1] |= interior[:, 1:]   # the cell above a set interior cell
    spread[:, 1:] |= interior[:, :-1]   # the cell below
    spread[:, :, :-1] |= interior[:, :, 1:]  # the cell to the left
    spread[:, :, 1:] |= interior[:, :, :-1]  # the cell to the right
    return spread


def object_features(feature_map: torch.Tensor, location_map: torch.Tensor, threshold: float) -> torch.Tensor:
    """The object feature of each sample (`extract_feature`): mean over ALL cells of F·1[m > thr],
    the mask dilated by `dilate_mask`.

    Args:
        feature_map: (B, C, h, w) encoder features F.
        location_map: (B, h, w) sounding map m in [0, 1].
        threshold: the mask threshold (original 0.05).

    Returns:
        (B, C) object features (not normalized; zero when the mask is empty).
    """
    mask = dilate_mask(location_map > threshold).to(feature_map.dtype)  # (B, h, w)
    return (feature_map * mask[:, None]).mean(dim=(2, 3))  # (B, C, h, w) -> (B, C)


def nearest_centroid(features: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """k-means `predict`: the index of the nearest centroid of each L2-normalized feature. (B,)"""
    return squared_distances(F.normalize(features.float(), dim=1), centroids.float()).argmin(1)


def kl_element_mean(log_q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """`nn.KLDivLoss()` with its default reduction, as the original calls it: the mean over ALL B×K
    elements of p·(log p − log q) (0 where p = 0), i.e. the batch mean of KL(p ‖ q) divided by K."""
    return (torch.xlogy(p, p) - p * log_q).mean()


# ---------------------------------------------------------------- pairs and mosaics


def other_clips(batch: int, draws: int = 1) -> torch.Tensor:
    """For each clip i, `draws` clips j ≠ i of the batch, uniform and independent (torch's global RNG).

    Returns:
        (B, draws) long indices.

    Raises:
        ValueError: batch < 2 (no other clip).
    """
    if batch < 2:
        raise ValueError(f"DSOL pairs each audio with other clips' frames: batch size must be >= 2, got {batch}")
    return (torch.arange(batch)[:, None] + torch.randint(1, batch, (batch, draws))) % batch


def negative_mosaics(images: torch.Tensor, quadrants: torch.Tensor) -> torch.Tensor:
    """2×2 mosaics of other clips' frames, each downscaled 2× by a 2×2 mean (stage 2's negatives).

    Args:
        images: (B, 3, S, S) normalized frames, S even.
        quadrants: (B, 4) indices of the frames for the top-left, top-right, bottom-left and
            bottom-right quadrants of each mosaic.

    Returns:
        (B, 3, S, S) mosaics.

    Raises:
        ValueError: odd S, or quadrants not (B, 4).
    """
    size = images.shape[-1]
    if size % 2 or images.shape[-2] != size:
        raise ValueError(f"negative mosaics need square frames of even size, got {tuple(images.shape[-2:])}")
    if quadrants.shape != (images.shape[0], 4):
        raise ValueError(f"quadrants must be (B, 4) = {(images.shape[0], 4)}, got {tuple(quadrants.shape)}")
    small = F.avg_pool2d(images, 2)  # (B, 3, S, S) -> (B, 3, S/2, S/2)
    tiles = small[quadrants]  # (B, 4, 3, S/2, S/2)
    top = torch.cat([tiles[:, 0], tiles[:, 1]], dim=3)  # (B, 3, S/2, S)
    bottom = torch.cat([tiles[:, 2], tiles[:, 3]], dim=3)
    return torch.cat([top, bottom], dim=2)  # (B, 3, S, S)


# ---------------------------------------------------------------- the original's checkpoints


def _backbone_keys(state: Mapping[str, torch.Tensor], prefix: str, ours: str, first_conv: str
                   ) -> dict[str, torch.Tensor]:
    """`base_model2.ResNet` keys under `prefix` -> our encoder's under `ours`: its `first_conv`
    (`conv1` for vision, `conv1_a` for audio) becomes `conv1`; the other conv1 and `fc` are unused."""
    unused = {"conv1_a", "conv1"} - {first_conv}
    out = {}
    for key, value in state.items():
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix):]
        module = rest.split(".")[0]
        if module in unused or module == "fc":
            continue
        out[ours + ("conv1" + rest[len(first_conv):] if module == first_conv else rest)] = value
    return out


HEADS = ("conv_v_1", "conv_v_2", "fc_a_1", "fc_a_2", "conv_av", "v_class_layer", "a_class_layer", "obj_conv")


def original_layout_state_dict(state: Mapping[str, torch.Tensor], *,
                               teacher: Mapping[str, torch.Tensor] | None = None,
                               dictionary: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Our state_dict from the original's: a `Location_Net_stage_one/two` state_dict (`visual_net.*`,
    `audio_net.*` of `base_model2.ResNet`, and the heads under the same names as ours).

    Args:
        state: the original model's state_dict (stage one or two).
        teacher: the frozen stage-1 model's state_dict of stage 2 (`av_model_fix`): its audio branch
            fills `teacher_audnet` / `teacher_a_class_layer`; None: a copy of `state`'s.
        dictionary: the (K, C) object dictionary (`obj_feature_..._epoch_10_av_entire.npy`); given,
            the model is in stage 2 (`stage` = 2), else in stage 1 before any round.

    Returns:
        A state_dict for `DSOL` (strict): a stage-1 checkpoint (no `obj_conv`) gets our initial
        `obj_conv` (α = 1, β = 0); centroids are zero (they only steer stage 1's pseudo labels).
    """
    teacher = state if teacher is None else teacher
    ours = {**_backbone_keys(state, "visual_net.", "imgnet.", "conv1"),
            **_backbone_keys(state, "audio_net.", "audnet.", "conv1_a"),
            **{k: v for k, v in state.items() if k.split(".")[0] in HEADS},
            **{"teacher_" + k: v for k, v in _backbone_keys(teacher, "audio_net.", "audnet.", "conv1_a").items()},
            **{"teacher_" + k: v for k, v in teacher.items() if k.startswith("a_class_layer.")}}
    ours.setdefault("obj_conv.weight", torch.ones(1, 1, 1, 1, 1))
    ours.setdefault("obj_conv.bias", torch.zeros(1))
    classes, channels = state["v_class_layer.weight"].shape
    ours["centroids"] = torch.zeros(classes, channels)
    ours["dictionary"] = (torch.zeros(classes, channels) if dictionary is None
                          else torch.as_tensor(dictionary, dtype=torch.float32))
    ours["clustered_epoch"] = torch.tensor(-1 if dictionary is None else 0)
    ours["stage"] = torch.tensor(1 if dictionary is None else 2)
    return ours


@register("dsol")
class DSOL(LocalizationMethod):
    """DSOL: `loss = model(image, spec)` (the loss of the current stage), `begin_epoch(epoch, data)`
    (clustering rounds and the stage switch), `maps, confidence = model.localize(image, spec)`.

    Args:
        backbone: "resnet18" (224 px, profile paper) or "small" (56 px, smoke/quick).
        embed_dim: size of the location embeddings (original 128; not the profile's model.dim).
        clusters: K, the number of object categories of the k-means (original 11: MUSIC's categories).
        stage_one_epochs: epochs of stage 1; the rest of train.epochs is stage 2.
        init_epochs: location-only epochs before the first clustering round (original: 2, i.e.
            `init_num` = 1 plus the epoch its check runs after), < stage_one_epochs.
        mask_threshold: the object mask m > threshold of the object features (original 0.05).
        location_weight: weight of L_loc in stage 2 (original 0.5).
        class_sharpness: the class-aware maps are softmax_c(class_sharpness·o_c) (original 3).
        av_scale_init: initial w of the map σ(w·cos) (original 5).
        kmeans_restarts: k-means++ seedings per round (scikit-learn's default 10).
        layer4_stride: 1 (the original's 14×14 maps) or 2 (7×7).
        seed: seeds the k-means and the classifiers' re-initialization (with the epoch);
            the profile's `seed` (vslrepro.factory).
        image_weights: initial weights of the image encoder (see `backbones.build_image_encoder`).
    """

    display_name = "DSOL"
    hyperparameter_ranges = {"embed_dim": {"minimum": 1}, "clusters": {"minimum": 1},
                             "stage_one_epochs": {"minimum": 1},
                             "kmeans_restarts": {"minimum": 1}, "init_epochs": {"minimum": 0},
                             "mask_threshold": {"minimum": 0, "exclusiveMaximum": 1},
                             "location_weight": {"minimum": 0}, "class_sharpness": {"exclusiveMinimum": 0},
                             "layer4_stride": {"enum": [1, 2]}, "seed": {"minimum": 0}}
    upsample_mode = "bilinear"  # cv2.resize in tools.py / eval.py: half-pixel centres
    align_corners = False
    map_bounds = (0.0, 1.0)

    def __init__(self, backbone: str = "small", embed_dim: int = 128, clusters: int = 11, stage_one_epochs: int = 15,
                 init_epochs: int = 2, mask_threshold: float = 0.05, location_weight: float = 0.5,
                 class_sharpness: float = 3.0, av_scale_init: float = 5.0, kmeans_restarts: int = 10,
                 layer4_stride: int = 1, seed: int = 0,
                 image_weights: str | Path | Mapping[str, torch.Tensor] | None = None) -> None:
        super().__init__()
        for name, value in (("embed_dim", embed_dim), ("clusters", clusters), ("stage_one_epochs", stage_one_epochs),
                            ("kmeans_restarts", kmeans_restarts)):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}")
        if int(init_epochs) != init_epochs or not 0 <= init_epochs < stage_one_epochs:
            raise ValueError(f"init_epochs must be an integer in [0, stage_one_epochs = {stage_one_epochs}) "
                             f"so that stage 1 has a clustering round, got {init_epochs}")
        if not 0 <= mask_threshold < 1:
            raise ValueError(f"mask_threshold must be in [0, 1), got {mask_threshold}")
        if not location_weight >= 0 or not class_sharpness > 0:
            raise ValueError(f"location_weight must be >= 0 and class_sharpness > 0, "
                             f"got {location_weight} and {class_sharpness}")
        image_net, audio_net, image_channels, audio_channels = build_backbones(backbone, image_weights, layer4_stride)
        self.backbone, self.dim, self.clusters = backbone, int(embed_dim), int(clusters)
        self.stage_one_epochs, self.init_epochs = int(stage_one_epochs), int(init_epochs)
        self.mask_threshold, self.location_weight = float(mask_threshold), float(location_weight)
        self.class_sharpness, self.kmeans_restarts = float(class_sharpness), int(kmeans_restarts)
        self.seed = int(seed)
        self.imgnet, self.audnet = image_net, audio_net
        # location heads (PyTorch's default init, as the original)
        self.conv_v_1 = nn.Conv2d(image_channels, self.dim, kernel_size=1)
        self.conv_v_2 = nn.Conv2d(self.dim, self.dim, kernel_size=1)
        self.fc_a_1 = nn.Linear(audio_channels, self.dim)
        self.fc_a_2 = nn.Linear(self.dim, self.dim)
        self.conv_av = nn.Conv2d(1, 1, kernel_size=1, bias=False)
        nn.init.constant_(self.conv_av.weight, av_scale_init)
        # stage 1's pseudo-label classifiers (re-initialized at every round)
        self.v_class_layer = nn.Linear(image_channels, self.clusters)
        self.a_class_layer = nn.Linear(audio_channels, self.clusters)
        # stage 2: o_c = α⟨F, d_c⟩ + β (Conv3d 1×1×1 as the original: one weight, one bias)
        self.obj_conv = nn.Conv3d(1, 1, kernel_size=1)
        nn.init.constant_(self.obj_conv.weight, 1.0)  # α = 1, β = 0 (the original: U(−1, 1) each; module docstring)
        nn.init.zeros_(self.obj_conv.bias)
        # stage 2's teacher: the audio branch frozen at the stage switch
        self.teacher_audnet = copy.deepcopy(self.audnet).requires_grad_(False)
        self.teacher_a_class_layer = copy.deepcopy(self.a_class_layer).requires_grad_(False)
        # what the rounds and the switch compute, checkpointed with the weights
        self.register_buffer("centroids", torch.zeros(self.clusters, image_channels))  # of normalized object features
        self.register_buffer("dictionary", torch.zeros(self.clusters, image_channels))  # mean raw object features
        self.register_buffer("clustered_epoch", torch.tensor(-1))  # epoch of the last round (-1: none yet)
        self.register_buffer("stage", torch.tensor(1))  # 1 or 2

    @classmethod
    def schedule_problems(cls, arguments: dict[str, Any], epochs: int) -> list[str]:
        """Stage 1 needs a clustering round: init_epochs < stage_one_epochs."""
        init, stage_one = cls.argument(arguments, "init_epochs"), cls.argument(arguments, "stage_one_epochs")
        if not init < stage_one:
            return [f"init_epochs ({init}) must be smaller than stage_one_epochs ({stage_one}), "
                    "or stage 1 never clusters"]
        return []

    def load_weights(self, checkpoint: str | Path) -> "DSOL":
        """Our checkpoint, or an original `Location_Net_stage_one/two` state_dict (recognized by its
        `visual_net.*` keys; converted by `original_layout_state_dict`, as a stage-1 model: the map m
        needs nothing else)."""
        def convert(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            return original_layout_state_dict(state) if any(k.startswith("visual_net.") for k in state) else state

        load_state_dict_file(self, checkpoint, convert=convert)
        return self

    def train(self, mode: bool = True) -> "DSOL":
        """As nn.Module.train, but the frozen teacher always stays in eval mode (BatchNorm statistics)."""
        super().train(mode)
        self.teacher_audnet.eval()
        return self

    # ------------------------------------------------------------ the location pathway

    def visual_embedding(self, feature_map: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, D, h, w): Conv1×1 → ReLU → Conv1×1, L2-normalized per cell."""
        return F.normalize(self.conv_v_2(F.relu(self.conv_v_1(feature_map))), dim=1)

    def audio_embedding(self, audio_feature: torch.Tensor) -> torch.Tensor:
        """(B, C_a) max-pooled audio -> (B, D): FC → ReLU → FC, L2-normalized."""
        return F.normalize(self.fc_a_2(F.relu(self.fc_a_1(audio_feature))), dim=1)

    def location_logits(self, visual: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """w·⟨v(k), a⟩ for each cell: (B, D, h, w), (B, D) -> (B, h, w); the map is its sigmoid."""
        cosine = torch.einsum("bdhw,bd->bhw", visual, audio)  # (B, D, h, w), (B, D) -> (B, h, w)
        return self.conv_av(cosine[:, None])[:, 0]  # (B, 1, h, w) -> (B, h, w)

    def encode(self, image: torch.Tensor, spec: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Feature map F (B, C, h, w), location embeddings v (B, D, h, w), audio feature (B, C_a),
        audio embedding a (B, D)."""
        feature_map = self.imgnet(image)
        audio_feature = self.audnet(spec)
        return feature_map, self.visual_embedding(feature_map), audio_feature, self.audio_embedding(audio_feature)

    def location_map(self, image: torch.Tensor, spec: torch.Tensor) -> torch.Tensor:
        """(B, h, w) the sounding map m(k) = σ(w·⟨v(k), a⟩) in [0, 1]."""
        _, visual, _, audio = self.encode(image, spec)
        return torch.sigmoid(self.location_logits(visual, audio))

    # ------------------------------------------------------------ stage-2 class-aware maps

    def object_logits(self, feature_map: torch.Tensor, location: torch.Tensor | None) -> torch.Tensor:
        """o_c(k) = α⟨F(k), d_c⟩ + β, times m(k) when `location` is given: (B, K, h, w)."""
        similarity = torch.einsum("bchw,kc->bkhw", feature_map, self.dictionary)  # (B, C, h, w), (K, C) -> (B, K, h, w)
        logits = self.obj_conv(similarity[:, None])[:, 0]  # (B, 1, K, h, w) -> (B, K, h, w)
        return logits if location is None else logits * location[:, None]

    def audio_classes(self, spec: torch.Tensor) -> torch.Tensor:
        """(B, K) the frozen stage-1 audio classifier's posterior (stage 2's target)."""
        return torch.softmax(self.teacher_a_class_layer(self.teacher_audnet(spec)), dim=1)

    def class_maps(self, image: torch.Tensor, spec: torch.Tensor) -> torch.Tensor:
        """(B, K, h, w) class-aware maps softmax_c(sharpness·o_c·m), as `test_stage_two.py` draws them."""
        feature_map, visual, _, audio = self.encode(image, spec)
        location = torch.sigmoid(self.location_logits(visual, audio))
        return torch.softmax(self.class_sharpness * self.object_logits(feature_map, location), dim=1)

    # ------------------------------------------------------------ the schedule

    @property
    def classifying(self) -> bool:
        """Whether stage 1 trains the pseudo-label classifiers (a round has clustered the set)."""
        return int(self.stage) == 1 and int(self.clustered_epoch) >= 0

    def begin_epoch(self, epoch: int, data: Any = None) -> None:
        """Stage 1: a clustering round at the start of each epoch in [init_epochs, stage_one_epochs)
        (recomputed only when this epoch's round is not in the buffers yet). At stage_one_epochs:
        freeze the teacher and switch to stage 2, once (a resume in stage 2 finds it done).

        Raises:
            ValueError: a round is due and `data` is None.
        """
        if epoch >= self.stage_one_epochs:
            if int(self.stage) != 2:
                self.teacher_audnet.load_state_dict(self.audnet.state_dict())
                self.teacher_a_class_layer.load_state_dict(self.a_class_layer.state_dict())
                self.stage.fill_(2)
            return
        if epoch >= self.init_epochs and int(self.clustered_epoch) != epoch:
            if data is None:
                raise ValueError(f"DSOL clusters the training set at the start of epoch {epoch}: "
                                 f"begin_epoch needs the training data (vslrepro.train.TrainingData)")
            self.clustering_round(epoch, data)

    @torch.no_grad()
    def training_object_features(self, data: Any) -> torch.Tensor:
        """(N, C) float32 object features of the whole training set, in eval mode (`extract_feature`)."""
        was_training = self.training
        self.eval()
        features = []
        for images, specs, _ in data.batches():
            feature_map, visual, _, audio = self.encode(images, specs)
            location = torch.sigmoid(self.location_logits(visual, audio))
            features.append(object_features(feature_map.float(), location.float(), self.mask_threshold))
        self.train(was_training)
        return torch.cat(features)

    @torch.no_grad()
    def clustering_round(self, epoch: int, data: Any) -> torch.Tensor:
        """One round: object features → k-means on their L2-normalized copies → centroids, dictionary
        (per-cluster means of the raw features), fresh classifiers N(0, 0.01), bias 0.

        Returns:
            (N,) the cluster id of every training sample (for inspection).
        """
        features = self.training_object_features(data)
        labels, centres, _ = kmeans(F.normalize(features, dim=1), self.clusters,
                                    seed=(self.seed, epoch), restarts=self.kmeans_restarts)
        self.centroids.copy_(centres)
        self.dictionary.copy_(cluster_means(features, labels, self.clusters))
        generator = torch_generator(self.seed, epoch, purpose="reinit")
        for layer in (self.v_class_layer, self.a_class_layer):
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) * 0.01)
            layer.bias.zero_()
        self.clustered_epoch.fill_(epoch)
        return labels

    # ------------------------------------------------------------ losses

    def _with_unused(self, loss: torch.Tensor, *modules: nn.Module) -> torch.Tensor:
        """Under torchrun, `loss` + 0·(parameters of `modules`): DDP needs every parameter's gradient."""
        if not (dist.is_available() and dist.is_initialized()):
            return loss
        return loss + 0.0 * sum(p.sum() for m in modules for p in m.parameters())

    def stage_one_loss(self, image: torch.Tensor, spec: torch.Tensor) -> torch.Tensor:
        """BCE of s on B own and B mismatched pairs; + CE_v + CE_a on the pseudo labels after a round."""
        other = other_clips(image.shape[0])[:, 0].to(image.device)  # (B,) before any other draw
        feature_map, visual, audio_feature, audio = self.encode(image, spec)
        own = self.location_logits(visual, audio)  # (B, h, w)
        mismatched = self.location_logits(visual[other], audio)  # audio i with frame other[i]
        # s = σ(max_k logit): (B, 2) -> (2B,) own, other, own, ... as batch_organize interleaves them
        scores = torch.stack([own.flatten(1).amax(1), mismatched.flatten(1).amax(1)], dim=1).flatten()
        targets = torch.tensor([1.0, 0.0], device=scores.device).repeat(image.shape[0])
        loss = F.binary_cross_entropy_with_logits(scores.float(), targets)
        if not self.classifying:
            return self._with_unused(loss, self.v_class_layer, self.a_class_layer, self.obj_conv)
        with torch.no_grad():
            labels = nearest_centroid(object_features(feature_map.float(), torch.sigmoid(own.float()),
                                                      self.mask_threshold), self.centroids)
        v_logits = self.v_class_layer(feature_map.mean(dim=(2, 3)))  # (B, C, h, w) -> (B, C) -> (B, K)
        a_logits = self.a_class_layer(audio_feature)  # (B, K)
        loss = loss + F.cross_entropy(v_logits.float(), labels) + F.cross_entropy(a_logits.float(), labels)
        return self._with_unused(loss, self.obj_conv)

    def stage_two_loss(self, image: torch.Tensor, spec: torch.Tensor) -> torch.Tensor:
        """L_cat + location_weight·½(BCE(s_own, 1) + BCE(2×2 max of the mosaic's map, 0))."""
        batch = image.shape[0]
        quadrants = other_clips(batch, 4).to(image.device)  # (B, 4)
        frames = torch.cat([image, negative_mosaics(image, quadrants)])  # (2B, 3, S, S): own frames, then mosaics
        feature_map = self.imgnet(frames)
        visual = self.visual_embedding(feature_map)
        audio = self.audio_embedding(self.audnet(spec))
        own = self.location_logits(visual[:batch], audio)  # (B, h, w)
        mosaic = self.location_logits(visual[batch:], audio)
        positive = own.flatten(1).amax(1).float()  # (B,)
        negative = F.adaptive_max_pool2d(mosaic[:, None], 2).flatten().float()  # (B, 1, 2, 2) -> (4B,)
        location = 0.5 * (F.binary_cross_entropy_with_logits(positive, torch.ones_like(positive))
                          + F.binary_cross_entropy_with_logits(negative, torch.zeros_like(negative)))
        objects = self.object_logits(feature_map[:batch].float(), torch.sigmoid(own.float()))  # (B, K, h, w)
        pooled = objects.mean(dim=(2, 3))  # (B, K, h, w) -> (B, K)
        with torch.no_grad():
            target = self.audio_classes(spec).float()
        category = kl_element_mean(F.log_softmax(pooled, dim=1), target)
        loss = category + self.location_weight * location
        return self._with_unused(loss, self.v_class_layer, self.a_class_layer)

    def forward(self, image: torch.Tensor, spec: torch.Tensor) -> torch.Tensor:
        """The training loss of the current stage (see `begin_epoch`)."""
        if int(self.stage) == 2:
            return self.stage_two_loss(image, spec)
        return self.stage_one_loss(image, spec)

    # ------------------------------------------------------------ testing

    def evaluated_maps(self, image: torch.Tensor, spec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The map of the model's stage and the clip score: (maps (B, h, w) in [0, 1], s (B,)).

        Stage 1: m. Stage 2: the class-aware map softmax_c(sharpness·o_c·m) of the category the
        frozen audio classifier gives the highest probability (module docstring).
        """
        feature_map, visual, _, audio = self.encode(image, spec)
        location = torch.sigmoid(self.location_logits(visual, audio))  # (B, h, w)
        score = location.flatten(1).amax(1)  # s = max_k m(k)
        if int(self.stage) != 2:
            return location, score
        heard = self.audio_classes(spec).argmax(1)  # (B,)
        classes = torch.softmax(self.class_sharpness * self.object_logits(feature_map, location), dim=1)
        return classes[torch.arange(len(heard), device=heard.device), heard], score  # (B, K, h, w) -> (B, h, w)

    def raw_maps(self, image: torch.Tensor, spec: torch.Tensor) -> torch.Tensor:
        """(B, h, w) the map evaluated (`evaluated_maps`), in [0, 1]."""
        return self.evaluated_maps(image, spec)[0]

    def localize(self, image: torch.Tensor, spec: torch.Tensor, size: int = 224) -> Localization:
        """The upsampled map of the model's stage; "max" = s = max_k m(k) on the raw grid (the
        original's score), "topk_mean" on the upsampled map.

        Returns:
            Localization(maps (B, size, size) float32 in [0, 1], {"max": (B,), "topk_mean": (B,)}).
        """
        raw, score = self.evaluated_maps(image, spec)
        maps = upsample_maps(raw.float(), size, self.upsample_mode, self.align_corners).float()
        confidence = confidence_scores(maps, self.map_bounds)
        confidence["max"] = score.float()
        return Localization(maps, confidence)
