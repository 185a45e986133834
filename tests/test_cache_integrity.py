"""A tensor cache that cannot go stale or silently lose samples, audio at the expected rate, and
unreadable checkpoints named with their way out — each example of the "no silent wrong answers"
issue, on the real file formats (JPEG frames, WAV files, `.npy` arrays, torch checkpoints)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import soundfile
import torch
import yaml
from PIL import Image
from test_cache import _clip
from test_evaluate import real_profile  # noqa: F401  (the smoke Flickr-like set as user data)

from vslrepro import stages
from vslrepro.atomic import exclusive
from vslrepro.data.caches import AudioParams, build_cache, cache_key, load_cache
from vslrepro.data.errors import DataError, SkipLog
from vslrepro.methods import load_weights_file

AUDIO = AudioParams(duration=1.0, nperseg=128, noverlap=4, sample_rate=8000)


@pytest.fixture
def media(tmp_path):
    root = tmp_path / "data"
    for i, color in enumerate(["red", "lime", "blue"]):
        _clip(root, f"c{i}", color, size=(64, 64))
    return root


PAIRS = [(f"c{i}", f"c{i}") for i in range(3)]


def _build(media, tmp_path, **kwargs):
    return build_cache(media, PAIRS, tmp_path / "cache", mode="test", size=32, audio=AUDIO, **kwargs)


def _bump_mtime(path):
    """Make sure a rewritten file's modification time differs from the cached one (coarse clocks)."""
    stat = path.stat()
    import os
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


# ---------------------------------------------------------------------- stale cache

def test_a_frame_replaced_after_caching_is_read_again(media, tmp_path):
    first = _build(media, tmp_path)
    assert first.images[1, 1].mean() > 200  # lime: green channel
    Image.new("RGB", (64, 64), "red").save(media / "frames" / "c1.jpg", quality=95)
    _bump_mtime(media / "frames" / "c1.jpg")
    second = _build(media, tmp_path)
    assert second.folder != first.folder
    assert second.images[1, 0].mean() > 200 and second.images[1, 1].mean() < 60  # now red


def test_plain_evaluate_after_an_allowed_incomplete_one_refuses_the_bad_frame_then_sees_its_repair(
        real_profile, tmp_path, monkeypatch):  # noqa: F811 (the fixture imported above)
    """The issue's example: after `evaluate --skip-bad`, a plain evaluate used to reuse the cache
    without the bad sample and report "skipped": 0 — even after the file was repaired."""
    profile, root = real_profile
    monkeypatch.setenv("VSLREPRO_RESULTS", str(tmp_path / "results"))
    victim = pd.read_csv(root / "metadata" / "flickr_test.csv", header=None, dtype=str).iloc[3, 0]
    frame = root / "frames" / f"{victim}.jpg"
    good = frame.read_bytes()
    frame.write_bytes(good[: len(good) // 3])  # a truncated JPEG
    skipped = stages.evaluate(profile, "flickr", "center", "none", progress=False, allow_incomplete=True)
    assert json.loads(skipped.with_suffix(".json").read_text())["skipped"] >= 1
    again = stages.evaluate(profile, "flickr", "center", "none", progress=False, allow_incomplete=True)
    record = json.loads(again.with_suffix(".json").read_text())  # a reused skip-mode cache reports the same skips
    assert record["skipped"] >= 1 and record["skip_log"] is not None
    with pytest.raises(DataError, match=f"{victim}.jpg"):
        stages.evaluate(profile, "flickr", "center", "none", progress=False)
    frame.write_bytes(good)  # repaired
    _bump_mtime(frame)
    path = stages.evaluate(profile, "flickr", "center", "none", progress=False)
    record = json.loads(path.with_suffix(".json").read_text())
    assert (record["listed"], record["evaluated"], record["skipped"]) == (192, 192, 0)


# ---------------------------------------------------------------------- integrity on open

def test_flipped_bytes_in_a_cached_npy_are_caught_and_the_cache_rebuilt(media, tmp_path, capsys):
    cache = _build(media, tmp_path)
    expected = np.array(cache.specs)
    specs = cache.folder / "specs.npy"
    raw = bytearray(specs.read_bytes())
    for offset in range(len(raw) - 64, len(raw) - 32):  # inside the last spectrogram's data
        raw[offset] ^= 0xFF
    specs.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"specs\.npy fails its checksum.*delete .* run again"):
        load_cache(cache.folder)
    rebuilt = _build(media, tmp_path)
    assert "fails its checksum" in capsys.readouterr().err
    np.testing.assert_array_equal(np.array(rebuilt.specs), expected)


def test_a_truncated_npy_is_named_and_rebuilt(media, tmp_path, capsys):
    cache = _build(media, tmp_path)
    images = cache.folder / "images.npy"
    images.write_bytes(images.read_bytes()[:-100])
    with pytest.raises(DataError, match=rf"{cache.folder}.*images\.npy holds .* bytes.*truncated"):
        load_cache(cache.folder)
    rebuilt = _build(media, tmp_path)
    assert "images.npy holds" in capsys.readouterr().err and rebuilt.images.shape == (3, 3, 32, 32)


def test_a_cache_without_its_manifest_is_refused(media, tmp_path):
    cache = _build(media, tmp_path)
    (cache.folder / "done.json").write_text("{not json")
    with pytest.raises(DataError, match=r"unreadable manifest done\.json"):
        load_cache(cache.folder)


def test_the_key_follows_the_skip_mode_and_the_media_stamps(media):
    strict = cache_key(media, PAIRS, "test", 32, AUDIO)
    assert cache_key(media, PAIRS, "test", 32, AUDIO, skipping=True) != strict
    assert cache_key(media, PAIRS, "test", 32, AUDIO) == strict
    _bump_mtime(media / "audio" / "c2.wav")
    assert cache_key(media, PAIRS, "test", 32, AUDIO) != strict


# ---------------------------------------------------------------------- sample rate

def test_a_wav_at_another_rate_is_named_skipped_or_resampled_on_request(media, tmp_path):
    _clip(media, "c1", "lime", size=(64, 64), rate=16000)
    with pytest.raises(DataError, match=r"c1\.wav: sample rate 16000 Hz, expected 8000 Hz"):
        _build(media, tmp_path)
    skip = SkipLog()
    kept = _build(media, tmp_path, skip=skip)
    assert kept.pairs == [("c0", "c0"), ("c2", "c2")] and skip.ids == {"c1"}
    assert "16000 Hz" in skip.entries[0].reason
    resampling = AudioParams(duration=1.0, nperseg=128, noverlap=4, sample_rate=8000, resample=True)
    cache = build_cache(media, PAIRS, tmp_path / "cache", mode="test", size=32, audio=resampling)
    assert len(cache) == 3 and cache.resampled == [{"file": str(media / "audio" / "c1.wav"), "from_hz": 16000}]
    # the resampled 440 Hz tone has (almost) the spectrogram of the same tone written at 8 kHz
    np.testing.assert_allclose(np.array(cache.specs[1]), np.array(cache.specs[0]), atol=0.05)
    assert json.loads((cache.folder / "done.json").read_text())["resampled"] == cache.resampled


def test_the_profile_sample_rate_reaches_evaluation_and_its_record(real_profile, tmp_path, monkeypatch):  # noqa: F811
    profile, root = real_profile
    monkeypatch.setenv("VSLREPRO_RESULTS", str(tmp_path / "results"))
    victim = pd.read_csv(root / "metadata" / "flickr_test.csv", header=None, dtype=str).iloc[2, 0]
    wav = root / "audio" / f"{victim}.wav"
    wave, rate = soundfile.read(wav, dtype="int16")
    soundfile.write(wav, np.repeat(wave, 2), 2 * rate, subtype="PCM_16")  # the same sound at 16 kHz
    with pytest.raises(DataError, match=rf"{victim}\.wav: sample rate {2 * rate} Hz, expected {rate} Hz"):
        stages.evaluate(profile, "flickr", "center", "none", progress=False)
    params = yaml.safe_load(profile.read_text())
    params["input"]["resample_audio"] = True
    profile.write_text(yaml.safe_dump(params))
    path = stages.evaluate(profile, "flickr", "center", "none", progress=False)
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["evaluated"] == 192 and record["resampled_audio"] == [{"file": str(wav), "from_hz": 2 * rate}]


# ---------------------------------------------------------------------- checkpoints

def test_a_truncated_checkpoint_is_named_with_its_way_out(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"model": {"w": torch.ones(1000)}, "epoch": 1}, run / "latest.pt")
    (run / "latest.pt").write_bytes((run / "latest.pt").read_bytes()[:500])
    with pytest.raises(DataError, match=rf"cannot read weights file {run / 'latest.pt'}.*delete the run folder {run}"):
        load_weights_file(run / "latest.pt")
    release = tmp_path / "ezvsl_flickr.pth"
    release.write_bytes(b"\x80\x04 not a checkpoint")
    with pytest.raises(DataError, match=rf"(?s){release}.*copy or download it again"):
        load_weights_file(release)


# ---------------------------------------------------------------------- concurrency

BUILD = """
import sys
from pathlib import Path
from vslrepro.data.caches import AudioParams, build_cache
cache = build_cache(Path(sys.argv[1]), [(f"c{i}", f"c{i}") for i in range(3)], Path(sys.argv[2]), mode="test",
                    size=32, audio=AudioParams(duration=1.0, nperseg=128, noverlap=4, sample_rate=8000))
print(cache.folder)
"""


def test_two_processes_building_one_cache_take_turns(media, tmp_path):
    folder = tmp_path / "cache"
    target = folder / cache_key(media, PAIRS, "test", 32, AUDIO)
    logs = [tmp_path / f"stderr{i}.txt" for i in range(2)]
    with exclusive(folder / f"{target.name}.lock", "the test's head start"):
        processes = [subprocess.Popen([sys.executable, "-c", BUILD, str(media), str(folder)],
                                      stdout=subprocess.PIPE, stderr=log.open("w"), text=True) for log in logs]
        deadline = time.time() + 120
        while not all("waiting for another process" in log.read_text() for log in logs):
            assert time.time() < deadline and all(p.poll() is None for p in processes), \
                [log.read_text() for log in logs]
            time.sleep(0.1)
    outputs = [p.communicate(timeout=120)[0].strip() for p in processes]
    assert [p.returncode for p in processes] == [0, 0], [log.read_text() for log in logs]
    assert outputs == [str(target)] * 2
    assert sorted(p.name for p in target.iterdir()) == ["done.json", "images.npy", "pairs.json", "specs.npy"]
    shutil.rmtree(target)
