"""Attention10k — Senocak et al., CVPR 2018, "Learning to Localize Sound Source in Visual Scenes".

Original: the first author's PyTorch re-implementation, ardasnck/learning_to_localize_sound_source
(the paper's TensorFlow code is not public; its README says accuracy is slightly below the paper's):
- `network.py:VisualNet`: torchvision VGG16 `features[0:29]` (through conv5_3 + ReLU), ImageNet
  weights, **frozen**; a 320×320 frame gives v (B, 512, 20, 20).
- `network.py:AudioNet` is a bare ReLU: the audio input is f_s, a pre-extracted 1000-d SoundNet
  vector per clip (conv8 "object" branch averaged over time; `Sound_Localization_Dataset.py`).
- `network.py:AVModel.forward`:
      h   = L2(sound_fc2(ReLU(sound_fc1(ReLU(f_s)))))        FC 1000→1000, 1000→512
      c_k = ⟨v_k/‖v_k‖, h⟩                                    cosine at each of the 400 cells
      α   = att_softmax(ReLU(c))                              softmax over cells, no temperature
      z   = Σ_k α_k v_k                                       on the un-normalized features
      f_v = vision_fc2(ReLU(vision_fc1(ReLU(z))))             FC 512→512, 512→1000 (no last ReLU)
- `losses.py:UnsupervisedLoss` with `sound_localization_main.py`: d± = ‖f_v − f_s±‖ (with
  `F.pairwise_distance`, eps 1e-6) against the **raw** input vectors f_s± (not the ReLU'd ones the
  model returns); L = mean over the batch and both entries of (softmax([d⁺, d⁻]) − [0, 1])², a
  "softmax triplet" that pushes d⁺ ≪ d⁻. f_s⁻ is the vector of **one** uniformly random other
  training clip, drawn in `Sound_Localization_Dataset.__getitem__`; only f_s⁺ drives the attention.
  `losses.py:SupervisedLoss` (−Σ g log α with a 20×20 box map) is the semi-supervised part.
- Map: `sound_localization_main.py:attention_visualization` saves α reshaped to 20×20 as `.npy` and
  overlays it after PIL bilinear resizing; there is no official test/cIoU code.
- README command: Adam, lr 1e-4, weight decay 0, batch 30, 10 epochs; the checkpoint with the
  lowest validation loss is kept (the trainer's and the profiles' business).

Ours (same equations, same head names `sound_fc1`, `sound_fc2`, `att_softmax`, `vision_fc1`,
`vision_fc2`; the names match the original's, the sizes follow our backbones, see below), on the
shared backbones of
`build_backbones` (`imgnet`, `audnet`):
- conv5_3 → the image trunk's map (`imgnet`): layer4 of the ImageNet ResNet-18 (paper profile,
  224 px → 512×7×7) or the small CNN (smoke/quick, 56 px → 128×7×7). Like conv5_3 it ends in a
  ReLU, so z stays non-negative as in the original.
- SoundNet vector f_s → the audio trunk's pooled output (`audnet`, (B, C_a): 512 for resnet18, 128
  for small). It feeds the audio MLP exactly where f_s does (through the same ReLU), and it is the
  f_s± of the loss: the loss keeps the original's structure of comparing f_v with the *raw* audio
  vectors, so vision_fc2 maps into the audio trunk's space.
- Sizes adapted to the backbone channels C_v (image) and C_a (audio): sound_fc1 C_a→dim,
  sound_fc2 dim→C_v, vision_fc1 C_v→dim, vision_fc2 dim→C_a. The original's hidden widths are the
  MLPs' input widths (1000 and 512); `dim=None` does the same, and the profiles' `model.dim`
  (512 / 128) equals the backbone channels, so both profiles have the original's structure.
  The original's own head weights do not fit: at its sizes (f_s 1000-d from SoundNet, so
  sound_fc1 1000×1000, sound_fc2 512×1000, vision_fc2 1000×512) they need a 1000-d audio vector,
  which no backbone here produces, and they were trained on frozen VGG16/SoundNet features. Its
  released (semi-supervised) checkpoint therefore cannot be evaluated; `load_weights` refuses it
  with the mismatched keys and shapes. Parity is of the equations: with the original's head
  weights at its own sizes and the original `network.py:AVModel` / `losses.py:UnsupervisedLoss`,
  α, f_v and the loss agree bit for bit (checked once against the authors' repository; the test
  suite checks the same steps on a layout it writes itself).
- Negative: one other clip of the **same batch** per sample, uniform over the B − 1 others and
  independent across samples (the original's draw, restricted to the batch), drawn on the CPU with
  torch's global RNG (`draw_negatives`), so the trainer's per-epoch seeding makes a resume exact.

Deviations, and why:
- Both trunks are trained, with the heads, from the profile's initialization (ImageNet / object prior
  for the image, scratch for the audio). The original trains only the four FC layers: its frozen
  VGG16 and its SoundNet features are pretrained with ImageNet/Places supervision (SoundNet is
  distilled from them), which a weakly-supervised benchmark on shared backbones replaces. A
  consequence: f_s± in the loss is a learned vector, not a fixed target.
- Negatives come from the batch, not from the whole training set (no extra audio is encoded).
- No supervised box term (weakly supervised benchmark).
- Map resolution 7×7 (the shared backbones) instead of 20×20 (VGG16 at 320 px). `layer4_stride=1`
  gives conv5_3's output stride 16 (14×14 at 224 px, or at 56 px with the small CNN) at about
  2.2× the training cost; the default keeps the shared 7×7 maps.
- Any input size works: cells are flattened, not reshaped through a hard-coded 512×400.

Map and confidence:
- Map: α on the grid (`raw_maps`), resized to 224² **bilinearly with align_corners=False**. There is
  no official test code; the only resizing in the original is `overlay`'s PIL bilinear resize,
  whose half-pixel geometry is exactly `interpolate(mode="bilinear", align_corners=False)`.
- α is a poor confidence: it sums to 1 and its logits ReLU(c) lie in [0, 1], so max α / min α ≤ e
  and max α measures how flat the map is, not how strongly the sound matches. The confidence is
  read from the pre-softmax cosine map c instead, upsampled the same way: "max" = its maximum, i.e.
  max_k ⟨v̂_k, h⟩ up to the interpolation between cell centres, the method's "maximum of the
  similarity map"; "topk_mean" = SLAVC's top-25 % mean of (c + 1)/2 (`COSINE_BOUNDS` (−1, 1)).
  `localize` is overridden for this, since neither score is a function of the returned α map.
- `map_bounds` = (0, 1) describes the returned map α (a distribution over cells), which is what the
  evaluator's absolute binarization rescales. Since max α ≤ e/(e + hw − 1) < 0.5, absolute
  binarization at 0.5 keeps no pixel: evaluate Attention10k with the relative (median) threshold,
  the benchmark's default. With ≥ at the median, cells whose cosine is ≤ 0 tie at the minimum of α.
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

COSINE_BOUNDS = (-1.0, 1.0)  # range of the cosine map c that the confidences are read from


def draw_negatives(batch_size: int) -> torch.Tensor:
    """One negative index per sample: uniform over the other B − 1 samples, independent across samples.

    Drawn on the CPU with torch's global RNG (whatever the model's device), so a seeded run repeats.

    Raises:
        ValueError: if batch_size < 2 (no other clip to draw).
    """
    if batch_size < 2:
        raise ValueError(f"Attention10k needs at least 2 pairs per batch to draw a negative, got {batch_size}")
    offsets = torch.randint(1, batch_size, (batch_size,))  # (B,) in [1, B − 1]
    return (torch.arange(batch_size) + offsets) % batch_size  # (B,), never equal to its position


def softmax_triplet_loss(visual: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """The original's unsupervised loss (`losses.py:UnsupervisedLoss`).

    L = mean over n and both entries of (softmax([d⁺_n, d⁻_n]) − [0, 1])², d± = ‖f_v − f_s±‖₂ computed
    with `F.pairwise_distance` (eps 1e-6), as the original. Since both entries are equal,
    L = mean_n σ(d⁺_n − d⁻_n)².

    Args:
        visual: (B, D) visual embeddings f_v.
        positive: (B, D) the raw audio vectors of the same clips, f_s⁺.
        negative: (B, D) the raw audio vectors of one other clip each, f_s⁻.

    Returns:
        The scalar loss.
    """
    d_pos = F.pairwise_distance(visual, positive)  # (B,)
    d_neg = F.pairwise_distance(visual, negative)  # (B,)
    probabilities = F.softmax(torch.stack((d_pos, d_neg), dim=1), dim=1)  # (B, 2)
    target = torch.zeros_like(probabilities)
    target[:, 1] = 1.0  # [0, 1]: all the mass on the negative distance
    return ((probabilities - target) ** 2).mean()


@register("attention10k")
class Attention10k(LocalizationMethod):
    """Attention10k: `loss = model(image, spec)`; `maps, confidence = model.localize(image, spec)`.

    Args:
        backbone: "resnet18" (ImageNet-style, 224 px, profile paper) or "small" (56 px).
        dim: hidden width of the audio and visual MLPs; None → each MLP's input width (the
            original: 1000 for the audio MLP, 512 for the visual one).
        layer4_stride: 2 (the shared 7×7 maps) or 1 (output stride 16 like VGG16 conv5_3: 14×14 at
            224 px with ResNet-18 or at 56 px with the small CNN), for both encoders.
        image_weights: initial weights of the image encoder (see `EZVSL`): "imagenet" or a path for
            resnet18, an object-prior state_dict (or path) for small; None → random.

    Raises:
        ValueError: for a dim that is not a positive integer, an unknown backbone or a
            layer4_stride other than 1 or 2.
    """

    display_name = "Attention10k"
    upsample_mode = "bilinear"
    align_corners = False
    map_bounds = (0.0, 1.0)
    hyperparameter_ranges = {"dim": {"minimum": 1}, "layer4_stride": {"enum": [1, 2]}}

    def __init__(self, backbone: str = "small", dim: int | None = None, layer4_stride: int = 2,
                 image_weights: str | Path | Mapping[str, torch.Tensor] | None = None) -> None:
        super().__init__()
        if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0):
            raise ValueError(f"dim must be a positive integer or None, got {dim!r}")
        image_net, audio_net, image_channels, audio_channels = build_backbones(backbone, image_weights, layer4_stride)
        self.backbone, self.dim, self.layer4_stride = backbone, dim, layer4_stride
        self.imgnet = image_net  # stands in for VGG16 conv5_3 (trained here, frozen there)
        self.audnet = audio_net  # its pooled output stands in for the SoundNet vector f_s
        # The original's heads, same names; PyTorch's default Linear init, as the original.
        self.sound_fc1 = nn.Linear(audio_channels, dim or audio_channels)
        self.sound_fc2 = nn.Linear(dim or audio_channels, image_channels)
        self.att_softmax = nn.Softmax(dim=-1)
        self.vision_fc1 = nn.Linear(image_channels, dim or image_channels)
        self.vision_fc2 = nn.Linear(dim or image_channels, audio_channels)

    # ------------------------------------------------------------------ the model, step by step

    def audio_embedding(self, audio_vector: torch.Tensor) -> torch.Tensor:
        """h = L2(sound_fc2(ReLU(sound_fc1(ReLU(f_s))))): (B, C_a) -> (B, C_v), unit norm."""
        h = self.sound_fc2(F.relu(self.sound_fc1(F.relu(audio_vector))))
        return F.normalize(h, dim=1)

    def attention(self, visual: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The localization module: cosine map c and attention α = softmax over cells of ReLU(c).

        Args:
            visual: (B, C_v, h, w) un-normalized visual features.
            h: (B, C_v) unit-norm audio embeddings.

        Returns:
            (alpha, cosine), both (B, h, w); alpha sums to 1 over the cells of each sample.
        """
        b, _, height, width = visual.shape
        cells = F.normalize(visual, dim=1).flatten(2)  # (B, C_v, h, w) -> (B, C_v, hw)
        cosine = torch.einsum("bck,bc->bk", cells, h)  # (B, C_v, hw), (B, C_v) -> (B, hw)
        alpha = self.att_softmax(F.relu(cosine))  # (B, hw), softmax over cells, no temperature
        return alpha.view(b, height, width), cosine.view(b, height, width)  # (B, hw) -> (B, h, w)

    def visual_embedding(self, visual: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """f_v = vision_fc2(ReLU(vision_fc1(ReLU(z)))), z = Σ_k α_k v_k: -> (B, C_a)."""
        z = torch.einsum("bck,bk->bc", visual.flatten(2), alpha.flatten(1))  # (B,C_v,hw),(B,hw) -> (B,C_v)
        return self.vision_fc2(F.relu(self.vision_fc1(F.relu(z))))

    def _pass(self, image: torch.Tensor, spec: torch.Tensor) -> dict[str, torch.Tensor]:
        """Everything one forward pass computes, by the original's names."""
        visual = self.imgnet(image)  # (B, C_v, h, w), stands in for conv5_3
        audio_vector = self.audnet(spec)  # (B, C_a), stands in for the SoundNet vector f_s
        alpha, cosine = self.attention(visual, self.audio_embedding(audio_vector))
        return {"f_v": self.visual_embedding(visual, alpha), "f_s": audio_vector,
                "alpha": alpha, "cosine": cosine}

    # ------------------------------------------------------------------ training and testing

    def loss(self, image: torch.Tensor, spec: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
        """The training loss with given negatives: pair n is scored against audio `negatives[n]`.

        Args:
            image: (B, 3, S, S) frames; spec: (B, 1, F, T) spectrograms of the same clips.
            negatives: (B,) long, the batch index of each sample's negative clip.
        """
        out = self._pass(image, spec)
        f_s = out["f_s"]
        return softmax_triplet_loss(out["f_v"], f_s, f_s[negatives.to(f_s.device)])

    def forward(self, image: torch.Tensor, spec: torch.Tensor) -> torch.Tensor:
        """The training loss (scalar), with one random other clip of the batch as each negative."""
        return self.loss(image, spec, draw_negatives(image.shape[0]))

    def raw_maps(self, image: torch.Tensor, spec: torch.Tensor) -> torch.Tensor:
        """α: (B, h, w) attention of each image's cells for its own audio (sums to 1 per sample)."""
        return self._pass(image, spec)["alpha"]

    def cosine_maps(self, image: torch.Tensor, spec: torch.Tensor) -> torch.Tensor:
        """c: (B, h, w) pre-softmax cosine of each cell with the audio embedding, in [−1, 1]."""
        return self._pass(image, spec)["cosine"]

    def localize(self, image: torch.Tensor, spec: torch.Tensor, size: int = 224) -> Localization:
        """Maps = α upsampled; confidences from the upsampled cosine map (module docstring).

        Returns:
            Localization(maps (B, size, size) float32, {"max": max of c, "topk_mean": top-25 % mean
            of (c + 1)/2}), c upsampled to `size` like α.
        """
        out = self._pass(image, spec)
        maps = upsample_maps(out["alpha"], size, self.upsample_mode, self.align_corners)
        cosine = upsample_maps(out["cosine"], size, self.upsample_mode, self.align_corners)
        return Localization(maps.float(), confidence_scores(cosine, COSINE_BOUNDS))
