"""Building methods from a profile: initial weights, training runs, checkpoints for evaluation.

The registry (`vslrepro.methods`) knows how to build a method from keyword arguments; this module
knows where a profile's arguments come from:
- the image encoder's initial weights — the cached synthetic object prior (smoke/quick) or the
  ImageNet ResNet-18 (paper: a local file, or torchvision's download when online);
- the checkpoint of a finished run (`best.pt` / `latest.pt`) for evaluation;
- for methods that reuse another method's run (EZ-VSL + OGL reuses EZ-VSL's), that run's weights
  plus their own evaluation-time parts (the frozen object backbone and its map bounds).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vslrepro.methods import build_method, method_info
from vslrepro.paths import cache_dir


def object_prior_weights(params: dict[str, Any], *, info_only: bool = False,
                         device: str | None = None) -> Any:
    """The image encoder's pretrained weights for this profile (cached on first use).

    Returns:
        "imagenet" or a weights path for resnet18 (paper), else the object-prior state_dict; with
        `info_only`, a dict saying where the weights come from (and the pretraining accuracy).
    """
    backbone = params["model"]["backbone"]
    if backbone == "resnet18":
        source = params["data"].get("imagenet_weights", "imagenet")
        return {"source": f"ImageNet ResNet-18 ({source})"} if info_only else source
    from vslrepro.objectprior import load_object_set, load_or_pretrain
    from vslrepro.profiles import synthetic_root

    images, labels, classes = load_object_set(synthetic_root(params) / "objects")
    cfg = params["object_prior"]
    state, info = load_or_pretrain(
        cache_dir(), params["profile"], images, labels, seed=int(params["seed"]),
        device=device or ("cuda" if torch.cuda.is_available() else "cpu"), backbone=backbone,
        image_size=params["input"]["image_size"], epochs=cfg["epochs"], batch_size=cfg["batch_size"],
        lr=cfg["lr"])
    if info_only:
        return {"source": f"synthetic object prior ({Path(info['path']).name})", "classes": classes, **info}
    return state


def method_config(params: dict[str, Any], name: str) -> dict[str, Any]:
    """Keyword arguments of `build_method(name, ...)` from a profile."""
    model = params["model"]
    info = method_info(name)
    if name == "random":
        return {"seed": int(params["seed"])}
    if not (info.trainable or info.trains_as):
        return {}
    cfg = {"backbone": model["backbone"], "dim": model["dim"], "tau": model["tau"]}
    if name == "ezvsl_ogl":
        cfg["alpha"] = model.get("ogl_alpha", 0.4)
    return cfg


def build_for_training(params: dict[str, Any], name: str) -> torch.nn.Module:
    """A trainable method with its image encoder initialized from the profile's pretrained weights."""
    return build_method(name, **method_config(params, name), image_weights=object_prior_weights(params))


def _load_checkpoint(model: torch.nn.Module, run: Path, checkpoint: str) -> None:
    path = Path(run) / f"{checkpoint}.pt"
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found: train the run first "
                                f"(python -m vslrepro train ...)")
    state = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])


def load_for_evaluation(params: dict[str, Any], name: str, dataset: str, run: str | Path | None,
                        checkpoint: str) -> torch.nn.Module:
    """The method `name` ready for `localize`: trained weights from `run/<checkpoint>.pt` if any."""
    info = method_info(name)
    if not (info.trainable or info.trains_as):
        if checkpoint != "none":
            raise ValueError(f"{name!r} is training-free: use checkpoint 'none', not {checkpoint!r}")
        return build_method(name, **method_config(params, name)).eval()
    if checkpoint not in ("best", "latest"):
        raise ValueError(f"{name!r} needs checkpoint 'best' or 'latest', got {checkpoint!r}")
    if run is None:
        raise ValueError(f"{name!r} needs a training run folder")
    if info.trains_as is None:
        model = build_method(name, **method_config(params, name))
        _load_checkpoint(model, Path(run), checkpoint)
        return model.eval()
    if name == "ezvsl_ogl":
        return _ogl_for_evaluation(params, dataset, Path(run), checkpoint)
    raise ValueError(f"no evaluation recipe for {name!r} (trains as {info.trains_as!r})")


def _ogl_for_evaluation(params: dict[str, Any], dataset: str, run: Path, checkpoint: str) -> torch.nn.Module:
    """EZ-VSL weights from the run + the frozen object prior, with OBJ bounds from validation frames."""
    from vslrepro.data.cache import normalize_images
    from vslrepro.data.splits import validation_split
    from vslrepro.methods.backbones import build_image_encoder
    from vslrepro.methods.ogl import IMAGENET_OBJ_BOUNDS, object_map_quantile

    cfg = method_config(params, "ezvsl_ogl")
    av = build_method("ezvsl", backbone=cfg["backbone"], dim=cfg["dim"], tau=cfg["tau"])
    _load_checkpoint(av, run, checkpoint)
    backbone = build_image_encoder(cfg["backbone"], object_prior_weights(params))
    if cfg["backbone"] == "resnet18":
        bounds = IMAGENET_OBJ_BOUNDS
    else:  # the small prior has no published scale: the 99th percentile on validation frames
        _, cache = validation_split(params, dataset)
        images = normalize_images(torch.from_numpy(cache.images[:512].copy()))
        bounds = (0.0, object_map_quantile(backbone, images, q=0.99))
    return build_method("ezvsl_ogl", av_model=av, object_backbone=backbone, alpha=cfg["alpha"],
                        obj_bounds=bounds).eval()
