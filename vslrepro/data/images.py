"""Frame loading and the official image transforms (EZ-VSL / SLAVC `datasets.py`, methods.md §1.4).

Original: `Image.open(path).convert('RGB')`; train: Resize(int(224 * 1.1) = 246, bicubic, shorter
side) → RandomCrop(224) → RandomHorizontalFlip(0.5) → ToTensor → Normalize(ImageNet); test:
Resize((224, 224), bicubic) — a squash, no crop, so full-frame boxes stay aligned — → ToTensor →
Normalize(ImageNet).

Ours: the same transforms (torchvision v1 on PIL images, hence PIL's bicubic resampling as in the
original). Deviation: a missing, unreadable or truncated frame raises a DataError naming the file,
where the official dataset silently returned another random sample (methods.md §1.6). The train
transform draws from torch's global RNG, as torchvision's random transforms do; seed it (or the
DataLoader's workers) explicitly.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError
from torchvision import transforms
from torchvision.transforms import InterpolationMode

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
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DataError(f"{path}: unreadable or truncated image ({error})") from error


def train_transform(size: int = 224) -> transforms.Compose:
    """The official training transform: PIL image → normalized (3, size, size) float tensor.

    Resize(int(size * 1.1), bicubic) → RandomCrop(size) → RandomHorizontalFlip → ToTensor →
    Normalize(IMAGENET_MEAN, IMAGENET_STD).

    Args:
        size: output side in pixels (official: 224).
    """
    return transforms.Compose(
        [
            transforms.Resize(int(size * TRAIN_RESIZE_FACTOR), interpolation=InterpolationMode.BICUBIC),
            transforms.RandomCrop(size),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def test_transform(size: int = 224) -> transforms.Compose:
    """The official (deterministic) test transform: squash to (size, size), no crop.

    Resize((size, size), bicubic) → ToTensor → Normalize(IMAGENET_MEAN, IMAGENET_STD).

    Args:
        size: output side in pixels (official: 224; the boxes are scaled to this grid).
    """
    return transforms.Compose(
        [
            transforms.Resize((size, size), interpolation=InterpolationMode.BICUBIC),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


# Not a pytest test, even when a test module imports it by name.
test_transform.__test__ = False  # type: ignore[attr-defined]
