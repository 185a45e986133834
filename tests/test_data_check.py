"""`python -m vslrepro data check` (vslrepro.commands.check) on copies written in the real formats, with
planted defects: each must be named in the JSON report, and the exit status must follow the
coverage rule (incomplete test split -> 1, unless the user accepts a threshold)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile
from PIL import Image

from vslrepro.__main__ import main
from vslrepro.commands.check import check_splits, dataset_specs

from test_testsets import write_xml  # a Flickr-SoundNet annotation file in the real format

RATE = 16000


def write_frame(path, value: int = 128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((48, 64, 3), value, np.uint8)).save(path, format="JPEG")


def write_wav(path, seconds: float = 3.5, rate: int = RATE, channels: int = 1, amplitude: float = 0.5) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    wave = amplitude * np.sin(2 * np.pi * 440 * t)
    soundfile.write(path, np.stack([wave] * channels, axis=1), rate, subtype="PCM_16")


@pytest.fixture
def flickr_copy(tmp_path):
    """6 test ids: 1001 fine, 1002 no frame, 1003 corrupt JPEG, 1004 0-byte WAV, 1005 stereo WAV,
    1006 no media at all; 3 negatives, one of them on 1002's missing frame; a train list with a
    vanished id 3001."""
    root = tmp_path / "Flickr-test"
    (root / "metadata").mkdir(parents=True)
    (root / "Annotations").mkdir()
    ids = ["1001", "1002", "1003", "1004", "1005", "1006"]
    (root / "metadata" / "flickr_test.csv").write_bytes("".join(f"{i},{n}\r\n" for n, i in enumerate(ids)).encode())
    for clip in ids:
        write_xml(root / "Annotations" / f"{clip}.xml", [(0, 0, 128, 128)])
    for clip in ("1001", "1003", "1004", "1005", "2002"):
        write_frame(root / "frames" / f"{clip}.jpg")
    corrupt = root / "frames" / "1003.jpg"
    corrupt.write_bytes(corrupt.read_bytes()[: len(corrupt.read_bytes()) // 2])  # truncated JPEG
    for clip in ("1001", "1002", "1003", "2001", "2002"):
        write_wav(root / "audio" / f"{clip}.wav")
    (root / "audio" / "1004.wav").write_bytes(b"")
    write_wav(root / "audio" / "1005.wav", channels=2)
    (root / "metadata" / "flickr_test_plus_silent.csv").write_bytes(
        b"video,audio,label\r\n1001,2001,non-sounding\r\n2002,2002,non-sounding\r\n1002,2001,non-sounding\r\n")
    (root / "metadata" / "flickr_train.txt").write_text("1001\n3001\n1005\n")
    return root


def problems_by_kind(split: dict) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for entry in split["problems"]:
        found.setdefault(entry["kind"], set()).add(entry["id"])
    return found


def test_flickr_defects_named_in_report(flickr_copy, tmp_path, capsys):
    out = tmp_path / "report.json"
    status = main(["data", "check", "--dataset", "flickr", "--root", str(flickr_copy),
                   "--train-list", "metadata/flickr_train.txt", "--out", str(out)])
    assert status == 1  # the test split is incomplete
    report = json.loads(out.read_text())
    assert report["passed"] is False
    splits = report["datasets"]["flickr"]["splits"]
    positives = splits["test_positives"]
    assert (positives["listed"], positives["with_frame"], positives["with_audio"],
            positives["with_annotation"], positives["usable"]) == (6, 4, 5, 6, 2)
    assert positives["unusable"] == ["1002", "1003", "1004", "1006"]
    assert problems_by_kind(positives) == {
        "frame_missing": {"1002", "1006"},
        "frame_unreadable": {"1003"},
        "audio_zero_length": {"1004"},
        "audio_missing": {"1006"},
        "audio_multichannel": {"1005"},  # a warning: 1005 stays usable
    }
    severities = {entry["kind"]: entry["severity"] for entry in positives["problems"]}
    assert severities["audio_multichannel"] == "warning" and severities["frame_unreadable"] == "error"
    files = {entry["kind"]: entry["file"] for entry in positives["problems"]}
    assert files["frame_unreadable"].endswith("frames/1003.jpg")
    assert files["audio_zero_length"].endswith("audio/1004.wav")
    negatives = splits["test_negatives"]
    assert (negatives["listed"], negatives["usable"], negatives["unusable"]) == (3, 2, ["1002/2001"])
    train = splits["train"]
    assert (train["listed"], train["usable"], train["unusable"]) == (3, 2, ["3001"])
    assert not train["decides_exit"]
    assert len(report["failures"]) == 2  # positives and negatives, not train
    printed = capsys.readouterr().out
    assert "frame_unreadable x1" in printed and "FAILED" in printed


@pytest.mark.parametrize("threshold, expected", [("0.3", 0), ("0.5", 1), ("1", 1)])
def test_threshold_decides_exit(flickr_copy, threshold, expected):
    # coverage: positives 2/6, negatives 2/3; a threshold is met only if both reach it
    assert main(["data", "check", "--dataset", "flickr", "--root", str(flickr_copy),
                 "--min-coverage", threshold]) == expected


def test_complete_copy_passes_and_usable_train_list(flickr_copy, tmp_path):
    for clip in ("1002", "1006"):
        write_frame(flickr_copy / "frames" / f"{clip}.jpg")
    write_frame(flickr_copy / "frames" / "1003.jpg")
    for clip in ("1004", "1006"):
        write_wav(flickr_copy / "audio" / f"{clip}.wav")
    usable = tmp_path / "usable.txt"
    assert main(["data", "check", "--dataset", "flickr", "--root", str(flickr_copy), "--workers", "2",
                 "--train-list", "metadata/flickr_train.txt", "--usable-train-out", str(usable)]) == 0
    assert usable.read_text() == "1001\n1005\n"  # list order, the vanished 3001 left out


@pytest.fixture
def vggss_copy(tmp_path):
    """5 test ids: a fine; b silent; c at 22.05 kHz; d 1 s long; e not in vggss.json; a and d have
    an empty box (two problems in one annotation file, each named)."""
    root = tmp_path / "VGGSS-test"
    (root / "metadata").mkdir(parents=True)
    ids = ["a_000001", "b_000002", "c_000003", "d_000004", "e_000005"]
    (root / "metadata" / "vggss_test.csv").write_text("".join(f"{clip}\n" for clip in ids))
    entries = [{"file": "a_000001", "class": "dog", "bbox": [[0.5, 0.5, 0.5, 0.9]]}]  # zero width
    entries += [{"file": clip, "class": "dog", "bbox": [[0.1, 0.1, 0.6, 0.6]]} for clip in ids[1:3]]
    entries += [{"file": "d_000004", "class": "dog", "bbox": [[0.2, 0.3, 0.4, 0.3]]}]  # zero height
    (root / "metadata" / "vggss.json").write_text(json.dumps(entries))
    (root / "metadata" / "vggss_test_plus_silent.csv").write_text("video,audio,label\na_000001,b_000002,non-sounding\n")
    for clip in ids:
        write_frame(root / "frames" / f"{clip}.jpg")
    write_wav(root / "audio" / "a_000001.wav")
    write_wav(root / "audio" / "b_000002.wav", amplitude=0.0)
    write_wav(root / "audio" / "c_000003.wav", rate=22050)
    write_wav(root / "audio" / "d_000004.wav", seconds=1.0)
    write_wav(root / "audio" / "e_000005.wav")
    return root


def test_vggss_rate_silence_length_annotations(vggss_copy):
    report = check_splits("vggss", dataset_specs("vggss", vggss_copy))
    assert report["expected_sample_rate"] == RATE  # the most common rate
    positives = report["splits"]["test_positives"]
    assert problems_by_kind(positives) == {
        "annotation_empty": {"a_000001", "d_000004"},
        "audio_silent": {"b_000002"},
        "audio_sample_rate": {"c_000003"},
        "audio_too_short": {"d_000004"},
        "annotation_missing": {"e_000005"},
    }
    assert positives["unusable"] == ["c_000003", "e_000005"]  # errors only; warnings keep the clip
    assert positives["with_annotation"] == 4 and positives["sample_rates"] == {"16000": 4, "22050": 1}
    # an explicit rate and window change the verdicts
    report = check_splits("vggss", dataset_specs("vggss", vggss_copy), sample_rate=22050, min_seconds=0.5)
    kinds = problems_by_kind(report["splits"]["test_positives"])
    assert kinds["audio_sample_rate"] == {"a_000001", "b_000002", "d_000004", "e_000005"}
    assert "audio_too_short" not in kinds


def test_repeated_rows_fail_whatever_the_threshold(vggss_copy, tmp_path):
    test_list = vggss_copy / "metadata" / "vggss_test.csv"
    test_list.write_text(test_list.read_text() + "a_000001\n")
    out = tmp_path / "report.json"
    assert main(["data", "check", "--dataset", "vggss", "--root", str(vggss_copy), "--min-coverage", "0",
                 "--out", str(out)]) == 1
    report = json.loads(out.read_text())
    positives = report["datasets"]["vggss"]["splits"]["test_positives"]
    assert positives["repeated"] == ["a_000001"] and positives["listed"] == 5
    assert report["failures"] == [f"vggss test_positives: {test_list} repeats 1 rows (e.g. a_000001); "
                                  "the pipeline refuses repeats"]


def test_unreadable_list_fails(flickr_copy, tmp_path):
    (flickr_copy / "metadata" / "flickr_test.csv").write_text("id,number\n1001,1\n")  # a header row is refused
    out = tmp_path / "report.json"
    assert main(["data", "check", "--dataset", "flickr", "--root", str(flickr_copy),
                 "--min-coverage", "0", "--out", str(out)]) == 1
    report = json.loads(out.read_text())
    assert "flickr_test.csv: line 1" in report["datasets"]["flickr"]["splits"]["test_positives"]["error"]


def test_profile_synthetic_benchmark_is_complete(smoke_params, tmp_path):
    out = tmp_path / "report.json"
    assert main(["data", "check", "--profile", "smoke", "--workers", "2", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    for name in ("flickr", "vggss"):
        splits = report["datasets"][name]["splits"]
        assert set(splits) == {"train", "val", "test_positives", "test_negatives"}
        assert all(split["coverage"] == 1.0 and split["listed"] > 0 for split in splits.values())
        assert report["datasets"][name]["expected_sample_rate"] == 8000
