"""How one (frame, sound) pair becomes the tensors a cache holds.

The image geometry is `vslrepro.data.formats.images`'s (docs/data.md): a test frame is squashed to
(size, size) (`resize_for_test`, the official Resize((size, size), bicubic)); a training frame keeps
its aspect ratio with its shorter side at int(1.1 size) (`resize_for_train`, the official
Resize(L)). The sound is the centred `duration`-s window of the WAV (`crop_or_tile`, tiled when
shorter), then the log-spectrogram / 12 (`log_spectrogram`). Each WAV must be at the profile's
`input.sample_rate` unless `input.resample_audio` asks to resample it (recorded by the caller).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchaudio.functional

from vslrepro.data.errors import DataError
from vslrepro.data.formats.audio import crop_or_tile, load_audio, log_spectrogram
from vslrepro.data.formats.images import load_frame, resize_for_test, resize_for_train, to_chw

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



def frame_array(path: Path, mode: str, size: int) -> np.ndarray:
    """Decode one frame to uint8 (3, h, w): (3, size, size) for test, shorter side int(1.1 size) for train."""
    image = load_frame(path)
    resize = resize_for_test if mode == "test" else resize_for_train
    return to_chw(resize(image, size))


def audio_window(path: Path, audio: AudioParams) -> tuple[np.ndarray, int, int | None]:
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
        wave = torchaudio.functional.resample(torch.from_numpy(wave), rate, audio.sample_rate).numpy()
        resampled_from, rate = rate, audio.sample_rate
    return crop_or_tile(wave, rate, audio.duration), rate, resampled_from


def window_spectrogram(window: np.ndarray, rate: int, audio: AudioParams) -> torch.Tensor:
    """The (1, F, T) float32 log-spectrogram of a float32 window: what both storages compute."""
    spec = log_spectrogram(torch.from_numpy(window), rate, audio.nperseg, audio.noverlap)
    return spec.unsqueeze(0).contiguous()  # (F, T) -> (1, F, T)


def spectrogram(path: Path, audio: AudioParams) -> tuple[np.ndarray, int | None]:
    """The (1, F, T) spectrogram of one WAV, and the file's own rate when it had to be resampled.

    Raises:
        DataError: as `audio_window`.
    """
    window, rate, resampled_from = audio_window(path, audio)
    return window_spectrogram(window, rate, audio).numpy(), resampled_from
