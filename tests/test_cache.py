"""The tensor cache: decoded once, reused, deterministic augmentation, clear errors."""

import numpy as np
import pytest
import soundfile
import torch
from PIL import Image

from vslrepro.data.cache import AudioParams, CachedPairs, build_cache, normalize_images
from vslrepro.data.errors import DataError, SkipLog

AUDIO = AudioParams(duration=1.0, nperseg=128, noverlap=4)


def _clip(root, clip, color, size=(80, 64)):
    (root / "frames").mkdir(parents=True, exist_ok=True)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(root / "frames" / f"{clip}.jpg", quality=95)
    t = np.arange(12000) / 8000
    soundfile.write(root / "audio" / f"{clip}.wav", 0.3 * np.sin(2 * np.pi * 440 * t), 8000, subtype="PCM_16")


@pytest.fixture
def media(tmp_path):
    root = tmp_path / "data"
    for i, color in enumerate(["red", "lime", "blue"]):
        _clip(root, f"c{i}", color)
    return root


def test_shapes_and_reuse(media, tmp_path):
    pairs = [("c0", "c0"), ("c1", "c2")]
    cache = build_cache(media, pairs, tmp_path / "cache", mode="train", size=56, audio=AUDIO)
    assert cache.images.shape == (2, 3, 61, 61) and cache.images.dtype == np.uint8
    assert cache.specs.shape == (2, 1, 65, 64)
    test = build_cache(media, pairs, tmp_path / "cache", mode="test", size=56, audio=AUDIO)
    assert test.images.shape == (2, 3, 56, 56)
    assert test.folder != cache.folder  # the key separates train and test geometry
    again = build_cache(media, pairs, tmp_path / "cache", mode="train", size=56, audio=AUDIO)
    assert again.folder == cache.folder
    assert list(again.pairs) == pairs
    # the second pair's frame is lime (0, 255, 0) and its sound is c2's
    assert again.images[1, 1].mean() > 200 and again.images[1, 0].mean() < 50


def test_missing_media_names_the_file_or_is_skipped(media, tmp_path):
    pairs = [("c0", "c0"), ("c1", "gone")]
    with pytest.raises(DataError, match="gone.wav"):
        build_cache(media, pairs, tmp_path / "cache", mode="test", size=56, audio=AUDIO)
    skip = SkipLog()
    cache = build_cache(media, pairs, tmp_path / "cache", mode="test", size=56, audio=AUDIO, skip=skip)
    assert list(cache.pairs) == [("c0", "c0")]
    assert len(skip) == 1 and "gone.wav" in skip.entries[0].reason


def test_augmentation_is_seeded_by_epoch_and_index(media, tmp_path):
    cache = build_cache(media, [("c0", "c0"), ("c1", "c1")], tmp_path / "cache", mode="train", size=56, audio=AUDIO)
    data = CachedPairs(cache, size=56, train=True, seed=3)
    data.set_epoch(2)
    first = data[1][0]
    assert first.shape == (3, 56, 56)
    assert torch.equal(first, data[1][0])  # same (seed, epoch, index) -> same crop and flip
    other = CachedPairs(cache, size=56, train=True, seed=3)
    other.set_epoch(2)
    assert torch.equal(first, other[1][0])


def test_normalize_images_matches_imagenet_stats():
    images = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    out = normalize_images(images)
    assert torch.allclose(out[0, :, 0, 0], torch.tensor([(1 - 0.485) / 0.229, (1 - 0.456) / 0.224, (1 - 0.406) / 0.225]))
