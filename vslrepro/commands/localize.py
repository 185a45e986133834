"""Localize the sound in your own clip: a method's map over the frame, its confidence, and whether
that confidence clears the method's detection threshold.

    python -m vslrepro localize --checkpoint RUN/latest.pt --video clip.mp4 --out overlay.png \
        [--evaluation results/quick/samples/vggss_ezvsl_latest.csv | --threshold T]
    python -m vslrepro localize --checkpoint best.pth --profile paper --method ezvsl \
        --image frame.jpg --audio sound.wav --out overlay.png --threshold 10.5

The clip goes through the evaluation's preprocessing (docs/data.md §4–5): the frame squashed to the
profile's `input.image_size` (bicubic) and ImageNet-normalized; the sound mixed to mono, its centred
`input.audio_duration`-s window, the log-spectrogram with `input.nperseg` / `noverlap`, ÷ 12. A
`.wav` is read exactly as evaluation reads it (`data.audio.read_wav`); any other audio file, and
the sound of a video, is decoded with PyAV as signed 16-bit ÷ 32767 (the official loaders' own
decoding). From a video, the frame is the one at the middle of the clip, where the audio window is
centred. The expected rate is the profile's `input.sample_rate` (the rate the tensor cache demands
of every WAV) unless `sample_rate` is given, and a clip at another rate is resampled with
`torchaudio.functional.resample` (the spectrogram's values depend on the rate). Evaluation never
resamples: a clip at the expected rate gives exactly the evaluation's input.

The threshold. A clip has a visible source when its confidence d is at least δ (docs/protocol.md
§5, `d ≥ δ`). δ is given, or read from an evaluation's per-sample CSV: the max-F1 operating point of
the exact sweep (`metrics.max_f1_operating_point`), with the confidence kind and γ recorded in that
evaluation's provenance. The confidence is on the method's own scale (EZ-VSL's `max`: cos/τ), so a
threshold only transfers between runs of one method and checkpoint.

The model. Our checkpoints (`best.pt` / `latest.pt`) carry a `run.json` beside them that names the
method, dataset and profile; an official release (e.g. EZ-VSL's `best.pth`) needs `--profile paper`
(its backbone and embedding size) and `--method`. Both load through the method's
`vslrepro.factory.evaluation_model`, strictly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import pandas as pd
import torch
import torchaudio
from PIL import Image

from vslrepro import layout, metrics
from vslrepro.data.errors import DataError
from vslrepro.data.formats.audio import crop_or_tile, log_spectrogram, read_wav
from vslrepro.data.formats.images import load_frame, normalize_images, resize_for_test, to_chw
from vslrepro.factory import evaluation_model
from vslrepro.figures import clip_overlay
from vslrepro.methods import display_name
from vslrepro.profiles import load_profile

S16_SCALE = 32767.0  # the official loaders divide PyAV's signed 16-bit samples by 32767


@dataclass
class Clip:
    """A frame and its sound as read from the user's files.

    frame: RGB image at its own size; wave: (N,) float32 mono in [-1, 1]; sample_rate: Hz.
    """

    frame: Image.Image
    wave: np.ndarray
    sample_rate: int
    source: str  # the file(s) it was read from
    name: str    # the file name shown in the figure


@dataclass
class Localized:
    """What `localize_clip` returns: the (size, size) map, every confidence score of the method and
    the one the decision uses."""

    map: np.ndarray
    confidence: dict[str, float]
    kind: str

    @property
    def score(self) -> float:
        return self.confidence[self.kind]


# ------------------------------------------------------------------------------------ reading a clip

def _open(path: Path):
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        return av.open(str(path))
    except av.error.FFmpegError as error:
        raise DataError(f"{path}: not a media file PyAV can open ({error})") from error


def decode_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """The first audio stream of a media file as (N,) float32 mono in [-1, 1] at its own rate.

    Decoded to planar signed 16-bit (layout and rate kept) and divided by 32767, like the official
    loaders; then clipped and averaged over channels, like `read_wav`.

    Raises:
        DataError: a missing file, no audio stream, or no samples.
    """
    path = Path(path)
    with _open(path) as container:
        if not container.streams.audio:
            raise DataError(f"{path}: no audio stream (localization needs the clip's sound)")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="s16p")  # layout and rate unchanged
        chunks = []
        try:
            for frame in container.decode(stream):
                chunks += [out.to_ndarray() for out in resampler.resample(frame)]  # (C, n) int16 each
            chunks += [out.to_ndarray() for out in resampler.resample(None)]      # flush
        except av.error.FFmpegError as error:
            raise DataError(f"{path}: unreadable audio ({error})") from error
        rate = int(stream.rate or stream.codec_context.sample_rate)
    if not chunks or sum(c.shape[1] for c in chunks) == 0:
        raise DataError(f"{path}: the audio stream holds no samples")
    wave = np.concatenate(chunks, axis=1).astype(np.float32) / np.float32(S16_SCALE)  # (C, N)
    return np.clip(wave, -1.0, 1.0).mean(axis=0, dtype=np.float32), rate          # (C, N) -> (N,)


def middle_frame(path: str | Path) -> Image.Image:
    """The video frame at the middle of the clip (the first frame at or after half its duration).

    Raises:
        DataError: a missing file, no video stream, or no decodable frame.
    """
    path = Path(path)
    with _open(path) as container:
        if not container.streams.video:
            raise DataError(f"{path}: no video stream")
        stream = container.streams.video[0]
        middle = None  # seconds
        if stream.duration is not None and stream.time_base is not None:
            middle = float((stream.start_time or 0) * stream.time_base + stream.duration * stream.time_base / 2)
        elif container.duration is not None:  # e.g. Matroska: the duration is the container's
            middle = ((container.start_time or 0) + container.duration / 2) / av.time_base
        try:
            frames = container.decode(stream)
            if middle is not None:
                chosen = None
                for frame in frames:
                    chosen = frame
                    if frame.time is not None and frame.time >= middle:
                        break
            else:  # no duration in the header: count the frames, then take the middle one
                count = sum(1 for _ in frames)
                container.seek(0)
                chosen = next((f for i, f in enumerate(container.decode(stream)) if i == count // 2), None)
        except av.error.FFmpegError as error:
            raise DataError(f"{path}: unreadable video ({error})") from error
        if chosen is None:
            raise DataError(f"{path}: the video stream holds no frame")
        return chosen.to_image().convert("RGB")


def read_clip(*, video: str | Path | None = None, image: str | Path | None = None,
              audio: str | Path | None = None) -> Clip:
    """A clip from a video file (its middle frame and its sound), or from an image and an audio file.

    Raises:
        ValueError: neither or both ways given.
        DataError: a missing or unreadable file (naming it).
    """
    if (video is not None and (image is not None or audio is not None)) or \
            (video is None and (image is None or audio is None)):
        raise ValueError("give either a video (--video) or an image and an audio file (--image and --audio)")
    if video is not None:
        wave, rate = decode_audio(video)
        return Clip(middle_frame(video), wave, rate, str(video), Path(video).name)
    audio = Path(audio)
    wave, rate = read_wav(audio) if audio.suffix.lower() == ".wav" else decode_audio(audio)
    return Clip(load_frame(image), wave, rate, f"{image} + {audio}", Path(image).name)


# ------------------------------------------------------------------------------------ preprocessing

def expected_sample_rate(params: dict[str, Any]) -> int:
    """The sample rate every WAV of the profile's data has: its `input.sample_rate`."""
    return int(params["input"]["sample_rate"])


def model_inputs(clip: Clip, params: dict[str, Any], sample_rate: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The evaluation's inputs for one clip: (1, 3, S, S) normalized frame, (1, 1, F, T) spectrogram."""
    spec_cfg = params["input"]
    image = torch.from_numpy(to_chw(resize_for_test(clip.frame, int(spec_cfg["image_size"]))))  # (3, S, S)
    wave = torch.from_numpy(clip.wave)
    if clip.sample_rate != sample_rate:
        wave = torchaudio.functional.resample(wave, clip.sample_rate, sample_rate)
    window = crop_or_tile(wave.numpy(), sample_rate, float(spec_cfg["audio_duration"]))
    spec = log_spectrogram(torch.from_numpy(window), sample_rate, int(spec_cfg["nperseg"]),
                           int(spec_cfg["noverlap"]))                                       # (F, T)
    return normalize_images(image.unsqueeze(0)), spec[None, None]  # (1, 3, S, S), (F, T) -> (1, 1, F, T)


# ------------------------------------------------------------------------------------ the model

def load_model(checkpoint: str | Path, *, method: str | None = None, profile: Any = None,
               dataset: str | None = None) -> tuple[torch.nn.Module, dict[str, Any], str, str]:
    """The method at `checkpoint`, ready for `localize`, with the profile it runs under.

    The method, dataset and profile come from the `run.json` beside the checkpoint (our runs),
    unless given; an official release has none and needs `profile` (method default: ezvsl).

    Returns:
        (model, params, method, dataset).

    Raises:
        FileNotFoundError: no such checkpoint file.
        ValueError: no profile to build the model from.
        DataError: a file that is not a checkpoint, or one that does not fit the method.
    """
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint {checkpoint} not found")
    recorded: dict[str, Any] = {}
    if (checkpoint.parent / "run.json").is_file():
        recorded = json.loads((checkpoint.parent / "run.json").read_text())
    if profile is None and "params" not in recorded:
        raise ValueError(f"{checkpoint} has no run.json beside it: give the profile it was trained under "
                         f"(--profile paper for an official EZ-VSL release)")
    params = (dict(profile) if isinstance(profile, dict) else load_profile(profile)) if profile is not None \
        else recorded["params"]
    method = method or recorded.get("method") or "ezvsl"
    dataset = dataset or recorded.get("dataset") or params["datasets"][0]
    model = evaluation_model(params, dataset, method, checkpoint)
    return model, params, method, dataset


@torch.no_grad()
def localize_clip(model: torch.nn.Module, clip: Clip, params: dict[str, Any], *, sample_rate: int,
                  kind: str | None = None, device: str | torch.device = "cpu") -> Localized:
    """The method's (224, 224) map and confidences for one clip (as evaluation computes them).

    Args:
        kind: the confidence the decision uses (default: the profile's `evaluate.confidence`).
    """
    image, spec = model_inputs(clip, params, sample_rate)
    maps, confidence = model.to(device).eval().localize(image.to(device), spec.to(device))
    kind = kind or params["evaluate"]["confidence"]
    if kind not in confidence:
        raise ValueError(f"the method gives no {kind!r} confidence; it gives {sorted(confidence)}")
    return Localized(maps[0].float().cpu().numpy(), {k: float(v[0]) for k, v in confidence.items()}, kind)


# ------------------------------------------------------------------------------------ the threshold

@dataclass
class Threshold:
    """A detection threshold δ on one confidence kind, and where it comes from."""

    value: float
    kind: str | None
    source: str
    point: dict[str, float] | None = None  # the max-F1 operating point (f1, precision, recall)
    record: dict[str, Any] | None = None  # the evaluation's provenance (method, weights)


def evaluation_csv(evaluation: str | Path, dataset: str, method: str, checkpoint: str | Path) -> Path:
    """The per-sample CSV behind `--evaluation`: the file itself, or in a results folder
    (`results/<profile>` or its `samples/`) the one of this dataset, method and checkpoint."""
    path = Path(evaluation)
    if path.is_file():
        return path
    checkpoint = Path(checkpoint)
    label = checkpoint.stem if checkpoint.name in ("best.pt", "latest.pt") else f"{checkpoint.stem}-file"
    name = f"{dataset}_{method}_{label}.csv"
    candidates = [path / name, path / "samples" / name]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        raise FileNotFoundError(f"evaluation {path}: no per-sample CSV {' or '.join(map(str, candidates))}")
    return found


def threshold_from_evaluation(csv: str | Path) -> Threshold:
    """The max-F1 operating point of an evaluation's per-sample results (exact sweep, d ≥ δ).

    The confidence kind and γ are those of the evaluation (its provenance record's profile); the
    `confidence` column is the one its tables use.

    Raises:
        FileNotFoundError: the CSV or its provenance JSON is missing.
        ValueError: the CSV lacks columns, or `metrics` refuses its values.
    """
    csv = Path(csv)
    record_path = layout.samples_record(csv)
    if not csv.is_file() or not record_path.is_file():
        raise FileNotFoundError(f"per-sample results {csv} (and its record {record_path.name}) not found")
    record = json.loads(record_path.read_text())
    samples = pd.read_csv(csv, keep_default_na=False, dtype={"video": str, "audio": str})
    missing = [c for c in ("ciou", "confidence", "positive") if c not in samples]
    if missing:
        raise ValueError(f"{csv}: not a per-sample CSV (no column(s) {missing})")
    ev = record.get("params", {}).get("evaluate", {})
    point = metrics.max_f1_operating_point(samples["ciou"].to_numpy(float), samples["confidence"].to_numpy(float),
                                           samples["positive"].to_numpy(bool), iou_thr=float(ev.get("iou_thr", 0.5)))
    return Threshold(point["threshold"], ev.get("confidence"), f"max-F1 operating point of {csv}", point, record)


# ------------------------------------------------------------------------------------ the command

def run(checkpoint: str | Path, out: str | Path, *, video=None, image=None, audio=None, method: str | None = None,
        profile: Any = None, dataset: str | None = None, threshold: float | None = None,
        evaluation: str | Path | None = None, sample_rate: int | None = None,
        device: str | None = None, echo=print) -> dict[str, Any]:
    """Localize one clip, write the overlay PNG to `out` and report (via `echo`) the confidence and
    the decision. Returns what was reported, as a dict."""
    if threshold is not None and evaluation is not None:
        raise ValueError("give a threshold (--threshold) or an evaluation to derive it from (--evaluation), not both")
    model, params, method, dataset = load_model(checkpoint, method=method, profile=profile, dataset=dataset)
    clip = read_clip(video=video, image=image, audio=audio)
    rate = int(sample_rate) if sample_rate else expected_sample_rate(params)
    chosen = None
    if evaluation is not None:
        chosen = threshold_from_evaluation(evaluation_csv(evaluation, dataset, method, checkpoint))
        if chosen.record.get("method") not in (None, method):
            raise ValueError(f"{chosen.source}: that evaluation is of method {chosen.record['method']!r}, "
                             f"not {method!r}; its threshold is on another scale")
        weights = chosen.record.get("weights")
        if weights and Path(weights).parts[-2:] != Path(checkpoint).resolve().parts[-2:]:  # run folder + file
            echo(f"note: that evaluation used the weights {weights}, not {checkpoint}")
    elif threshold is not None:
        chosen = Threshold(float(threshold), None, "given")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    result = localize_clip(model, clip, params, sample_rate=rate, kind=chosen.kind if chosen else None, device=dev)
    report: dict[str, Any] = {"clip": clip.source, "method": method, "checkpoint": str(checkpoint),
                              "sample_rate": clip.sample_rate,
                              "resampled_to": rate if rate != clip.sample_rate else None,
                              "confidence_kind": result.kind, "confidence": result.score,
                              "confidences": result.confidence, "threshold": None, "visible_source": None}
    verdict = ""
    if chosen is not None:
        visible = result.score >= chosen.value
        report.update(threshold=chosen.value, threshold_source=chosen.source, visible_source=visible)
        verdict = ("visible source" if visible else "no visible source") + f" (confidence {'≥' if visible else '<'} " \
                  f"threshold {chosen.value:.4g})"
    display = display_name(method)
    title = f"{display}: {clip.name}\nconfidence ({result.kind}) {result.score:.4g}"
    title += f", {verdict}" if verdict else ""
    report["overlay"] = str(clip_overlay(np.asarray(clip.frame), result.map, title, out))
    if report["resampled_to"]:
        echo(f"audio resampled from {clip.sample_rate} Hz to {rate} Hz (the profile's data)")
    echo(f"confidence ({result.kind}): {result.score:.6g}")
    if chosen is not None:
        if chosen.point:
            echo(f"threshold {chosen.value:.6g}: {chosen.source} (F1 {100 * chosen.point['f1']:.2f}, precision "
                 f"{100 * chosen.point['precision']:.2f}, recall {100 * chosen.point['recall']:.2f})")
        echo(verdict)
    echo(f"overlay: {report['overlay']}")
    return report
