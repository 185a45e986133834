"""The compressed storages of a train cache: the original frame files and the audio windows.

A train cache can be stored `compressed` (`input.train_storage`, used by the `paper` profile):
96 KB of audio + the frame file per pair (118 KB with the 22 KB frames of `bench loader`):
- `frames.bin`: the original frame files' bytes back to back (no re-encoding: the official loader
  decodes that same JPEG every epoch) and `frame_offsets.npy`, int64 (N + 1,): frame i is
  bytes [offsets[i], offsets[i + 1]);
- `waves.bin`: the centred audio window of every pair as int16 samples, (N, n) C-ordered,
  n = round(duration x rate). A 16-bit PCM mono WAV is read as k / 32767 (`read_wav`), so k is
  exact; a window that is not (a stereo average, a resampled or float WAV) is kept as float32 in
  `float_waves.bin`, (M, n), with its pair index in `float_rows.npy` (its row of `waves.bin` is 0).
`compressed_flac` stores the int16 windows as FLAC instead (`audio.bin`, `audio_offsets.npy`:
lossless; 72 % of the int16 bytes on the synthetic audio; ≈ 1.5 ms more CPU per item). Each item is
then decoded in the DataLoader worker — JPEG → `resize_for_train` → the same seeded crop and flip,
window → `log_spectrogram` — and equals the decoded cache's item bit for bit
(tests/test_paper_storage.py).
"""

from __future__ import annotations

import io
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import soundfile
import torch
from tqdm.auto import tqdm

from vslrepro.atomic import atomic_np_save, atomic_write_text
from vslrepro.data.caches.decode import PCM16_SCALE, AudioParams, audio_window, window_spectrogram
from vslrepro.data.caches.integrity import array_records
from vslrepro.data.errors import DataError, SkipLog
from vslrepro.data.formats.images import decode_frame, resize_for_train, to_chw
from vslrepro.data.formats.media import COMMUNITY, media_files


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


def build_compressed(root: Path, pairs: Sequence[tuple[str, str]], target: Path, *, size: int,
                     audio: AudioParams, skip: SkipLog | None, progress: bool, flac: bool,
                     media: tuple[str, str] = COMMUNITY) -> None:
    """Store every pair's frame file and audio window into `target` (module docstring), streamed to
    disk pair by pair (memory stays one pair, whatever N). Each frame is decoded once here, so an
    unreadable one is named now, as in a decoded build."""
    kept, offsets, audio_offsets, float_rows, resampled, rates = [], [0], [0], [], [], set()
    own_skips = SkipLog()
    target.mkdir(parents=True, exist_ok=True)
    streams = _Streams(target, ("frames.bin", "audio.bin" if flac else "waves.bin", "float_waves.bin"))
    iterator = tqdm(pairs, desc=f"caching {root.name} (train, compressed)", leave=False) if progress else pairs
    try:
        for video, sound in iterator:
            frame_path, wav_path = media_files(root, video, sound, media)
            try:
                if not frame_path.is_file():
                    raise DataError(f"{frame_path}: frame not found")
                data = frame_path.read_bytes()
                decode_frame(data, frame_path)  # unreadable or truncated: named now
                window, rate, resampled_from = audio_window(wav_path, audio)
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
        "float_windows": len(float_rows), "arrays": array_records(target), "skipped": skipped,
        "resampled": resampled}, indent=1))
    if skip is not None:
        skip.entries.extend(own_skips.entries)
    if resampled:
        print(f"{root}: {len(resampled)} WAV file(s) resampled to {audio.sample_rate} Hz "
              f"(listed in {target / 'done.json'})", file=sys.stderr, flush=True)



def load_compressed(folder: Path, manifest: dict[str, Any], pairs: list[tuple[str, str]]) -> CompressedCache:
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
