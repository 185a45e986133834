"""Frame loading and the image geometry (vslrepro.data.formats.images) against the official torchvision transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from vslrepro.data.errors import DataError
from vslrepro.data.formats import images


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


def official_train_transform(size: int = 224) -> transforms.Compose:
    """EZ-VSL / SLAVC `datasets.py:get_train_dataset`, as released (the reference, not package code)."""
    return transforms.Compose([
        transforms.Resize(int(size * 1.1), interpolation=InterpolationMode.BICUBIC),
        transforms.RandomCrop(size),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(images.IMAGENET_MEAN, images.IMAGENET_STD),
    ])


def official_test_transform(size: int = 224) -> transforms.Compose:
    """EZ-VSL / SLAVC `datasets.py:get_test_dataset`: squash to (size, size), no crop."""
    return transforms.Compose([
        transforms.Resize((size, size), interpolation=InterpolationMode.BICUBIC),
        transforms.ToTensor(),
        transforms.Normalize(images.IMAGENET_MEAN, images.IMAGENET_STD),
    ])


def noise_image(width: int, height: int, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB")


def chw(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image).transpose(2, 0, 1).copy())  # (H, W, 3) -> (3, H, W)


FRAME_SIZES = [(1280, 720), (640, 360), (720, 1280), (500, 375), (333, 500), (300, 301), (247, 246),
               (256, 256), (64, 64), (60, 61)]


def test_imagenet_constants():
    assert images.IMAGENET_MEAN == (0.485, 0.456, 0.406) and images.IMAGENET_STD == (0.229, 0.224, 0.225)
    assert images.train_side(224) == 246 and images.train_side(56) == 61


@pytest.mark.parametrize("width,height", FRAME_SIZES)
@pytest.mark.parametrize("size", [224, 56])
def test_train_resize_equals_torchvision_resize(width, height, size):
    image = noise_image(width, height)
    ours = images.resize_for_train(image, size)
    reference = TF.resize(image, int(size * 1.1), interpolation=InterpolationMode.BICUBIC)
    assert ours.size == reference.size  # the long side is truncated as torchvision does
    assert min(ours.size) == int(size * 1.1)
    assert np.array_equal(np.asarray(ours), np.asarray(reference))


def test_train_resize_long_side_rounding():
    # 16:9 at 224: 246 * 1280 / 720 = 437.33 -> 437; 4:3: 246 * 4 / 3 = 328 (exact)
    assert images.shorter_side_shape(1280, 720, 246) == (437, 246)
    assert images.shorter_side_shape(720, 1280, 246) == (246, 437)
    assert images.shorter_side_shape(400, 300, 246) == (328, 246)
    assert images.shorter_side_shape(300, 300, 246) == (246, 246)
    for w, h in [(1280, 720), (641, 359), (1000, 3), (3, 1000), (999, 998)]:
        expected = TF._compute_resized_output_size((h, w), [246])  # [new_h, new_w]
        assert images.shorter_side_shape(w, h, 246) == (expected[1], expected[0])


@pytest.mark.parametrize("width,height", FRAME_SIZES)
@pytest.mark.parametrize("size", [224, 56])
def test_test_resize_equals_torchvision_squash(width, height, size):
    image = noise_image(width, height, seed=1)
    ours = images.resize_for_test(image, size)
    reference = TF.resize(image, [size, size], interpolation=InterpolationMode.BICUBIC)
    assert ours.size == (size, size)
    assert np.array_equal(np.asarray(ours), np.asarray(reference))
    # and the normalized tensor equals the official test transform's output, bit for bit
    batch = torch.from_numpy(images.to_chw(ours))[None]
    assert torch.equal(images.normalize_images(batch)[0], official_test_transform(size)(image))


@pytest.mark.parametrize("width,height", FRAME_SIZES)
@pytest.mark.parametrize("size", [224, 56])
def test_cached_train_path_equals_official_crop_and_flip(width, height, size):
    """resize_for_train -> random_crop_flip == torchvision resize -> crop at the drawn corner -> hflip."""
    image = noise_image(width, height, seed=2)
    frame = images.to_chw(images.resize_for_train(image, size))  # what the train cache stores
    resized = TF.resize(image, int(size * 1.1), interpolation=InterpolationMode.BICUBIC)
    flips = set()
    for seed in range(12):
        out = images.random_crop_flip(frame, size, torch.Generator().manual_seed(seed))
        gen = torch.Generator().manual_seed(seed)  # replay the draws: corner, then flip
        top, left = images.crop_offsets(frame.shape[1], frame.shape[2], size, gen)
        flip = bool(torch.rand((), generator=gen) < 0.5)
        flips.add(flip)
        reference = TF.crop(resized, top, left, size, size)
        if flip:
            reference = TF.hflip(reference)
        assert out.shape == (3, size, size) and out.dtype == torch.uint8
        assert torch.equal(out, chw(reference)), (seed, top, left, flip)
        # ToTensor + Normalize of the official chain == normalize_images of our uint8 crop
        official = TF.normalize(TF.to_tensor(reference), images.IMAGENET_MEAN, images.IMAGENET_STD)
        assert torch.equal(images.normalize_images(out[None])[0], official)
    assert flips == {True, False}


def test_crop_offsets_cover_the_whole_long_side():
    """For a 16:9 frame the crop moves along all of the long side (not only a centre square)."""
    h, w, size = 246, 437, 224
    corners = [images.crop_offsets(h, w, size, torch.Generator().manual_seed(s)) for s in range(3000)]
    tops, lefts = zip(*corners)
    assert min(tops) == 0 and max(tops) == h - size
    assert min(lefts) == 0 and max(lefts) == w - size  # a centre 246 square would stop at 95 + 22
    portrait = [images.crop_offsets(w, h, size, torch.Generator().manual_seed(s)) for s in range(3000)]
    assert max(t for t, _ in portrait) == w - size and max(left for _, left in portrait) == h - size
    with pytest.raises(ValueError, match="does not fit"):
        images.crop_offsets(200, 300, 224, torch.Generator())


def test_crop_offsets_draw_order():
    # square: one (2,) draw; otherwise top then left, one draw each
    gen = torch.Generator().manual_seed(5)
    assert images.crop_offsets(61, 61, 56, gen) == tuple(
        torch.randint(0, 6, (2,), generator=torch.Generator().manual_seed(5)).tolist())
    gen, ref = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    top = int(torch.randint(0, 23, (1,), generator=ref))
    left = int(torch.randint(0, 214, (1,), generator=ref))
    assert images.crop_offsets(246, 437, 224, gen) == (top, left)


def test_random_crop_flip_accepts_tensors_and_views():
    frame = np.arange(3 * 70 * 90, dtype=np.int64).reshape(3, 70, 90).astype(np.uint8)
    from_array = images.random_crop_flip(frame, 56, torch.Generator().manual_seed(3))
    from_tensor = images.random_crop_flip(torch.from_numpy(frame), 56, torch.Generator().manual_seed(3))
    assert torch.equal(from_array, from_tensor) and from_array.is_contiguous()


def test_official_chain_statistics_match_ours():
    """The released Compose (global RNG) and ours give crops of the same distribution family:
    same shape, both flip, both move along the long side."""
    pixels = np.zeros((200, 300, 3), np.uint8)
    pixels[:, :150] = 255
    image = Image.fromarray(pixels)
    torch.manual_seed(0)
    assert official_train_transform()(image).shape == (3, 224, 224)
    frame = images.to_chw(images.resize_for_train(image, 224))
    assert frame.shape == (3, 246, 369)
    crops = [images.random_crop_flip(frame, 224, torch.Generator().manual_seed(s)) for s in range(20)]
    left_white = [bool(crop[0, :, 0].float().mean() > 0) for crop in crops]
    assert any(left_white) and not all(left_white)  # horizontal flips happen, not always


def test_normalize_images():
    batch = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    out = images.normalize_images(batch)
    assert out.dtype == torch.float32
    expected = torch.tensor([(1 - 0.485) / 0.229, (1 - 0.456) / 0.224, (1 - 0.406) / 0.225])
    torch.testing.assert_close(out[0, :, 0, 0], expected)


def test_test_resize_keeps_the_full_frame():
    pixels = np.zeros((100, 300, 3), np.uint8)
    pixels[:, :150] = 255  # left half white: after a squash the left half of the output is white
    out = images.to_chw(images.resize_for_test(Image.fromarray(pixels), 224))
    assert out[0, :, :100].min() > 240 and out[0, :, 124:].max() < 15
