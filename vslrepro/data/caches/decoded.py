"""The decoded storage: frames as uint8 arrays and spectrograms as float32, memory-mapped `.npy`.

- test caches: `images.npy`, uint8 (N, 3, size, size), each frame squashed to (size, size).
- train caches: each frame resized so that its shorter side is L = int(1.1 * size) with its aspect
  ratio kept (e.g. 246 x 437 for a 16:9 frame at size 224). Frames differ in shape, so they are
  stored ragged: `images.npy` is the flat uint8 concatenation of the C-ordered (3, h_i, w_i) frames
  and `shapes.npy` int32 (N, 2) their (h, w); frame i starts at sum_{j<i} 3 h_j w_j.
- spectrograms, both modes: `specs.npy`, float32 (N, 1, F, T) with the official centred crop and
  log-PSD / 12.

That is ≈ 390 KB per training pair at the paper's settings (a 246 x 437 frame, a 257 x 200
spectrogram): 56 GB for 144k pairs; `vslrepro.data.caches.compressed` stores far less.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from vslrepro.atomic import atomic_np_save, atomic_write, atomic_write_text
from vslrepro.data.caches.decode import AudioParams, frame_array, spectrogram
from vslrepro.data.caches.integrity import array_records
from vslrepro.data.errors import DataError, SkipLog
from vslrepro.data.formats.media import COMMUNITY, media_files


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
    resampled: list[dict[str, Any]] = field(default_factory=list)  # WAVs resampled on load: file, from_hz

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

    storage = "decoded"

    def image(self, index: int) -> np.ndarray:
        """Frame `index` as a uint8 (3, h, w) view (memory-mapped: copy what you keep)."""
        if self.shapes is None:
            return self.images[index]
        h, w = (int(v) for v in self.shapes[index])
        return self.images[self.offsets[index]:self.offsets[index + 1]].reshape(3, h, w)

    def spec(self, index: int) -> torch.Tensor:
        """Spectrogram `index` as a new float32 (1, F, T) tensor."""
        return torch.from_numpy(np.array(self.specs[index]))



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


def build_decoded(root: Path, pairs: Sequence[tuple[str, str]], target: Path, *, mode: str, size: int,
                  audio: AudioParams, skip: SkipLog | None, progress: bool,
                  media: tuple[str, str] = COMMUNITY) -> None:
    """Decode every pair into `target` (arrays first, `done.json` last: a folder without it is unfinished)."""
    images, specs, kept, resampled = [], [], [], []
    own_skips = SkipLog()
    iterator = tqdm(pairs, desc=f"caching {root.name} ({mode})", leave=False) if progress else pairs
    for video, sound in iterator:
        frame_path, wav_path = media_files(root, video, sound, media)
        try:
            image = frame_array(frame_path, mode, size)
            spec, resampled_from = spectrogram(wav_path, audio)
        except DataError as error:
            if skip is None:
                raise DataError(f"pair (video={video}, audio={sound}): {error}") from error
            own_skips.handle(error, video if sound == video else f"{video}/{sound}")
            continue
        images.append(image)
        specs.append(spec)
        kept.append((video, sound))
        if resampled_from is not None:
            resampled.append({"file": str(wav_path), "from_hz": resampled_from})
    if not kept:
        raise DataError(f"no readable pair among {len(pairs)} listed under {root}")
    if len({s.shape for s in specs}) > 1:
        raise DataError(f"spectrogram shapes differ under {root}: {sorted({s.shape for s in specs})}; "
                        "clips must share one sample rate (set input.sample_rate to have each file checked)")
    target.mkdir(parents=True, exist_ok=True)
    if mode == "train":
        atomic_np_save(np.array([image.shape[1:] for image in images], dtype=np.int32), target / "shapes.npy")
        _save_ragged(images, target / "images.npy")
    else:
        atomic_np_save(np.stack(images), target / "images.npy")
    atomic_np_save(np.stack(specs).astype(np.float32), target / "specs.npy")
    atomic_write_text(target / "pairs.json", json.dumps(kept))
    skipped = [{"id": e.id, "file": e.file, "reason": e.reason} for e in own_skips.entries]
    atomic_write_text(target / "done.json", json.dumps({
        "n": len(kept), "mode": mode, "size": size, "root": str(root), "audio": asdict(audio),
        "arrays": array_records(target), "skipped": skipped, "resampled": resampled}, indent=1))
    if skip is not None:
        skip.entries.extend(own_skips.entries)
    if resampled:
        print(f"{root}: {len(resampled)} WAV file(s) resampled to {audio.sample_rate} Hz "
              f"(listed in {target / 'done.json'})", file=sys.stderr, flush=True)


def load_decoded(folder: Path, manifest: dict[str, Any], pairs: list[tuple[str, str]]) -> TensorCache:
    """Open a verified decoded cache folder, memory-mapped (train caches: with their `shapes.npy`)."""
    try:
        shapes = np.load(folder / "shapes.npy") if (folder / "shapes.npy").is_file() else None
        images = np.load(folder / "images.npy", mmap_mode="r")
        specs = np.load(folder / "specs.npy", mmap_mode="r")
    except (OSError, ValueError, EOFError) as error:
        raise DataError(f"tensor cache {folder}: unreadable array ({error}); delete {folder} and run "
                        "again: the cache is rebuilt from the media") from error
    if len(specs) != len(pairs) or (shapes is None and len(images) != len(pairs)):
        raise DataError(f"tensor cache {folder}: {len(pairs)} pairs but {len(specs)} spectrograms; "
                        f"delete {folder} and run again: the cache is rebuilt from the media")
    return TensorCache(images, specs, pairs, folder, shapes, resampled=manifest.get("resampled", []))
