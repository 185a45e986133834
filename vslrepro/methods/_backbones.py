"""Image and audio encoders: torchvision ResNet-18 (profile `paper`) and a small CNN (`smoke`/`quick`).

Original (stoneMo/EZ-VSL and stoneMo/SLAVC `model.py`; see docs/methods/ezvsl.md):
- image: torchvision `resnet18(pretrained=True)` with `avgpool` and `fc` replaced by `nn.Identity`;
  its forward flattens the 512×7×7 layer4 map, which the model unflattens again (224 px only).
- audio: torchvision `resnet18()` from scratch, `conv1` = Conv2d(1, 64, 7, 2, 3, bias=False),
  `avgpool` = AdaptiveMaxPool2d(1) (global **max** pool), `fc` = Identity → (B, 512); initialized
  with Kaiming-normal (fan_out) convs, BN weight ~ N(1, 0.02), BN bias 0.

Ours: the same modules with the same attribute names, so the official state_dict keys
(`imgnet.conv1.weight`, `audnet.layer4.1.bn2.running_var`, ...) load unchanged. The image trunk
returns the layer4 map directly instead of flattening/unflattening, so any input size works
(224 px → 7×7). The small CNN keeps ResNet-18's output stride on the image side (8 at 56 px → 7×7,
as 32 at 224 px → 7×7) and is fast enough to train on 2 CPU cores; its image encoder is initialized
from the synthetic "object prior" (vslrepro.objectprior) where the paper uses ImageNet.

`layer4_stride=1` (LVS, hche11/Localizing-Visual-Sounds-the-Hard-Way `models/base_models.py`,
whose ResNet builds layer4 with stride 1 in both the image and the audio network) halves the output
stride of both encoders: 14×14 image maps at 224 px (ResNet-18) or at 56 px (small CNN, whose last
down-sampling stage then keeps stride 1). Only convolution strides change, never a weight shape, so
ImageNet weights, the object prior and every checkpoint load either way; the default (2) builds
exactly the modules above.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn
from torchvision.models import ResNet, ResNet18_Weights, resnet18
from torchvision.models.resnet import BasicBlock

from vslrepro.methods._checkpoints import load_state_dict_strict, load_weights_file

LAYER4_STRIDES = (1, 2)


def _check_layer4_stride(stride: int) -> None:
    if stride not in LAYER4_STRIDES:
        raise ValueError(f"layer4_stride must be 1 or 2, got {stride!r}")


def set_layer4_stride_(net: ResNet, stride: int) -> ResNet:
    """Set the stride of a torchvision ResNet's layer4 in place (its first block's conv1 and the
    1×1 downsample conv of the shortcut); weight shapes are unchanged. Returns the same net."""
    _check_layer4_stride(stride)
    first = net.layer4[0]
    first.conv1.stride = (stride, stride)
    first.downsample[0].stride = (stride, stride)
    return net


def last_downsampling_stride(strides: tuple[int, ...], stride: int) -> tuple[int, ...]:
    """`strides` with its last stride-2 stage set to `stride` (the small CNN's "layer4" option).

    >>> last_downsampling_stride((2, 2, 2, 1), 1)
    (2, 2, 1, 1)
    """
    _check_layer4_stride(stride)
    last = max(i for i, s in enumerate(strides) if s == 2)
    return tuple(stride if i == last else s for i, s in enumerate(strides))


def official_init_(module: nn.Module) -> nn.Module:
    """Re-initialize `module` in place the way EZ-VSL/SLAVC initialize their non-pretrained parts.

    Conv2d: Kaiming-normal, fan_out, ReLU gain. Linear: truncated normal, std 0.01 (bias untouched).
    BatchNorm2d / GroupNorm: weight ~ N(1, 0.02), bias 0. Uses the global torch RNG (seed it first).

    Returns:
        The same module.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.normal_(m.weight, mean=1.0, std=0.02)
            nn.init.constant_(m.bias, 0.0)
    return module


class ResNetTrunk(ResNet):
    """torchvision ResNet-18 whose forward stops at layer4: (B, 3, S, S) -> (B, 512, S/32, S/32).

    `avgpool` and `fc` are `nn.Identity` (no parameters), exactly as in the official model, so the
    state_dict keys are torchvision's minus `fc.*`. `layer4_stride=1` gives (B, 512, S/16, S/16).
    """

    def __init__(self, layer4_stride: int = 2) -> None:
        super().__init__(BasicBlock, [2, 2, 2, 2])
        self.avgpool = nn.Identity()
        self.fc = nn.Identity()
        self.out_channels = 512
        if layer4_stride != 2:
            set_layer4_stride_(self, layer4_stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (B, 3, S, S) -> (B, 64, S/4, S/4)
        x = self.layer2(self.layer1(x))  # -> (B, 128, S/8, S/8)
        return self.layer4(self.layer3(x))  # -> (B, 512, S/32, S/32) (S/16 with layer4 stride 1)


def load_encoder_weights(encoder: nn.Module, weights: str | Path | Mapping[str, torch.Tensor],
                         *, drop_prefixes: tuple[str, ...] = ()) -> nn.Module:
    """Load a state_dict (or a file holding one) into `encoder`, strictly.

    Args:
        encoder: the module to fill.
        weights: a state_dict or the path of a `torch.save`d one (optionally nested under
            "state_dict" or "model").
        drop_prefixes: key prefixes to ignore (e.g. ("fc.",) for a torchvision classifier).

    Returns:
        The encoder.

    Raises:
        FileNotFoundError: if the weights file does not exist.
        DataError: naming the file and the missing/unexpected keys when they do not match.
    """
    source = "<state_dict>"
    if not isinstance(weights, Mapping):
        source = str(weights)
        weights = load_weights_file(weights)
        for key in ("state_dict", "model"):
            if isinstance(weights, Mapping) and key in weights and isinstance(weights[key], Mapping):
                weights = weights[key]
    state = {k: v for k, v in weights.items() if not k.startswith(drop_prefixes)}
    load_state_dict_strict(encoder, state, source)
    return encoder


def resnet18_image(weights: str | Path | Mapping[str, torch.Tensor] | None = None,
                   layer4_stride: int = 2) -> ResNetTrunk:
    """The EZ-VSL image encoder (`imgnet`): ResNet-18 without avgpool/fc, (B,3,224,224) -> (B,512,7,7).

    Args:
        weights: None → torchvision's random init; "imagenet" → torchvision's
            `ResNet18_Weights.IMAGENET1K_V1` (downloaded, needs network); otherwise a path to (or a)
            state_dict of a torchvision ResNet-18 (its `fc.*` keys are ignored) or of this trunk.
        layer4_stride: 2 (torchvision) or 1 (LVS: (B, 512, 14, 14) at 224 px).

    Raises:
        RuntimeError: if "imagenet" is asked and the download fails (e.g. offline).
        FileNotFoundError / DataError: from `load_encoder_weights` for a bad weights file.
    """
    trunk = ResNetTrunk(layer4_stride)
    if weights is None:
        return trunk
    if isinstance(weights, str) and weights == "imagenet":
        try:
            state = ResNet18_Weights.IMAGENET1K_V1.get_state_dict(progress=False)
        except Exception as error:  # URLError, OSError, HTTPError, ... all mean "no download"
            raise RuntimeError(
                "could not download the ImageNet ResNet-18 weights (torchvision "
                f"ResNet18_Weights.IMAGENET1K_V1): {error}. Offline, download "
                "resnet18-f37072fd.pth elsewhere and pass its local file path as the image weights."
            ) from error
        weights = state
    return load_encoder_weights(trunk, weights, drop_prefixes=("fc.",))


def resnet18_audio(layer4_stride: int = 2) -> ResNet:
    """The EZ-VSL audio encoder (`audnet`): (B, 1, F, T) log-spectrogram -> (B, 512).

    torchvision ResNet-18 with a 1-channel conv1 (7×7, stride 2, no bias), a global max pool in
    place of `avgpool`, `fc` = Identity; official initialization (`official_init_`).
    `layer4_stride=1` as in LVS (the max pool then runs over a finer grid).
    """
    _check_layer4_stride(layer4_stride)
    net = resnet18(weights=None)
    if layer4_stride != 2:
        set_layer4_stride_(net, layer4_stride)
    net.conv1 = nn.Conv2d(1, 64, kernel_size=(7, 7), stride=(2, 2), padding=(3, 3), bias=False)
    net.avgpool = nn.AdaptiveMaxPool2d((1, 1))
    net.fc = nn.Identity()
    return official_init_(net)


class ConvBlock(nn.Module):
    """3×3 conv (no bias) → BatchNorm → ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


def _check_stages(widths: tuple[int, ...], strides: tuple[int, ...]) -> None:
    if len(widths) != len(strides) or not widths:
        raise ValueError(f"widths {widths} and strides {strides} must be non-empty and of equal length")


class SmallImageEncoder(nn.Module):
    """A 4-stage CNN with ResNet-18's map geometry at a quarter of the resolution.

    (B, 3, 56, 56) -> (B, widths[-1], 7, 7): conv-BN-ReLU stages with strides (2, 2, 2, 1), total
    stride 8 (56 px → 7×7, as ResNet-18 maps 224 px → 7×7).
    """

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 128),
                 strides: tuple[int, ...] = (2, 2, 2, 1)) -> None:
        super().__init__()
        _check_stages(widths, strides)
        channels = (3, *widths)
        self.stages = nn.Sequential(*(ConvBlock(channels[i], channels[i + 1], strides[i])
                                      for i in range(len(widths))))
        self.out_channels = widths[-1]
        official_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(x)  # (B, 3, 56, 56) -> (B, C, 7, 7)


class SmallAudioEncoder(nn.Module):
    """A 4-stage CNN for small spectrograms, global max pool: (B, 1, 65, 64) -> (B, widths[-1])."""

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 128),
                 strides: tuple[int, ...] = (2, 2, 2, 2)) -> None:
        super().__init__()
        _check_stages(widths, strides)
        channels = (1, *widths)
        self.stages = nn.Sequential(*(ConvBlock(channels[i], channels[i + 1], strides[i])
                                      for i in range(len(widths))))
        self.pool = nn.AdaptiveMaxPool2d((1, 1))
        self.out_channels = widths[-1]
        official_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(x)  # (B, 1, 65, 64) -> (B, C, 5, 4)
        return self.pool(x).flatten(1)  # (B, C, 1, 1) -> (B, C)


BACKBONES = ("resnet18", "small")


def build_image_encoder(kind: str, weights: str | Path | Mapping[str, torch.Tensor] | None = None,
                        layer4_stride: int = 2) -> nn.Module:
    """The image encoder of backbone `kind`, optionally loaded from `weights`.

    Args:
        kind: "resnet18" or "small".
        weights: see `resnet18_image`; for "small" a path to (or a) state_dict, e.g. the object prior
            written by `vslrepro.objectprior` ("imagenet" is refused: it has no ImageNet weights).
        layer4_stride: 2 (default) or 1: the stride of ResNet-18's layer4, or of the small CNN's last
            down-sampling stage (14×14 maps instead of 7×7); weight shapes do not depend on it.

    Raises:
        ValueError: for an unknown kind, a layer4_stride other than 1 or 2, or "imagenet" with the
            small backbone.
    """
    _check_layer4_stride(layer4_stride)
    if kind == "resnet18":
        return resnet18_image(weights, layer4_stride)
    if kind == "small":
        encoder = SmallImageEncoder(strides=last_downsampling_stride((2, 2, 2, 1), layer4_stride))
        if weights is None:
            return encoder
        if isinstance(weights, str) and weights == "imagenet":
            raise ValueError("the small backbone has no ImageNet weights: pass the path of an "
                             "object-prior state_dict (vslrepro.objectprior) instead")
        return load_encoder_weights(encoder, weights)
    raise ValueError(f"unknown backbone {kind!r}; known: {', '.join(BACKBONES)}")


def build_backbones(kind: str, image_weights: str | Path | Mapping[str, torch.Tensor] | None = None,
                    layer4_stride: int = 2) -> tuple[nn.Module, nn.Module, int, int]:
    """Image and audio encoders of one backbone family.

    Args:
        kind: "resnet18" (profile `paper`) or "small" (`smoke`/`quick`).
        image_weights: weights of the image encoder (see `build_image_encoder`).
        layer4_stride: 2 (default: torchvision's ResNet-18, the small CNN as above) or 1 (LVS: the
            last down-sampling stage of BOTH encoders keeps stride 1, so image maps are 14×14 at
            224 px with ResNet-18 and at 56 px with the small CNN).

    Returns:
        (image_encoder, audio_encoder, image_channels, audio_channels): the image encoder maps
        (B, 3, S, S) to (B, image_channels, S/32 or S/8, ...) (S/16 or S/4 with layer4_stride=1),
        the audio encoder (B, 1, F, T) to (B, audio_channels).

    Raises:
        ValueError: for an unknown kind or a layer4_stride other than 1 or 2.
    """
    if kind not in BACKBONES:
        raise ValueError(f"unknown backbone {kind!r}; known: {', '.join(BACKBONES)}")
    image = build_image_encoder(kind, image_weights, layer4_stride)
    audio = (resnet18_audio(layer4_stride) if kind == "resnet18"
             else SmallAudioEncoder(strides=last_downsampling_stride((2, 2, 2, 2), layer4_stride)))
    return image, audio, image.out_channels, 512 if kind == "resnet18" else audio.out_channels
