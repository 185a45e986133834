"""CoarsetoFine — Qian, Hu, Nie, Chen, Chen & Wen, ECCV 2020, "Multiple Sound Sources Localization
from Coarse to Fine".

Original (shvdiwnkozbw/Multi-Source-Sound-Localization, the simplified `new/` code the README says
"reaches comparable performance": `base_model.py`, `stage_one.py:MTask`, `stage_two.py:Align`,
`Location`, `filter_prob`, `contrastive`, `main.py:train_stage_one/train_stage_two/test/visualize`;
see docs/methods/coarsetofine.md):
- encoders: ResNet-18 trunks with layer strides 1/2/2/1 (16×16 maps at 256 px), the visual one
  ImageNet-initialized, the audio one from scratch on a (time × 64 mel) log-mel; both return their
  layer4 map (`vision`, `audio`).
- heads: `avc` = Linear(1024, 128) → ReLU → Linear(128, 2) on [ā_i; v̄_j] (average-pooled features)
  for every audio i and image j of the batch; `class_a` / `class_v` = bias-free 1×1 convs 512 → 7 on
  the pooled features (logits over 7 AudioSet top-level categories); `project_a` / `project_v` =
  bias-free Conv1d 512 → 1024, ReLU, Conv1d 1024 → 128.
- stage 1 (`MTask`): L₁ = L_avc + L_cls,a + L_cls,v with
      L_avc = ½·mean_{i=j} CE(avc_ij, match) + ½·mean_{i≠j} CE(avc_ij, mismatch),
      L_cls = BCE(σ(cls), y) against multi-hot pseudo labels y from an AudioSet tagger (audio) and an
      ImageNet classifier (vision), mapped to the 7 categories.
- stage 2 (`Align`, loaded from stage 1): class-specific features through detached CAMs,
      cam_c = ReLU(W_c F) (detached),  f_c = mean_k(F(k)·cam_c(k)) / (Σ_k cam_c(k) + 1e-10),
  projected and L2-normalized, z_c = P(f_c)/‖P(f_c)‖; for every (audio i, class c) and (image j,
  class c′), D = 2 − 2⟨z^a_ic, z^v_jc′⟩, valid when σ(cls_a)_ic > 0.3 and σ(cls_v)_jc′ > 0.3;
      L_align = Σ D·valid·[ic = jc′] / Σ(valid·[ic = jc′] + 1e-10)
              + Σ ReLU(1.4 − √D)²·valid·[ic ≠ jc′] / Σ(valid·[ic ≠ jc′] + 1e-10),
      L₂ = L_avc + L_cls,a + L_cls,v + L_align.
- test map (`Location` + `test` + `visualize`): s_c(k) = ReLU(⟨z^a_c, P(F_v(k))/‖·‖⟩) per class c
  and visual cell k (no CAM on the visual side), bilinearly upsampled (align_corners=False) to
  256²; p = σ(σ(cls_a)) — the sigmoid is applied twice, once in `test` and again on the argument of
  `visualize`; E = {c : p_c > 0.3} ∪ {argmax p}; map = Σ_{c∈E} p_c s_c / Σ_{c∈E} p_c, divided by
  its maximum.
- optimizer (`new/main.py`): SGD, momentum 0.9, weight decay 5e-4, batch 16; lr 1e-3 in stage 1 and
  1e-4 in stage 2 (README); the original `main.py` uses Adam, heads at 1e-3 and backbones at 1e-4.

Ours: the same heads under the same names (`avc`, `class_a`, `class_v`, `project_a`, `project_v`),
the same losses and the same test map, on the benchmark's shared encoders (`imgnet`, `audnet`;
vslrepro.methods._backbones). `load_weights` also reads the original's state_dict (`vision.*`,
`audio.*`; `from_original`). Both stages run in one training run: `begin_epoch` switches to stage 2 at
epoch `stage_one_epochs`. Deviations, and why:
- **category labels (weakly supervised substitute).** The original's pseudo labels come from
  external supervised classifiers (an AudioSet tagger, ImageNet predictions mapped by hand-made
  tables) that the benchmark cannot ship and that would add category supervision the other methods
  lack. Ours: stage 1 trains L_avc alone; at the stage boundary the stage-1 encoders are frozen into
  a *labeller* (`labeller_imgnet`, `labeller_audnet`) and the package's k-means
  (`vslrepro.methods._kmeans`: K = `classes`, k-means++ seeded by `seed`, 10 restarts, float64)
  clusters the joint embedding [ā/‖ā‖; v̄/‖v̄‖] of the labeller's pooled
  features over the whole training set (`data.batches()`: central crops, index order). In stage 2
  each training pair's label is the one-hot nearest centre of its labeller embedding, shared by both
  modalities (the README says one set of labels for both modalities also works). The labeller and
  the centres are module state (frozen parameters and buffers): they are checkpointed, and a resume
  in stage 2 continues with them instead of clustering again. The labeller always runs in eval mode.
  The synthetic object prior (profiles smoke/quick) enters only as the image encoder's
  initialization, as ImageNet does in the original (profile paper).
- **optimizer.** The trainer uses one Adam optimizer over all parameters with `train.lr` for both
  stages (its state carries over the boundary), not SGD with a 10× lower lr in stage 2 (`new/`),
  nor the original `main.py`'s two Adam groups; no weight decay unless the profile sets one.
- **stage 1 in the graph of every parameter.** In stage 1 the class convs and projectors have no
  loss; they are added to it with weight 0 so that DistributedDataParallel (which the trainer uses
  without `find_unused_parameters`) sees every trainable parameter used. Their gradient is exactly
  0, so Adam leaves them unchanged (without weight decay).
- **audio input and encoders.** The benchmark's shared log-spectrogram (B, 1, 257, T)/12 instead of
  the 64-bin log-mel; the audio side uses the encoder's conv map before its global pool (the
  original's `audio` returns its map and `avgpool`s it itself). `layer4_stride=1` (the default)
  gives the original's output stride 16 (14×14 at 224 px; 14×14 with the small CNN at 56 px).
- **classification loss** from the logits (`binary_cross_entropy_with_logits`): the same number as
  the original's `BCELoss(sigmoid(·))` wherever its log does not hit BCELoss's −100 clamp.
- **√D** is taken of max(D, 1e-12): D = 2 − 2cos can round below 0 for equal vectors, where the
  original's √ gives NaN (and NaN·0 = NaN spreads into its loss).
- **test map** at 224² (the benchmark's size, not 256²). The class maps are fused on the encoder
  grid and the fused map is upsampled (bilinear is linear, so this equals fusing upsampled maps up to
  rounding), then divided by its maximum. An all-zero map (every cosine ≤ 0) stays zero where the
  original divides 0 by 0 (NaN).
- **double sigmoid.** Reproduced by default (`double_sigmoid=True`, as `test` + `visualize`):
  p ∈ (0.5, 0.73), so every class passes the 0.3 cut and the class weights are nearly uniform.
  `double_sigmoid=False` gives the evidently intended single sigmoid.
- **confidence.** The test map is divided by its own maximum, so its "max" is exactly 1 for every
  sample: a constant score. We keep it as the method's `"max"` confidence, because it is what the
  original's test code yields and what the paper's Table 3 reflects: with a constant confidence the
  official evaluator's AP is 0.00 (docs/protocol.md §5; the paper prints AP 0.00 for CoarsetoFine on
  both datasets), while the exact-mode AP is LocAcc·n_pos/N and max-F1 is the F1 of "everything
  detected". The one exception is an all-zero map (no cosine above 0, typically a silent clip): its
  maximum is 0 (the original's is NaN, which no threshold detects either), so a few negatives can
  lift the official AP just above 0. `"topk_mean"` is the mean of the top 25 % of the same final
  map (bounds (0, 1)): a score of the map's spread, not of evidence. Two extra scores that can rank
  samples are reported beside them (not used by the tables): `"fused_max"`, the maximum of the
  fused map before the division (a cosine in [0, 1]), and `"avc"`, the AVC head's "match"
  probability for the clip's own (audio, frame) pair.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vslrepro.methods._backbones import build_backbones
from vslrepro.methods._base import Localization, LocalizationMethod, confidence_scores, upsample_maps
from vslrepro.methods._checkpoints import load_state_dict_file
from vslrepro.methods._kmeans import kmeans
from vslrepro.methods._registry import register

STAGE_TWO_PARTS = ("class_a", "class_v", "project_a", "project_v")  # no loss in stage 1


# ---------------------------------------------------------------- losses (pure functions)


def avc_loss(avc_logits: torch.Tensor) -> torch.Tensor:
    """Class-balanced audio-visual correspondence loss of `main.py`.

    Args:
        avc_logits: (B, B, 2) logits of (audio i, image j), class 1 = "match" (i = j).

    Returns:
        ½·mean CE over the B matched pairs + ½·mean CE over the B(B − 1) mismatched ones.
    """
    batch = avc_logits.shape[0]
    match = torch.eye(batch, dtype=torch.bool, device=avc_logits.device).flatten()  # (B·B,)
    per_pair = F.cross_entropy(avc_logits.reshape(-1, 2).float(), match.long(), reduction="none")
    return per_pair[match].mean() / 2 + per_pair[~match].mean() / 2


def classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy of σ(logits) against (multi-)hot labels, both (B, K)."""
    return F.binary_cross_entropy_with_logits(logits.float(), labels.float())


def class_distances(fine_a: torch.Tensor, fine_v: torch.Tensor) -> torch.Tensor:
    """D = 2 − 2⟨z^a_ic, z^v_jc′⟩ for every (audio i, class c) and (image j, class c′).

    Args:
        fine_a, fine_v: (B, D, K) L2-normalized class-specific embeddings.

    Returns:
        (B·K, B·K) distances; row i·K + c, column j·K + c′ (the original's permute/view order).
    """
    a = fine_a.transpose(1, 2).reshape(-1, fine_a.shape[1])  # (B, D, K) -> (B·K, D)
    v = fine_v.transpose(1, 2).reshape(-1, fine_v.shape[1])  # (B, D, K) -> (B·K, D)
    return 2 - 2 * a @ v.T


def alignment_loss(fine_a: torch.Tensor, fine_v: torch.Tensor, cls_a: torch.Tensor, cls_v: torch.Tensor,
                   margin: float = 1.4, threshold: float = 0.3) -> torch.Tensor:
    """Stage 2's class-wise contrastive loss (`main.py:train_stage_two`'s dloss).

    Args:
        fine_a, fine_v: (B, D, K) L2-normalized class-specific embeddings.
        cls_a, cls_v: (B, K) class logits; a pair is used when both σ's exceed `threshold`.
        margin: margin on √D for the negatives (original 1.4).
        threshold: probability cut of `filter_prob` (original 0.3).

    Returns:
        mean D over valid positives + mean ReLU(margin − √D)² over valid negatives, with the
        original's denominators Σ(mask·valid + 1e-10).
    """
    distance = class_distances(fine_a.float(), fine_v.float())  # (BK, BK)
    valid = ((torch.sigmoid(cls_a.float()).reshape(-1, 1) > threshold)
             & (torch.sigmoid(cls_v.float()).reshape(1, -1) > threshold)).float()  # (BK, 1) & (1, BK)
    positive = torch.eye(distance.shape[0], device=distance.device)
    negative = 1 - positive
    pull = (distance * valid * positive).sum() / (positive * valid + 1e-10).sum()
    push_each = F.relu(margin - distance.clamp_min(1e-12).sqrt()).pow(2)
    push = (push_each * valid * negative).sum() / (negative * valid + 1e-10).sum()
    return pull + push


# ---------------------------------------------------------------- pieces of the model


def class_features(feature_map: torch.Tensor, class_conv: nn.Conv2d) -> torch.Tensor:
    """CAM-pooled class-specific features f_c = mean_k(F(k)·cam_c(k)) / (Σ_k cam_c(k) + 1e-10).

    cam_c = ReLU(W_c F) is detached (stage 2 trains the class convs through the classification
    loss only). The leftover 1/(h·w) of the mean is kept as in the original: the projector has no
    bias and ends in an L2 normalization, so it cancels.

    Args:
        feature_map: (B, C, h, w).
        class_conv: the bias-free 1×1 conv C → K.

    Returns:
        (B, C, K).
    """
    cam = F.relu(class_conv(feature_map)).detach()  # (B, K, h, w)
    cells = feature_map.shape[2] * feature_map.shape[3]
    pooled = torch.einsum("bchw,bkhw->bck", feature_map, cam) / cells  # (B, C, K)
    weight = cam.flatten(2).sum(2)  # (B, K, h, w) -> (B, K)
    return pooled / (weight.unsqueeze(1) + 1e-10)  # (B, C, K) / (B, 1, K)


def projector(channels: int, hidden: int, out: int) -> nn.Sequential:
    """The original's `project_*`: bias-free Conv1d channels → hidden, ReLU, Conv1d hidden → out."""
    return nn.Sequential(nn.Conv1d(channels, hidden, 1, bias=False), nn.ReLU(True),
                         nn.Conv1d(hidden, out, 1, bias=False))


def class_weights(class_probability: torch.Tensor, threshold: float = 0.3) -> torch.Tensor:
    """`visualize`'s weights: p_c on E = {c : p_c > threshold} ∪ {argmax p}, 0 elsewhere.

    Args:
        class_probability: (B, K) audio class probabilities p.

    Returns:
        (B, K) weights.
    """
    chosen = class_probability > threshold  # (B, K)
    chosen[torch.arange(len(chosen)), class_probability.argmax(1)] = True
    return class_probability * chosen


# ---------------------------------------------------------------- the method


@register("coarsetofine")
class CoarsetoFine(LocalizationMethod):
    """CoarsetoFine: `loss = model(image, spec)` (stage from `begin_epoch`); `localize` as `test`.

    Args:
        backbone: "resnet18" (224 px, profile paper) or "small" (56 px, smoke/quick).
        classes: number of categories K (original: 7 AudioSet top-level categories; ours: k-means
            clusters).
        stage_one_epochs: training epochs of stage 1; the rest of `train.epochs` is stage 2.
        embed_dim: output size of the projectors (original 128); their hidden size is twice the
            encoder's channels (original 1024 for 512).
        avc_hidden: hidden size of the AVC MLP (original 128).
        margin: margin on √D of the alignment loss (original 1.4).
        threshold: class-probability cut of the alignment pairs and of the test-time class set
            (original 0.3).
        double_sigmoid: apply the sigmoid twice to the audio logits at test time, as the original's
            `test` + `visualize` do (default); False: once.
        layer4_stride: 1 (original output stride 16: 14×14 maps) or 2 (7×7), for both encoders.
        seed: seed of the k-means++ draws at the stage boundary (the profile's `seed`).
        image_weights: initial weights of the image encoder (see `backbones.build_image_encoder`).

    Raises:
        ValueError: for a bad value of any of the above.
    """

    display_name = "CoarsetoFine"
    hyperparameter_ranges = {"classes": {"minimum": 1}, "stage_one_epochs": {"minimum": 0},
                             "embed_dim": {"minimum": 1}, "avc_hidden": {"minimum": 1},
                             "margin": {"exclusiveMinimum": 0},
                             "threshold": {"exclusiveMinimum": 0, "exclusiveMaximum": 1},
                             "layer4_stride": {"enum": [1, 2]}, "seed": {"minimum": 0}}
    upsample_mode = "bilinear"
    align_corners = False  # F.interpolate's default in `test`
    map_bounds = (0.0, 1.0)

    def __init__(self, backbone: str = "small", classes: int = 7, stage_one_epochs: int = 1,
                 embed_dim: int = 128, avc_hidden: int = 128, margin: float = 1.4, threshold: float = 0.3,
                 double_sigmoid: bool = True, layer4_stride: int = 1, seed: int = 0,
                 image_weights: str | Path | Mapping[str, torch.Tensor] | None = None) -> None:
        super().__init__()
        for name, value in (("classes", classes), ("embed_dim", embed_dim), ("avc_hidden", avc_hidden)):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}")
        if int(stage_one_epochs) != stage_one_epochs or stage_one_epochs < 0:
            raise ValueError(f"stage_one_epochs must be a non-negative integer, got {stage_one_epochs}")
        if not margin > 0:
            raise ValueError(f"margin must be positive, got {margin}")
        if not 0 < threshold < 1:
            raise ValueError(f"threshold must be a probability in (0, 1), got {threshold}")
        if not isinstance(double_sigmoid, bool):
            raise ValueError(f"double_sigmoid must be true or false, got {double_sigmoid!r}")
        if int(seed) != seed or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed}")
        image_net, audio_net, image_channels, audio_channels = build_backbones(
            backbone, image_weights, layer4_stride=layer4_stride)
        self.backbone, self.classes = backbone, int(classes)
        self.stage_one_epochs, self.seed = int(stage_one_epochs), int(seed)
        self.margin, self.threshold, self.double_sigmoid = float(margin), float(threshold), double_sigmoid
        self.stage = 1  # set by begin_epoch; decides what `forward` trains

        self.imgnet = image_net
        self.audnet = audio_net
        self.avc = nn.Sequential(nn.Linear(audio_channels + image_channels, avc_hidden), nn.ReLU(True),
                                 nn.Linear(avc_hidden, 2))
        self.class_a = nn.Conv2d(audio_channels, self.classes, 1, bias=False)
        self.class_v = nn.Conv2d(image_channels, self.classes, 1, bias=False)
        self.project_a = projector(audio_channels, 2 * audio_channels, embed_dim)
        self.project_v = projector(image_channels, 2 * image_channels, embed_dim)

        # the stage-2 labeller: the stage-1 encoders, frozen at the boundary, and k-means centres
        self.labeller_imgnet = copy.deepcopy(image_net).requires_grad_(False).eval()
        self.labeller_audnet = copy.deepcopy(audio_net).requires_grad_(False).eval()
        self.register_buffer("centres", torch.zeros(self.classes, audio_channels + image_channels))
        self.register_buffer("centres_fitted", torch.tensor(False))

    @classmethod
    def schedule_problems(cls, arguments: dict[str, Any], epochs: int) -> list[str]:
        """Stage 1 must leave stage 2 at least one of the run's `epochs`."""
        stage_one = cls.argument(arguments, "stage_one_epochs")
        if stage_one >= epochs:
            return [f"stage_one_epochs ({stage_one}) must be smaller than train.epochs ({epochs}), "
                    "or stage 2 never runs"]
        return []

    def train(self, mode: bool = True) -> "CoarsetoFine":
        """Train/eval mode for everything but the labeller, which stays in eval mode (fixed labels)."""
        super().train(mode)
        self.labeller_imgnet.eval()
        self.labeller_audnet.eval()
        return self

    def load_weights(self, checkpoint: str | Path | Mapping) -> "CoarsetoFine":
        """Fill the model strictly from ours (`best.pt`, `latest.pt`) or from a state_dict of the
        original's `Location` / `Align` (`vision.*`, `audio.*`; resnet18 only; see `from_original`).

        Raises:
            FileNotFoundError: the file does not exist.
            DataError: an unreadable file, or keys/shapes that do not fit (naming the file).
        """
        load_state_dict_file(self, checkpoint, convert=from_original)
        return self

    # ------------------------------------------------------------------ features

    def audio_map(self, spec: torch.Tensor, net: nn.Module | None = None) -> torch.Tensor:
        """(B, 1, F, T) -> (B, C, f, t): the audio encoder's conv map before its global pool."""
        net = self.audnet if net is None else net
        if self.backbone == "small":
            return net.stages(spec)  # (B, 1, F, T) -> (B, C, F/16, T/16) (F/8 with layer4_stride 1)
        x = net.maxpool(net.relu(net.bn1(net.conv1(spec))))  # (B, 1, F, T) -> (B, 64, F/4, T/4)
        return net.layer4(net.layer3(net.layer2(net.layer1(x))))  # -> (B, 512, F/16, T/16) (stride 1)

    def feature_maps(self, image: torch.Tensor, spec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(audio map (B, C_a, f, t), image map (B, C_v, h, w))."""
        return self.audio_map(spec), self.imgnet(image)

    def avc_logits(self, pooled_a: torch.Tensor, pooled_v: torch.Tensor) -> torch.Tensor:
        """AVC logits for every (audio i, image j): (B, C_a), (B, C_v) -> (B, B, 2)."""
        batch = pooled_a.shape[0]
        pairs = torch.cat([pooled_a[:, None].expand(-1, batch, -1),     # (B, 1, C_a) -> (B, B, C_a)
                           pooled_v[None, :].expand(batch, -1, -1)], 2)  # (1, B, C_v) -> (B, B, C_v)
        return self.avc(pairs)  # (B, B, C_a + C_v) -> (B, B, 2)

    @staticmethod
    def class_logits(pooled: torch.Tensor, class_conv: nn.Conv2d) -> torch.Tensor:
        """The 1×1 class conv on pooled features: (B, C) -> (B, K)."""
        return class_conv(pooled[:, :, None, None]).flatten(1)  # (B, C, 1, 1) -> (B, K, 1, 1) -> (B, K)

    def class_embeddings(self, feature_map: torch.Tensor, class_conv: nn.Conv2d,
                         project: nn.Sequential) -> torch.Tensor:
        """z_c = P(f_c)/‖P(f_c)‖: (B, C, h, w) -> (B, D, K)."""
        return F.normalize(project(class_features(feature_map, class_conv)), dim=1)

    # ------------------------------------------------------------------ the stage boundary

    @torch.no_grad()
    def labeller_embedding(self, image: torch.Tensor, spec: torch.Tensor) -> torch.Tensor:
        """[ā/‖ā‖; v̄/‖v̄‖] of the frozen labeller's pooled features: (B, C_a + C_v), float32."""
        with torch.autocast(image.device.type, enabled=False):
            audio = self.audio_map(spec.float(), self.labeller_audnet).mean((2, 3))  # (B, C_a)
            visual = self.labeller_imgnet(image.float()).mean((2, 3))  # (B, C_v)
        return torch.cat([F.normalize(audio, dim=1), F.normalize(visual, dim=1)], 1)

    @torch.no_grad()
    def pseudo_labels(self, image: torch.Tensor, spec: torch.Tensor) -> torch.Tensor:
        """One-hot (B, K) labels: the k-means centre nearest to each pair's labeller embedding."""
        if not bool(self.centres_fitted):
            raise RuntimeError("coarsetofine: the pseudo-label centres are not fitted yet "
                               "(begin_epoch(stage_one_epochs, data) fits them)")
        nearest = torch.cdist(self.labeller_embedding(image, spec), self.centres).argmin(1)  # (B,)
        return F.one_hot(nearest, self.classes).float()

    @torch.no_grad()
    def fit_pseudo_labels(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor, Any]]) -> None:
        """Freeze the current encoders into the labeller and k-means its embeddings of `batches`
        ((images, specs, ...) tuples, e.g. `TrainingData.batches()`) into K centres."""
        self.labeller_imgnet.load_state_dict(self.imgnet.state_dict())
        self.labeller_audnet.load_state_dict(self.audnet.state_dict())
        embeddings = torch.cat([self.labeller_embedding(images, specs).cpu()
                                for images, specs, *_ in batches])  # (N, C_a + C_v)
        _, centres, _ = kmeans(embeddings, self.classes, seed=self.seed)
        self.centres.copy_(centres.to(self.centres))
        self.centres_fitted.fill_(True)

    def begin_epoch(self, epoch: int, data: Any = None) -> None:
        """Stage 1 before epoch `stage_one_epochs`, stage 2 from it on. Entering stage 2 with no
        fitted centres (the boundary itself, not a resume inside stage 2) fits them on `data`."""
        self.stage = 1 if epoch < self.stage_one_epochs else 2
        if self.stage == 2 and not bool(self.centres_fitted):
            if data is None:
                raise ValueError("coarsetofine: stage 2 needs the training data to fit its pseudo labels")
            self.fit_pseudo_labels(data.batches())

    # ------------------------------------------------------------------ training

    def stage_one_loss(self, image: torch.Tensor, spec: torch.Tensor) -> torch.Tensor:
        """L₁ = L_avc (the original's L_cls terms need the labels that stage 1 provides)."""
        feat_a, feat_v = self.feature_maps(image, spec)
        loss = avc_loss(self.avc_logits(feat_a.mean((2, 3)), feat_v.mean((2, 3))))
        idle = [p for part in STAGE_TWO_PARTS for p in getattr(self, part).parameters()]
        return loss + 0.0 * sum(p.sum() for p in idle)  # in the graph, gradient 0 (DDP; docstring)

    def stage_two_loss(self, image: torch.Tensor, spec: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """L₂ = L_avc + L_cls,a + L_cls,v + L_align for (B, K) labels shared by both modalities."""
        feat_a, feat_v = self.feature_maps(image, spec)
        pooled_a, pooled_v = feat_a.mean((2, 3)), feat_v.mean((2, 3))  # (B, C_a), (B, C_v)
        cls_a, cls_v = self.class_logits(pooled_a, self.class_a), self.class_logits(pooled_v, self.class_v)
        fine_a = self.class_embeddings(feat_a, self.class_a, self.project_a)  # (B, D, K)
        fine_v = self.class_embeddings(feat_v, self.class_v, self.project_v)  # (B, D, K)
        return (avc_loss(self.avc_logits(pooled_a, pooled_v))
                + classification_loss(cls_a, labels) + classification_loss(cls_v, labels)
                + alignment_loss(fine_a, fine_v, cls_a, cls_v, self.margin, self.threshold))

    def forward(self, image: torch.Tensor, spec: torch.Tensor) -> torch.Tensor:
        """The training loss of the current stage (set by `begin_epoch`)."""
        if self.stage == 1:
            return self.stage_one_loss(image, spec)
        return self.stage_two_loss(image, spec, self.pseudo_labels(image, spec))

    # ------------------------------------------------------------------ testing

    def class_maps(self, image: torch.Tensor,
                   spec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The original's `Location` outputs the test map needs.

        Returns:
            (s (B, K, h, w) = ReLU(cos(z^a_c, z^v_k)), audio class logits (B, K), AVC "match"
            probability of each clip's own pair (B,)).
        """
        feat_a, feat_v = self.feature_maps(image, spec)
        fine_a = self.class_embeddings(feat_a, self.class_a, self.project_a)  # (B, D, K)
        cells_v = self.project_v(feat_v.flatten(2))  # (B, C, h, w) -> (B, C, hw) -> (B, D, hw)
        cells_v = F.normalize(cells_v, dim=1)
        similarity = F.relu(torch.einsum("bdk,bdn->bkn", fine_a, cells_v))  # (B, K, hw)
        pooled_a, pooled_v = feat_a.mean((2, 3)), feat_v.mean((2, 3))
        own = torch.arange(len(image), device=image.device)
        match = self.avc_logits(pooled_a, pooled_v)[own, own].softmax(-1)[:, 1]  # (B, B, 2) -> (B,)
        return (similarity.view(*similarity.shape[:2], *feat_v.shape[2:]),  # (B, K, hw) -> (B, K, h, w)
                self.class_logits(pooled_a, self.class_a), match)

    def class_probability(self, cls_a: torch.Tensor) -> torch.Tensor:
        """p of `visualize`: σ(σ(logits)) with `double_sigmoid` (the original), else σ(logits)."""
        p = torch.sigmoid(cls_a)
        return torch.sigmoid(p) if self.double_sigmoid else p

    def fuse(self, similarity: torch.Tensor, cls_a: torch.Tensor) -> torch.Tensor:
        """Σ_{c∈E} p_c s_c / Σ_{c∈E} p_c: (B, K, h, w), (B, K) -> (B, h, w), not yet max-normalized."""
        weights = class_weights(self.class_probability(cls_a), self.threshold)  # (B, K)
        return torch.einsum("bkhw,bk->bhw", similarity, weights) / weights.sum(1)[:, None, None]

    def raw_maps(self, image: torch.Tensor, spec: torch.Tensor) -> torch.Tensor:
        """(B, h, w) fused class maps on the encoder grid (before the division by the maximum)."""
        similarity, cls_a, _ = self.class_maps(image, spec)
        return self.fuse(similarity, cls_a)

    def localize(self, image: torch.Tensor, spec: torch.Tensor, size: int = 224) -> Localization:
        """The original's test map: fused maps upsampled bilinearly, divided by their maximum.

        Returns:
            Localization(maps (B, size, size) in [0, 1], {"max": 1 for every non-zero map (constant),
            "topk_mean": top-25 % mean of the map, "fused_max": max before the division, "avc": the
            AVC match probability}) — see the module docstring.
        """
        similarity, cls_a, match = self.class_maps(image, spec)
        fused = upsample_maps(self.fuse(similarity, cls_a), size, self.upsample_mode, self.align_corners)
        peak = fused.flatten(1).amax(1)[:, None, None]  # (B, 1, 1)
        maps = torch.where(peak > 0, fused / torch.where(peak > 0, peak, torch.ones_like(peak)), fused)
        confidence = confidence_scores(maps, self.map_bounds)
        confidence["fused_max"] = peak.flatten().float()
        confidence["avc"] = match.float()
        return Localization(maps.float(), confidence)


def from_original(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The original's state_dict (`new/stage_two.py:Location` / `Align`, `stage_one.py:MTask`) in
    our layout, for the resnet18 backbone; a state_dict without `vision.*` keys (ours) is returned
    unchanged.

    - `vision.*` → `imgnet.*`, without `vision.conv1_a` (its unused audio stem) and `vision.fc`;
    - `audio.conv1_a` → `audnet.conv1`, the rest of `audio.*` → `audnet.*`, without `audio.conv1`
      (its unused RGB stem) and `audio.fc`;
    - heads unchanged (`avc`, `class_a`, `class_v`, `project_a`, `project_v`; an `MTask` file has
      no projectors and is refused by the strict load);
    - the labeller is set to the loaded encoders and the centres are marked unfitted: the original
      had no labeller (its labels came from external classifiers); they matter only for training.
    """
    if not any(key.startswith("vision.") for key in state):
        return dict(state)
    ours: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("vision."):
            rest = key[len("vision."):]
            if not rest.startswith(("conv1_a.", "fc.")):
                ours[f"imgnet.{rest}"] = value
        elif key.startswith("audio."):
            rest = key[len("audio."):]
            if rest.startswith("conv1_a."):
                ours[f"audnet.conv1.{rest[len('conv1_a.'):]}"] = value
            elif not rest.startswith(("conv1.", "fc.")):
                ours[f"audnet.{rest}"] = value
        else:
            ours[key] = value
    encoders = [(key, value) for key, value in ours.items() if key.startswith(("imgnet.", "audnet."))]
    ours.update({f"labeller_{key}": value.clone() for key, value in encoders})
    channels = sum(ours[f"{head}.weight"].shape[1] for head in ("class_a", "class_v")) \
        if "class_a.weight" in ours and "class_v.weight" in ours else 0
    classes = ours["class_a.weight"].shape[0] if "class_a.weight" in ours else 0
    ours["centres"] = torch.zeros(classes, channels)
    ours["centres_fitted"] = torch.tensor(False)
    return ours
