"""WAV loading, the official crop/tile rule and the log-spectrogram (vslrepro.data.formats.audio).

The spectrogram is checked against a plain SciPy reference (the official code's own call)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
import torch
from scipy import signal

from vslrepro.data.errors import DataError
from vslrepro.data.formats.audio import (
    crop_or_tile,
    load_audio,
    log_spectrogram,
    periodic_tukey,
    read_wav,
    spectrogram_shape,
)


def scipy_log_spectrogram(wave: np.ndarray, sample_rate: int, nperseg: int, noverlap: int) -> np.ndarray:
    """The official recipe, verbatim in spirit: scipy defaults, log(S + 1e-7), / 12 (float64)."""
    _, _, power = signal.spectrogram(wave.astype(np.float64), fs=sample_rate, nperseg=nperseg, noverlap=noverlap)
    return np.log(power + 1e-7) / 12.0


def test_crop_is_centred():
    np.testing.assert_array_equal(crop_or_tile(np.arange(10.0), 1, 4), [3, 4, 5, 6])  # start (10-4)/2 = 3
    np.testing.assert_array_equal(crop_or_tile(np.arange(9.0), 1, 4), [2, 3, 4, 5])  # start floor(2.5) = 2
    np.testing.assert_array_equal(crop_or_tile(np.arange(4.0), 1, 4), [0, 1, 2, 3])
    assert crop_or_tile(np.zeros(50000, np.float32), 16000, 3.0).shape == (48000,)


def test_short_clip_is_tiled_then_truncated():
    wave = np.array([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(crop_or_tile(wave, 1, 7), [1, 2, 3, 1, 2, 3, 1])  # 7 // 3 + 1 = 3 copies
    np.testing.assert_array_equal(crop_or_tile(wave, 1, 6), [1, 2, 3, 1, 2, 3])
    np.testing.assert_array_equal(crop_or_tile(wave, 2, 2.5), [1, 2, 3, 1, 2])  # n = round(2.5 * 2) = 5
    with pytest.raises(ValueError, match="non-empty 1-D"):
        crop_or_tile(np.zeros(0), 1, 1.0)


def test_stereo_is_clipped_then_averaged(tmp_path):
    path = tmp_path / "stereo.wav"
    left = np.array([0.5, 1.5, -0.2], dtype=np.float32)  # a float file may exceed 1
    right = np.array([-0.25, 0.0, -0.2], dtype=np.float32)
    soundfile.write(path, np.stack([left, right], axis=1), 8000, subtype="FLOAT")
    wave, rate = read_wav(path)
    assert rate == 8000 and wave.dtype == np.float32 and wave.shape == (3,)
    np.testing.assert_allclose(wave, [0.125, 0.5, -0.2], atol=1e-7)  # 1.5 clips to 1 before the mean


def test_pcm16_scaled_like_the_official_s16_decode(tmp_path):
    path = tmp_path / "pcm.wav"
    soundfile.write(path, np.array([16384, -32768, 32767], dtype=np.int16), 16000, subtype="PCM_16")
    wave, _ = read_wav(path)
    np.testing.assert_allclose(wave, [16384 / 32767, -1.0, 1.0], atol=1e-7)


def test_load_audio_crops_to_three_seconds(tmp_path):
    path = tmp_path / "clip.wav"
    samples = np.arange(22050 * 4) % 100 / 1000.0
    soundfile.write(path, samples.astype(np.float32), 22050, subtype="FLOAT")
    wave, rate = load_audio(path)
    assert rate == 22050 and wave.shape == (66150,)
    np.testing.assert_allclose(wave, samples[11025 : 11025 + 66150], atol=1e-7)
    assert load_audio(path, duration=None)[0].shape == (88200,)


def test_unreadable_missing_and_empty_wav(tmp_path):
    garbage = tmp_path / "broken_clip.wav"
    garbage.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunk")
    with pytest.raises(DataError, match="broken_clip.wav: unreadable audio"):
        read_wav(garbage)
    with pytest.raises(DataError, match="absent_clip.wav: audio file not found"):
        load_audio(tmp_path / "absent_clip.wav")
    empty = tmp_path / "empty_clip.wav"
    soundfile.write(empty, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(DataError, match="empty_clip.wav"):
        read_wav(empty)


def test_window_is_scipys_periodic_tukey():
    for length in (128, 129, 512):
        np.testing.assert_allclose(periodic_tukey(length).numpy(), signal.get_window(("tukey", 0.25), length),
                                   atol=1e-12)


@pytest.mark.parametrize("sample_rate", [8000, 16000, 22050])
@pytest.mark.parametrize("nperseg, noverlap", [(512, 274), (128, 64), (129, 30)])
def test_log_spectrogram_matches_scipy(sample_rate, nperseg, noverlap):
    rng = np.random.default_rng(sample_rate + nperseg)
    for length in (nperseg, sample_rate // 2 + 7, 3 * sample_rate):
        scale = rng.uniform(0.01, 1.0)
        wave = (scale * rng.uniform(-1, 1, length) + 0.1 * scale).astype(np.float32)  # with a DC offset
        expected = scipy_log_spectrogram(wave, sample_rate, nperseg, noverlap)
        result = log_spectrogram(torch.from_numpy(wave), sample_rate, nperseg, noverlap)
        assert result.dtype == torch.float32 and tuple(result.shape) == expected.shape
        assert np.abs(result.numpy() - expected).max() < 1e-3


def test_log_spectrogram_of_a_tone_and_silence():
    sample_rate = 16000
    t = np.arange(3 * sample_rate) / sample_rate
    tone = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    result = log_spectrogram(torch.from_numpy(tone), sample_rate)
    assert np.abs(result.numpy() - scipy_log_spectrogram(tone, sample_rate, 512, 274)).max() < 1e-3
    silence = log_spectrogram(torch.zeros(sample_rate), sample_rate)
    torch.testing.assert_close(silence, torch.full_like(silence, float(np.log(1e-7) / 12)))


def test_batched_equals_per_item():
    waves = torch.from_numpy(np.random.default_rng(1).uniform(-1, 1, (2, 3, 16000)).astype(np.float32))
    batched = log_spectrogram(waves, 16000)
    assert batched.shape == (2, 3, 257, 66)
    for i in range(2):
        for j in range(3):
            torch.testing.assert_close(batched[i, j], log_spectrogram(waves[i, j], 16000), rtol=0, atol=1e-6)


def test_shape_formula():
    assert spectrogram_shape(16000, 3.0) == (257, 200)
    assert spectrogram_shape(22050, 3.0) == (257, 276)
    assert spectrogram_shape(48000, 3.0) == (257, 603)
    assert tuple(log_spectrogram(torch.zeros(1, 48000), 16000).shape) == (1, 257, 200)
    with pytest.raises(ValueError, match="shorter than one segment"):
        log_spectrogram(torch.zeros(100), 16000)
    with pytest.raises(ValueError, match="noverlap"):
        spectrogram_shape(16000, 3.0, nperseg=128, noverlap=274)
