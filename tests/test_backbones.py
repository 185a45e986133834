"""Backbones: output shapes, official key layout, weight loading, initialization, errors."""

from __future__ import annotations

import urllib.error

import pytest
import torch
from torch import nn
from torchvision.models import ResNet18_Weights, resnet18

from vslrepro.data.errors import DataError
from vslrepro.methods import _backbones as backbones
from vslrepro.methods._backbones import (
    SmallAudioEncoder,
    SmallImageEncoder,
    build_backbones,
    official_init_,
    resnet18_audio,
    resnet18_image,
)

from methodkit import randomize_batchnorm_


def test_resnet18_image_shape_and_keys_match_torchvision_without_fc():
    trunk = resnet18_image().eval()
    with torch.no_grad():
        out = trunk(torch.randn(2, 3, 224, 224))
    assert out.shape == (2, 512, 7, 7)
    reference_keys = {k for k in resnet18().state_dict() if not k.startswith("fc.")}
    assert set(trunk.state_dict()) == reference_keys
    assert isinstance(trunk.avgpool, nn.Identity) and isinstance(trunk.fc, nn.Identity)


def test_resnet18_image_loads_torchvision_state_dict_file(tmp_path):
    torch.manual_seed(1)
    reference = resnet18()
    randomize_batchnorm_(reference, mean=0.5)  # non-trivial BN statistics
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)  # a full classifier state_dict, fc.* included
    trunk = resnet18_image(path).eval()
    reference.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        y = reference.layer4(reference.layer3(reference.layer2(reference.layer1(
            reference.maxpool(reference.relu(reference.bn1(reference.conv1(x))))))))
        assert torch.equal(trunk(x), y)


def test_resnet18_image_imagenet_offline_raises_runtime_error(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(ResNet18_Weights.IMAGENET1K_V1.__class__, "get_state_dict", offline)
    with pytest.raises(RuntimeError, match="local file path"):
        resnet18_image("imagenet")


def test_bad_weights_files_raise_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        resnet18_image(tmp_path / "nope.pth")
    bad = tmp_path / "small.pth"
    torch.save(SmallImageEncoder().state_dict(), bad)
    with pytest.raises(DataError, match=r"small\.pth.*missing keys"):
        resnet18_image(bad)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="garbage.pth"):
        resnet18_image(garbage)


def test_resnet18_audio_shape_maxpool_and_official_init():
    torch.manual_seed(0)
    net = resnet18_audio().eval()
    assert net.conv1.in_channels == 1 and net.conv1.bias is None and net.conv1.stride == (2, 2)
    assert isinstance(net.avgpool, nn.AdaptiveMaxPool2d) and isinstance(net.fc, nn.Identity)
    with torch.no_grad():
        assert net(torch.randn(2, 1, 257, 200)).shape == (2, 512)
        assert net(torch.randn(1, 1, 257, 120)).shape == (1, 512)  # any T: global max pool
    bn_weights = torch.cat([m.weight.detach() for m in net.modules() if isinstance(m, nn.BatchNorm2d)])
    assert abs(bn_weights.mean().item() - 1.0) < 0.01 and 0.015 < bn_weights.std().item() < 0.025
    assert all(m.bias.abs().max() == 0 for m in net.modules() if isinstance(m, nn.BatchNorm2d))
    conv = net.layer3[0].conv1  # kaiming fan_out: std = sqrt(2 / (out_channels * k * k))
    expected = (2.0 / (conv.out_channels * 9)) ** 0.5
    assert abs(conv.weight.std().item() / expected - 1.0) < 0.05


def test_official_init_linear_truncated_normal():
    torch.manual_seed(0)
    layer = official_init_(nn.Linear(512, 512))
    assert abs(layer.weight.std().item() - 0.01) < 0.001
    assert layer.weight.abs().max().item() <= 2.0 + 1e-6  # trunc_normal_ cuts at [-2, 2] absolute


def test_small_encoders_shapes():
    image, audio = SmallImageEncoder().eval(), SmallAudioEncoder().eval()
    with torch.no_grad():
        assert image(torch.randn(3, 3, 56, 56)).shape == (3, 128, 7, 7)
        assert audio(torch.randn(3, 1, 65, 64)).shape == (3, 128)
    assert SmallImageEncoder(widths=(8, 8, 8, 32)).eval()(torch.randn(1, 3, 56, 56)).shape == (1, 32, 7, 7)
    with pytest.raises(ValueError, match="equal length"):
        SmallImageEncoder(widths=(8, 16), strides=(2, 2, 2))


def test_build_backbones_kinds_and_errors(tmp_path):
    image, audio, ci, ca = build_backbones("small")
    assert (ci, ca) == (128, 128) and isinstance(image, SmallImageEncoder)
    image, audio, ci, ca = build_backbones("resnet18")
    assert (ci, ca) == (512, 512) and isinstance(image, backbones.ResNetTrunk)
    with pytest.raises(ValueError, match="unknown backbone 'vgg'.*resnet18, small"):
        build_backbones("vgg")
    with pytest.raises(ValueError, match="no ImageNet weights"):
        build_backbones("small", image_weights="imagenet")
    torch.manual_seed(3)
    source = SmallImageEncoder()
    path = tmp_path / "prior.pt"
    torch.save({"state_dict": source.state_dict(), "info": {"n": 1}}, path)  # nested, as objectprior caches
    loaded = build_backbones("small", image_weights=path)[0]
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_layer4_stride_default_builds_identical_modules():
    for kind, size in (("small", 56), ("resnet18", 64)):
        torch.manual_seed(4)
        default = build_backbones(kind)
        torch.manual_seed(4)
        explicit = build_backbones(kind, layer4_stride=2)
        for a, b in zip(default[:2], explicit[:2]):
            assert a.state_dict().keys() == b.state_dict().keys()
            assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
            assert [m.stride for m in a.modules() if isinstance(m, nn.Conv2d)] == \
                [m.stride for m in b.modules() if isinstance(m, nn.Conv2d)]
    image, audio = resnet18_image(), resnet18_audio()
    reference = resnet18()
    for net in (image, audio):  # torchvision's strides everywhere (conv1 of audio: 1 channel only)
        assert net.layer4[0].conv1.stride == (2, 2) and net.layer4[0].downsample[0].stride == (2, 2)
        assert [m.stride for m in net.modules() if isinstance(m, nn.Conv2d)] == \
            [m.stride for m in reference.modules() if isinstance(m, nn.Conv2d)]
    assert [b.conv.stride for b in SmallImageEncoder().stages] == [(2, 2)] * 3 + [(1, 1)]
    assert [b.conv.stride for b in build_backbones("small")[1].stages] == [(2, 2)] * 4


def test_layer4_stride_1_halves_the_output_stride_of_both_encoders():
    image, audio, ci, ca = build_backbones("resnet18", layer4_stride=1)
    assert (ci, ca) == (512, 512)
    for net in (image, audio):  # LVS base_models.py: layer4 stride 1 in the image AND audio nets
        assert net.layer4[0].conv1.stride == (1, 1) and net.layer4[0].downsample[0].stride == (1, 1)
    with torch.no_grad():
        assert image.eval()(torch.randn(1, 3, 224, 224)).shape == (1, 512, 14, 14)
        assert audio.eval()(torch.randn(1, 1, 257, 120)).shape == (1, 512)
        trunk = audio.layer4(audio.layer3(audio.layer2(audio.layer1(audio.maxpool(audio.relu(
            audio.bn1(audio.conv1(torch.randn(1, 1, 257, 120)))))))))
        assert trunk.shape == (1, 512, 17, 8)  # 9×4 with stride 2
    image, audio, ci, ca = build_backbones("small", layer4_stride=1)
    assert (ci, ca) == (128, 128)
    assert [b.conv.stride for b in image.stages] == [(2, 2), (2, 2), (1, 1), (1, 1)]
    assert [b.conv.stride for b in audio.stages] == [(2, 2), (2, 2), (2, 2), (1, 1)]
    with torch.no_grad():
        assert image.eval()(torch.randn(2, 3, 56, 56)).shape == (2, 128, 14, 14)
        assert audio.eval()(torch.randn(2, 1, 65, 64)).shape == (2, 128)


def test_layer4_stride_keeps_weight_shapes_so_weights_load(tmp_path):
    for kind in ("small", "resnet18"):
        two, one = build_backbones(kind), build_backbones(kind, layer4_stride=1)
        for a, b in zip(two[:2], one[:2]):
            assert {k: v.shape for k, v in a.state_dict().items()} == \
                {k: v.shape for k, v in b.state_dict().items()}
    torch.manual_seed(2)
    reference = resnet18()  # an ImageNet-like torchvision classifier state_dict, fc.* included
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    image = build_backbones("resnet18", image_weights=path, layer4_stride=1)[0].eval()
    reference.eval()
    reference.layer4[0].conv1.stride = reference.layer4[0].downsample[0].stride = (1, 1)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        y = reference.layer4(reference.layer3(reference.layer2(reference.layer1(
            reference.maxpool(reference.relu(reference.bn1(reference.conv1(x))))))))
        assert torch.equal(image(x), y)
    prior = tmp_path / "prior.pt"
    torch.save({"state_dict": SmallImageEncoder().state_dict()}, prior)  # the object prior's layout
    loaded = build_backbones("small", image_weights=prior, layer4_stride=1)[0]
    assert loaded(torch.randn(1, 3, 56, 56)).shape[-2:] == (14, 14)


def test_layer4_stride_errors():
    for kind in ("small", "resnet18"):
        with pytest.raises(ValueError, match="layer4_stride must be 1 or 2, got 3"):
            build_backbones(kind, layer4_stride=3)
    with pytest.raises(ValueError, match="layer4_stride must be 1 or 2"):
        resnet18_audio(layer4_stride=0)
