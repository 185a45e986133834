"""DMC: clustering, loss, maps, confidences, and parity with the original layout (dmc_model.py)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet18

from vslrepro.factory import arguments
from vslrepro.methods import method_class
from vslrepro.methods.dmc import DMC, margin_loss, mismatched_indices, soft_kmeans

from methodkit import batch_organize, randomize_batchnorm_, small_batch

# ---------------------------------------------------------------- plain re-implementations


def loop_kmeans(vectors: torch.Tensor, clusters: int, iters: int, sharpness: float):
    """Cluster_layer for one sample, with loops and direct Euclidean distances (float64)."""
    x = vectors.double()
    n = x.shape[0]
    centres = [x[(n // clusters) * c].clone() for c in range(clusters)]
    for _ in range(iters):
        assign = torch.empty(clusters, n, dtype=torch.float64)
        for k in range(n):
            logits = torch.tensor([-sharpness * math.sqrt(max(float(((x[k] - mu) ** 2).sum()), 1e-10))
                                   for mu in centres], dtype=torch.float64)
            assign[:, k] = torch.softmax(logits, 0)
        centres = [sum(assign[c, k] * x[k] for k in range(n)) / assign[c].sum() for c in range(clusters)]
    return torch.stack(centres), assign


class ClusterLayer(nn.Module):
    """`Cluster_layer` of compared model/dmc_model.py, its tensor steps written out (no parameters)."""

    def __init__(self, num_cluster: int = 2, iters: int = 4, beta: float = -30) -> None:
        super().__init__()
        self.num_cluster, self.iters, self.beta = num_cluster, iters, beta
        self.epsilon = torch.tensor(1e-10)

    def forward(self, u_vecs: torch.Tensor):
        _, input_num, _ = u_vecs.size()
        ini_interval = int(input_num / self.num_cluster)
        o = torch.unsqueeze(u_vecs[:, 0, :], dim=1)
        count = 1
        while self.num_cluster - count > 0:
            o = torch.cat([o, torch.unsqueeze(u_vecs[:, ini_interval * count, :], dim=1)], dim=1)
            count += 1
        for _ in range(self.iters):
            nx = torch.sum(o ** 2, dim=2, keepdim=True)
            ny = torch.sum(u_vecs ** 2, dim=2, keepdim=True)
            qq = nx - 2 * torch.bmm(o, u_vecs.permute(0, 2, 1)) + ny.permute(0, 2, 1)
            b = torch.sqrt(torch.max(qq, self.epsilon))
            c = F.softmax(self.beta * b, dim=1)
            o = torch.bmm(c, u_vecs) / torch.sum(c, dim=2, keepdim=True)
        return o, c


def contrastive_loss(output: torch.Tensor, target: torch.Tensor, margin: float = 5.0) -> torch.Tensor:
    """ContrastiveLoss of location_dmc_stage_one.py on the model's (2B, K_a) distance output."""
    distances = output.pow(2).sum(1)
    losses = 0.5 * (target.float() * distances
                    + (1 + -1 * target).float() * F.relu(margin - (distances + 1e-9).sqrt()).pow(2))
    return losses.mean()


class OriginalDMC(nn.Module):
    """DMC_NET's layout (dmc_model.py), built independently of vslrepro: torchvision ResNet-18s as
    the conv-map extractors under the benchmark's encoder names (`imgnet`, `audnet`), `fc_v_1`,
    `fc_a_1`, `v_clustering`, `a_clustering`. The original's unused fc_v_2 / fc_a_2 / fc_av are left
    out, as in vslrepro (they never enter forward)."""

    def __init__(self) -> None:
        super().__init__()
        self.imgnet = resnet18()
        self.imgnet.avgpool, self.imgnet.fc = nn.Identity(), nn.Identity()
        self.audnet = resnet18()
        self.audnet.conv1 = nn.Conv2d(1, 64, kernel_size=(7, 7), stride=(2, 2), padding=(3, 3), bias=False)
        self.audnet.avgpool, self.audnet.fc = nn.AdaptiveMaxPool2d((1, 1)), nn.Identity()
        self.fc_v_1 = nn.Linear(512, 512)
        self.fc_a_1 = nn.Linear(512, 512)
        self.v_clustering = ClusterLayer(num_cluster=2)
        self.a_clustering = ClusterLayer(num_cluster=1)
        self.epsilon = torch.tensor(1e-10)

    @staticmethod
    def conv_map(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        return net.layer4(net.layer3(net.layer2(net.layer1(x))))

    def forward(self, v_input: torch.Tensor, a_input: torch.Tensor):
        v_fea = self.conv_map(self.imgnet, v_input)
        B, C, H, W = v_fea.size()
        v_fea = self.fc_v_1(v_fea.view(B, C, H * W).permute(0, 2, 1))
        v_centers, v_assign = self.v_clustering(v_fea)
        a_fea = self.conv_map(self.audnet, a_input)
        B, C, H, W = a_fea.size()
        a_fea = self.fc_a_1(a_fea.view(B, C, H * W).permute(0, 2, 1))
        a_centers, _ = self.a_clustering(a_fea)
        v_centers_ = torch.sum(v_centers ** 2, dim=2, keepdim=True)
        a_centers_ = torch.sum(a_centers ** 2, dim=2, keepdim=True)
        distance_ = torch.sqrt(torch.max(v_centers_ - 2 * torch.bmm(v_centers, a_centers.permute(0, 2, 1))
                                         + a_centers_.permute(0, 2, 1), self.epsilon))
        return torch.min(distance_, dim=1).values, v_assign, distance_

    def maps(self, v_input: torch.Tensor, a_input: torch.Tensor):
        """The map we infer (the original extracts none): the assignment of the nearest visual centre."""
        distance, v_assign, distance_ = self(v_input, a_input)
        nearest = distance_[..., 0].argmin(dim=1)
        h, w = v_input.shape[2] // 32, v_input.shape[3] // 32
        return v_assign[torch.arange(len(nearest)), nearest].view(-1, h, w), distance[:, 0]


# ---------------------------------------------------------------- pure functions


def test_soft_kmeans_equals_plain_loop():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 9, 4, generator=g, dtype=torch.float64) * 0.2
    centres, assign = soft_kmeans(x, clusters=2, iters=4, sharpness=30.0)
    assert centres.shape == (2, 2, 4) and assign.shape == (2, 2, 9)
    for i in range(2):
        ref_centres, ref_assign = loop_kmeans(x[i], 2, 4, 30.0)
        assert torch.allclose(centres[i], ref_centres, atol=1e-9)
        assert torch.allclose(assign[i], ref_assign, atol=1e-9)
    # one centre: every assignment is 1, the centre is the mean of the cells
    mean, ones = soft_kmeans(x, clusters=1)
    assert torch.equal(ones, torch.ones(2, 1, 9, dtype=torch.float64))
    assert torch.allclose(mean[:, 0], x.mean(1), atol=1e-12)
    with pytest.raises(ValueError, match="cannot form 10 clusters from 9 cells"):
        soft_kmeans(x, clusters=10)


def test_margin_loss_equals_original_contrastive_loss():
    d = torch.tensor([0.5, 6.0, 2.0, 3.0, 7.0, 4.9])
    y = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0, 0.0])
    hand = sum(0.5 * (di ** 2 if yi else max(0.0, 5 - math.sqrt(di ** 2 + 1e-9)) ** 2)
               for di, yi in zip(d.tolist(), y.tolist())) / 6
    assert margin_loss(d, y).item() == pytest.approx(hand, rel=1e-6)
    assert margin_loss(d, y).item() == pytest.approx(contrastive_loss(d[:, None], y).item(), rel=1e-7)


def test_mismatched_indices_never_self_and_use_the_global_rng():
    torch.manual_seed(3)
    first = torch.stack([mismatched_indices(5) for _ in range(2000)])  # (2000, 5)
    assert not (first == torch.arange(5)).any()
    counts = torch.stack([(first == j).float().mean(0) for j in range(5)])  # (j, i): P(j drawn for i)
    off_diagonal = counts[~torch.eye(5, dtype=torch.bool)]
    assert torch.allclose(off_diagonal, torch.full_like(off_diagonal, 0.25), atol=0.04)
    torch.manual_seed(3)
    assert torch.equal(mismatched_indices(5), first[0])
    with pytest.raises(ValueError, match="batch size must be >= 2"):
        mismatched_indices(1)


# ---------------------------------------------------------------- the model


def test_shapes_maps_and_confidences():
    torch.manual_seed(0)
    model = DMC(backbone="small")
    image, spec = small_batch(4)
    loss = model(image, spec)
    assert loss.dim() == 0 and torch.isfinite(loss)
    model.eval()
    with torch.no_grad():
        raw = model.raw_maps(image, spec)
        assign, d = model.match(image, spec)
        maps, confidence = model.localize(image, spec)
    assert raw.shape == (4, 7, 7) and torch.equal(raw, assign) and d.shape == (4,)
    assert ((raw >= 0) & (raw <= 1)).all()
    assert (model.upsample_mode, model.align_corners) == ("bilinear", False)
    evidence = maps * torch.sigmoid(model.margin - d)[:, None, None]  # σ(margin − d)·A on (0, 1)
    assert torch.allclose(confidence["max"], evidence.flatten(1).amax(1))
    top = evidence.flatten(1).sort(dim=1, descending=True).values[:, : 224 * 224 // 4]
    assert torch.allclose(confidence["topk_mean"], top.mean(1), atol=1e-6)
    assert confidence["max"].std() > 1e-4 and confidence["topk_mean"].std() > 1e-4


def test_gradients_reach_the_heads():
    torch.manual_seed(0)
    model = DMC(backbone="small")
    model(*small_batch(4)).backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    for prefix in ("fc_v_1.", "fc_a_1."):  # the heads (the encoders: tests/test_method_contract.py)
        assert any(g is not None and g.abs().sum() > 0
                   for n, g in grads.items() if n.startswith(prefix)), prefix




def test_constructor_and_config_validation():
    for bad, match in ((dict(dim=0), "dim"), (dict(visual_clusters=0), "visual_clusters"),
                       (dict(iters=0), "iters"), (dict(sharpness=-30), "sharpness"),
                       (dict(margin=0), "margin"), (dict(backbone="vgg"), "unknown backbone")):
        with pytest.raises(ValueError, match=match):
            DMC(**bad)
    assert method_class("dmc") is DMC and DMC.display_name == "DMC"
    params = {"model": {"backbone": "small", "dim": 64}, "methods": {"dmc": {"margin": 3.0}}}
    assert arguments(params, "dmc") == {"backbone": "small", "dim": 64, "margin": 3.0}
    model = DMC.build(**arguments(params, "dmc"))
    assert model.fc_v_1.out_features == 64 and model.margin == 3.0
    assert {k.split(".")[0] for k in model.state_dict()} == {"imgnet", "audnet", "fc_v_1", "fc_a_1"}


# ---------------------------------------------------------------- parity with the original layout


def original_checkpoint(tmp_path):
    torch.manual_seed(5)
    original = OriginalDMC()
    randomize_batchnorm_(original)  # non-trivial BN statistics
    path = tmp_path / "dmc_stage_one.pth"
    torch.save(original.state_dict(), path)  # the training script saves a bare state_dict
    return original.eval(), path


def test_original_layout_loads_and_gives_identical_maps_distances_and_loss(tmp_path):
    original, path = original_checkpoint(tmp_path)
    ours = DMC(backbone="resnet18").load_weights(path).eval()
    g = torch.Generator().manual_seed(0)
    image, spec = torch.randn(3, 3, 224, 224, generator=g), torch.randn(3, 1, 128, 96, generator=g)
    with torch.no_grad():
        ref_maps, ref_d = original.maps(image, spec)
        maps, d = ours.match(image, spec)
        print(f"max |map diff| {(maps - ref_maps).abs().max():.2e}, "
              f"max |d diff| {(d - ref_d).abs().max():.2e}")
        assert maps.shape == (3, 7, 7)
        assert torch.allclose(maps, ref_maps, atol=1e-4) and torch.allclose(d, ref_d, rtol=1e-5)
        # the training step: batch_organize + the original forward on 2B pairs + ContrastiveLoss
        torch.manual_seed(11)
        other = mismatched_indices(3)
        audio2, image2, labels = batch_organize(spec, image, image[other])
        expected = contrastive_loss(original(image2, audio2)[0], labels)
        torch.manual_seed(11)
        loss = ours(image, spec)
        print(f"loss {loss.item():.6f} vs original {expected.item():.6f}")
        assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
