"""Attention10k: model and loss against the original's layout and formulas, maps, confidences."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torchvision.models import resnet18

from vslrepro.factory import arguments
from vslrepro.methods import method_class, upsample_maps
from vslrepro.methods.attention10k import Attention10k, draw_negatives, softmax_triplet_loss

from methodkit import optimise, randomize_batchnorm_, small_batch

HEAD_KEYS = {f"{layer}.{p}" for layer in ("sound_fc1", "sound_fc2", "vision_fc1", "vision_fc2")
             for p in ("weight", "bias")}


# ---------------------------------------------------------------- the loss, written plainly

def plain_unsupervised_loss(f_v: torch.Tensor, f_pos: torch.Tensor, f_neg: torch.Tensor) -> float:
    """losses.py:UnsupervisedLoss written out with loops, in float64.

    F.pairwise_distance(x, y) = ‖x − y + 1e-6‖₂; dist_softmax = softmax([d⁺, d⁻]);
    loss = mean over the (B, 2) entries of (dist_softmax − [0, 1])².
    """
    b, d = f_v.shape
    total = 0.0
    for n in range(b):
        d_pos = sum((float(f_v[n, c]) - float(f_pos[n, c]) + 1e-6) ** 2 for c in range(d)) ** 0.5
        d_neg = sum((float(f_v[n, c]) - float(f_neg[n, c]) + 1e-6) ** 2 for c in range(d)) ** 0.5
        top = max(d_pos, d_neg)
        e_pos, e_neg = np.exp(d_pos - top), np.exp(d_neg - top)
        p_pos, p_neg = e_pos / (e_pos + e_neg), e_neg / (e_pos + e_neg)
        total += (p_pos - 0.0) ** 2 + (p_neg - 1.0) ** 2
    return total / (2 * b)


def test_loss_equals_plain_formula():
    g = torch.Generator().manual_seed(1)
    f_v, f_pos, f_neg = (torch.randn(5, 7, generator=g) for _ in range(3))
    loss = softmax_triplet_loss(f_v, f_pos, f_neg)
    assert loss.dim() == 0
    assert loss.item() == pytest.approx(plain_unsupervised_loss(f_v, f_pos, f_neg), rel=1e-6)
    # both entries of (softmax − [0, 1])² are equal: the loss is the mean of σ(d⁺ − d⁻)²
    d = F.pairwise_distance(f_v, f_pos) - F.pairwise_distance(f_v, f_neg)
    assert loss.item() == pytest.approx((torch.sigmoid(d) ** 2).mean().item(), rel=1e-6)


# ---------------------------------------------------------------- negatives

def test_negatives_are_other_clips_from_the_global_rng():
    torch.manual_seed(3)
    first = draw_negatives(5)
    torch.manual_seed(3)
    assert torch.equal(first, draw_negatives(5))
    draws = torch.stack([draw_negatives(4) for _ in range(4000)])  # (4000, 4)
    assert not (draws == torch.arange(4)).any()
    for i in range(4):  # uniform over the 3 others (the original: uniform over all other clips)
        counts = torch.bincount(draws[:, i], minlength=4).float() / 4000
        others = [j for j in range(4) if j != i]
        assert torch.allclose(counts[others], torch.full((3,), 1 / 3), atol=0.03)
    with pytest.raises(ValueError, match="at least 2 pairs"):
        draw_negatives(1)


def test_forward_is_the_loss_with_drawn_negatives():
    torch.manual_seed(0)
    model = Attention10k().eval()
    image, spec = small_batch(5)
    with torch.no_grad():
        torch.manual_seed(7)
        loss = model(image, spec)
        torch.manual_seed(7)
        expected = model.loss(image, spec, draw_negatives(5))
    assert loss.dim() == 0 and torch.equal(loss, expected)


# ---------------------------------------------------------------- model, maps, confidences

def test_model_steps_follow_the_equations():
    torch.manual_seed(0)
    model = Attention10k().eval()
    image, spec = small_batch(3)
    with torch.no_grad():
        v, f_s = model.imgnet(image), model.audnet(spec)
        assert v.shape == (3, 128, 7, 7) and f_s.shape == (3, 128)
        h = model.audio_embedding(f_s)
        assert torch.allclose(h.norm(dim=1), torch.ones(3), atol=1e-5)
        alpha, cosine = model.attention(v, h)
        for n in range(3):
            for y, x in [(0, 0), (3, 5), (6, 2)]:
                cell = v[n, :, y, x]
                assert cosine[n, y, x].item() == pytest.approx(F.cosine_similarity(cell, h[n], dim=0).item(), abs=1e-5)
            logits = F.relu(cosine[n]).flatten()
            assert torch.allclose(alpha[n].flatten(), torch.softmax(logits, 0), atol=1e-6)
            z = (v[n] * alpha[n]).sum(dim=(1, 2))  # Σ_k α_k v_k, un-normalized features
            f_v = model.vision_fc2(F.relu(model.vision_fc1(F.relu(z))))
            assert torch.allclose(model.visual_embedding(v, alpha)[n], f_v, atol=1e-5)
        assert torch.allclose(alpha.sum(dim=(1, 2)), torch.ones(3), atol=1e-5)
        assert (alpha.amax(dim=(1, 2)) / alpha.amin(dim=(1, 2))).max() <= np.e + 1e-4  # flat by design


def test_localize_shapes_upsampling_and_confidences():
    torch.manual_seed(0)
    model = Attention10k().eval()
    image, spec = small_batch(4)
    with torch.no_grad():
        raw, cosine = model.raw_maps(image, spec), model.cosine_maps(image, spec)
        maps, confidence = model.localize(image, spec)
    assert raw.shape == (4, 7, 7) and cosine.shape == (4, 7, 7)
    assert (model.upsample_mode, model.align_corners) == ("bilinear", False)
    up = F.interpolate(cosine[:, None], size=(224, 224), mode="bilinear", align_corners=False)[:, 0]
    assert torch.allclose(confidence["max"], up.flatten(1).max(1).values)
    for i in range(4):  # SLAVC's top-25 % mean of the cosine map on (c + 1)/2, not of α
        top = up[i].flatten().sort(descending=True).values[: 224 * 224 // 4]
        assert confidence["topk_mean"][i].item() == pytest.approx(((top + 1) / 2).mean().item(), rel=1e-5)
    assert confidence["max"].std() > 0 and confidence["topk_mean"].std() > 0
    assert cosine.abs().max() <= 1 + 1e-5


def test_upsampling_is_the_originals_pil_bilinear_resize():
    """sound_localization_main.py:overlay resizes the map with PIL's BILINEAR filter."""
    alpha = torch.softmax(torch.rand(1, 49, generator=torch.Generator().manual_seed(0)), dim=1).view(1, 7, 7)
    ours = upsample_maps(alpha, 224, Attention10k.upsample_mode, Attention10k.align_corners)
    pil = Image.fromarray(alpha[0].numpy(), mode="F").resize((224, 224), resample=Image.BILINEAR)
    assert np.abs(ours[0].numpy() - np.asarray(pil)).max() < 1e-6


def test_gradients_reach_the_heads():
    torch.manual_seed(0)
    model = Attention10k()
    image, spec = small_batch(6)
    model(image, spec).backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    for prefix in ("sound_fc", "vision_fc"):  # the heads (the encoders: tests/test_method_contract.py)
        assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if n.startswith(prefix)), prefix


def test_loss_decreases_on_a_fixed_batch():
    torch.manual_seed(0)
    model = Attention10k()
    image, spec = small_batch(8)
    negatives = torch.roll(torch.arange(8), 1)  # fixed negatives: the curve is not drawing noise
    losses = optimise(model, lambda: model.loss(image, spec, negatives), lr=3e-4)  # 1e-3 saturates this tiny batch
    assert losses[-1] < 0.5 * losses[0], losses


def test_constructor_and_config():
    with pytest.raises(ValueError, match="dim must be a positive integer"):
        Attention10k(dim=0)
    with pytest.raises(ValueError, match="unknown backbone"):
        Attention10k(backbone="vgg16")
    with pytest.raises(ValueError, match="layer4_stride"):
        Attention10k(layer4_stride=3)
    assert method_class("attention10k") is Attention10k
    params = {"model": {"backbone": "small", "dim": 128}, "methods": {"attention10k": {"layer4_stride": 1}}}
    assert arguments(params, "attention10k") == {"backbone": "small", "dim": 128, "layer4_stride": 1}
    model = Attention10k.build(**arguments(params, "attention10k"))
    assert model.raw_maps(*small_batch(2)).shape == (2, 14, 14)
    heads = {k: tuple(v.shape) for k, v in model.state_dict().items() if k in HEAD_KEYS}
    assert heads == {"sound_fc1.weight": (128, 128), "sound_fc1.bias": (128,),
                     "sound_fc2.weight": (128, 128), "sound_fc2.bias": (128,),
                     "vision_fc1.weight": (128, 128), "vision_fc1.bias": (128,),
                     "vision_fc2.weight": (128, 128), "vision_fc2.bias": (128,)}


# ---------------------------------------------------------------- parity with the original's layout

class OriginalLayoutAVModel(nn.Module):
    """network.py:AVModel written independently of vslrepro, heads and forward steps as the original.

    The original's inputs are VGG16 conv5_3 (frozen `vision_embedding_model`) and a SoundNet vector
    (`audio_embedding_model` = ReLU); here they are the shared backbones' outputs: `imgnet` (a
    torchvision ResNet-18 trunk, its layer4 map unflattened from torchvision's flat output) and
    `audnet` (spectrogram ResNet-18 with a global max pool) — the 1000-d / 512-d sizes become 512.
    """

    def __init__(self, channels: int = 512) -> None:
        super().__init__()
        self.imgnet = resnet18()
        self.imgnet.avgpool = nn.Identity()
        self.imgnet.fc = nn.Identity()
        self.audnet = resnet18()
        self.audnet.conv1 = nn.Conv2d(1, 64, kernel_size=(7, 7), stride=(2, 2), padding=(3, 3), bias=False)
        self.audnet.avgpool = nn.AdaptiveMaxPool2d((1, 1))
        self.audnet.fc = nn.Identity()
        self.channels = channels
        self.sound_fc1 = nn.Linear(channels, channels)  # original: 1000 -> 1000
        self.sound_fc2 = nn.Linear(channels, channels)  # original: 1000 -> 512
        self.att_softmax = nn.Softmax(dim=-1)
        self.vision_fc1 = nn.Linear(channels, channels)  # original: 512 -> 512
        self.vision_fc2 = nn.Linear(channels, channels)  # original: 512 -> 1000

    def forward(self, image, pos_audio, neg_audio):
        """The original's steps, with 7×7 = 49 cells for its 20×20 = 400 (batch > 1: torch.squeeze)."""
        vis_embedding = self.imgnet(image).view(image.size(0), 512, 7, 7)
        pos_audio_embedding = F.relu(pos_audio)
        neg_audio_embedding = F.relu(neg_audio)
        h = self.sound_fc1(pos_audio_embedding)
        h = F.relu(h)
        h = self.sound_fc2(h)
        h = F.normalize(h, p=2, dim=1)
        h = h.unsqueeze(2)
        normalized_vis_embedding = F.normalize(vis_embedding, p=2, dim=1)
        reshaped_vis_embedding = normalized_vis_embedding.view(normalized_vis_embedding.size(0), 512, 49)
        reshaped_vis_embedding = reshaped_vis_embedding.permute(0, 2, 1)
        att_map = torch.matmul(reshaped_vis_embedding, h)
        att_map = torch.squeeze(att_map)
        att_map = F.relu(att_map)
        att_map = self.att_softmax(att_map)
        att_map = att_map.unsqueeze(2)
        vis_embedding = vis_embedding.view(vis_embedding.size(0), 512, 49)
        z = torch.matmul(vis_embedding, att_map)
        z = torch.squeeze(z)
        z = F.relu(z)
        z = self.vision_fc1(z)
        z = F.relu(z)
        z = self.vision_fc2(z)
        return z, pos_audio_embedding, neg_audio_embedding, att_map


def original_checkpoint(tmp_path):
    torch.manual_seed(5)
    original = OriginalLayoutAVModel()
    randomize_batchnorm_(original)  # non-trivial BN statistics
    path = tmp_path / "sound_localization_best.pth"
    torch.save(original.state_dict(), path)  # the original saves a bare model.state_dict()
    return original.eval(), path


def test_original_layout_loads_and_gives_identical_maps_and_loss(tmp_path):
    original, path = original_checkpoint(tmp_path)
    ours = Attention10k(backbone="resnet18")
    assert set(ours.state_dict()) == set(original.state_dict())
    assert {k for k in ours.state_dict() if not k.startswith(("imgnet.", "audnet."))} == HEAD_KEYS
    ours.load_weights(path).eval()
    g = torch.Generator().manual_seed(0)
    image, spec = torch.randn(2, 3, 224, 224, generator=g), torch.randn(2, 1, 64, 48, generator=g)
    negatives = torch.tensor([1, 0])
    with torch.no_grad():
        f_s = original.audnet(spec)  # stands in for the pre-extracted SoundNet vectors
        z, _, _, att_map = original(image, f_s, f_s[negatives])
        reference_maps = att_map.squeeze(2).view(2, 7, 7)
        our_maps = ours.raw_maps(image, spec)
        # sound_localization_main.py: the loss compares z with the RAW audio vectors (pos_audio, neg_audio)
        reference_loss = plain_unsupervised_loss(z, f_s, f_s[negatives])
        our_loss = ours.loss(image, spec, negatives).item()
    difference = (our_maps - reference_maps).abs().max().item()
    print(f"max |α ours − α original layout| = {difference:.3g}; "
          f"|loss ours − plain original formula| = {abs(our_loss - reference_loss):.3g}")
    assert torch.allclose(our_maps, reference_maps, atol=1e-6)
    assert our_loss == pytest.approx(reference_loss, rel=1e-5)
