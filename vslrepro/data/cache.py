"""Decode frames and compute spectrograms once per dataset; reuse them across methods and epochs.

The official loaders (EZ-VSL / SLAVC `datasets.py`) decode a JPEG and run an FFT for every sample
of every epoch; on 2 CPU cores (or feeding an H100) that, not the model, bounds training speed. We
decode once into a tensor cache on disk (NumPy `.npy`, memory-mapped), keyed by everything that
changes its content. The image geometry is `vslrepro.data.images`'s (details in docs/data.md):

- test caches: `images.npy`, uint8 (N, 3, size, size), each frame squashed to (size, size)
  (`resize_for_test`, the official Resize((size, size), bicubic)).
- train caches: each frame resized so that its shorter side is L = int(1.1 * size) with its aspect
  ratio kept (`resize_for_train`, the official Resize(L), e.g. 246 x 437 for a 16:9 frame at
  size 224). Frames differ in shape, so they are stored ragged: `images.npy` is the flat uint8
  concatenation of the C-ordered (3, h_i, w_i) frames and `shapes.npy` int32 (N, 2) their (h, w);
  frame i starts at sum_{j<i} 3 h_j w_j. The random size x size crop (anywhere in the frame, as
  the official RandomCrop) and the horizontal flip are drawn per sample (`random_crop_flip`).
- spectrograms, both modes: `specs.npy`, float32 (N, 1, F, T) with the official centred crop and
  log-PSD / 12.

`CachedPairs` turns a cache into a torch Dataset whose augmentation is seeded by (seed, epoch,
index), so results do not depend on the number of DataLoader workers, nor on an interruption.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from vslrepro.atomic import atomic_np_save, atomic_write
from vslrepro.data.audio import load_audio, log_spectrogram
from vslrepro.data.errors import DataError, SkipLog
from vslrepro.data.images import centre_crop, load_frame, random_crop_flip, resize_for_test, resize_for_train, to_chw

CACHE_VERSION = 2  # 2: train frames keep their aspect ratio (ragged images.npy + shapes.npy)


@dataclass(frozen=True)
class AudioParams:
    """How a clip becomes a spectrogram: a `duration`-s window centred in the clip, then an STFT
    with `nperseg` and `noverlap` (official EZ-VSL / SLAVC `datasets.py`: 3 s, 512, 274)."""

    duration: float = 3.0
    nperseg: int = 512
    noverlap: int = 274


def _frame_array(path: Path, mode: str, size: int) -> np.ndarray:
    """Decode one frame to uint8 (3, h, w): (3, size, size) for test, shorter side int(1.1 size) for train."""
    image = load_frame(path)
    resize = resize_for_test if mode == "test" else resize_for_train
    return to_chw(resize(image, size))


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
    """Memory-mapped images (uint8) and spectrograms (N, 1, F, T) float32 of N (video, audio) pairs.

    `images` is (N, 3, S, S) when `shapes` is None (test caches; also any caller-built cache of
    equal-size frames), else the flat concatenation of the (3, h, w) frames whose (h, w) are the
    rows of `shapes` (train caches). `image(i)` returns frame i as a (3, h, w) view in both cases.
    """

    images: np.ndarray
    specs: np.ndarray
    pairs: list[tuple[str, str]]
    folder: Path | None
    shapes: np.ndarray | None = None
    offsets: np.ndarray | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        if self.shapes is None:
            return
        if self.shapes.shape == (len(self.pairs), 2):
            sizes = 3 * self.shapes[:, 0].astype(np.int64) * self.shapes[:, 1].astype(np.int64)
            self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)  # (N + 1,)
        if self.offsets is None or self.images.shape != (self.offsets[-1],):
            raise DataError(f"ragged image cache {self.folder}: images {self.images.shape} and shapes "
                            f"{self.shapes.shape} do not describe {len(self.pairs)} frames")

    def __len__(self) -> int:
        return len(self.pairs)

    def image(self, index: int) -> np.ndarray:
        """Frame `index` as a uint8 (3, h, w) view (memory-mapped: copy what you keep)."""
        if self.shapes is None:
            return self.images[index]
        h, w = (int(v) for v in self.shapes[index])
        return self.images[self.offsets[index]:self.offsets[index + 1]].reshape(3, h, w)


def _save_ragged(frames: list[np.ndarray], path: Path) -> None:
    """Save uint8 (3, h_i, w_i) frames as one flat .npy, frame after frame, atomically.

    Written piecewise (header, then each frame) so that peak memory is the frames themselves, not
    a second, concatenated copy.
    """
    total = sum(frame.size for frame in frames)
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False,
              "shape": (total,)}

    def write(stream) -> None:
        np.lib.format.write_array_header_1_0(stream, header)
        for frame in frames:
            stream.write(np.ascontiguousarray(frame, dtype=np.uint8).tobytes())

    atomic_write(path, write)


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
    if mode == "train":
        atomic_np_save(np.array([image.shape[1:] for image in images], dtype=np.int32), target / "shapes.npy")
        _save_ragged(images, target / "images.npy")
    else:
        atomic_np_save(np.stack(images), target / "images.npy")
    atomic_np_save(np.stack(specs).astype(np.float32), target / "specs.npy")
    (target / "pairs.json").write_text(json.dumps(kept))
    (target / "done.json").write_text(json.dumps({"n": len(kept), "mode": mode, "size": size,
                                                  "root": str(root)}))
    return load_cache(target)


def load_cache(folder: str | Path) -> TensorCache:
    """Open a finished cache folder memory-mapped (train caches: with their `shapes.npy`)."""
    folder = Path(folder)
    pairs = [tuple(p) for p in json.loads((folder / "pairs.json").read_text())]
    shapes = np.load(folder / "shapes.npy") if (folder / "shapes.npy").is_file() else None
    return TensorCache(np.load(folder / "images.npy", mmap_mode="r"),
                       np.load(folder / "specs.npy", mmap_mode="r"), pairs, folder, shapes)


class CachedPairs(Dataset):
    """(uint8 image (3, size, size), spectrogram (1, F, T), index) from a TensorCache.

    In `train` mode each item is randomly cropped to `size` anywhere in its frame and flipped
    (`vslrepro.data.images.random_crop_flip`) with a generator seeded by (seed, epoch, index): the
    same epoch gives the same batch content whatever the workers. Otherwise the frame's central
    size x size crop is returned (the frame itself for test caches; a deterministic view of a
    training frame for a method's pass over its training set, `vslrepro.train.TrainingData`).
    """

    def __init__(self, cache: TensorCache, *, size: int, train: bool, seed: int = 0) -> None:
        self.cache, self.size, self.train, self.seed = cache, size, train, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.cache)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        frame = self.cache.image(index)                              # (3, h, w) uint8, memory-mapped
        spec = torch.from_numpy(np.array(self.cache.specs[index]))  # (1, F, T) float32
        if self.train:
            seed = np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1)[0]
            image = random_crop_flip(frame, self.size, torch.Generator().manual_seed(int(seed)))
        else:
            image = torch.from_numpy(np.array(centre_crop(frame, self.size)))
        return image, spec, index
