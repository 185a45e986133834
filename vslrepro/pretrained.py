"""The image encoder's pretrained weights for a profile: ImageNet (paper) or the synthetic object prior.

The paper initializes every baseline's visual ResNet-18 from ImageNet, and OGL uses a second,
frozen ImageNet ResNet-18 as its objectness prior. The `paper` profile takes torchvision's ImageNet
weights (a local file path, or the download when online); `smoke` and `quick` have no ImageNet and
use the object prior pretrained on the embedded benchmark's labelled object images
(`vslrepro.objectprior`, cached on first use).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vslrepro.data.datasets import synthetic_root
from vslrepro.objectprior import load_object_set, load_or_pretrain
from vslrepro.paths import cache_dir


def image_weights(params: dict[str, Any], *, device: str | None = None) -> Any:
    """The profile's image-encoder weights: "imagenet" or a weights path (resnet18), else the
    object-prior state_dict (trained and cached on first use)."""
    return _weights(params, device=device)[0]


def image_weights_info(params: dict[str, Any]) -> dict[str, Any]:
    """Where the profile's image-encoder weights come from (and the object prior's accuracy)."""
    return _weights(params)[1]


def _weights(params: dict[str, Any], device: str | None = None) -> tuple[Any, dict[str, Any]]:
    backbone = params["model"]["backbone"]
    if backbone == "resnet18":
        source = params["data"].get("imagenet_weights", "imagenet")
        return source, {"source": f"ImageNet ResNet-18 ({source})"}
    images, labels, classes = load_object_set(synthetic_root(params) / "objects")
    cfg = params["object_prior"]
    state, info = load_or_pretrain(
        cache_dir(), params["profile"], images, labels, seed=int(params["seed"]),
        device=device or ("cuda" if torch.cuda.is_available() else "cpu"), backbone=backbone,
        image_size=params["input"]["image_size"], epochs=cfg["epochs"], batch_size=cfg["batch_size"],
        lr=cfg["lr"], cpu_threads=params["train"].get("cpu_threads"))
    return state, {"source": f"synthetic object prior ({Path(info['path']).name})", "classes": classes, **info}
