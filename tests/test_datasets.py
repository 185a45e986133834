"""The dataset registry (vslrepro.data.datasets): a dataset is one file, as a method is.

A toy test set registered in this file alone, in a file format of its own, goes through Table 1 →
evaluate → tables and the data check, without touching any other module; IS3 (the third registered
test set, positives only) reads its released annotation format and evaluates a trained smoke
checkpoint; an evaluation-only test set's stages use another dataset's runs.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from vslrepro import layout, pipeline, stages, tables
from vslrepro.__main__ import build_parser
from vslrepro.commands.check import check_splits, dataset_specs
from vslrepro.config import ProfileError
from vslrepro.data import DataError, extended_testset, gt_maps, positives_index
from vslrepro.data.datasets import (
    DATASETS,
    Dataset,
    Positives,
    dataset_class,
    dataset_names,
    locate,
    register_dataset,
    run_dataset,
    synthetic_root,
)
from vslrepro.data.datasets.base import PATH, resolve
from vslrepro.data.datasets.is3 import read_annotations as read_is3
from vslrepro.data.datasets.vggss import read_annotations as read_vggss
from vslrepro.profiles import load_profile, validate_profile

# ---------------------------------------------------------------- a toy test set, in this file alone


def read_toy_boxes(path: Path) -> dict[str, np.ndarray]:
    """`id,x0,y0,x1,y1` rows (224-px boxes, one per row; an id may have several)."""
    if not path.is_file():
        raise DataError(f"{path}: annotation file not found")
    boxes: dict[str, list] = {}
    with path.open(newline="") as handle:
        for line, row in enumerate(csv.reader(handle), start=1):
            if len(row) != 5:
                raise DataError(f"{path}: line {line}: expected id,x0,y0,x1,y1")
            boxes.setdefault(row[0], []).append([int(v) for v in row[1:]])
    return {clip: np.asarray(value, dtype=np.int64) for clip, value in boxes.items()}


@register_dataset("toy_set")
class ToySet(Dataset):
    """A test set of positives (boxes in `metadata/toy_boxes.csv`) and negatives (the usual csv)."""

    display_name = "Toy set"
    extended_name = "Extended toy set"
    ground_truth = "union"
    trainable = False
    entry_schema = {"type": "object", "additionalProperties": False,
                    "properties": {"test_root": PATH, "metadata_root": PATH, "runs_from": PATH},
                    "required": ["test_root"]}

    @classmethod
    def test_ids(cls, root, *, test_list=None, annotations=None, variant=None, allow_duplicates=False):
        path = resolve(root, annotations or "metadata/toy_boxes.csv")
        return list(read_toy_boxes(path)), path

    @classmethod
    def read_positives(cls, root, *, test_list=None, annotations=None, variant=None, allow_duplicates=False):
        path = resolve(root, annotations or "metadata/toy_boxes.csv")
        boxes = read_toy_boxes(path)
        return Positives(list(boxes), boxes, {}, {"test_list": str(path), "annotations": str(path)})

    @classmethod
    def inspect_positives(cls, root, *, test_list=None, annotations=None, variant=None):
        path = resolve(root, annotations or "metadata/toy_boxes.csv")
        boxes = read_toy_boxes(path)
        return list(boxes), path, {clip: [] for clip in boxes}


def copy_clips(source: Path, target: Path, ids, media=("frames", "audio")) -> None:
    """Frames and WAVs of `ids` from a smoke dataset root into `target`'s `media` folders."""
    for folder in media:
        (target / folder).mkdir(parents=True, exist_ok=True)
    for clip in ids:
        shutil.copy(source / "frames" / f"{clip}.jpg", target / media[0] / f"{clip}.jpg")
        shutil.copy(source / "audio" / f"{clip}.wav", target / media[1] / f"{clip}.wav")


@pytest.fixture
def toy_profile(tmp_path, smoke_params, monkeypatch):
    """24 positives and 24 negatives (12 real, 12 other clips' sounds) from the smoke VGG-SS-like
    set, in the toy's own annotation format; a profile that evaluates the two reference rows."""
    monkeypatch.setenv("VSLREPRO_RESULTS", str(tmp_path / "results"))
    source = synthetic_root(smoke_params) / "vggss"
    entries = read_vggss(source / "metadata" / "vggss.json")
    positives = list(entries)[:24]
    real = (source / "metadata" / "vggss_real_negatives.txt").read_text().split()[:12]
    root = tmp_path / "toy"
    copy_clips(source, root, positives + real)
    (root / "metadata").mkdir()
    with (root / "metadata" / "toy_boxes.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([clip, *box] for clip in positives for box in entries[clip].boxes.tolist())
    pairs = [(clip, clip) for clip in real] + list(zip(positives[:12], positives[12:]))
    with (root / "metadata" / "toy_set_test_plus_silent.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([("video", "audio", "label"), *((v, a, "non-sounding") for v, a in pairs)])
    shutil.copy(source / "metadata" / "classes.csv", root / "metadata" / "classes.csv")
    params = {**smoke_params, "profile": "toy-datasets", "datasets": ["toy_set"], "methods": {},
              "references": {"center": {}, "random": {}},
              "data": {"source": "real", "toy_set": {"test_root": str(root)}}}
    return params, root, entries, positives


def test_a_dataset_registered_in_a_test_runs_through_table1_evaluate_tables(toy_profile):
    params, root, entries, positives = toy_profile
    assert DATASETS["toy_set"] is ToySet and "toy_set" in dataset_names()
    with pytest.raises(ProfileError, match=r"data\.toy_set\.runs_from: None is not a dataset the profile trains"):
        validate_profile(params, "toy.yaml")  # the schema takes the registered entry; no run to evaluate yet
    validate_profile({**params, "methods": {}, "references": {"center": {}}, "datasets": ["toy_set", "flickr"],
                      "data": {**params["data"], "toy_set": {"test_root": str(root), "runs_from": "flickr"},
                               "flickr": {"train_root": str(root), "train_list": "x", "test_root": str(root)}}},
                     "toy.yaml")

    table, _ = stages.table1(params)
    row = table.loc["Extended toy set"]
    assert (row["Total Pos"], row["Real Neg"], row["Total Neg"], row["Total"]) == (24, 12, 24, 48)
    assert row["Automated Easy Neg"] + row["Automated Hard Neg"] == 12

    for method in ("center", "random"):
        stages.evaluate(params, "toy_set", method, "none", progress=False)
    written = stages.tables(params)
    samples = pd.read_csv(layout.samples_csv(params, "toy_set", "center", "none"), keep_default_na=False,
                          dtype={"video": str, "audio": str})
    positive = samples["positive"].to_numpy(bool)
    gt = gt_maps(positives_index("toy_set", root), "toy_set")  # the union of each clip's boxes
    assert np.array_equal(gt[0], dataset_class("vggss").gt_map(entries[positives[0]].boxes))
    table2 = tables.read_table(written["table2"])
    locacc = 100 * (samples["ciou"][positive] >= 0.5).mean()
    assert table2.loc["Centre prior", ("Toy set", "NO Early Stop", "ours")] == locacc
    table3 = tables.read_table(written["table3"])
    assert 0 <= table3.loc["Random map", ("Extended toy set", "AP", "ours")] <= 100

    report = check_splits("toy_set", dataset_specs("toy_set", root))  # `data check` reads it too
    assert report["splits"]["test_positives"]["coverage"] == 1.0 and report["splits"]["test_negatives"]["listed"] == 24


def test_registry_names_and_errors():
    assert {"flickr", "vggss", "is3"} <= set(dataset_names())
    assert dataset_class("flickr").ground_truth == "consensus" and dataset_class("vggss").ground_truth == "union"
    assert dataset_class("is3").trainable is False and dataset_class("is3").has_negatives() is False
    with pytest.raises(ValueError, match="unknown dataset 'coco'; known datasets: flickr"):
        dataset_class("coco")
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("flickr")(type("Other", (Dataset,), {}))
    parser = build_parser()  # the command line takes its choices from the registry
    assert parser.parse_args(["evaluate", "--dataset", "is3"]).dataset == "is3"
    with pytest.raises(SystemExit):
        parser.parse_args(["evaluate", "--dataset", "coco"])


# ---------------------------------------------------------------- IS3

def write_is3(root: Path, entries: list[tuple[str, list]], *, audio: list[str] | None = None) -> Path:
    """`metadata/synthetic3240_bbox.json` as released: image and audio paths of the authors' machine,
    a pixel box in the 224-px frame per entry."""
    (root / "metadata").mkdir(parents=True, exist_ok=True)
    sounds = audio or [stem for stem, _ in entries]
    rows = [{"image": f"/mnt/lynx2/users/arda/synthetic3241/visual_frames/{stem}.jpg",
             "audio": f"/mnt/lynx2/users/arda/synthetic3241/audio_wav/{sound}.wav", "gt_box": box}
            for (stem, box), sound in zip(entries, sounds)]
    path = root / "metadata" / "synthetic3240_bbox.json"
    path.write_text(json.dumps(rows))
    return path


def test_is3_reads_the_released_format(tmp_path):
    path = write_is3(tmp_path, [("accordion_female_10438_accordion", [47.0, 99.0, 154.0, 185.0]),
                                ("cheetah_helicopter_8294_helicopter", [0.0, 0.0, 154.9, 90.0])])
    boxes = read_is3(path)
    assert list(boxes) == ["accordion_female_10438_accordion", "cheetah_helicopter_8294_helicopter"]
    assert boxes["cheetah_helicopter_8294_helicopter"].tolist() == [[0, 0, 154, 90]]  # int(), as the original
    index = extended_testset("is3", tmp_path)  # positives only: no negative rows
    assert len(index) == 2 and index["positive"].all() and index.attrs["list_variant"] is None
    gt = gt_maps(index, "is3")
    assert gt[0].sum() == (154 - 47) * (185 - 99) and set(np.unique(gt[0])) == {0.0, 1.0}


@pytest.mark.parametrize("entry, match", [
    ({"image": "a/x.jpg", "audio": "b/y.wav", "gt_box": [0, 0, 10, 10]}, "pairs image x with audio y"),
    ({"image": "a/x.jpg", "audio": "b/x.wav", "gt_box": [0, 0, 230, 10]}, r"outside \[0, 224\]"),
    ({"image": "a/x.jpg", "audio": "b/x.wav", "gt_box": [20, 0, 10, 10]}, "x1 < x0"),
    ({"image": "a/x.jpg", "audio": "b/x.wav", "gt_box": [0, 0, 10]}, "not a list of 4 numbers"),
    ({"audio": "b/x.wav", "gt_box": [0, 0, 10, 10]}, "no 'image' file name"),
])
def test_is3_refuses_bad_entries_naming_them(tmp_path, entry, match):
    path = tmp_path / "is3.json"
    path.write_text(json.dumps([entry]))
    with pytest.raises(DataError, match=f"is3.json: entry 0.*{match}"):
        read_is3(path)


def test_is3_refuses_a_repeated_image(tmp_path):
    path = write_is3(tmp_path, [("x", [0, 0, 5, 5]), ("x", [1, 1, 6, 6])])
    with pytest.raises(DataError, match="entry 1: image x is listed twice"):
        read_is3(path)


def test_is3_evaluates_a_trained_smoke_checkpoint(tmp_path, smoke_params, monkeypatch):
    """A few entries in the released format over smoke clips (their media in IS3's own folders),
    evaluated at the BEST and LATEST checkpoints of a smoke EZ-VSL run trained on the Flickr-like set."""
    monkeypatch.setenv("VSLREPRO_RESULTS", str(tmp_path / "results"))
    run = stages.train(smoke_params, "flickr", "ezvsl", progress=False)
    source = synthetic_root(smoke_params) / "vggss"
    entries = read_vggss(source / "metadata" / "vggss.json")
    chosen = list(entries)[:16]
    root = tmp_path / "IS3"
    copy_clips(source, root, chosen, media=("visual_frames", "audio_wav"))
    write_is3(root, [(clip, [float(v) for v in entries[clip].boxes[0]]) for clip in chosen])
    params = {**smoke_params, "profile": "is3-test", "datasets": ["is3"], "methods": {"ezvsl": {"tau": 0.03}},
              "references": {"center": {}}, "data": {"source": "real", "is3": {"test_root": str(root)}}}
    assert locate(params, "is3").media == ("visual_frames", "audio_wav")
    for checkpoint in ("best", "latest"):
        path = stages.evaluate(params, "is3", "ezvsl", checkpoint, run=run, progress=False)
        samples = pd.read_csv(path, keep_default_na=False)
        assert len(samples) == 16 and samples["positive"].all() and samples["ciou"].between(0, 1).all()
    stages.evaluate(params, "is3", "center", "none", progress=False)
    written = stages.tables(params)
    table2 = tables.read_table(written["table2"])
    latest = pd.read_csv(layout.samples_csv(params, "is3", "ezvsl", "latest"))
    assert table2.loc["EZ-VSL", ("IS3", "NO Early Stop", "ours")] == 100 * (latest["ciou"] >= 0.5).mean()
    for name in ("table3", "table4"):  # no negatives: left out, and said so under the table
        assert "IS3: positives only (no negatives)" in Path(written[name]).with_suffix(".md").read_text()
        assert not any("IS3" in str(column) for column in tables.read_table(written[name]).columns)
    spread = tables.read_table(written["intervals"])
    assert not np.isnan(spread.loc[("is3", "ezvsl", "latest"), "locacc_low"])
    assert np.isnan(spread.loc[("is3", "ezvsl", "latest"), "ap"])


def test_an_evaluation_only_test_set_uses_another_datasets_runs(tmp_path):
    params = load_profile("paper")
    params = {**params, "datasets": ["flickr", "vggss", "is3"],
              "data": {**params["data"], "is3": {"test_root": "/data/IS3"}}}
    validate_profile(params, "paper+is3.yaml")
    assert run_dataset(params, "is3") == "vggss" and run_dataset(params, "flickr") == "flickr"
    assert layout.run_dir(params, "is3", "ezvsl") == layout.run_dir(params, "vggss", "ezvsl")
    stages_by_key = {stage.key: stage for stage in pipeline.plan(params)}
    assert not any(key.startswith("train_is3") for key in stages_by_key)
    assert "train_vggss_ezvsl" in stages_by_key["evaluate_is3_ezvsl_ogl"].needs
    assert stages_by_key["evaluate_is3_center"].needs == ("testsets", "object_prior")
    elsewhere = {**params, "datasets": ["flickr", "is3"]}
    with pytest.raises(ProfileError, match=r"data\.is3\.runs_from: 'vggss' is not a dataset the profile trains"):
        validate_profile(elsewhere, "paper+is3.yaml")
    synthetic = load_profile("smoke")
    with pytest.raises(ProfileError, match=r"datasets\[2\]: 'is3' is not allowed"):
        validate_profile({**synthetic, "datasets": ["flickr", "vggss", "is3"]}, "smoke+is3.yaml")
    profile = tmp_path / "p.yaml"
    profile.write_text(yaml.safe_dump({**params, "profile": "paper-is3"}))
    assert load_profile(profile)["datasets"] == ["flickr", "vggss", "is3"]
