"""The "object prior": supervised pretraining of the image encoder, standing in for ImageNet offline.

The paper initializes the visual ResNet-18 of every baseline from ImageNet, and OGL uses a second
ImageNet ResNet-18 as an objectness prior (EZ-VSL's OGL, Mo & Morgado, ECCV 2022). The
`smoke`/`quick` profiles have no ImageNet; instead the synthetic benchmark ships a labelled
single-object image set (`<root>/labels.csv` with header `id,class`, images in
`<root>/images/<id>.jpg`; docs/synthetic.md §4), and this module trains the small image encoder on
it: encoder → global average pool → linear head, cross-entropy on the class labels,
random-resized-crop + horizontal-flip augmentation. The encoder's state_dict (same keys as
`EZVSL.imgnet` for that backbone) then initializes EZ-VSL's image encoder and
serves as OGL's frozen object backbone.

Determinism: model init, shuffling and augmentation draw from generators seeded by `seed`; on CPU
the same seed gives bit-identical weights (on GPU, up to the non-determinism of cuDNN kernels).
"""

from __future__ import annotations

import csv
import hashlib
import inspect
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch import nn

from vslrepro import seeding
from vslrepro.atomic import atomic_torch_save, exclusive
from vslrepro.data.errors import DataError
from vslrepro.data.formats.images import normalize_images
from vslrepro.methods import build_image_encoder, load_weights_file


def load_object_set(root: str | Path) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Read the labelled object images.

    Args:
        root: folder with `labels.csv` (header `id,class`) and `images/<id>.jpg`, all of one size.

    Returns:
        (images uint8 (N, 3, H, W), labels long (N,), classes): `classes` sorted, labels index it.

    Raises:
        DataError: naming the file for a missing/malformed labels.csv, a missing or unreadable
            image, or an image whose size differs from the first one.
    """
    root = Path(root)
    labels_csv = root / "labels.csv"
    if not labels_csv.is_file():
        raise DataError(f"object set labels file not found: {labels_csv}")
    with labels_csv.open(newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows or [c.strip() for c in rows[0]] != ["id", "class"]:
        raise DataError(f"{labels_csv}: expected the header 'id,class', got {rows[0] if rows else 'an empty file'}")
    records = []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != 2 or not row[0].strip() or not row[1].strip():
            raise DataError(f"{labels_csv}, line {line}: expected 'id,class', got {row}")
        records.append((row[0].strip(), row[1].strip()))
    if not records:
        raise DataError(f"{labels_csv} lists no images")
    classes = sorted({name for _, name in records})
    index = {name: i for i, name in enumerate(classes)}
    images, size = [], None
    for image_id, _ in records:
        path = root / "images" / f"{image_id}.jpg"
        try:
            with Image.open(path) as img:
                array = np.asarray(img.convert("RGB"))  # (H, W, 3) uint8
        except FileNotFoundError:
            raise DataError(f"image {path} listed in {labels_csv} is missing") from None
        except (UnidentifiedImageError, OSError) as error:
            raise DataError(f"image {path} listed in {labels_csv} is unreadable: {error}") from error
        if size is None:
            size = array.shape
        elif array.shape != size:
            raise DataError(f"image {path} is {array.shape[1]}x{array.shape[0]}, "
                            f"the object set's first image is {size[1]}x{size[0]}")
        images.append(torch.from_numpy(array.copy()).permute(2, 0, 1))  # (H, W, 3) -> (3, H, W)
    labels = torch.tensor([index[name] for _, name in records], dtype=torch.long)
    return torch.stack(images), labels, classes


def random_resized_crop_flip(images: torch.Tensor, size: int, generator: torch.Generator,
                             scale: tuple[float, float] = (0.35, 1.0),
                             ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> torch.Tensor:
    """Batched random-resized-crop + horizontal flip of float images, via one affine grid sample.

    Each sample draws an area fraction in `scale`, a log-uniform aspect ratio in `ratio`, a crop
    position inside the frame and a flip with probability 1/2 (all from `generator`, on the CPU).

    Args:
        images: (B, C, H, W) float images.
        size: output side.
        generator: a CPU `torch.Generator`.

    Returns:
        (B, C, size, size) crops, bilinearly resampled.
    """
    b = images.shape[0]
    u = torch.rand((b, 5), generator=generator, dtype=torch.float64)  # (B, 5) uniforms
    area = scale[0] + (scale[1] - scale[0]) * u[:, 0]
    log_ratio = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[:, 1]
    width = (area * log_ratio.exp()).sqrt().clamp(max=1.0)  # fraction of the side
    height = (area / log_ratio.exp()).sqrt().clamp(max=1.0)
    cx = (1.0 - width) * (2.0 * u[:, 2] - 1.0)  # crop centre in [-1, 1] grid coordinates
    cy = (1.0 - height) * (2.0 * u[:, 3] - 1.0)
    flip = torch.where(u[:, 4] < 0.5, -1.0, 1.0)
    theta = torch.zeros((b, 2, 3), dtype=torch.float64)  # (B, 2, 3) affine: output -> input coords
    theta[:, 0, 0], theta[:, 0, 2] = width * flip, cx
    theta[:, 1, 1], theta[:, 1, 2] = height, cy
    grid = F.affine_grid(theta.to(images), [b, images.shape[1], size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


class ObjectClassifier(nn.Module):
    """Image encoder → global average pool → linear head (the head is discarded after training)."""

    def __init__(self, encoder: nn.Module, channels: int, num_classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(channels, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.encoder(images).mean(dim=(2, 3))  # (B, C, h, w) -> (B, C)
        return self.head(features)  # (B, num_classes)


def pretrain_object_prior(images: torch.Tensor, labels: torch.Tensor, *, backbone: str = "small",
                          image_size: int = 56, epochs: int = 5, batch_size: int = 128,
                          lr: float = 1e-3, seed: int = 0, device: str | torch.device = "cpu",
                          cpu_threads: int | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Supervised classification pretraining of the image encoder of `backbone`.

    Args:
        images: uint8 (N, 3, H, W) object images (from `load_object_set`).
        labels: long (N,) class indices in [0, K).
        backbone: "small" or "resnet18" (vslrepro.methods._backbones).
        image_size: side of the training crops (56 for small, as the synthetic frames).
        epochs, batch_size, lr: Adam training schedule (the last partial batch is kept).
        seed: seeds the encoder/head initialization, the shuffling and the augmentation.
        device: where to train.
        cpu_threads: torch CPU threads while training (None: as they are); the weights depend on it
            (`vslrepro.seeding.cpu_threads`).

    Returns:
        (state_dict, info): the encoder's state_dict on CPU (keys as `EZVSL.imgnet`), and
        {"train_accuracy": last epoch's accuracy on augmented batches, "clean_accuracy": accuracy of
        the final model on the un-augmented images resized to `image_size`, "epoch_loss": [...],
        "epoch_accuracy": [...], "n_images", "n_classes", "device"}.

    Raises:
        ValueError: for mismatched or empty inputs, or labels out of range.
    """
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be uint8 (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
    if labels.shape != (images.shape[0],) or images.shape[0] == 0:
        raise ValueError(f"labels {tuple(labels.shape)} must be (N,) with N = {images.shape[0]} > 0")
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs}, {batch_size}")
    num_classes = int(labels.max()) + 1
    if int(labels.min()) < 0 or num_classes < 2:
        raise ValueError(f"labels must index at least 2 classes from 0, got range "
                         f"[{int(labels.min())}, {int(labels.max())}]")
    with seeding.cpu_threads(cpu_threads):
        return _train_classifier(images, labels, num_classes, backbone=backbone, image_size=image_size,
                                 epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, device=device)


def _train_classifier(images: torch.Tensor, labels: torch.Tensor, num_classes: int, *, backbone: str,
                      image_size: int, epochs: int, batch_size: int, lr: float, seed: int,
                      device: str | torch.device) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """`pretrain_object_prior`'s training and final evaluation, on checked inputs."""
    device = torch.device(device)
    with torch.random.fork_rng(devices=[]):  # the caller's global RNG state is left untouched
        torch.manual_seed(seed)
        encoder = build_image_encoder(backbone)
        model = ObjectClassifier(encoder, encoder.out_channels, num_classes).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    n = images.shape[0]
    epoch_loss, epoch_accuracy = [], []
    model.train()
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator)
        total_loss, correct = 0.0, 0
        for start in range(0, n, batch_size):
            rows = order[start:start + batch_size]
            batch = normalize_images(images[rows])  # (b, 3, H, W) float on CPU
            batch = random_resized_crop_flip(batch, image_size, generator).to(device)
            target = labels[rows].to(device)
            logits = model(batch)
            loss = F.cross_entropy(logits, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(rows)
            correct += int((logits.argmax(dim=1) == target).sum())
        epoch_loss.append(total_loss / n)
        epoch_accuracy.append(correct / n)
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, n, batch_size):
            batch = normalize_images(images[start:start + batch_size])
            batch = F.interpolate(batch, size=(image_size, image_size), mode="bilinear",
                                  align_corners=False, antialias=True).to(device)
            correct += int((model(batch).argmax(dim=1).cpu() == labels[start:start + batch_size]).sum())
    state = {key: value.detach().cpu().clone() for key, value in model.encoder.state_dict().items()}
    info = {"train_accuracy": epoch_accuracy[-1], "clean_accuracy": correct / n,
            "epoch_loss": epoch_loss, "epoch_accuracy": epoch_accuracy,
            "n_images": n, "n_classes": num_classes, "device": str(device)}
    return state, info


def object_prior_path(cache_dir: str | Path, profile: str, seed: int) -> Path:
    """Where the object prior of (profile, seed) is cached: `<cache_dir>/objectprior/<profile>-seed<seed>.pt`."""
    return Path(cache_dir) / "objectprior" / f"{profile}-seed{int(seed)}.pt"


def data_fingerprint(images: torch.Tensor, labels: torch.Tensor) -> str:
    """A short hash of the exact training data (so that a changed object set invalidates the cache)."""
    digest = hashlib.blake2b(digest_size=12)
    for tensor in (images, labels):
        data = tensor.detach().cpu().contiguous()
        digest.update(f"{data.dtype}{tuple(data.shape)}".encode())
        digest.update(data.numpy().tobytes())
    return digest.hexdigest()


def load_or_pretrain(cache_dir: str | Path, profile: str, images: torch.Tensor, labels: torch.Tensor, *,
                     seed: int = 0, device: str | torch.device = "cpu", **train_kwargs: Any
                     ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The cached object prior for these data and parameters, training (and caching) it if needed.

    The cache file (`object_prior_path`) stores the state_dict, the info and the key: the training
    parameters (backbone, image_size, epochs, batch_size, lr, seed) and `data_fingerprint`. A file
    with another key is retrained and replaced; the write is atomic (temporary file + os.replace).
    Processes asking at once take turns on a lock (`<cache_dir>/locks/objectprior-<profile>-seed<seed>.lock`):
    the first trains, the others wait and then read its file.

    Args:
        cache_dir, profile: where to cache (see `object_prior_path`).
        images, labels, seed, device, train_kwargs: as `pretrain_object_prior`.

    Returns:
        (state_dict, info) with info["cached"] True when read from the cache, and info["path"].
    """
    defaults = inspect.signature(pretrain_object_prior).parameters
    params = {name: defaults[name].default
              for name in ("backbone", "image_size", "epochs", "batch_size", "lr", "cpu_threads")}
    unknown = set(train_kwargs) - set(params)
    if unknown:
        raise ValueError(f"unknown object-prior parameters {sorted(unknown)}; known: {sorted(params)}")
    params.update(train_kwargs)
    key = {**params, "seed": int(seed), "data": data_fingerprint(images, labels)}
    path = object_prior_path(cache_dir, profile, seed)
    # One process trains, the others wait and read its file (on GPU two trainings may differ).
    lock = Path(cache_dir) / "locks" / f"objectprior-{path.stem}.lock"  # not in objectprior/: only weights there
    with exclusive(lock, f"pretraining the object prior {path}"):
        if path.is_file():
            stored = load_weights_file(path)
            stored_key = stored.get("key") if isinstance(stored, dict) else None
            if json.dumps(stored_key, sort_keys=True) == json.dumps(key, sort_keys=True):
                return stored["state_dict"], {**stored["info"], "cached": True, "path": str(path)}
        state, info = pretrain_object_prior(images, labels, seed=seed, device=device, **params)
        atomic_torch_save({"state_dict": state, "info": info, "key": key}, path)
    return state, {**info, "cached": False, "path": str(path)}
