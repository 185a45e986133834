"""Frame loading and the image geometry that training and evaluation run.

The original EZ-VSL / SLAVC loaders (`datasets.py:get_train_dataset`, `get_test_dataset`) open each
frame with `Image.open(path).convert('RGB')` and apply torchvision transforms on the PIL image:

- train: Resize(int(224 * 1.1) = 246, bicubic; the shorter side) → RandomCrop(224) →
  RandomHorizontalFlip(0.5) → ToTensor → Normalize(ImageNet mean, std);
- test: Resize((224, 224), bicubic) — a squash, no crop, so full-frame boxes stay aligned — →
  ToTensor → Normalize(ImageNet mean, std).

This module is the one implementation of that geometry in the package, split where the tensor
cache (`vslrepro.data.caches`) splits it: the deterministic resize happens once, when a frame is
decoded (`resize_for_train`, `resize_for_test`, both PIL bicubic exactly as torchvision's Resize
on a PIL image); the random crop and flip happen per sample and epoch on the cached uint8 array
(`crop_offsets`, `random_crop_flip`), with an explicit generator instead of torch's global RNG;
ToTensor + Normalize are fused into `normalize_images`, applied to a uint8 batch on the training
device. The tests check pixel equality with torchvision's `functional.resize`, `crop` and `hflip`.
See docs/data.md for the data layout and the transforms.

Deviation: a missing, unreadable or truncated frame raises a DataError naming the file, where the
official dataset silently returned another random sample.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from vslrepro.data.errors import DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # per-channel RGB mean of ImageNet (official Normalize)
IMAGENET_STD = (0.229, 0.224, 0.225)  # per-channel RGB std of ImageNet
TRAIN_RESIZE_FACTOR = 1.1  # train: shorter side resized to int(size * 1.1) before the random crop


def load_frame(path: str | Path) -> Image.Image:
    """Open a frame as an RGB PIL image, fully decoded.

    The whole file is decoded here (`Image.load`), so a truncated JPEG fails now, with its name,
    rather than later inside a transform.

    Args:
        path: the `.jpg` (any format PIL reads).

    Returns:
        An RGB `PIL.Image.Image` detached from the file.

    Raises:
        DataError: the file is missing, not an image, or truncated/corrupt.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: frame not found")
    return _decode(path, path)


def decode_frame(data: bytes, source: str | Path) -> Image.Image:
    """`load_frame` on a frame file's bytes held in memory (the compressed training cache keeps the
    original JPEG bytes): the same decoder on the same bytes, hence the same pixels.

    Raises:
        DataError: the bytes are not a readable image, naming `source` (the file they came from).
    """
    return _decode(io.BytesIO(data), source)


def _decode(stream, source: str | Path) -> Image.Image:
    """Open, fully decode (`Image.load`) and convert to RGB a frame from a path or a byte stream."""
    try:
        with Image.open(stream) as image:
            image.load()
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DataError(f"{source}: unreadable or truncated image ({error})") from error


def train_side(size: int) -> int:
    """The shorter side of a training frame before its random crop: int(size * 1.1) (246 for 224)."""
    return int(size * TRAIN_RESIZE_FACTOR)


def shorter_side_shape(width: int, height: int, shorter: int) -> tuple[int, int]:
    """(width, height) after resizing the shorter side to `shorter`, keeping the aspect ratio.

    The long side is `int(shorter * long / short)` (truncated), as torchvision's
    `transforms.functional.resize(img, shorter)` computes it (`_compute_resized_output_size`).
    """
    if width <= height:
        return shorter, int(shorter * height / width)
    return int(shorter * width / height), shorter


def resize_for_train(image: Image.Image, size: int) -> Image.Image:
    """The official train resize: shorter side to `train_side(size)`, bicubic, aspect ratio kept.

    Equals torchvision's `Resize(int(size * 1.1), InterpolationMode.BICUBIC)` on a PIL image.
    """
    return image.resize(shorter_side_shape(*image.size, train_side(size)), Image.BICUBIC)


def resize_for_test(image: Image.Image, size: int) -> Image.Image:
    """The official test resize: squash to (size, size), bicubic (Resize((size, size), BICUBIC))."""
    return image.resize((size, size), Image.BICUBIC)


def to_chw(image: Image.Image) -> np.ndarray:
    """An RGB PIL image as a contiguous uint8 (3, H, W) array."""
    return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1).copy()  # (H, W, 3) -> (3, H, W)


def crop_offsets(height: int, width: int, size: int, generator: torch.Generator) -> tuple[int, int]:
    """Draw the (top, left) corner of a uniform random size × size crop (as RandomCrop(size)).

    Draw order: for a square frame one `torch.randint(0, side - size + 1, (2,))` gives (top, left);
    otherwise `top` is drawn first in [0, height - size], then `left` in [0, width - size], each
    with its own `torch.randint(..., (1,))` call. Both from `generator`.

    Raises:
        ValueError: the frame is smaller than the crop.
    """
    if height < size or width < size:
        raise ValueError(f"a {size} px crop does not fit in a {height} x {width} frame")
    if height == width:
        top, left = torch.randint(0, height - size + 1, (2,), generator=generator).tolist()
    else:
        top = int(torch.randint(0, height - size + 1, (1,), generator=generator))
        left = int(torch.randint(0, width - size + 1, (1,), generator=generator))
    return top, left


def centre_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The central size × size crop of a (3, H, W) frame, with torchvision CenterCrop's corner
    (int(round((H − size) / 2)), int(round((W − size) / 2))); the frame itself when it is size × size.

    Raises:
        ValueError: the frame is smaller than the crop.
    """
    height, width = image.shape[-2], image.shape[-1]
    if height < size or width < size:
        raise ValueError(f"a {size} px crop does not fit in a {height} x {width} frame")
    top, left = int(round((height - size) / 2.0)), int(round((width - size) / 2.0))
    return image[:, top:top + size, left:left + size]


def random_crop_flip(image: np.ndarray | torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """RandomCrop(size) then RandomHorizontalFlip(0.5) of one uint8 (3, H, W) frame.

    The crop corner comes from `crop_offsets`, then one `torch.rand(())` draw: flipped when < 0.5.

    Args:
        image: (3, H, W) array or tensor (a memory-mapped view is fine: only the crop is copied).
        size: crop side.
        generator: a CPU `torch.Generator`.

    Returns:
        A new (3, size, size) tensor of the image's dtype.
    """
    top, left = crop_offsets(image.shape[-2], image.shape[-1], size, generator)
    crop = image[:, top:top + size, left:left + size]
    if isinstance(crop, np.ndarray):
        crop = torch.from_numpy(np.array(crop))  # copies the crop out of a (memory-mapped) array
    else:
        crop = crop.clone(memory_format=torch.contiguous_format)
    if torch.rand((), generator=generator) < 0.5:
        crop = crop.flip(-1)
    return crop


def normalize_images(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float32 ImageNet-normalized (ToTensor + Normalize), on the images' device."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    return (images.float() / 255.0 - mean) / std
