"""`python -m vslrepro localize`: one clip of the smoke benchmark through a saved, randomly
initialised EZ-VSL gives the evaluation's confidence, an overlay PNG and a decision against a
threshold (given, or the max-F1 operating point of an evaluation); videos are read with PyAV; bad
checkpoints and files fail with their name."""

from __future__ import annotations

import json
import shutil
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
import torch

from vslrepro import metrics, stages
from vslrepro.__main__ import main
from vslrepro.commands import localize
from vslrepro.data.datasets import synthetic_root
from vslrepro.data.errors import DataError
from vslrepro.data.formats.audio import read_wav, spectrogram_shape
from vslrepro.factory import arguments
from vslrepro.methods.ezvsl import EZVSL

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run_checkpoint(tmp_path_factory, smoke_params):
    """A randomly initialised EZ-VSL saved the way a run saves it: latest.pt and a run.json beside it."""
    folder = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    model = EZVSL.build(**arguments(smoke_params, "ezvsl"))
    torch.save({"model": model.state_dict(), "epoch": 1}, folder / "latest.pt")
    (folder / "run.json").write_text(json.dumps({"method": "ezvsl", "dataset": "flickr", "params": smoke_params}))
    return folder / "latest.pt"


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory, smoke_params, run_checkpoint):
    """That checkpoint's per-sample results on the smoke Flickr-like test set."""
    out = tmp_path_factory.mktemp("results") / "samples" / "flickr_ezvsl_latest.csv"
    return stages.evaluate(smoke_params, "flickr", "ezvsl", str(run_checkpoint), out=out, progress=False)


def _clip_files(params, row):
    root = synthetic_root(params) / "flickr"
    return root / "frames" / f"{row.video}.jpg", root / "audio" / f"{row.audio}.wav"


def test_a_test_clip_gets_the_evaluation_confidence_and_an_overlay(smoke_params, run_checkpoint, evaluation, tmp_path):
    samples = pd.read_csv(evaluation, dtype={"video": str, "audio": str})
    row = samples[samples["positive"]].iloc[0]
    image, audio = _clip_files(smoke_params, row)
    lines = []
    report = localize.run(run_checkpoint, tmp_path / "overlay.png", image=image, audio=audio, echo=lines.append)
    assert report["confidence_kind"] == "max" and report["resampled_to"] is None
    assert report["confidence"] == pytest.approx(row["confidence"], rel=1e-5, abs=1e-5)
    assert report["confidences"]["topk_mean"] == pytest.approx(row["confidence_topk_mean"], rel=1e-5, abs=1e-5)
    assert (tmp_path / "overlay.png").read_bytes()[:8] == PNG_MAGIC
    assert lines[0].startswith("confidence (max): ") and report["visible_source"] is None


def test_threshold_is_the_max_f1_operating_point_and_decides(smoke_params, run_checkpoint, evaluation, tmp_path):
    samples = pd.read_csv(evaluation, dtype={"video": str, "audio": str})
    threshold = localize.threshold_from_evaluation(evaluation)
    u, d, c = samples["ciou"].to_numpy(), samples["confidence"].to_numpy(), samples["positive"].to_numpy(bool)
    assert threshold.kind == "max" and threshold.value in set(d)
    detected, hit = d >= threshold.value, c & (u >= 0.5)
    tp, fp, fn = (detected & hit).sum(), (detected & ~hit).sum(), (~detected & c).sum()
    f1 = 2 * tp / (2 * tp + fp + fn)  # by hand, at δ*
    assert threshold.point["f1"] == pytest.approx(f1) == pytest.approx(metrics.summarize(u, d, c)["max_f1"])

    row = samples[samples["positive"]].iloc[0]
    image, audio = _clip_files(smoke_params, row)
    lines = []
    report = localize.run(run_checkpoint, tmp_path / "a.png", image=image, audio=audio, echo=lines.append,
                          evaluation=evaluation.parent.parent)  # a results folder: finds samples/<...>.csv
    assert report["threshold"] == threshold.value
    assert report["visible_source"] == (report["confidence"] >= threshold.value)
    assert any(line.startswith("threshold ") and "F1" in line for line in lines)
    for offset, verdict in ((-0.5, "visible source"), (0.5, "no visible source")):
        lines = []
        localize.run(run_checkpoint, tmp_path / "b.png", image=image, audio=audio, echo=lines.append,
                     threshold=report["confidence"] + offset)
        assert any(line.startswith(verdict + " (") for line in lines), lines


def _write_video(path, frames, wave, rate, fps=3):
    """frames (n, H, W, 3) uint8 at `fps` and int16 mono `wave` at `rate`, lossless audio (PCM)."""
    import av

    with av.open(str(path), "w") as container:
        video = container.add_stream("mpeg4", rate=fps)
        video.width, video.height, video.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        sound = container.add_stream("pcm_s16le", rate=rate, layout="mono")
        for image in frames:
            container.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(video.encode())
        chunk = 1024
        for start in range(0, len(wave), chunk):
            frame = av.AudioFrame.from_ndarray(wave[None, start:start + chunk], format="s16", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
            container.mux(sound.encode(frame))
        container.mux(sound.encode())


def test_a_video_gives_its_middle_frame_and_its_sound_resampled_on_request(smoke_params, run_checkpoint, tmp_path):
    test_list = synthetic_root(smoke_params) / "flickr" / "metadata" / "flickr_test.csv"
    index = pd.read_csv(test_list, header=None, dtype=str)
    _, audio = _clip_files(smoke_params, pd.Series({"video": index.iloc[0, 0], "audio": index.iloc[0, 0]}))
    wave, rate = read_wav(audio)
    levels = np.linspace(20, 235, 9).astype(np.uint8)                    # one grey level per frame
    frames = np.broadcast_to(levels[:, None, None, None], (9, 64, 64, 3)).copy()
    video = tmp_path / "clip.mkv"
    _write_video(video, frames, np.round(wave * 32767).astype(np.int16), rate)

    clip = localize.read_clip(video=video)
    grey = np.asarray(clip.frame).mean()
    assert abs(int(np.argmin(np.abs(levels - grey))) - 4.5) <= 1       # a frame from the middle of 9
    assert clip.sample_rate == rate and np.allclose(clip.wave, wave, atol=1.5 / 32767)

    _, spec = localize.model_inputs(clip, smoke_params, 16000)
    assert tuple(spec.shape[2:]) == spectrogram_shape(16000, 1.0, 128, 4)
    lines = []
    report = localize.run(run_checkpoint, tmp_path / "v.png", video=video, sample_rate=16000, echo=lines.append)
    assert report["resampled_to"] == 16000 and lines[0].startswith(f"audio resampled from {rate} Hz to 16000 Hz")
    assert (tmp_path / "v.png").read_bytes()[:8] == PNG_MAGIC


def test_a_released_checkpoint_without_run_json_needs_a_profile(smoke_params, run_checkpoint, evaluation, tmp_path,
                                                                capsys):
    release = tmp_path / "best.pth"  # a bare state_dict under "module.", as DDP releases save it
    state = torch.load(run_checkpoint, weights_only=True)["model"]
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}}, release)
    samples = pd.read_csv(evaluation, dtype={"video": str, "audio": str})
    image, audio = _clip_files(smoke_params, samples.iloc[0])
    command = ["localize", "--checkpoint", str(release), "--image", str(image), "--audio", str(audio),
               "--out", str(tmp_path / "r.png")]
    assert main(command) == 2 and "--profile paper" in capsys.readouterr().err
    assert main([*command, "--profile", "smoke", "--method", "ezvsl"]) == 0
    printed = capsys.readouterr().out.splitlines()
    confidence = float(printed[0].removeprefix("confidence (max): "))
    assert confidence == pytest.approx(samples["confidence"].iloc[0], rel=1e-5)


def test_bad_checkpoints_and_files_fail_naming_them(smoke_params, run_checkpoint, tmp_path, capsys):
    frame, video = tmp_path / "missing.jpg", tmp_path / "missing.mp4"
    good_image = next((synthetic_root(smoke_params) / "flickr" / "frames").glob("*.jpg"))
    good_audio = next((synthetic_root(smoke_params) / "flickr" / "audio").glob("*.wav"))
    base = ["localize", "--out", str(tmp_path / "o.png")]
    clip = ["--image", str(good_image), "--audio", str(good_audio)]
    assert main([*base, "--checkpoint", str(tmp_path / "none.pt"), *clip]) == 2
    assert "none.pt not found" in capsys.readouterr().err
    garbage = run_checkpoint.parent.parent / "garbage" / "latest.pt"
    garbage.parent.mkdir(exist_ok=True)
    garbage.write_bytes(b"not a checkpoint")
    shutil.copy(run_checkpoint.parent / "run.json", garbage.parent / "run.json")
    assert main([*base, "--checkpoint", str(garbage), *clip]) == 2
    assert f"cannot read weights file {garbage}" in capsys.readouterr().err
    other = EZVSL.build(**{**arguments(smoke_params, "ezvsl"), "dim": 32})  # another embedding size
    wrong = garbage.parent / "wrong.pt"
    torch.save({"model": other.state_dict()}, wrong)
    assert main([*base, "--checkpoint", str(wrong), *clip]) == 2
    assert f"checkpoint {wrong} does not fit EZVSL" in capsys.readouterr().err
    assert main([*base, "--checkpoint", str(run_checkpoint), "--image", str(frame), "--audio", str(good_audio)]) == 2
    assert f"{frame}: frame not found" in capsys.readouterr().err
    assert main([*base, "--checkpoint", str(run_checkpoint), "--video", str(video)]) == 2
    assert f"{video}: file not found" in capsys.readouterr().err
    with pytest.raises(DataError, match="no video stream"):
        localize.middle_frame(good_audio)
    with pytest.raises(ValueError, match="either a video"):
        localize.read_clip(image=good_image)
