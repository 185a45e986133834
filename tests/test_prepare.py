"""`python -m vslrepro data prepare` (vslrepro.commands.prepare) on short videos made here with PyAV: each
frame's grey level encodes its number, the audio is a 440 Hz sine at 44.1 kHz in stereo. The
outputs must load with the package's readers, show the requested frame, and hold 16 kHz mono audio
of the clip's length; broken videos are reported; a rerun skips finished ids."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest

from vslrepro.__main__ import main
from vslrepro.commands.prepare import prepare_videos
from vslrepro.data.formats.audio import read_wav
from vslrepro.data.formats.images import load_frame

FPS, SECONDS, RATE = 10, 2, 44100
LEFT, RIGHT = 0.5, 0.25  # sine amplitudes of the two channels: the mono mix has amplitude 0.375


def grey(index: int) -> int:
    """The grey level of frame `index`: 10 levels apart, so JPEG and H.264 noise cannot confuse two frames."""
    return 20 + 10 * index


def frame_number(image) -> int:
    return int(round((np.asarray(image, dtype=np.float64).mean() - 20) / 10))


def make_video(path, video_codec: str = "libx264", audio_codec: str = "aac", audio: bool = True) -> None:
    """A SECONDS-long 64x48 video at FPS, frame i of grey level grey(i), with a stereo sine track."""
    with av.open(str(path), "w") as container:
        video = container.add_stream(video_codec, rate=FPS)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        sound = container.add_stream(audio_codec, rate=RATE, layout="stereo") if audio else None
        for index in range(FPS * SECONDS):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), grey(index), np.uint8), format="rgb24")
            container.mux(video.encode(frame))
        container.mux(video.encode())
        if sound is None:
            return
        t = np.arange(RATE * SECONDS) / RATE
        stereo = np.stack([LEFT * np.sin(2 * np.pi * 440 * t), RIGHT * np.sin(2 * np.pi * 440 * t)])  # (2, n)
        for start in range(0, stereo.shape[1], 1024):
            chunk = stereo[:, start:start + 1024]
            if audio_codec == "aac":
                frame = av.AudioFrame.from_ndarray(chunk.astype(np.float32), format="fltp", layout="stereo")
            else:  # packed s16: (2, n) -> (1, 2n) interleaved
                samples = np.round(chunk * 32767).astype(np.int16).T.reshape(1, -1)
                frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="stereo")
            frame.sample_rate, frame.pts = RATE, start
            container.mux(sound.encode(frame))
        container.mux(sound.encode())


@pytest.fixture
def videos(tmp_path):
    folder = tmp_path / "videos"
    (folder / "dog").mkdir(parents=True)  # class subfolders, as some downloads are organized
    make_video(folder / "clip_a.mkv", "mpeg4", "pcm_s16le")  # PCM audio: exact sample counts
    make_video(folder / "dog" / "clip_b.mp4")  # H.264 + AAC, as downloaded
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    make_video(folder / "silent_film.mp4", audio=False)
    (folder / "notes.txt").write_text("not a video")
    return folder


def check_audio(path, seconds: float = SECONDS) -> None:
    """16 kHz mono of the clip's length holding a 440 Hz sine with the channel average's RMS (PCM and
    AAC tracks are within 5e-6 and 2.1e-4 of it; AAC's peaks are 5 % off, so the RMS is compared)."""
    wave, rate = read_wav(path)
    assert rate == 16000 and wave.shape == (int(seconds * 16000),)
    spectrum = np.abs(np.fft.rfft(wave))
    assert np.argmax(spectrum) * rate / len(wave) == pytest.approx(440, abs=1)  # the sine survives resampling
    middle = wave[4000:-4000]  # away from the resampler's edges
    assert np.sqrt(np.mean(middle.astype(np.float64) ** 2)) == pytest.approx((LEFT + RIGHT) / 2 / np.sqrt(2), abs=1e-3)


def test_prepare_middle_frame_audio_failures_and_resume(videos, tmp_path):
    out = tmp_path / "root"
    report = prepare_videos(videos, out, workers=2)
    assert report["counts"] == {"found": 4, "prepared": 2, "skipped": 0, "failed": 2}
    failed = {entry["id"]: entry["error"] for entry in report["failed"]}
    assert set(failed) == {"broken", "silent_film"} and "no audio stream" in failed["silent_film"]
    assert json.loads((out / "prepare_report.json").read_text()) == report
    for clip in ("clip_a", "clip_b"):  # PCM in Matroska, AAC in MP4
        assert frame_number(load_frame(out / "frames" / f"{clip}.jpg")) == FPS * SECONDS // 2  # shown at 1.0 s
        check_audio(out / "audio" / f"{clip}.wav")
    assert sorted(p.name for p in (out / "frames").iterdir()) == ["clip_a.jpg", "clip_b.jpg"]  # no leftovers
    stamps = {p: p.stat().st_mtime_ns for p in (out / "frames").iterdir()}
    again = prepare_videos(videos, out)
    assert again["counts"] == {"found": 4, "prepared": 0, "skipped": 2, "failed": 2}
    assert {p: p.stat().st_mtime_ns for p in (out / "frames").iterdir()} == stamps


@pytest.mark.parametrize("option, value, expected", [("--time", "0.35", 3), ("--time", "0", 0),
                                                     ("--time", "1.9", 19), ("--frame-index", "7", 7)])
def test_cli_frame_choice(videos, tmp_path, option, value, expected):
    out = tmp_path / "root"
    status = main(["data", "prepare", "--videos", str(videos), "--out", str(out), option, value])
    assert status == 1  # the broken videos fail
    for clip in ("clip_a", "clip_b"):
        assert frame_number(load_frame(out / "frames" / f"{clip}.jpg")) == expected


def test_out_of_range_and_vggss_ids(tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    make_video(folder / "abc_30000_32000.mkv", "mpeg4", "pcm_s16le")
    report = prepare_videos(folder, tmp_path / "late", time=2.5)
    assert "beyond the video" in report["failed"][0]["error"]
    report = prepare_videos(folder, tmp_path / "many", frame_index=FPS * SECONDS)
    assert "has 20 frames" in report["failed"][0]["error"]
    report = prepare_videos(folder, tmp_path / "vggss", ids="vggss")
    assert report["counts"]["prepared"] == 1 and (tmp_path / "vggss" / "frames" / "abc_000030.jpg").is_file()
    check_audio(tmp_path / "vggss" / "audio" / "abc_000030.wav")
    (folder / "abc_000030.mkv").write_bytes((folder / "abc_30000_32000.mkv").read_bytes())
    report = prepare_videos(folder, tmp_path / "twice", ids="vggss")
    assert report["counts"] == {"found": 2, "prepared": 0, "skipped": 0, "failed": 2}
    assert all("2 videos give id abc_000030" in entry["error"] for entry in report["failed"])
