"""The cached training crop: the official geometry on any frame, bit-identical to the old cache on squares.

`legacy_*` below is a frozen copy of the training-image path before the train cache kept the
aspect ratio (cache version 1: resize the shorter side with round(), centre-crop to an L x L square,
then a random crop + flip per sample). The committed smoke/quick results were computed with it on
the synthetic benchmark's square frames, so on square frames the new path must give the same bytes.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from vslrepro.data.caches import AudioParams, CachedPairs, build_cache
from vslrepro.data.formats import images as geometry
from vslrepro.data.formats.images import load_frame

AUDIO = AudioParams(duration=1.0, nperseg=128, noverlap=4)


def legacy_frame_array(path, mode: str, size: int) -> np.ndarray:
    """Frozen copy of cache version 1's `_frame_array`."""
    image = load_frame(path)
    if mode == "test":
        image = image.resize((size, size), Image.BICUBIC)
    else:
        side = int(size * 1.1)
        w, h = image.size
        scale = side / min(w, h)
        image = image.resize((max(side, round(w * scale)), max(side, round(h * scale))), Image.BICUBIC)
        w, h = image.size
        left, top = (w - side) // 2, (h - side) // 2
        image = image.crop((left, top, left + side, top + side))
    return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1).copy()


def legacy_item(images: np.ndarray, index: int, *, size: int, seed: int, epoch: int) -> torch.Tensor:
    """Frozen copy of cache version 1's `CachedPairs.__getitem__` (train mode, image only)."""
    image = torch.from_numpy(np.array(images[index]))  # (3, L, L) uint8
    seed = np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0]
    gen = torch.Generator().manual_seed(int(seed))
    side = image.shape[-1]
    top, left = torch.randint(0, side - size + 1, (2,), generator=gen).tolist()
    image = image[:, top:top + size, left:left + size]
    if torch.rand((), generator=gen) < 0.5:
        image = image.flip(-1)
    return image


def write_media(root, sizes: dict[str, tuple[int, int]]) -> None:
    (root / "frames").mkdir(parents=True, exist_ok=True)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    for k, (clip, (w, h)) in enumerate(sizes.items()):
        pixels = np.random.default_rng(k).integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "frames" / f"{clip}.jpg", quality=90)
        t = np.arange(8000) / 8000
        soundfile.write(root / "audio" / f"{clip}.wav", 0.3 * np.sin(2 * np.pi * 440 * t), 8000, subtype="PCM_16")


def assert_same_as_legacy(root, clips: list[str], folder, size: int) -> None:
    pairs = [(c, c) for c in clips]
    cache = build_cache(root, pairs, folder, mode="train", size=size, audio=AUDIO)
    legacy = np.stack([legacy_frame_array(root / "frames" / f"{c}.jpg", "train", size) for c in clips])
    for i in range(len(clips)):
        assert np.array_equal(cache.image(i), legacy[i])
    for seed in (0, 3):
        data = CachedPairs(cache, size=size, train=True, seed=seed)
        for epoch in (0, 1, 7):
            data.set_epoch(epoch)
            for i in range(len(clips)):
                expected = legacy_item(legacy, i, size=size, seed=seed, epoch=epoch)
                assert torch.equal(data[i][0], expected), (seed, epoch, i)


@pytest.mark.parametrize("side,size", [(64, 56), (61, 56), (100, 56), (256, 224), (40, 32)])
def test_square_frames_bit_identical_to_legacy_cache(tmp_path, side, size):
    clips = {f"s{k}": (side, side) for k in range(6)}
    write_media(tmp_path / "data", clips)
    assert_same_as_legacy(tmp_path / "data", list(clips), tmp_path / "cache", size)


def test_synthetic_benchmark_train_batches_unchanged(smoke_params, tmp_path):
    """The embedded benchmark's (square, 64 px) training frames: same cached bytes, same batches."""
    from vslrepro.data.datasets import locate as dataset_config
    from vslrepro.data.formats.lists import read_id_list

    size = smoke_params["input"]["image_size"]
    for name in ("flickr", "vggss"):
        cfg = dataset_config(smoke_params, name)
        clips = read_id_list(cfg.train_list)[:24]
        width, height = Image.open(cfg.train_root / "frames" / f"{clips[0]}.jpg").size
        assert width == height  # the synthetic frames are square
        assert_same_as_legacy(cfg.train_root, clips, tmp_path / name, size)


@pytest.mark.parametrize("width,height", [(128, 72), (72, 128), (100, 75), (90, 91), (64, 64)])
def test_cached_items_equal_official_resize_crop_flip(tmp_path, width, height):
    """JPEG -> train cache -> CachedPairs equals torchvision Resize(int(1.1 size)) -> crop -> hflip."""
    write_media(tmp_path / "data", {"clip": (width, height)})
    size, seed = 56, 5
    cache = build_cache(tmp_path / "data", [("clip", "clip")], tmp_path / "cache", mode="train", size=size,
                        audio=AUDIO)
    resized = TF.resize(load_frame(tmp_path / "data" / "frames" / "clip.jpg"), int(size * 1.1),
                        interpolation=InterpolationMode.BICUBIC)
    assert cache.image(0).shape == (3, resized.size[1], resized.size[0])
    data = CachedPairs(cache, size=size, train=True, seed=seed)
    corners, flips = set(), set()
    for epoch in range(40):
        data.set_epoch(epoch)
        gen = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, epoch, 0]).generate_state(1)[0]))
        top, left = geometry.crop_offsets(resized.size[1], resized.size[0], size, gen)
        flip = bool(torch.rand((), generator=gen) < 0.5)
        reference = TF.crop(resized, top, left, size, size)
        reference = TF.hflip(reference) if flip else reference
        expected = torch.from_numpy(np.asarray(reference).transpose(2, 0, 1).copy())
        assert torch.equal(data[0][0], expected), (epoch, top, left, flip)
        corners.add((top, left))
        flips.add(flip)
    assert len(corners) > 5 and flips == {True, False}


@pytest.mark.parametrize("height, width, size", [(61, 108, 56), (246, 437, 224), (56, 56, 56), (57, 60, 56)])
def test_centre_crop_equals_torchvision_center_crop(height, width, size):
    frame = torch.randint(0, 256, (3, height, width), dtype=torch.uint8)
    ours = geometry.centre_crop(frame.numpy(), size)
    np.testing.assert_array_equal(ours, TF.center_crop(frame, [size, size]).numpy())


def test_training_data_pass_is_central_crops_in_index_order(tmp_path):
    """`TrainingData.batches()` (the between-epoch pass a method's `begin_epoch` may take) gives
    every training pair once, in index order, as normalized central crops of the cached frames."""
    from vslrepro.data.formats.images import normalize_images
    from vslrepro.train import TrainingData

    rng = np.random.default_rng(0)
    for i, (w, h) in enumerate([(80, 60), (60, 90), (70, 70)]):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(tmp_path / f"c{i}.jpg")
        soundfile.write(tmp_path / f"c{i}.wav", rng.uniform(-0.5, 0.5, 16000).astype(np.float32), 16000)
    (tmp_path / "frames").mkdir()
    (tmp_path / "audio").mkdir()
    for i in range(3):
        (tmp_path / f"c{i}.jpg").rename(tmp_path / "frames" / f"c{i}.jpg")
        (tmp_path / f"c{i}.wav").rename(tmp_path / "audio" / f"c{i}.wav")
    cache = build_cache(tmp_path, [(f"c{i}", f"c{i}") for i in range(3)], tmp_path / "cache",
                        mode="train", size=56, audio=AUDIO)
    data = TrainingData(cache, size=56, batch_size=2, device=torch.device("cpu"))
    batches = list(data.batches())
    assert len(data) == 3 and [b[2].tolist() for b in batches] == [[0, 1], [2]]
    for images, specs, indices in batches:
        for image, spec, index in zip(images, specs, indices):
            frame = torch.from_numpy(np.array(cache.image(int(index))))
            expected = normalize_images(TF.center_crop(frame, [56, 56]).unsqueeze(0))[0]
            torch.testing.assert_close(image, expected, rtol=0, atol=0)
            torch.testing.assert_close(spec, torch.from_numpy(np.array(cache.specs[int(index)])))
