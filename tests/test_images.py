"""Frame loading and the official image transforms (vslrepro.data.images)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vslrepro.data import images
from vslrepro.data.errors import DataError


def write_jpeg(path, width=64, height=48, mode="RGB", quality=95) -> np.ndarray:
    rng = np.random.default_rng(0)
    gradient = np.linspace(0, 255, width, dtype=np.float64)[None, :, None] * np.ones((height, 1, 3))
    pixels = np.clip(gradient + rng.normal(0, 2, gradient.shape), 0, 255).astype(np.uint8)  # (H, W, 3)
    image = Image.fromarray(pixels, "RGB").convert(mode)
    image.save(path, format="JPEG", quality=quality)
    return pixels


def test_jpeg_round_trip(tmp_path):
    pixels = write_jpeg(tmp_path / "frame.jpg")
    frame = images.load_frame(tmp_path / "frame.jpg")
    assert frame.mode == "RGB" and frame.size == (64, 48)
    assert np.abs(np.asarray(frame, dtype=np.int16) - pixels).mean() < 4  # JPEG is lossy


def test_grayscale_becomes_rgb(tmp_path):
    write_jpeg(tmp_path / "gray.jpg", mode="L")
    frame = images.load_frame(tmp_path / "gray.jpg")
    assert frame.mode == "RGB"
    array = np.asarray(frame)
    assert (array[..., 0] == array[..., 1]).all()


def test_truncated_unreadable_and_missing_frames(tmp_path):
    write_jpeg(tmp_path / "whole.jpg", width=256, height=256)
    data = (tmp_path / "whole.jpg").read_bytes()
    (tmp_path / "cut_clip.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="cut_clip.jpg: unreadable or truncated"):
        images.load_frame(tmp_path / "cut_clip.jpg")
    (tmp_path / "text_clip.jpg").write_bytes(b"this is not an image")
    with pytest.raises(DataError, match="text_clip.jpg: unreadable"):
        images.load_frame(tmp_path / "text_clip.jpg")
    with pytest.raises(DataError, match="gone_clip.jpg: frame not found"):
        images.load_frame(tmp_path / "gone_clip.jpg")


def test_test_transform_squashes_and_normalizes():
    image = Image.new("RGB", (320, 180), (255, 0, 128))  # non-square: squashed, not cropped
    tensor = images.test_transform()(image)
    assert tensor.shape == (3, 224, 224) and tensor.dtype == torch.float32
    expected = [(1.0 - 0.485) / 0.229, (0.0 - 0.456) / 0.224, (128 / 255 - 0.406) / 0.225]
    torch.testing.assert_close(tensor.mean(dim=(1, 2)), torch.tensor(expected), rtol=0, atol=1e-5)
    torch.testing.assert_close(tensor.std(dim=(1, 2)), torch.zeros(3), rtol=0, atol=1e-5)
    assert images.test_transform(112)(image).shape == (3, 112, 112)


def test_test_transform_keeps_the_full_frame():
    pixels = np.zeros((100, 300, 3), np.uint8)
    pixels[:, :150] = 255  # left half white: after a squash the left half of the output is white
    tensor = images.test_transform()(Image.fromarray(pixels))
    white = (1.0 - 0.485) / 0.229
    assert tensor[0, :, :100].min() > white - 0.05 and tensor[0, :, 124:].max() < 0


def test_train_transform_shape_randomness_and_flip():
    pixels = np.zeros((200, 300, 3), np.uint8)
    pixels[:, :150] = 255
    image = Image.fromarray(pixels)
    transform = images.train_transform()
    torch.manual_seed(0)
    first = transform(image)
    torch.manual_seed(0)
    assert torch.equal(first, transform(image))  # seeded: reproducible
    assert first.shape == (3, 224, 224)
    torch.manual_seed(1)
    left_white = [bool(transform(image)[0, :, 0].mean() > 0) for _ in range(20)]
    assert any(left_white) and not all(left_white)  # horizontal flips happen, not always
    assert images.IMAGENET_MEAN == (0.485, 0.456, 0.406) and images.IMAGENET_STD == (0.229, 0.224, 0.225)
