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

That is ≈ 390 KB per training pair at the paper's settings (a 246 x 437 frame, a 257 x 200
spectrogram): 56 GB for 144k pairs. A train cache can instead be stored `compressed`
(`input.train_storage`, used by the `paper` profile): 96 KB of audio + the frame file per pair
(118 KB with the 22 KB frames of `bench loader`):
- `frames.bin`: the original frame files' bytes back to back (no re-encoding: the official loader
  decodes that same JPEG every epoch) and `frame_offsets.npy`, int64 (N + 1,): frame i is
  bytes [offsets[i], offsets[i + 1]);
- `waves.bin`: the centred audio window of every pair as int16 samples, (N, n) C-ordered,
  n = round(duration x rate). A 16-bit PCM mono WAV is read as k / 32767 (`read_wav`), so k is
  exact; a window that is not (a stereo average, a resampled or float WAV) is kept as float32 in
  `float_waves.bin`, (M, n), with its pair index in `float_rows.npy` (its row of `waves.bin` is 0).
`compressed_flac` stores the int16 windows as FLAC instead (`audio.bin`, `audio_offsets.npy`:
lossless; 72 % of the int16 bytes on the synthetic audio; ≈ 1.5 ms more CPU per item). Each item is
then decoded in the DataLoader worker — JPEG → `resize_for_train` → the same seeded
crop and flip, window → `log_spectrogram` — and equals the decoded cache's item bit for bit
(tests/test_paper_storage.py). Validation and test caches are always decoded (small).

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
import io
import json
import os
import shutil
import sys
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import soundfile
import torch
from torch.utils.data import Dataset

from vslrepro.atomic import atomic_np_save, atomic_write, atomic_write_text, exclusive
from vslrepro.data.audio import crop_or_tile, load_audio, log_spectrogram, spectrogram_shape
from vslrepro.data.errors import DataError, SkipLog
from vslrepro.data.images import (centre_crop, decode_frame, load_frame, random_crop_flip, resize_for_test,
                                  resize_for_train, shorter_side_shape, to_chw, train_side)

CACHE_VERSION = 2  # 2: train frames keep their aspect ratio (ragged images.npy + shapes.npy)
STORAGES = ("decoded", "compressed", "compressed_flac")  # what a train cache keeps (input.train_storage)
PCM16_SCALE = np.float32(32767.0)  # read_wav's divisor of 16-bit PCM samples


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


def _window(path: Path, audio: AudioParams) -> tuple[np.ndarray, int, int | None]:
    """The float32 centred window of one WAV (`crop_or_tile`), its sample rate, and the file's own
    rate when it had to be resampled.

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
    return crop_or_tile(wave, rate, audio.duration), rate, resampled_from


def window_spectrogram(window: np.ndarray, rate: int, audio: AudioParams) -> torch.Tensor:
    """The (1, F, T) float32 log-spectrogram of a float32 window: what both storages compute."""
    spec = log_spectrogram(torch.from_numpy(window), rate, audio.nperseg, audio.noverlap)
    return spec.unsqueeze(0).contiguous()  # (F, T) -> (1, F, T)


def _spectrogram(path: Path, audio: AudioParams) -> tuple[np.ndarray, int | None]:
    """The (1, F, T) spectrogram of one WAV, and the file's own rate when it had to be resampled.

    Raises:
        DataError: as `_window`.
    """
    window, rate, resampled_from = _window(path, audio)
    return window_spectrogram(window, rate, audio).numpy(), resampled_from


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
              *, skipping: bool = False, storage: str = "decoded") -> str:
    """A short hash of everything the cached tensors depend on.

    The geometry and audio settings, the pairs, each media file's size and modification time
    (a frame replaced after caching, or a WAV repaired, gives a new key, hence a fresh decode), the
    skip mode (a cache built with `--skip-bad`, which leaves bad pairs out, is never reused by
    a run that must refuse them) and the storage (`compressed` is hashed in; `decoded` adds
    nothing, so the decoded caches made before storages existed keep their keys).
    """
    root = Path(root)
    digest = hashlib.sha256()
    settings = [CACHE_VERSION, str(root.resolve()), mode, size, audio.duration, audio.nperseg, audio.noverlap,
                audio.sample_rate, audio.resample, "skip-bad" if skipping else "strict"]
    if storage != "decoded":
        settings.append(storage)
    digest.update(json.dumps(settings).encode())
    for video, sound in pairs:
        frame, wav = media_files(root, video, sound)
        digest.update(f"{video}\t{sound}\t{_media_stamp(frame)}\t{_media_stamp(wav)}\n".encode())
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------------- integrity of a cache folder

ARRAY_FILES = ("images.npy", "shapes.npy", "specs.npy",  # decoded storage
               "frames.bin", "frame_offsets.npy", "waves.bin", "float_waves.bin", "float_rows.npy",  # compressed
               "audio.bin", "audio_offsets.npy")  # compressed_flac


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


@dataclass
class CompressedCache:
    """A `compressed` or `compressed_flac` train cache (module docstring): the original frame files'
    bytes and the audio windows (int16, or FLAC when `audio_blob` is set), decoded per item.
    Same interface as a train `TensorCache` for `CachedPairs`:
    `image(i)` is the resized (3, h, w) uint8 frame, `spec(i)` the (1, F, T) spectrogram, both
    computed on call (in the DataLoader worker) exactly as the decoded cache computed them once.
    """

    frames: np.ndarray          # flat uint8, memory-mapped: the frame files back to back
    frame_offsets: np.ndarray   # (N + 1,) int64
    waves: np.ndarray | None    # (N, n) int16, memory-mapped (None: FLAC in audio_blob)
    float_waves: np.ndarray     # (M, n) float32: the windows that are not int16-exact
    float_rows: np.ndarray      # (M,) int64, increasing: their pair indices
    pairs: list[tuple[str, str]]
    folder: Path | None
    size: int
    audio: AudioParams
    sample_rate: int
    resampled: list[dict[str, Any]] = field(default_factory=list)
    audio_blob: np.ndarray | None = None     # compressed_flac: flat uint8, the FLAC files back to back
    audio_offsets: np.ndarray | None = None  # (N + 1,) int64 (a float window's FLAC is empty)

    @property
    def storage(self) -> str:
        return "compressed" if self.audio_blob is None else "compressed_flac"

    def __post_init__(self) -> None:
        n = len(self.pairs)
        audio_ok = (self.waves.shape[0] == n if self.audio_blob is None else
                    self.audio_offsets.shape == (n + 1,) and self.audio_offsets[-1] == len(self.audio_blob))
        if (self.frame_offsets.shape != (n + 1,) or self.frame_offsets[-1] != len(self.frames)
                or not audio_ok or len(self.float_rows) != len(self.float_waves)):
            raise DataError(f"compressed cache {self.folder}: frames {self.frames.shape}, offsets "
                            f"{self.frame_offsets.shape}, audio and float windows "
                            f"{self.float_waves.shape} do not describe {n} pairs; delete {self.folder} and "
                            "run again: the cache is rebuilt from the media")

    def __len__(self) -> int:
        return len(self.pairs)

    def frame_bytes(self, index: int) -> bytes:
        """The original frame file of pair `index`, as bytes."""
        return self.frames[self.frame_offsets[index]:self.frame_offsets[index + 1]].tobytes()

    def image(self, index: int) -> np.ndarray:
        """Frame `index` decoded and resized for training: a new uint8 (3, h, w) array."""
        source = f"{self.folder}/frames.bin [frame {index}: {self.pairs[index][0]}]"
        return to_chw(resize_for_train(decode_frame(self.frame_bytes(index), source), self.size))

    def window(self, index: int) -> np.ndarray:
        """The float32 (n,) audio window of pair `index`, as `read_wav` + `crop_or_tile` gave it."""
        row = np.searchsorted(self.float_rows, index)
        if row < len(self.float_rows) and self.float_rows[row] == index:
            return np.array(self.float_waves[row])
        if self.audio_blob is None:
            samples = self.waves[index]
        else:
            flac = self.audio_blob[self.audio_offsets[index]:self.audio_offsets[index + 1]].tobytes()
            samples, _ = soundfile.read(io.BytesIO(flac), dtype="int16")  # (n,) lossless
        return samples.astype(np.float32) / PCM16_SCALE  # read_wav's 16-bit PCM scaling

    def spec(self, index: int) -> torch.Tensor:
        """Spectrogram `index`, computed from its window: a new float32 (1, F, T) tensor."""
        return window_spectrogram(self.window(index), self.sample_rate, self.audio)


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
                progress: bool = False, storage: str = "decoded") -> TensorCache | CompressedCache:
    """Decode `pairs` = [(video id, audio id)] under `root` into `folder/<key>/`, or reuse it.

    `storage` ("decoded", or "compressed" / "compressed_flac" for train caches; module docstring)
    says what is kept.
    Before a new cache is written, its projected size (`projected_bytes`) is compared with the free
    space of `folder`'s disk: a cache that would not fit is refused before anything is decoded.

    The key (`cache_key`) covers the media files' sizes and modification times and the skip mode;
    a reused folder is verified first (`verify_cache`) and rebuilt, with a note on stderr, when it
    fails. Processes building the same folder take turns (a lock beside it); the second reuses the
    first one's result. With `skip`, the pairs left out are recorded in the manifest and replayed
    into `skip` whenever the folder is reused, so every run reports the same skipped samples.

    Raises:
        DataError: a frame or WAV is missing or unreadable, or a WAV is at another sample rate
            (names the file and the id), unless `skip` is given, in which case the pair is recorded
            there and left out; or the cache would not fit the free disk space.
    """
    if mode not in ("train", "test"):
        raise ValueError(f"mode must be 'train' or 'test', got {mode!r}")
    if storage not in STORAGES or (storage != "decoded" and mode != "train"):
        raise ValueError(f"storage must be one of {STORAGES} (compressed: train caches only), got "
                         f"{storage!r} for a {mode} cache")
    root = Path(root)
    target = Path(folder) / cache_key(root, pairs, mode, size, audio, skipping=skip is not None, storage=storage)
    with exclusive(target.parent / f"{target.name}.lock", f"caching {root.name} ({mode}) into {target}"):
        if (target / "done.json").is_file():
            try:
                return _reuse(target, skip)
            except DataError as error:
                print(f"{error}\nrebuilding {target}", file=sys.stderr, flush=True)
                shutil.rmtree(target)
        need = projected_bytes(root, pairs, mode=mode, size=size, audio=audio, storage=storage)["bytes"]
        free = free_bytes(target.parent)
        if need > free:
            raise DataError(f"the {storage} {mode} cache of {len(pairs)} pairs under {root} needs about "
                            f"{need / 1e9:.1f} GB and {target.parent} has {free / 1e9:.1f} GB free; free space, "
                            "or set VSLREPRO_CACHE to a larger disk")
        if storage != "decoded":
            return _build_compressed(root, pairs, target, size=size, audio=audio, skip=skip, progress=progress,
                                     flac=storage == "compressed_flac")
        return _build(root, pairs, target, mode=mode, size=size, audio=audio, skip=skip, progress=progress)


def free_bytes(folder: str | Path) -> int:
    """Free bytes on the disk of `folder` (of its nearest existing parent when it does not exist yet)."""
    folder = Path(folder).resolve()
    while not folder.exists():
        folder = folder.parent
    return shutil.disk_usage(folder).free


def projected_bytes(root: str | Path, pairs: Sequence[tuple[str, str]], *, mode: str, size: int,
                    audio: AudioParams, storage: str = "decoded") -> dict[str, int]:
    """The bytes a cache of `pairs` will take on disk, from the media files, without decoding them.

    - decoded: each frame's resized size 3 h w (train: `resize_for_train`'s shape, from the
      image header; test: 3 size²) + a float32 (1, F, T) spectrogram (F, T from
      `input.sample_rate`);
    - compressed: each frame file's size + an int16 window of n = round(duration x rate) samples
      (a window that is not int16-exact costs 4 n bytes more: not foreseeable without decoding);
      compressed_flac: the same, an upper bound of its FLAC audio.
    A missing file counts 0 bytes (and is counted in "missing": the build itself names it).

    Returns:
        {"pairs", "bytes", "frame_bytes", "audio_bytes", "missing"}.
    """
    from PIL import Image

    root = Path(root)
    rate = audio.sample_rate or 16000  # without a profile rate, assume 16 kHz
    n = int(round(audio.duration * rate))
    try:
        spec_bytes = 4 * int(np.prod(spectrogram_shape(rate, audio.duration, audio.nperseg, audio.noverlap)))
    except ValueError:  # a window shorter than one segment: the build names the problem
        spec_bytes = 0
    frame_total = audio_total = missing = 0
    for video, sound in pairs:
        frame, wav = media_files(root, video, sound)
        missing += not frame.is_file() or not wav.is_file()
        if not frame.is_file():
            continue
        if storage != "decoded":
            frame_total += frame.stat().st_size + 8  # the file's bytes + its offset
        elif mode == "test":
            frame_total += 3 * size * size
        else:
            try:
                with Image.open(frame) as image:  # reads the header only
                    width, height = shorter_side_shape(*image.size, train_side(size))
            except (OSError, ValueError, SyntaxError):
                continue  # unreadable: the build names it
            frame_total += 3 * width * height + 8  # pixels + its (h, w)
        audio_total += 2 * n if storage != "decoded" else spec_bytes
    return {"pairs": len(pairs), "bytes": frame_total + audio_total, "frame_bytes": frame_total,
            "audio_bytes": audio_total, "missing": missing}


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


class _Streams:
    """Binary files written piecewise into a cache folder under temporary names, renamed to their
    own names by `finish` (a folder is finished only when `done.json` is written after them)."""

    def __init__(self, folder: Path, names: Sequence[str]) -> None:
        self.paths = {name: folder / f".{name}.partial" for name in names}
        self.files = {name: path.open("wb") for name, path in self.paths.items()}

    def write(self, name: str, data: bytes) -> None:
        self.files[name].write(data)

    def finish(self) -> None:
        for name, handle in self.files.items():
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
            os.replace(self.paths[name], self.paths[name].with_name(name))

    def abandon(self) -> None:
        for name, handle in self.files.items():
            handle.close()
            self.paths[name].unlink(missing_ok=True)


def _build_compressed(root: Path, pairs: Sequence[tuple[str, str]], target: Path, *, size: int,
                      audio: AudioParams, skip: SkipLog | None, progress: bool, flac: bool) -> CompressedCache:
    """Store every pair's frame file and audio window into `target` (module docstring), streamed to
    disk pair by pair (memory stays one pair, whatever N). Each frame is decoded once here, so an
    unreadable one is named now, as in a decoded build."""
    kept, offsets, audio_offsets, float_rows, resampled, rates = [], [0], [0], [], [], set()
    own_skips = SkipLog()
    target.mkdir(parents=True, exist_ok=True)
    streams = _Streams(target, ("frames.bin", "audio.bin" if flac else "waves.bin", "float_waves.bin"))
    iterator = pairs
    if progress:
        from tqdm.auto import tqdm
        iterator = tqdm(pairs, desc=f"caching {root.name} (train, compressed)", leave=False)
    try:
        for video, sound in iterator:
            frame_path, wav_path = media_files(root, video, sound)
            try:
                if not frame_path.is_file():
                    raise DataError(f"{frame_path}: frame not found")
                data = frame_path.read_bytes()
                decode_frame(data, frame_path)  # unreadable or truncated: named now
                window, rate, resampled_from = _window(wav_path, audio)
            except DataError as error:
                if skip is None:
                    raise DataError(f"pair (video={video}, audio={sound}): {error}") from error
                own_skips.handle(error, video if sound == video else f"{video}/{sound}")
                continue
            rates.add(rate)
            if len(rates) > 1:
                raise DataError(f"sample rates differ under {root}: {sorted(rates)} Hz ({wav_path}); clips must "
                                "share one sample rate (set input.sample_rate to have each file checked)")
            samples = np.round(window * PCM16_SCALE)
            if np.abs(samples).max() <= 32767 and np.array_equal(samples.astype(np.float32) / PCM16_SCALE, window):
                if flac:
                    encoded = io.BytesIO()
                    soundfile.write(encoded, samples.astype(np.int16), rate, format="FLAC", subtype="PCM_16")
                    streams.write("audio.bin", encoded.getvalue())
                    audio_offsets.append(audio_offsets[-1] + len(encoded.getvalue()))
                else:
                    streams.write("waves.bin", samples.astype("<i2").tobytes())
            else:  # not k / 32767 (stereo average, resampled or float WAV): kept as it is
                if flac:
                    audio_offsets.append(audio_offsets[-1])
                else:
                    streams.write("waves.bin", bytes(2 * len(window)))
                streams.write("float_waves.bin", window.astype("<f4").tobytes())
                float_rows.append(len(kept))
            streams.write("frames.bin", data)
            offsets.append(offsets[-1] + len(data))
            kept.append((video, sound))
            if resampled_from is not None:
                resampled.append({"file": str(wav_path), "from_hz": resampled_from})
    except BaseException:
        streams.abandon()
        raise
    if not kept:
        streams.abandon()
        raise DataError(f"no readable pair among {len(pairs)} listed under {root}")
    streams.finish()
    atomic_np_save(np.array(offsets, dtype=np.int64), target / "frame_offsets.npy")
    atomic_np_save(np.array(float_rows, dtype=np.int64), target / "float_rows.npy")
    if flac:
        atomic_np_save(np.array(audio_offsets, dtype=np.int64), target / "audio_offsets.npy")
    atomic_write_text(target / "pairs.json", json.dumps(kept))
    skipped = [{"id": e.id, "file": e.file, "reason": e.reason} for e in own_skips.entries]
    atomic_write_text(target / "done.json", json.dumps({
        "n": len(kept), "mode": "train", "storage": "compressed_flac" if flac else "compressed", "size": size,
        "root": str(root),
        "audio": asdict(audio), "sample_rate": rates.pop(), "window": len(window),
        "float_windows": len(float_rows), "arrays": _array_records(target), "skipped": skipped,
        "resampled": resampled}, indent=1))
    if skip is not None:
        skip.entries.extend(own_skips.entries)
    if resampled:
        print(f"{root}: {len(resampled)} WAV file(s) resampled to {audio.sample_rate} Hz "
              f"(listed in {target / 'done.json'})", file=sys.stderr, flush=True)
    return load_cache(target)


def load_cache(folder: str | Path) -> TensorCache | CompressedCache:
    """Open a finished cache folder memory-mapped (train caches: with their `shapes.npy`), after
    checking every array against the manifest (`verify_cache`).

    Raises:
        DataError: the folder fails its integrity check, naming the file and the fix.
    """
    folder = Path(folder)
    manifest = verify_cache(folder)
    pairs = [tuple(p) for p in json.loads((folder / "pairs.json").read_text())]
    if manifest.get("storage", "decoded") != "decoded":
        return _load_compressed(folder, manifest, pairs)
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


def _load_compressed(folder: Path, manifest: dict[str, Any], pairs: list[tuple[str, str]]) -> CompressedCache:
    """Open a verified compressed cache folder, memory-mapped."""
    n, flac = int(manifest["window"]), manifest["storage"] == "compressed_flac"
    try:
        frames = np.memmap(folder / "frames.bin", dtype=np.uint8, mode="r")
        waves = audio_blob = audio_offsets = None
        if not flac:
            waves = np.memmap(folder / "waves.bin", dtype="<i2", mode="r").reshape(-1, n)  # (N * n,) -> (N, n)
        else:
            audio_offsets = np.load(folder / "audio_offsets.npy")
            audio_blob = (np.memmap(folder / "audio.bin", dtype=np.uint8, mode="r")
                          if (folder / "audio.bin").stat().st_size else np.zeros(0, np.uint8))
        floats = (np.memmap(folder / "float_waves.bin", dtype="<f4", mode="r").reshape(-1, n)  # (M * n,) -> (M, n)
                  if (folder / "float_waves.bin").stat().st_size else np.zeros((0, n), np.float32))
        offsets = np.load(folder / "frame_offsets.npy")
        float_rows = np.load(folder / "float_rows.npy")
    except (OSError, ValueError, EOFError) as error:
        raise DataError(f"tensor cache {folder}: unreadable array ({error}); delete {folder} and run "
                        "again: the cache is rebuilt from the media") from error
    return CompressedCache(frames, offsets, waves, floats, float_rows, pairs, folder, int(manifest["size"]),
                           AudioParams(**manifest["audio"]), int(manifest["sample_rate"]),
                           resampled=manifest.get("resampled", []), audio_blob=audio_blob, audio_offsets=audio_offsets)


class CachedPairs(Dataset):
    """(uint8 image (3, size, size), spectrogram (1, F, T), index) from a TensorCache or a
    CompressedCache (whose frames and spectrograms are computed here, in the DataLoader worker).

    In `train` mode each item is randomly cropped to `size` anywhere in its frame and flipped
    (`vslrepro.data.images.random_crop_flip`) with a generator seeded by (seed, epoch, index): the
    same epoch gives the same batch content whatever the workers. Otherwise the frame's central
    size x size crop is returned (the frame itself for test caches; a deterministic view of a
    training frame for a method's pass over its training set, `vslrepro.train.TrainingData`).
    """

    def __init__(self, cache: TensorCache | CompressedCache, *, size: int, train: bool, seed: int = 0) -> None:
        self.cache, self.size, self.train, self.seed = cache, size, train, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.cache)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        frame = self.cache.image(index)  # (3, h, w) uint8 (memory-mapped, or decoded now when compressed)
        spec = self.cache.spec(index)    # (1, F, T) float32
        if self.train:
            seed = np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1)[0]
            image = random_crop_flip(frame, self.size, torch.Generator().manual_seed(int(seed)))
        else:
            image = torch.from_numpy(np.array(centre_crop(frame, self.size)))
        return image, spec, index
