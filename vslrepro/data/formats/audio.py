"""Audio loading and the log-spectrogram, as the official EZ-VSL / SLAVC loaders compute them.

The original (EZ-VSL / SLAVC `datasets.py:load_spectrogram`; docs/data.md §4): decode a centred
3-s window with PyAV at the file's native rate, convert to signed 16-bit mono and divide by 32767,
clip to [-1, 1], average the channels, tile a short clip ⌊n/len⌋ + 1 times and truncate, then
`scipy.signal.spectrogram(x, fs=sr, nperseg=512, noverlap=274)` → `log(S + 1e-7)` → divide by 12
(their `Normalize(mean=0, std=12)`). Test audio is also a 3-s crop: SLAVC's 5-s `audio_dur` is never
used.

Ours: `soundfile` reads the WAV (no PyAV); 16-bit PCM is divided by 32767 like the original, any
other sample format is read as float by soundfile. The window is cut in samples rather than seconds
(the original seeks by time in the compressed stream), which is the same for WAV files. The
spectrogram is pure torch (unfold + rfft), batched and device-agnostic, and equals SciPy's within
float32 rounding.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import soundfile
import torch

from vslrepro.data.errors import DataError

LOG_EPS = 1e-7  # added to the PSD before the log (official value)
LOG_SCALE = 12.0  # the official Normalize(mean=0, std=12) divides the log-PSD by 12
TUKEY_ALPHA = 0.25  # scipy.signal.spectrogram's default window: ('tukey', 0.25)


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a WAV file as a mono float32 waveform in [-1, 1] at its native sample rate.

    Channels are clipped to [-1, 1] and then averaged (the official order). 16-bit PCM is scaled by
    1/32767 as PyAV's s16 output is in the original; other formats use soundfile's float scaling.

    Args:
        path: the `.wav` file.

    Returns:
        (wave, sample_rate): wave is a float32 array of shape (N,), N > 0.

    Raises:
        DataError: the file is missing, unreadable, or holds no samples.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: audio file not found")
    try:
        info = soundfile.info(str(path))
        if info.subtype == "PCM_16":
            raw, sample_rate = soundfile.read(str(path), dtype="int16", always_2d=True)
            wave = raw.astype(np.float32) / np.float32(32767.0)  # (N, C)
        else:
            wave, sample_rate = soundfile.read(str(path), dtype="float32", always_2d=True)  # (N, C)
    except (RuntimeError, soundfile.LibsndfileError, ValueError) as error:
        raise DataError(f"{path}: unreadable audio file ({error})") from error
    if wave.shape[0] == 0 or wave.shape[1] == 0:
        raise DataError(f"{path}: audio file holds no samples")
    wave = np.clip(wave, -1.0, 1.0).mean(axis=1, dtype=np.float32)  # (N, C) -> (N,)
    return np.ascontiguousarray(wave, dtype=np.float32), int(sample_rate)


def crop_or_tile(wave: np.ndarray, sample_rate: int, duration: float) -> np.ndarray:
    """Cut the centred window of `duration` seconds; tile a clip that is too short.

    n = round(duration * sample_rate). A longer clip gives wave[s : s + n] with
    s = max(len/2 - n/2, 0) rounded down; a shorter one is repeated ⌊n/len⌋ + 1 times and truncated
    to n samples (the official rule).

    Args:
        wave: mono waveform, shape (N,), N > 0.
        sample_rate: samples per second.
        duration: window length in seconds, > 0.

    Returns:
        Array of shape (n,), same dtype as `wave`.

    Raises:
        ValueError: wave is not 1-D or empty, or duration/sample_rate is not positive.
    """
    wave = np.asarray(wave)
    if wave.ndim != 1 or wave.shape[0] == 0:
        raise ValueError(f"crop_or_tile needs a non-empty 1-D waveform, got shape {wave.shape}")
    if sample_rate <= 0 or not duration > 0:
        raise ValueError(f"crop_or_tile needs positive sample_rate and duration, got {sample_rate}, {duration}")
    n = int(round(duration * sample_rate))
    length = wave.shape[0]
    if length >= n:
        start = max((length - n) // 2, 0)  # floor(len/2 - n/2)
        return wave[start : start + n].copy()
    repeats = n // length + 1
    return np.tile(wave, repeats)[:n]  # (len * repeats,) -> (n,)


def load_audio(path: str | Path, duration: float | None = 3.0) -> tuple[np.ndarray, int]:
    """Read a WAV file and cut (or tile to) the official centred window.

    Args:
        path: the `.wav` file.
        duration: window in seconds (official: 3.0 for train and test); None keeps the whole clip.

    Returns:
        (wave, sample_rate): float32 wave of shape (round(duration * sample_rate),), or (N,) when
        duration is None.

    Raises:
        DataError: the file is missing, unreadable or empty.
    """
    wave, sample_rate = read_wav(path)
    if duration is not None:
        wave = crop_or_tile(wave, sample_rate, duration)
    return wave, sample_rate


def periodic_tukey(length: int, alpha: float = TUKEY_ALPHA, *, dtype=torch.float64, device=None) -> torch.Tensor:
    """The periodic ("fftbins") Tukey window SciPy uses by default for spectral estimation.

    A periodic window of `length` samples is the symmetric window over length + 1 samples without
    its last sample. With M = length the symmetric window's last index, the taper is
    0.5 * (1 - cos(2π n / (α M))) for n < α M / 2, mirrored at the end, and 1 in between.

    Args:
        length: number of samples (nperseg).
        alpha: fraction of the window inside the cosine tapers, in (0, 1].

    Returns:
        Tensor of shape (length,).
    """
    if length < 1 or not 0 < alpha <= 1:
        raise ValueError(f"periodic_tukey needs length >= 1 and 0 < alpha <= 1, got {length}, {alpha}")
    m = float(length)  # last index of the symmetric (length + 1)-point window
    n = torch.arange(length, dtype=torch.float64, device=device)
    edge = alpha * m / 2.0
    rise = 0.5 * (1.0 - torch.cos(2.0 * math.pi * n / (alpha * m)))
    fall = 0.5 * (1.0 - torch.cos(2.0 * math.pi * (m - n) / (alpha * m)))
    window = torch.where(n < edge, rise, torch.where(n > m - edge, fall, torch.ones_like(n)))
    return window.to(dtype)


def log_spectrogram(
    wave: torch.Tensor, sample_rate: int, nperseg: int = 512, noverlap: int = 274
) -> torch.Tensor:
    """log(PSD + 1e-7) / 12, equal to the official scipy.signal.spectrogram recipe.

    Per segment of `nperseg` samples (hop nperseg - noverlap, no padding): subtract the segment
    mean (constant detrend), multiply by the periodic Tukey(0.25) window, |rfft|², scale by
    1 / (sample_rate · Σ window²) (density) and double every bin but DC (and Nyquist for even
    nperseg) (one-sided).

    Args:
        wave: waveform(s), shape (..., N); integer input is converted to float32.
        sample_rate: samples per second (the PSD's density scaling depends on it).
        nperseg: segment length (= FFT length).
        noverlap: samples shared by consecutive segments, 0 <= noverlap < nperseg.

    Returns:
        Tensor of shape (..., nperseg // 2 + 1, T), T = (N - noverlap) // (nperseg - noverlap),
        on wave's device, float32 (float64 input stays float64).

    Raises:
        ValueError: bad nperseg/noverlap/sample_rate, or N < nperseg.
    """
    if nperseg < 1 or not 0 <= noverlap < nperseg:
        raise ValueError(f"need nperseg >= 1 and 0 <= noverlap < nperseg, got {nperseg}, {noverlap}")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    wave = torch.as_tensor(wave)
    if not torch.is_floating_point(wave) or wave.dtype not in (torch.float32, torch.float64):
        wave = wave.to(torch.float32)
    if wave.shape[-1] < nperseg:
        raise ValueError(f"waveform of {wave.shape[-1]} samples is shorter than one segment ({nperseg})")
    hop = nperseg - noverlap
    segments = wave.unfold(-1, nperseg, hop)  # (..., N) -> (..., T, nperseg)
    segments = segments - segments.mean(dim=-1, keepdim=True)  # constant detrend per segment
    window = periodic_tukey(nperseg, dtype=wave.dtype, device=wave.device)  # (nperseg,)
    spectrum = torch.fft.rfft(segments * window, n=nperseg, dim=-1)  # (..., T, nperseg // 2 + 1)
    power = spectrum.real.square() + spectrum.imag.square()
    one_sided = torch.full((nperseg // 2 + 1,), 2.0, dtype=wave.dtype, device=wave.device)
    one_sided[0] = 1.0  # DC appears once
    if nperseg % 2 == 0:
        one_sided[-1] = 1.0  # so does Nyquist for an even FFT length
    power = power * one_sided / (sample_rate * window.square().sum())  # one-sided density scaling
    log_power = torch.log(power + LOG_EPS) / LOG_SCALE
    return log_power.transpose(-1, -2)  # (..., T, F) -> (..., F, T)


def spectrogram_shape(
    sample_rate: int, duration: float, nperseg: int = 512, noverlap: int = 274
) -> tuple[int, int]:
    """(frequency bins, time frames) of `log_spectrogram` for a window of `duration` seconds.

    Example: 3 s at 16 kHz → (257, 200); at 22.05 kHz → (257, 276).

    Raises:
        ValueError: the window is shorter than one segment, or bad nperseg/noverlap.
    """
    if nperseg < 1 or not 0 <= noverlap < nperseg:
        raise ValueError(f"need nperseg >= 1 and 0 <= noverlap < nperseg, got {nperseg}, {noverlap}")
    n = int(round(duration * sample_rate))
    if n < nperseg:
        raise ValueError(f"{duration} s at {sample_rate} Hz is {n} samples, shorter than one segment ({nperseg})")
    return nperseg // 2 + 1, (n - noverlap) // (nperseg - noverlap)
