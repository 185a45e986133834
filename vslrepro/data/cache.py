"""Decode frames and compute spectrograms once per dataset; reuse them across methods and epochs.

The official loaders decode a JPEG and run an FFT for every sample of every epoch; on 2 CPU cores
(or feeding an H100) that, not the model, bounds training speed. We decode once into a tensor
cache on disk (NumPy `.npy`, memory-mapped), keyed by everything that changes its content:

- images as uint8 (N, 3, L, L): for training L = int(1.1 * size) (the official Resize(246) for
  224), centre-cropped to a square when the frame is not square — the random 224 crop and the flip
  are then done per sample from this tensor (deviation: the official crop can also move along the
  long side of a non-square frame); for testing L = size (the official squash to (size, size)).
- spectrograms as float32 (N, 1, F, T) with the official centred crop and log-PSD / 12.

`CachedPairs` turns a cache into a torch Dataset whose augmentation is seeded by (seed, epoch,
index), so results do not depend on the number of DataLoader workers, nor on an interruption.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from vslrepro.atomic import atomic_np_save
from vslrepro.data.audio import load_audio, log_spectrogram
from vslrepro.data.errors import DataError, SkipLog
from vslrepro.data.images import IMAGENET_MEAN, IMAGENET_STD, load_frame

CACHE_VERSION = 1


@dataclass(frozen=True)
class AudioParams:
    """How a clip becomes a spectrogram (design §4.1)."""

    duration: float = 3.0
    nperseg: int = 512
    noverlap: int = 274


def _frame_array(path: Path, mode: str, size: int) -> np.ndarray:
    """Decode one frame to uint8 (3, L, L) following the train or test geometry."""
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
    return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1).copy()  # (H, W, 3) -> (3, H, W)


def _spectrogram(path: Path, audio: AudioParams) -> np.ndarray:
    wave, rate = load_audio(path, audio.duration)
    spec = log_spectrogram(torch.from_numpy(wave), rate, audio.nperseg, audio.noverlap)
    return spec.unsqueeze(0).numpy()  # (F, T) -> (1, F, T)


def cache_key(root: Path, pairs: Sequence[tuple[str, str]], mode: str, size: int, audio: AudioParams) -> str:
    """A short hash of everything the cached tensors depend on."""
    digest = hashlib.sha256()
    digest.update(json.dumps([CACHE_VERSION, str(Path(root).resolve()), mode, size,
                              audio.duration, audio.nperseg, audio.noverlap]).encode())
    for video, sound in pairs:
        digest.update(f"{video}\t{sound}\n".encode())
    return digest.hexdigest()[:16]


@dataclass
class TensorCache:
    """Memory-mapped images (N, 3, L, L) uint8 and spectrograms (N, 1, F, T) float32."""

    images: np.ndarray
    specs: np.ndarray
    pairs: list[tuple[str, str]]
    folder: Path

    def __len__(self) -> int:
        return len(self.pairs)


def build_cache(root: str | Path, pairs: Sequence[tuple[str, str]], folder: str | Path, *,
                mode: str, size: int, audio: AudioParams, skip: SkipLog | None = None,
                progress: bool = False) -> TensorCache:
    """Decode `pairs` = [(video id, audio id)] under `root` into `folder/<key>/`, or reuse it.

    Raises:
        DataError: a frame or WAV is missing or unreadable (names the file and the id), unless
            `skip` is given, in which case the pair is recorded there and left out.
    """
    if mode not in ("train", "test"):
        raise ValueError(f"mode must be 'train' or 'test', got {mode!r}")
    root = Path(root)
    target = Path(folder) / cache_key(root, pairs, mode, size, audio)
    if (target / "done.json").is_file():
        return load_cache(target)
    images, specs, kept = [], [], []
    iterator = pairs
    if progress:
        from tqdm.auto import tqdm
        iterator = tqdm(pairs, desc=f"caching {root.name} ({mode})", leave=False)
    for video, sound in iterator:
        try:
            image = _frame_array(root / "frames" / f"{video}.jpg", mode, size)
            spec = _spectrogram(root / "audio" / f"{sound}.wav", audio)
        except DataError as error:
            if skip is None:
                raise DataError(f"pair (video={video}, audio={sound}): {error}") from error
            skip.handle(error, video if sound == video else f"{video}/{sound}")
            continue
        images.append(image)
        specs.append(spec)
        kept.append((video, sound))
    if not kept:
        raise DataError(f"no readable pair among {len(pairs)} listed under {root}")
    if len({s.shape for s in specs}) > 1:
        raise DataError(f"spectrogram shapes differ under {root}: {sorted({s.shape for s in specs})}; "
                        "clips must share one sample rate")
    target.mkdir(parents=True, exist_ok=True)
    atomic_np_save(np.stack(images), target / "images.npy")
    atomic_np_save(np.stack(specs).astype(np.float32), target / "specs.npy")
    (target / "pairs.json").write_text(json.dumps(kept))
    (target / "done.json").write_text(json.dumps({"n": len(kept), "mode": mode, "size": size,
                                                  "root": str(root)}))
    return load_cache(target)


def load_cache(folder: str | Path) -> TensorCache:
    """Open a finished cache folder memory-mapped."""
    folder = Path(folder)
    pairs = [tuple(p) for p in json.loads((folder / "pairs.json").read_text())]
    return TensorCache(np.load(folder / "images.npy", mmap_mode="r"),
                       np.load(folder / "specs.npy", mmap_mode="r"), pairs, folder)


class CachedPairs(Dataset):
    """(uint8 image (3, size, size), spectrogram (1, F, T), index) from a TensorCache.

    In `train` mode each item is randomly cropped to `size` and flipped with a generator seeded by
    (seed, epoch, index): the same epoch gives the same batch content whatever the workers.
    """

    def __init__(self, cache: TensorCache, *, size: int, train: bool, seed: int = 0) -> None:
        self.cache, self.size, self.train, self.seed = cache, size, train, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.cache)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        image = torch.from_numpy(np.array(self.cache.images[index]))  # (3, L, L) uint8
        spec = torch.from_numpy(np.array(self.cache.specs[index]))    # (1, F, T) float32
        if self.train:
            seed = np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1)[0]
            gen = torch.Generator().manual_seed(int(seed))
            side = image.shape[-1]
            top, left = torch.randint(0, side - self.size + 1, (2,), generator=gen).tolist()
            image = image[:, top:top + self.size, left:left + self.size]
            if torch.rand((), generator=gen) < 0.5:
                image = image.flip(-1)
        return image, spec, index


def normalize_images(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float ImageNet-normalized, on the images' device."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    return (images.float() / 255.0 - mean) / std
