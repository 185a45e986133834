"""The tensor cache: decoded once, reused, deterministic augmentation, clear errors."""

import numpy as np
import pytest
import soundfile
import torch
from PIL import Image

from vslrepro.data.caches import AudioParams, CachedPairs, TensorCache, build_cache, load_cache
from vslrepro.data.errors import DataError, SkipLog
from vslrepro.data.formats import images as geometry

AUDIO = AudioParams(duration=1.0, nperseg=128, noverlap=4)


def _clip(root, clip, color, size=(80, 64), rate=8000):
    """One clip in the dataset layout: a JPEG frame (a colour or noise) and 1.5 s of a 440 Hz tone."""
    (root / "frames").mkdir(parents=True, exist_ok=True)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    if color == "noise":
        pixels = np.random.default_rng(sum(map(ord, clip))).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "frames" / f"{clip}.jpg", quality=95)
    else:
        Image.new("RGB", size, color).save(root / "frames" / f"{clip}.jpg", quality=95)
    t = np.arange(int(1.5 * rate)) / rate
    soundfile.write(root / "audio" / f"{clip}.wav", 0.3 * np.sin(2 * np.pi * 440 * t), rate, subtype="PCM_16")


@pytest.fixture
def media(tmp_path):
    root = tmp_path / "data"
    for i, color in enumerate(["red", "lime", "blue"]):
        _clip(root, f"c{i}", color)
    return root


def test_shapes_and_reuse(media, tmp_path):
    pairs = [("c0", "c0"), ("c1", "c2")]
    cache = build_cache(media, pairs, tmp_path / "cache", mode="train", size=56, audio=AUDIO)
    # 80 x 64 frames: shorter side int(1.1 * 56) = 61, long side int(61 * 80 / 64) = 76, stored ragged
    assert cache.shapes.tolist() == [[61, 76], [61, 76]]
    assert cache.images.shape == (2 * 3 * 61 * 76,) and cache.images.dtype == np.uint8
    assert cache.image(1).shape == (3, 61, 76)
    assert isinstance(cache.images, np.memmap)
    assert cache.specs.shape == (2, 1, 65, 64)
    test = build_cache(media, pairs, tmp_path / "cache", mode="test", size=56, audio=AUDIO)
    assert test.images.shape == (2, 3, 56, 56)
    assert test.folder != cache.folder  # the key separates train and test geometry
    again = build_cache(media, pairs, tmp_path / "cache", mode="train", size=56, audio=AUDIO)
    assert again.folder == cache.folder
    assert list(again.pairs) == pairs
    # the second pair's frame is lime (0, 255, 0) and its sound is c2's
    assert again.image(1)[1].mean() > 200 and again.image(1)[0].mean() < 50
    assert test.shapes is None and test.image(1).shape == (3, 56, 56)


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


def test_ragged_train_cache_mixed_orientations(tmp_path):
    root = tmp_path / "data"
    sizes = {"wide": (128, 72), "tall": (60, 90), "square": (64, 64), "four3": (100, 75)}
    for clip, size in sizes.items():
        _clip(root, clip, "noise", size)
    pairs = [(c, c) for c in sizes]
    cache = build_cache(root, pairs, tmp_path / "cache", mode="train", size=56, audio=AUDIO)
    assert (cache.folder / "shapes.npy").is_file()
    expected = {"wide": (61, 108), "tall": (91, 61), "square": (61, 61), "four3": (61, 81)}
    assert [tuple(s) for s in cache.shapes.tolist()] == list(expected.values())
    reopened = load_cache(cache.folder)
    for i, clip in enumerate(sizes):
        frame = geometry.load_frame(root / "frames" / f"{clip}.jpg")
        assert np.array_equal(reopened.image(i), geometry.to_chw(geometry.resize_for_train(frame, 56)))
    data = CachedPairs(reopened, size=56, train=True, seed=1)
    for epoch in range(3):
        data.set_epoch(epoch)
        batch = next(iter(torch.utils.data.DataLoader(data, batch_size=4)))
        assert batch[0].shape == (4, 3, 56, 56) and batch[0].dtype == torch.uint8
    # the wide frame's crops reach both ends of its long side (a centre square would keep 23..28)
    lefts = {geometry.crop_offsets(61, 108, 56, torch.Generator().manual_seed(s))[1] for s in range(500)}
    assert min(lefts) == 0 and max(lefts) == 108 - 56


def test_test_mode_pairs_are_the_squashed_frames(media, tmp_path):
    cache = build_cache(media, [("c0", "c0")], tmp_path / "cache", mode="test", size=56, audio=AUDIO)
    image, spec, index = CachedPairs(cache, size=56, train=False)[0]
    frame = geometry.load_frame(media / "frames" / "c0.jpg")
    assert torch.equal(image, torch.from_numpy(geometry.to_chw(geometry.resize_for_test(frame, 56))))
    assert index == 0 and spec.shape == (1, 65, 64)


def test_in_memory_square_cache_still_works():
    """A caller-built cache of equal-size frames (as `vslrepro.bench._random_cache`) needs no shapes."""
    rng = np.random.default_rng(0)
    cache = TensorCache(rng.integers(0, 256, (5, 3, 61, 61), dtype=np.uint8),
                        rng.standard_normal((5, 1, 8, 8), dtype=np.float32), [(str(i), str(i)) for i in range(5)],
                        folder=None)
    image, _, _ = CachedPairs(cache, size=56, train=True, seed=0)[4]
    assert image.shape == (3, 56, 56)


def test_inconsistent_ragged_cache_is_refused():
    with pytest.raises(DataError, match="do not describe 2 frames"):
        TensorCache(np.zeros(3 * 61 * 61, np.uint8), np.zeros((2, 1, 4, 4), np.float32),
                    [("a", "a"), ("b", "b")], folder=None, shapes=np.array([[61, 61], [61, 70]]))
