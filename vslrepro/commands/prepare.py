"""Raw videos -> the community layout: one frame `frames/<id>.jpg` and the audio `audio/<id>.wav`.

The official repositories ship no extraction script: they read pre-extracted `frames/<id>.jpg` and
`audio/<id>.wav` (docs/data.md §1). This module makes them from a folder of videos with PyAV:

- the frame: the frame displayed at a chosen time — the last frame whose presentation time is at
  most the target, measured from the video stream's first frame — by default the middle of the
  video stream; or, with `frame_index`, the N-th decoded frame counted from 0. A third-party note
  on VGG-SS (swimmiing/ACL-SSL, `VGGSS/README.md`) says the boxes were drawn on "the 125th frame of
  a 25 fps video" rather than the exact centre; whether that count starts at 0 or 1 is not stated,
  so `frame_index` is the user's choice. At 25 fps frame 125 (from 0) is the one shown at 5.0 s,
  the middle of a 10-s clip, which is also what the default picks there.
  Saved as RGB JPEG (quality `JPEG_QUALITY`).
- the audio: the first audio stream, decoded whole and converted to 16-bit mono at `sample_rate`
  (16 kHz by default) by PyAV's `AudioResampler`, i.e. FFmpeg's libswresample with its default
  settings, as `ffmpeg -ac 1 -ar 16000` converts (stereo is averaged: (L + R) / 2). When the
  stream declares its duration, the output is cut to it (encoder padding such as AAC's last
  partial frame is dropped). Saved as a PCM_16 WAV, which `audio.read_wav` reads.

Ids are the video file names without extension (`ids="stem"`), or, with `ids=<dataset>`, the file
name rewritten to that dataset's id spelling (`Dataset.clip_id_from_file`; VGG-SS: a downloader's
`<YouTube id>_<start ms>_<end ms>` becomes `<YouTube id>_<start s, 6 digits>`).

Runs are parallel (`workers` processes), resumable (an id whose JPEG and WAV both exist is skipped;
each file is written atomically, so a killed run never leaves a half-written one) and report every
failure: `prepare_report.json` (or `report`) names each video that failed and why (no video or
audio stream, undecodable, a time beyond the video, too few frames, two videos for one id).
"""

from __future__ import annotations

import json
from fractions import Fraction
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import av
import numpy as np
import soundfile
from PIL import Image

from vslrepro.atomic import atomic_write, atomic_write_text
from vslrepro.data.datasets import DATASETS

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".flv", ".m4v", ".mpg", ".mpeg", ".3gp")
SAMPLE_RATE = 16000  # Hz: the rate of the community's prepared WAV files
JPEG_QUALITY = 95
TIME_TOLERANCE = 1e-6  # s: a frame shown at t + 1 µs still counts as shown at t (float input times)
REPORT_NAME = "prepare_report.json"
ID_STYLES = ("stem", *(name for name, cls in DATASETS.items() if cls.clip_id_from_file is not None))


class PrepareError(ValueError):
    """A video that cannot be turned into a frame and a WAV; the message says why."""


def find_videos(videos: str | Path) -> list[Path]:
    """Every video file (by extension, `VIDEO_SUFFIXES`) under `videos`, subfolders included, sorted."""
    videos = Path(videos)
    if not videos.is_dir():
        raise FileNotFoundError(f"video folder {videos} not found")
    return sorted(path for path in videos.rglob("*")
                  if path.suffix.lower() in VIDEO_SUFFIXES and path.is_file() and not path.name.startswith("."))


def clip_id(video: Path, ids: str = "stem") -> str:
    """The clip id of a video file: its stem, or (`ids=<dataset>`) that dataset's spelling of it."""
    if ids not in ID_STYLES:
        raise ValueError(f"unknown id style {ids!r}: expected one of {ID_STYLES}")
    return video.stem if ids == "stem" else DATASETS[ids].clip_id_from_file(video.stem)


def _seconds(stream: av.stream.Stream, value: int | None) -> Fraction | None:
    return None if value is None or stream.time_base is None else value * stream.time_base


def _frame_at_time(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                   time: float | None) -> av.VideoFrame:
    """The frame shown `time` seconds after the stream's first frame (None: the stream's middle)."""
    start = _seconds(stream, stream.start_time) or Fraction(0)
    duration = _seconds(stream, stream.duration)
    if duration is None and container.duration is not None:
        duration = Fraction(container.duration, av.time_base)
    if time is None:
        if duration is None:
            raise PrepareError("the video stream declares no duration, so its middle is unknown; pass a time")
        target = start + duration / 2
    else:
        if duration is not None and time >= duration:
            raise PrepareError(f"time {time} s is beyond the video ({float(duration):.3f} s)")
        target = start + Fraction(time)
    chosen, passed = None, False
    for frame in container.decode(stream):
        if frame.pts is None:
            raise PrepareError("a video frame without a presentation time")
        if frame.pts * stream.time_base > target + Fraction(TIME_TOLERANCE):
            passed = True
            break
        chosen = frame
    if chosen is None:
        raise PrepareError(f"no video frame at or before {float(target):.3f} s")
    if not passed and duration is None and stream.average_rate:  # the last frame, shown for 1/fps
        shown_until = chosen.pts * stream.time_base + 1 / Fraction(stream.average_rate)
        if target >= shown_until:
            raise PrepareError(f"time {time} s is beyond the video (last frame shown until "
                               f"{float(shown_until - start):.3f} s)")
    return chosen


def _frame_at_index(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                    index: int) -> av.VideoFrame:
    """The `index`-th decoded frame (from 0, in presentation order)."""
    decoded = 0
    for frame in container.decode(stream):
        if decoded == index:
            return frame
        decoded += 1
    raise PrepareError(f"frame index {index} requested, the video has {decoded} frames")


def _audio(container: av.container.InputContainer, stream: av.audio.stream.AudioStream, sample_rate: int) -> np.ndarray:
    """The whole audio stream as int16 mono at `sample_rate` (libswresample), cut to the declared duration."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
    chunks = []
    for frame in container.decode(stream):
        chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(frame)]  # (1, n) -> (n,)
    chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]  # flush the resampler
    wave = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
    duration = _seconds(stream, stream.duration)
    if duration is not None:
        wave = wave[: int(round(duration * sample_rate))]
    if wave.size == 0:
        raise PrepareError("the audio stream decodes to no samples")
    return wave


def extract(video: str | Path, *, time: float | None = None, frame_index: int | None = None,
            sample_rate: int = SAMPLE_RATE) -> tuple[Image.Image, np.ndarray]:
    """Decode one video's frame (see the module docstring) and its audio.

    Args:
        video: the video file.
        time: seconds from the first frame (None with frame_index None: the middle).
        frame_index: the N-th frame instead of a time.
        sample_rate: output audio rate.

    Returns:
        (RGB PIL image, int16 mono waveform of shape (n,)).

    Raises:
        PrepareError: no video or audio stream, a time beyond the video, too few frames, no samples.
        av.error.FFmpegError: the file does not open or decode.
    """
    with av.open(str(video)) as container:
        if not container.streams.video:
            raise PrepareError("no video stream")
        if not container.streams.audio:
            raise PrepareError("no audio stream")
        stream = container.streams.video[0]
        frame = (_frame_at_index(container, stream, frame_index) if frame_index is not None
                 else _frame_at_time(container, stream, time))
        image = frame.to_image().convert("RGB")
    with av.open(str(video)) as container:  # a second pass: the video pass may have stopped early
        wave = _audio(container, container.streams.audio[0], sample_rate)
    return image, wave


def _prepare_one(job: tuple) -> dict[str, str]:
    """Worker: extract one video and write its JPEG and WAV atomically; {"id", "video", "error"}."""
    video, clip, out, time, frame_index, sample_rate = job
    try:
        image, wave = extract(video, time=time, frame_index=frame_index, sample_rate=sample_rate)
    except Exception as error:  # noqa: BLE001 - one bad video is recorded, never stops the batch
        return {"id": clip, "video": str(video), "error": f"{type(error).__name__}: {error}"}
    out = Path(out)
    atomic_write(out / "audio" / f"{clip}.wav",
                 lambda stream: soundfile.write(stream, wave, sample_rate, format="WAV", subtype="PCM_16"))
    atomic_write(out / "frames" / f"{clip}.jpg", lambda stream: image.save(stream, format="JPEG", quality=JPEG_QUALITY))
    return {"id": clip, "video": str(video), "error": ""}


def prepare_videos(videos: str | Path, out: str | Path, *, time: float | None = None, frame_index: int | None = None,
                   workers: int = 1, sample_rate: int = SAMPLE_RATE, ids: str = "stem",
                   report: str | Path | None = None, progress: bool = False) -> dict[str, Any]:
    """Extract a frame and the audio of every video under `videos` into `out/frames`, `out/audio`.

    Args:
        videos: folder of videos (searched recursively).
        out: the data root to fill.
        time: seconds from the first frame; frame_index: the N-th frame instead (not both);
            neither: the middle of the video.
        workers: processes.
        sample_rate: audio rate of the WAV files.
        ids: "stem" (file name) or a dataset whose ids are spelled otherwise (`ID_STYLES`; VGG-SS:
            `<YouTube id>_<start ms>_<end ms>` -> `<YouTube id>_<start s:06d>`).
        report: failure report path (default `out/prepare_report.json`).
        progress: show a progress bar.

    Returns:
        The report: {"videos", "out", "settings", "counts": {found, prepared, skipped, failed},
        "failed": [{"id", "video", "error"}]}, also written to `report`.

    Raises:
        ValueError: both time and frame_index, a negative one, or workers < 1.
        FileNotFoundError: the video folder does not exist.
    """
    if time is not None and frame_index is not None:
        raise ValueError("give a time or a frame index, not both")
    if (time is not None and time < 0) or (frame_index is not None and frame_index < 0):
        raise ValueError(f"time and frame index must be >= 0, got time={time}, frame_index={frame_index}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    out = Path(out)
    found = find_videos(videos)
    failed, by_id = [], {}
    for video in found:
        try:
            by_id.setdefault(clip_id(video, ids), []).append(video)
        except ValueError as error:
            failed.append({"id": "", "video": str(video), "error": str(error)})
    jobs, skipped = [], 0
    for clip, sources in sorted(by_id.items()):
        if len(sources) > 1:
            failed += [{"id": clip, "video": str(video), "error": f"{len(sources)} videos give id {clip}: "
                        + ", ".join(map(str, sources))} for video in sources]
        elif (out / "frames" / f"{clip}.jpg").is_file() and (out / "audio" / f"{clip}.wav").is_file():
            skipped += 1
        else:
            jobs.append((str(sources[0]), clip, str(out), time, frame_index, sample_rate))
    (out / "frames").mkdir(parents=True, exist_ok=True)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    if workers == 1 or len(jobs) < 2:
        results = map(_prepare_one, jobs)
        pool = None
    else:
        pool = Pool(workers)
        results = pool.imap_unordered(_prepare_one, jobs, chunksize=max(1, min(16, len(jobs) // (4 * workers))))
    if progress:
        from tqdm.auto import tqdm
        results = tqdm(results, total=len(jobs), desc="preparing videos")
    try:
        outcomes = list(results)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    failed += [outcome for outcome in outcomes if outcome["error"]]
    failed.sort(key=lambda entry: (entry["id"], entry["video"]))
    document = {
        "videos": str(videos),
        "out": str(out),
        "settings": {"time": time, "frame_index": frame_index, "sample_rate": sample_rate, "ids": ids,
                     "jpeg_quality": JPEG_QUALITY},
        "counts": {"found": len(found),
                   "prepared": sum(1 for outcome in outcomes if not outcome["error"]),
                   "skipped": skipped, "failed": len(failed)},
        "failed": failed,
    }
    atomic_write_text(report or out / REPORT_NAME, json.dumps(document, indent=1) + "\n")
    return document
