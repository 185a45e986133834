"""LVS: tri-map loss against the original's tensor steps, maps, confidences, original checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vslrepro.data.errors import DataError
from vslrepro.factory import arguments, evaluation_model
from vslrepro.methods.lvs import (
    LVS,
    background_responses,
    foreground_responses,
    lvs_logits,
    lvs_loss,
    original_layout_state_dict,
    response_maps,
)

from methodkit import randomize_batchnorm_, small_batch


def nonnegative_features(n: int, c: int, h: int, w: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Post-ReLU-like L2-normalized features, as both encoders give (cosines in [0, 1])."""
    g = torch.Generator().manual_seed(seed)
    v = F.normalize(torch.relu(torch.randn(n, c, h, w, generator=g) + 0.3), dim=1)
    a = F.normalize(torch.relu(torch.randn(n, c, generator=g) + 0.3), dim=1)
    return v, a


def original_logits(img: torch.Tensor, aud: torch.Tensor, epsilon: float = 0.65, epsilon2: float = 0.4,
                    tau: float = 0.03) -> torch.Tensor:
    """AVENet.forward's tensor steps after the encoders (hche11/... model.py), written out as there."""
    b = img.shape[0]
    mask = 1 - 100 * torch.eye(b, b, dtype=img.dtype)
    A = torch.einsum("ncqa,nchw->nqa", [img, aud.unsqueeze(2).unsqueeze(3)]).unsqueeze(1)
    A0 = torch.einsum("ncqa,ckhw->nkqa", [img, aud.T.unsqueeze(2).unsqueeze(3)])
    Pos = torch.sigmoid((A - epsilon) / tau)
    Neg = 1 - torch.sigmoid((A - epsilon2) / tau)
    Pos_all = torch.sigmoid((A0 - epsilon) / tau)
    sim1 = (Pos * A).view(*A.shape[:2], -1).sum(-1) / (Pos.view(*Pos.shape[:2], -1).sum(-1))
    sim = ((Pos_all * A0).view(*A0.shape[:2], -1).sum(-1)
           / Pos_all.view(*Pos_all.shape[:2], -1).sum(-1)) * mask
    sim2 = (Neg * A).view(*A.shape[:2], -1).sum(-1) / Neg.view(*Neg.shape[:2], -1).sum(-1)
    return torch.cat((sim1, sim, sim2), 1) / 0.07


def test_response_and_soft_mean_functions_by_hand():
    v, a = nonnegative_features(3, 4, 2, 2, seed=0)
    responses = response_maps(v, a)
    assert responses.shape == (3, 3, 2, 2)
    assert responses[1, 2, 0, 1].item() == pytest.approx(float(v[1, :, 0, 1] @ a[2]), abs=1e-6)
    # a map with a clear foreground (0.9) and background (0.1): P ≈ 0.9, H ≈ 0.1
    A = torch.tensor([[[0.9, 0.9], [0.1, 0.1]]])  # (1, 2, 2)
    assert foreground_responses(A[:, None], 0.65, 0.03).item() == pytest.approx(0.9, abs=1e-3)
    assert background_responses(A, 0.4, 0.03).item() == pytest.approx(0.1, abs=1e-3)
    w = torch.sigmoid((A - 0.5) / 0.1)  # a soft case, against the plain ratio
    expected = float((w * A).sum() / w.sum())
    assert foreground_responses(A[:, None], 0.5, 0.1).item() == pytest.approx(expected, rel=1e-6)
    w = 1 - torch.sigmoid((A - 0.5) / 0.1)
    assert background_responses(A, 0.5, 0.1).item() == pytest.approx(float((w * A).sum() / w.sum()), rel=1e-6)


def test_loss_equals_the_original_tensor_steps():
    v, a = nonnegative_features(6, 16, 5, 5, seed=1)
    ours = lvs_logits(response_maps(v, a), 0.65, 0.4, 0.03, 0.07)
    theirs = original_logits(v, a)
    assert ours.shape == (6, 8)
    assert torch.allclose(ours, theirs, rtol=1e-5, atol=1e-4), (ours - theirs).abs().max()
    expected = F.cross_entropy(theirs, torch.zeros(6, dtype=torch.long))
    loss = lvs_loss(response_maps(v, a), 0.65, 0.4, 0.03, 0.07)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    # the same in float64, tighter
    v64, a64 = v.double(), a.double()
    loss64 = lvs_loss(response_maps(v64, a64), 0.65, 0.4, 0.03, 0.07)
    expected64 = F.cross_entropy(original_logits(v64, a64), torch.zeros(6, dtype=torch.long))
    assert abs(loss64.item() - expected64.item()) < 1e-10


def test_loss_is_finite_where_the_original_background_mass_vanishes():
    v, a = nonnegative_features(4, 8, 3, 3, seed=2)
    v = F.normalize(a[:, :, None, None] + 0.01 * v, dim=1)  # every cell ≈ its own audio: A > 0.95
    assert original_logits(v, a)[:, -1].isnan().all()  # 0/0 in model.py's sim2
    logits = lvs_logits(response_maps(v, a), 0.65, 0.4, 0.03, 0.07)
    assert torch.isfinite(logits).all()


def test_diagonal_is_suppressed_as_in_the_original():
    v, a = nonnegative_features(4, 8, 3, 3, seed=3)
    responses = response_maps(v, a)
    logits = lvs_logits(responses, 0.65, 0.4, 0.03, 0.07)
    foreground = foreground_responses(responses, 0.65, 0.03)
    assert torch.allclose(logits[:, 0], foreground.diagonal() / 0.07)
    assert torch.allclose(logits[:, 1:-1].diagonal(), -99 * foreground.diagonal() / 0.07)
    assert (logits[:, 1:-1].diagonal() < -100).all()  # non-negative cosines: out of the softmax


def test_features_are_unit_vectors_on_the_14x14_grid():
    torch.manual_seed(0)
    model = LVS(backbone="small")
    image, spec = small_batch(4)
    v, a = model.image_features(image), model.audio_features(spec)
    assert v.shape == (4, 128, 14, 14) and a.shape == (4, 128)
    assert torch.allclose(v.norm(dim=1), torch.ones(4, 14, 14), atol=1e-5)
    assert torch.allclose(a.norm(dim=1), torch.ones(4), atol=1e-5)
    assert LVS(backbone="small", layer4_stride=2).image_features(image).shape == (4, 128, 7, 7)




def opencv_inter_linear(a: np.ndarray, size: int) -> np.ndarray:
    """OpenCV's `resize(INTER_LINEAR)` for float maps, from its documented mapping:
    source x = (dst x + 0.5)·(src/dst) − 0.5, neighbours clamped to the border."""
    def weights(n_src: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = (np.arange(size) + 0.5) * (n_src / size) - 0.5
        x0 = np.floor(x)
        frac = x - x0
        lo = np.clip(x0, 0, n_src - 1).astype(int)
        hi = np.clip(x0 + 1, 0, n_src - 1).astype(int)
        return lo, hi, frac

    ylo, yhi, fy = weights(a.shape[0])
    xlo, xhi, fx = weights(a.shape[1])
    rows = a[ylo] * (1 - fy)[:, None] + a[yhi] * fy[:, None]  # (h, w) -> (size, w)
    return rows[:, xlo] * (1 - fx)[None, :] + rows[:, xhi] * fx[None, :]  # -> (size, size)


def test_localize_shapes_upsampling_and_confidences():
    torch.manual_seed(0)
    model = LVS(backbone="small").eval()
    image, spec = small_batch(5)
    with torch.no_grad():
        raw = model.raw_maps(image, spec)
        maps, confidence = model.localize(image, spec)
    assert raw.shape == (5, 14, 14)
    assert maps.shape == (5, 224, 224) and maps.dtype == torch.float32 and torch.isfinite(maps).all()
    assert set(confidence) >= {"max", "topk_mean"}
    assert all(c.shape == (5,) and c.dtype == torch.float32 for c in confidence.values())
    assert confidence["max"].std() > 0 and confidence["topk_mean"].std() > 0
    for i in range(5):  # test.py: cv2.resize(A_i, (224, 224), INTER_LINEAR)
        expected = opencv_inter_linear(raw[i].double().numpy(), 224)
        assert np.abs(maps[i].numpy() - expected).max() < 1e-5
    assert torch.equal(confidence["max"], maps.flatten(1).max(1).values)
    assert (confidence["max"] <= raw.flatten(1).max(1).values + 1e-6).all()
    top = maps.flatten(1).sort(dim=1, descending=True).values[:, : 224 * 224 // 4]
    assert torch.allclose(confidence["topk_mean"], ((top + 1) / 2).mean(1), atol=1e-5)
    assert raw.min() >= -1 - 1e-5 and raw.max() <= 1 + 1e-5


def test_config_and_argument_errors():
    params = {"model": {"backbone": "small", "dim": 128}, "methods": {"lvs": {"layer4_stride": 2}}}
    assert arguments(params, "lvs") == {"backbone": "small", "layer4_stride": 2}
    with pytest.raises(ValueError, match="epsilon_neg <= epsilon_pos"):
        LVS(epsilon_pos=0.3, epsilon_neg=0.4)
    with pytest.raises(ValueError, match="mask_tau must be positive"):
        LVS(mask_tau=0)
    with pytest.raises(ValueError, match="tau must be positive"):
        LVS(tau=-1)
    with pytest.raises(ValueError, match="layer4_stride must be 1 or 2"):
        LVS(layer4_stride=4)
    with pytest.raises(ValueError, match="unknown backbone"):
        LVS(backbone="vgg")


# ---------------------------------------------------------------- the original's module layout


class OriginalBlock(nn.Module):
    """models/base_models.py BasicBlock (torchvision's, written out)."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + identity)


class OriginalResNet(nn.Module):
    """models/base_models.py ResNet-18: three conv1s (3, 1 and 6 channels), layer4 stride 1, fc."""

    def __init__(self, modal: str) -> None:
        super().__init__()
        self.modal = modal
        self.conv1_a = nn.Conv2d(1, 64, 7, 2, 3, bias=False)
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.conv1_flow = nn.Conv2d(6, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = nn.Sequential(OriginalBlock(64, 64), OriginalBlock(64, 64))
        self.layer2 = nn.Sequential(OriginalBlock(64, 128, 2), OriginalBlock(128, 128))
        self.layer3 = nn.Sequential(OriginalBlock(128, 256, 2), OriginalBlock(256, 256))
        self.layer4 = nn.Sequential(OriginalBlock(256, 512, 1), OriginalBlock(512, 512))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1_a(x) if self.modal == "audio" else self.conv1(x)
        x = self.maxpool(self.relu(self.bn1(x)))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class OriginalAVENet(nn.Module):
    """model.py AVENet (same attribute names, its initialization), up to the map A it returns."""

    def __init__(self) -> None:
        super().__init__()
        self.imgnet = OriginalResNet("vision")
        self.audnet = OriginalResNet("audio")
        self.m = nn.Sigmoid()
        self.avgpool = nn.AdaptiveMaxPool2d((1, 1))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, mean=1, std=0.02)
                nn.init.constant_(m.bias, 0)

    def forward(self, image: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = image.shape[0]
        img = F.normalize(self.imgnet(image), dim=1)
        aud = F.normalize(self.avgpool(self.audnet(audio)).view(b, -1), dim=1)
        A = torch.einsum("ncqa,nchw->nqa", [img, aud.unsqueeze(2).unsqueeze(3)]).unsqueeze(1)
        return A, original_logits(img, aud)


def original_checkpoint(tmp_path):
    torch.manual_seed(5)
    original = OriginalAVENet()
    randomize_batchnorm_(original)  # non-trivial BN statistics
    path = tmp_path / "lvs_flickr.pth.tar"
    # test.py: checkpoint["model_state_dict"] of an nn.DataParallel model ("module." keys)
    torch.save({"epoch": 10, "model_state_dict": {f"module.{k}": v for k, v in original.state_dict().items()},
                "optimizer_state_dict": {}}, path)
    return original.eval(), path


def test_original_checkpoint_loads_and_gives_identical_maps(tmp_path):
    original, path = original_checkpoint(tmp_path)
    params = {"model": {"backbone": "resnet18", "dim": 512}, "methods": {"lvs": {}}}
    ours = evaluation_model(params, "flickr", "lvs", path)  # what `evaluate --checkpoint FILE` does
    g = torch.Generator().manual_seed(0)
    image, spec = torch.randn(2, 3, 224, 224, generator=g), torch.randn(2, 1, 257, 160, generator=g)
    with torch.no_grad():
        theirs, their_logits = original(image, spec)
        raw = ours.raw_maps(image, spec)
        responses = response_maps(ours.image_features(image), ours.audio_features(spec))
        our_logits = lvs_logits(responses, ours.epsilon_pos, ours.epsilon_neg, ours.mask_tau, ours.tau)
    assert raw.shape == (2, 14, 14)
    difference = (raw - theirs[:, 0]).abs().max().item()
    print(f"max |A_ours - A_original| = {difference:.2e}")
    assert difference < 1e-5
    assert torch.allclose(our_logits, their_logits, rtol=1e-4, atol=1e-3)


def test_original_checkpoint_errors_list_keys(tmp_path):
    _, path = original_checkpoint(tmp_path)
    checkpoint = torch.load(path, weights_only=True)
    state = checkpoint["model_state_dict"]
    del state["module.audnet.layer4.1.bn2.bias"]
    state["module.extra.weight"] = torch.zeros(1)
    expected = r"missing keys \['audnet.layer4.1.bn2.bias'\].*unexpected keys \['extra.weight'\]"
    with pytest.raises(DataError, match=expected):
        LVS(backbone="resnet18").load_weights(checkpoint)
    with pytest.raises(DataError, match=r"lvs_flickr\.pth\.tar does not fit LVS"):
        LVS(backbone="small").load_weights(path)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        LVS(backbone="small").load_weights(tmp_path / "missing.pth")


def test_original_layout_conversion_and_own_round_trip():
    state = {"audnet.conv1_a.weight": torch.ones(1), "audnet.conv1.weight": torch.zeros(1),
             "imgnet.conv1.weight": torch.full((1,), 2.0), "imgnet.fc.bias": torch.zeros(1)}
    converted = original_layout_state_dict(state)
    assert converted == {"audnet.conv1.weight": state["audnet.conv1_a.weight"],
                         "imgnet.conv1.weight": state["imgnet.conv1.weight"]}
    torch.manual_seed(0)
    a, b = LVS(backbone="small").eval(), LVS(backbone="small").eval()
    image, spec = small_batch(2)
    with torch.no_grad():
        assert not torch.allclose(a.raw_maps(image, spec), b.raw_maps(image, spec))
        b.load_weights({"model": a.state_dict(), "epoch": 3})
        assert torch.equal(a.raw_maps(image, spec), b.raw_maps(image, spec))
