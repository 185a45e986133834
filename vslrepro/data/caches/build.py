"""Decode frames and compute spectrograms once per split; reuse them across methods and epochs.

The official loaders (EZ-VSL / SLAVC `datasets.py`) decode a JPEG and run an FFT for every sample
of every epoch; on 2 CPU cores (or feeding an H100) that, not the model, bounds training speed. We
decode once into a tensor cache on disk, keyed by everything that changes its content, and stored
as the profile says (`input.train_storage`): `decoded` (`.decoded`: uint8 frames and float32
spectrograms, memory-mapped; test and validation caches always) or, for train caches, `compressed` /
`compressed_flac` (`.compressed`: the frame files and audio windows, decoded per item in the
DataLoader workers into exactly the decoded cache's items). `.decode` says how one pair is decoded.

A cache cannot go stale or silently lose samples:
- its key (`cache_key`) covers the pairs, the geometry and audio settings, each media file's size
  and modification time (a replaced or repaired frame/WAV is decoded again) and the skip mode (a
  cache built under `--skip-bad`, missing the bad pairs, is never used by a run that must refuse
  them; the pairs it left out are stored in its manifest and reported again on every reuse);
- its manifest `done.json`, written last, records each array's size and CRC-32, checked whenever
  the cache is opened (`.integrity.verify_cache`): a truncated or altered file is rebuilt or
  refused, named;
- processes building one folder take turns on a lock beside it; every file is written atomically;
- each WAV must be at the profile's `input.sample_rate` (a file at another rate is an error naming
  it, skippable with `--skip-bad`), unless `input.resample_audio` asks to resample — recorded.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from vslrepro.atomic import exclusive
from vslrepro.data.caches.compressed import CompressedCache, build_compressed, load_compressed
from vslrepro.data.caches.decode import AudioParams
from vslrepro.data.caches.decoded import TensorCache, build_decoded, load_decoded
from vslrepro.data.caches.integrity import verify_cache
from vslrepro.data.errors import DataError, SkipLog
from vslrepro.data.formats.audio import spectrogram_shape
from vslrepro.data.formats.images import shorter_side_shape, train_side
from vslrepro.data.formats.media import COMMUNITY, media_files

CACHE_VERSION = 2  # 2: train frames keep their aspect ratio (ragged images.npy + shapes.npy)
STORAGES = ("decoded", "compressed", "compressed_flac")  # what a train cache keeps (input.train_storage)


def _media_stamp(path: Path) -> str:
    """Size and modification time of a media file ("missing" when absent): what the cache key sees
    of a file's content, cheap enough for 144k files (a replaced or repaired file changes it)."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return "missing"
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def cache_key(root: Path, pairs: Sequence[tuple[str, str]], mode: str, size: int, audio: AudioParams,
              *, skipping: bool = False, storage: str = "decoded", media: tuple[str, str] = COMMUNITY) -> str:
    """A short hash of everything the cached tensors depend on.

    The geometry and audio settings, the pairs, each media file's size and modification time
    (a frame replaced after caching, or a WAV repaired, gives a new key, hence a fresh decode), the
    skip mode (a cache built with `--skip-bad`, which leaves bad pairs out, is never reused by
    a run that must refuse them), the storage (`compressed` is hashed in; `decoded` adds
    nothing, so the decoded caches made before storages existed keep their keys) and the media
    folders when they are not the community's `frames/` and `audio/`.
    """
    root = Path(root)
    digest = hashlib.sha256()
    settings = [CACHE_VERSION, str(root.resolve()), mode, size, audio.duration, audio.nperseg, audio.noverlap,
                audio.sample_rate, audio.resample, "skip-bad" if skipping else "strict"]
    if storage != "decoded":
        settings.append(storage)
    if tuple(media) != COMMUNITY:
        settings.append(list(media))
    digest.update(json.dumps(settings).encode())
    for video, sound in pairs:
        frame, wav = media_files(root, video, sound, media)
        digest.update(f"{video}\t{sound}\t{_media_stamp(frame)}\t{_media_stamp(wav)}\n".encode())
    return digest.hexdigest()[:16]


def build_cache(root: str | Path, pairs: Sequence[tuple[str, str]], folder: str | Path, *,
                mode: str, size: int, audio: AudioParams, skip: SkipLog | None = None,
                progress: bool = False, storage: str = "decoded",
                media: tuple[str, str] = COMMUNITY) -> TensorCache | CompressedCache:
    """Decode `pairs` = [(video id, audio id)] under `root` into `folder/<key>/`, or reuse it.

    `storage` ("decoded", or "compressed" / "compressed_flac" for train caches; module docstring)
    says what is kept; `media` names the folders of `root` holding the frames and the sounds.
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
    target = Path(folder) / cache_key(root, pairs, mode, size, audio, skipping=skip is not None, storage=storage,
                                      media=media)
    with exclusive(target.parent / f"{target.name}.lock", f"caching {root.name} ({mode}) into {target}"):
        if (target / "done.json").is_file():
            try:
                return _reuse(target, skip)
            except DataError as error:
                print(f"{error}\nrebuilding {target}", file=sys.stderr, flush=True)
                shutil.rmtree(target)
        need = projected_bytes(root, pairs, mode=mode, size=size, audio=audio, storage=storage, media=media)["bytes"]
        free = free_bytes(target.parent)
        if need > free:
            raise DataError(f"the {storage} {mode} cache of {len(pairs)} pairs under {root} needs about "
                            f"{need / 1e9:.1f} GB and {target.parent} has {free / 1e9:.1f} GB free; free space, "
                            "or set VSLREPRO_CACHE to a larger disk")
        if storage != "decoded":
            build_compressed(root, pairs, target, size=size, audio=audio, skip=skip, progress=progress,
                             flac=storage == "compressed_flac", media=media)
        else:
            build_decoded(root, pairs, target, mode=mode, size=size, audio=audio, skip=skip, progress=progress,
                          media=media)
        return load_cache(target)


def free_bytes(folder: str | Path) -> int:
    """Free bytes on the disk of `folder` (of its nearest existing parent when it does not exist yet)."""
    folder = Path(folder).resolve()
    while not folder.exists():
        folder = folder.parent
    return shutil.disk_usage(folder).free


def projected_bytes(root: str | Path, pairs: Sequence[tuple[str, str]], *, mode: str, size: int,
                    audio: AudioParams, storage: str = "decoded",
                    media: tuple[str, str] = COMMUNITY) -> dict[str, int]:
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
    root = Path(root)
    rate = audio.sample_rate or 16000  # without a profile rate, assume 16 kHz
    n = int(round(audio.duration * rate))
    try:
        spec_bytes = 4 * int(np.prod(spectrogram_shape(rate, audio.duration, audio.nperseg, audio.noverlap)))
    except ValueError:  # a window shorter than one segment: the build names the problem
        spec_bytes = 0
    frame_total = audio_total = missing = 0
    for video, sound in pairs:
        frame, wav = media_files(root, video, sound, media)
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
        return load_compressed(folder, manifest, pairs)
    return load_decoded(folder, manifest, pairs)
