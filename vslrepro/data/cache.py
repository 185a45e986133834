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

A cache cannot go stale or silently lose samples:
- its key (`cache_key`) covers the pairs, the geometry and audio settings, each media file's size
  and modification time (a replaced or repaired frame/WAV is decoded again) and the skip mode (a
  cache built under `--skip-bad`, missing the bad pairs, is never used by a run that must refuse
  them; the pairs it left out are stored in its manifest and reported again on every reuse);
- its manifest `done.json`, written last, records each array's size and CRC-32, checked whenever
  the cache is opened (`verify_cache`): a truncated or altered file is rebuilt or refused, named;
- processes building one folder take turns on a lock beside it; every file is written atomically;
- each WAV must be at the profile's `input.sample_rate` (a file at another rate is an error naming
  it, skippable with `--skip-bad`), unless `input.resample_audio` asks to resample — recorded.

`CachedPairs` turns a cache into a torch Dataset whose augmentation is seeded by (seed, epoch,
index), so results do not depend on the number of DataLoader workers, nor on an interruption.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from vslrepro.atomic import atomic_np_save, atomic_write, atomic_write_text, exclusive
from vslrepro.data.audio import crop_or_tile, load_audio, log_spectrogram
from vslrepro.data.errors import DataError, SkipLog
from vslrepro.data.images import centre_crop, load_frame, random_crop_flip, resize_for_test, resize_for_train, to_chw

CACHE_VERSION = 2  # 2: train frames keep their aspect ratio (ragged images.npy + shapes.npy)


@dataclass(frozen=True)
class AudioParams:
    """How a clip becomes a spectrogram: a `duration`-s window centred in the clip, then an STFT
    with `nperseg` and `noverlap` (official EZ-VSL / SLAVC `datasets.py`: 3 s, 512, 274).

    `sample_rate` is the rate every WAV must have (the profile's `input.sample_rate`; None: no
    check). A file at another rate is a `DataError` naming it — skippable with `--skip-bad` — unless
    `resample` is True (`input.resample_audio`), in which case it is resampled to `sample_rate`
    (`torchaudio.functional.resample`, before the window is cut) and recorded in the cache manifest.
    """

    duration: float = 3.0
    nperseg: int = 512
    noverlap: int = 274
    sample_rate: int | None = None
    resample: bool = False


def _frame_array(path: Path, mode: str, size: int) -> np.ndarray:
    """Decode one frame to uint8 (3, h, w): (3, size, size) for test, shorter side int(1.1 size) for train."""
    image = load_frame(path)
    resize = resize_for_test if mode == "test" else resize_for_train
    return to_chw(resize(image, size))


def _spectrogram(path: Path, audio: AudioParams) -> tuple[np.ndarray, int | None]:
    """The (1, F, T) spectrogram of one WAV, and the file's own rate when it had to be resampled.

    Raises:
        DataError: unreadable file, or a sample rate other than `audio.sample_rate` without `resample`.
    """
    wave, rate = load_audio(path, None)
    resampled_from = None
    if audio.sample_rate is not None and rate != audio.sample_rate:
        if not audio.resample:
            raise DataError(f"{path}: sample rate {rate} Hz, expected {audio.sample_rate} Hz "
                            "(input.sample_rate); convert the file, set input.resample_audio: true to "
                            "resample on load, or leave it out with --skip-bad")
        import torchaudio.functional

        wave = torchaudio.functional.resample(torch.from_numpy(wave), rate, audio.sample_rate).numpy()
        resampled_from, rate = rate, audio.sample_rate
    wave = crop_or_tile(wave, rate, audio.duration)
    spec = log_spectrogram(torch.from_numpy(wave), rate, audio.nperseg, audio.noverlap)
    return spec.unsqueeze(0).numpy(), resampled_from  # (F, T) -> (1, F, T)


def media_files(root: Path, video: str, sound: str) -> tuple[Path, Path]:
    """The frame and the WAV of one (video id, audio id) pair under a dataset root."""
    return root / "frames" / f"{video}.jpg", root / "audio" / f"{sound}.wav"


def _media_stamp(path: Path) -> str:
    """Size and modification time of a media file ("missing" when absent): what the cache key sees
    of a file's content, cheap enough for 144k files (a replaced or repaired file changes it)."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return "missing"
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def cache_key(root: Path, pairs: Sequence[tuple[str, str]], mode: str, size: int, audio: AudioParams,
              *, skipping: bool = False) -> str:
    """A short hash of everything the cached tensors depend on.

    The geometry and audio settings, the pairs, each media file's size and modification time
    (a frame replaced after caching, or a WAV repaired, gives a new key, hence a fresh decode) and
    the skip mode (a cache built with `--skip-bad`, which leaves bad pairs out, is never reused by
    a run that must refuse them).
    """
    root = Path(root)
    digest = hashlib.sha256()
    digest.update(json.dumps([CACHE_VERSION, str(root.resolve()), mode, size, audio.duration,
                              audio.nperseg, audio.noverlap, audio.sample_rate, audio.resample,
                              "skip-bad" if skipping else "strict"]).encode())
    for video, sound in pairs:
        frame, wav = media_files(root, video, sound)
        digest.update(f"{video}\t{sound}\t{_media_stamp(frame)}\t{_media_stamp(wav)}\n".encode())
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------------- integrity of a cache folder

ARRAY_FILES = ("images.npy", "shapes.npy", "specs.npy")


def _crc32(path: Path) -> str:
    """CRC-32 of a file's bytes, streamed in 16 MiB chunks (≈ 4 GB/s: 5 s for a 20 GB cache)."""
    crc = 0
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 24):
            crc = zlib.crc32(chunk, crc)
    return f"{crc:08x}"


def _array_records(folder: Path) -> dict[str, dict[str, Any]]:
    """{file: {"bytes": size, "crc32": checksum}} of the array files of a cache folder."""
    return {name: {"bytes": (folder / name).stat().st_size, "crc32": _crc32(folder / name)}
            for name in ARRAY_FILES if (folder / name).is_file()}


def verify_cache(folder: str | Path) -> dict[str, Any]:
    """Check a finished cache folder against its manifest (`done.json`); return the manifest.

    Every array file must exist with the recorded size and CRC-32 (a truncated file, or bytes
    flipped on disk, is caught here rather than turning into wrong numbers). The check reads every
    byte once per open (≈ 4 GB/s); a run opens each cache once (DataLoader workers share it).

    Raises:
        DataError: naming the folder, the file, what differs, and the fix (delete the folder; the
            next run decodes the data again).
    """
    folder = Path(folder)
    fix = f"delete {folder} and run again: the cache is rebuilt from the media"
    try:
        manifest = json.loads((folder / "done.json").read_text())
        records = manifest["arrays"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DataError(f"tensor cache {folder}: unreadable manifest done.json ({error}); {fix}") from error
    for name, record in records.items():
        path = folder / name
        if not path.is_file():
            raise DataError(f"tensor cache {folder}: {name} is missing; {fix}")
        stat = path.stat()
        if stat.st_size != record["bytes"]:
            raise DataError(f"tensor cache {folder}: {name} holds {stat.st_size} bytes, the manifest "
                            f"records {record['bytes']} (truncated or replaced); {fix}")
        checksum = _crc32(path)
        if checksum != record["crc32"]:
            raise DataError(f"tensor cache {folder}: {name} fails its checksum (CRC-32 {checksum}, "
                            f"recorded {record['crc32']}): its bytes changed on disk; {fix}")
    return manifest


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

    The key (`cache_key`) covers the media files' sizes and modification times and the skip mode;
    a reused folder is verified first (`verify_cache`) and rebuilt, with a note on stderr, when it
    fails. Processes building the same folder take turns (a lock beside it); the second reuses the
    first one's result. With `skip`, the pairs left out are recorded in the manifest and replayed
    into `skip` whenever the folder is reused, so every run reports the same skipped samples.

    Raises:
        DataError: a frame or WAV is missing or unreadable, or a WAV is at another sample rate
            (names the file and the id), unless `skip` is given, in which case the pair is recorded
            there and left out.
    """
    if mode not in ("train", "test"):
        raise ValueError(f"mode must be 'train' or 'test', got {mode!r}")
    root = Path(root)
    target = Path(folder) / cache_key(root, pairs, mode, size, audio, skipping=skip is not None)
    with exclusive(target.parent / f"{target.name}.lock", f"caching {root.name} ({mode}) into {target}"):
        if (target / "done.json").is_file():
            try:
                return _reuse(target, skip)
            except DataError as error:
                print(f"{error}\nrebuilding {target}", file=sys.stderr, flush=True)
                shutil.rmtree(target)
        return _build(root, pairs, target, mode=mode, size=size, audio=audio, skip=skip, progress=progress)


def _reuse(target: Path, skip: SkipLog | None) -> TensorCache:
    """Open a finished cache folder (verified) and replay its skipped pairs into `skip`."""
    cache = load_cache(target)
    if skip is not None:
        for entry in json.loads((target / "done.json").read_text()).get("skipped", []):
            skip.add(entry["id"], entry["file"], entry["reason"])
    return cache


def _build(root: Path, pairs: Sequence[tuple[str, str]], target: Path, *, mode: str, size: int,
           audio: AudioParams, skip: SkipLog | None, progress: bool) -> TensorCache:
    """Decode every pair into `target` (arrays first, `done.json` last: a folder without it is unfinished)."""
    images, specs, kept, resampled = [], [], [], []
    own_skips = SkipLog()
    iterator = pairs
    if progress:
        from tqdm.auto import tqdm
        iterator = tqdm(pairs, desc=f"caching {root.name} ({mode})", leave=False)
    for video, sound in iterator:
        frame_path, wav_path = media_files(root, video, sound)
        try:
            image = _frame_array(frame_path, mode, size)
            spec, resampled_from = _spectrogram(wav_path, audio)
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
        "arrays": _array_records(target), "skipped": skipped, "resampled": resampled}, indent=1))
    if skip is not None:
        skip.entries.extend(own_skips.entries)
    if resampled:
        print(f"{root}: {len(resampled)} WAV file(s) resampled to {audio.sample_rate} Hz "
              f"(listed in {target / 'done.json'})", file=sys.stderr, flush=True)
    return load_cache(target)


def load_cache(folder: str | Path) -> TensorCache:
    """Open a finished cache folder memory-mapped (train caches: with their `shapes.npy`), after
    checking every array against the manifest (`verify_cache`).

    Raises:
        DataError: the folder fails its integrity check, naming the file and the fix.
    """
    folder = Path(folder)
    manifest = verify_cache(folder)
    pairs = [tuple(p) for p in json.loads((folder / "pairs.json").read_text())]
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
