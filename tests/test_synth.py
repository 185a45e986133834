"""Tests of the embedded synthetic benchmark (vslrepro.data.synthetic; docs/synthetic.md), smoke scale.

They check the on-disk layout, the counts, determinism, that the readers read everything, that the
ground-truth sizes follow the Table 1 proportions, and that the benchmark is neither trivial nor
unlearnable: the centre prior scores clearly below a map of the true sounding object.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from scipy import ndimage
from scipy.signal import spectrogram

from vslrepro.__main__ import main as cli
from vslrepro.data.datasets import dataset_class
from vslrepro.data.datasets.flickr import read_boxes as read_flickr_boxes
from vslrepro.data.datasets.flickr import read_test_ids as read_flickr_test_ids
from vslrepro.data.formats.audio import load_audio
from vslrepro.data.formats.images import load_frame
from vslrepro.data.formats.lists import read_classes, read_id_list
from vslrepro.data.synthetic import SCALES, apportion, generate, make_clip, plan_split
from vslrepro.data.synthetic import scene as synth_scene
from vslrepro.data.testsets import check_media, extended_testset, gt_maps, positives_index

SCALE = SCALES["smoke"]
STYLES = {"flickr": dataset_class("flickr"), "vggss": dataset_class("vggss")}  # the synthetic counterparts' datasets
N_TEST = {"flickr": min(SCALE.test, 250), "vggss": SCALE.test}  # Flickr: at most the real set's 250
TABLE1 = {"flickr": (0, 9, 83, 158), "vggss": (134, 1796, 1726, 1502)}
BUCKETS = ("small", "medium", "large", "huge")


def _tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "smoke"
    generate(out, scale="smoke", seed=0)
    return out


def test_layout(bench):
    assert sorted(p.name for p in bench.iterdir()) == ["flickr", "manifest.json", "objects", "vggss"]
    assert sorted(p.name for p in (bench / "flickr").iterdir()) == ["Annotations", "audio", "frames", "metadata"]
    assert sorted(p.name for p in (bench / "vggss").iterdir()) == ["audio", "frames", "metadata"]
    assert sorted(p.name for p in (bench / "flickr" / "metadata").iterdir()) == sorted(
        ["flickr_train.txt", "flickr_val.csv", "flickr_test.csv", "flickr_real_negatives.txt",
         "flickr_test_plus_silent.csv", "classes.csv"])
    assert sorted(p.name for p in (bench / "vggss" / "metadata").iterdir()) == sorted(
        ["vggss_train.txt", "vggss_val.json", "vggss_test.csv", "vggss.json", "vggss_real_negatives.txt",
         "vggss_test_plus_silent.csv", "classes.csv"])
    assert sorted(p.name for p in (bench / "objects").iterdir()) == ["images", "labels.csv"]
    flickr_test = (bench / "flickr" / "metadata" / "flickr_test.csv").read_bytes()
    assert re.fullmatch(rb"(9\d{9},\d+\r\n)+", flickr_test)  # "id,<int>" rows, CRLF, numeric ids
    assert re.fullmatch(rb"(9\d{9},\d+\r\n)+", (bench / "flickr" / "metadata" / "flickr_val.csv").read_bytes())
    vggss_ids = read_id_list(bench / "vggss" / "metadata" / "vggss_test.csv")
    assert all(re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]{10}_\d{6}", clip) for clip in vggss_ids)
    extended = (bench / "vggss" / "metadata" / "vggss_test_plus_silent.csv").read_bytes()
    assert extended.startswith(b"video,audio,label\n") and b"\r" not in extended
    xml = next((bench / "flickr" / "Annotations").iterdir()).read_text()
    assert xml.count("<object>") == 3 and "<index>0</index>" in xml


def test_counts_and_manifest(bench):
    manifest = json.loads((bench / "manifest.json").read_text())
    assert manifest["scale"] == "smoke" and manifest["seed"] == 0 and manifest["sample_rate"] == 8000
    assert len(manifest["classes"]) == SCALE.n_classes
    for name in ("flickr", "vggss"):
        root, counts = bench / name, manifest["counts"][name]
        n_real = len(read_id_list(root / "metadata" / f"{name}_real_negatives.txt"))
        assert len(read_id_list(root / "metadata" / f"{name}_train.txt")) == SCALE.train == counts["train"]
        assert counts["test_positives"] == N_TEST[name] and counts["real_negatives"] == n_real
        assert counts["automated_easy"] + counts["automated_hard"] + n_real == N_TEST[name]
        n_clips = SCALE.train + SCALE.val + N_TEST[name] + n_real
        assert len(list((root / "frames").iterdir())) == len(list((root / "audio").iterdir())) == n_clips
        assert len(read_classes(root / "metadata" / "classes.csv")) == n_clips
    assert 0.12 <= manifest["counts"]["vggss"]["real_negatives"] / SCALE.test <= 0.18
    assert len(list((bench / "flickr" / "Annotations").iterdir())) == SCALE.val + N_TEST["flickr"]
    assert len(list((bench / "objects" / "images").iterdir())) == SCALE.objects


def test_readers_read_everything(bench):
    for name in ("flickr", "vggss"):
        root = bench / name
        index = extended_testset(name, root)
        assert index["positive"].sum() == N_TEST[name] and len(index) == 2 * N_TEST[name]
        counts = index["neg_type"].value_counts().to_dict()
        manifest = json.loads((bench / "manifest.json").read_text())["counts"][name]
        assert counts == {"": N_TEST[name], "real": manifest["real_negatives"],
                          "easy": manifest["automated_easy"], "hard": manifest["automated_hard"]}
        assert 0.2 <= counts["hard"] / (counts["hard"] + counts["easy"]) <= 0.3
        check_media(index, root)  # raises on any missing frame or audio
        val = (positives_index(name, root, test_list="metadata/flickr_val.csv") if name == "flickr"
               else positives_index(name, root, annotations="metadata/vggss_val.json"))
        assert len(val) == SCALE.val and (val["area"] > 0).all()
        check_media(val, root)
        classes = read_classes(root / "metadata" / "classes.csv")
        for clip in classes:
            wave, rate = load_audio(root / "audio" / f"{clip}.wav", duration=None)
            assert rate == SCALE.sample_rate and wave.shape == (12000,) and 0.2 < np.abs(wave).max() < 0.9
            assert load_frame(root / "frames" / f"{clip}.jpg").size == (SCALE.frame_size, SCALE.frame_size)
    objects = read_classes(bench / "objects" / "labels.csv")
    assert len(objects) == SCALE.objects
    per_class = np.unique(list(objects.values()), return_counts=True)[1]
    assert len(per_class) == SCALE.n_classes + 1 and per_class.max() - per_class.min() <= 1
    assert all((bench / "objects" / "images" / f"{clip}.jpg").is_file() for clip in objects)


def test_deterministic_and_independent_of_workers(bench, tmp_path):
    again = tmp_path / "again"
    again.mkdir()
    (again / "manifest.json").write_text("{}")  # a previous benchmark: replaced, stale files removed
    (again / "stale.txt").write_text("old")
    assert cli(["data", "synth", "--profile", "smoke", "--out", str(again), "--seed", "0", "--workers", "2"]) == 0
    assert not (again / "stale.txt").exists()
    assert _tree_hash(again) == _tree_hash(bench)


def test_seeds_differ():
    style = STYLES["vggss"]
    plans = [plan_split(style, "test", 32, seed=s, n_classes=4) for s in (0, 1)]
    assert plans[0] != plans[1]
    a = make_clip(style, "test", 0, (1, 2), seed=0, scale=SCALE)
    b = make_clip(style, "test", 0, (1, 2), seed=1, scale=SCALE)
    assert a.id != b.id and not np.array_equal(a.frame, b.frame) and not np.array_equal(a.audio, b.audio)


def test_refuses_foreign_folder_and_bad_args(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="no manifest.json"):
        generate(tmp_path, scale="smoke")
    with pytest.raises(ValueError, match="unknown synthetic scale"):
        generate(tmp_path / "x", scale="huge")
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_sizes_follow_table1(bench):
    for name in ("flickr", "vggss"):
        index = extended_testset(name, bench / name)
        sizes = index[index["positive"]]["size"].value_counts().reindex(BUCKETS, fill_value=0)
        assert list(sizes) == list(apportion(TABLE1[name], N_TEST[name]))  # exact apportionment
        plans = plan_split(STYLES[name], "train", SCALE.train, seed=0, n_classes=SCALE.n_classes)
        share = np.bincount([bucket for _, bucket in plans], minlength=4) / SCALE.train
        assert np.abs(share - np.asarray(TABLE1[name]) / sum(TABLE1[name])).max() < 0.08
        for index_, plan in list(enumerate(plans))[:40]:  # training clips honour their bucket too
            clip = make_clip(STYLES[name], "train", index_, plan, seed=0, scale=SCALE)
            assert BUCKETS.index(_bucket(clip.area)) == plan[1]


def _bucket(area: float) -> str:
    return BUCKETS[int(np.searchsorted([32**2, 96**2, 144**2], area, side="right"))]


def test_sounding_object_visible_in_positives_only(bench):
    """The class colour is inside every positive's box, and absent from every real negative frame."""
    hues = {spec.name: spec.hue for spec in synth_scene.class_specs(SCALE.n_classes)}

    def class_pixels(clip: str, root: Path, label: str) -> np.ndarray:
        hsv = np.asarray(Image.open(root / "frames" / f"{clip}.jpg").convert("HSV"), dtype=float) / 255
        distance = np.abs(hsv[..., 0] - hues[label])
        return (np.minimum(distance, 1 - distance) < 0.05) & (hsv[..., 1] > 0.45) & (hsv[..., 2] > 0.3)

    for name in ("flickr", "vggss"):
        root = bench / name
        index = extended_testset(name, root)
        positives = index[index["positive"]]
        for (clip, label), gt in zip(zip(positives["video"], positives["class"]), gt_maps(positives, name)):
            box = np.asarray(Image.fromarray((gt > 0).astype(np.uint8)).resize((SCALE.frame_size,) * 2,
                                                                              Image.NEAREST)) > 0
            assert class_pixels(clip, root, label)[box].mean() > 0.2, clip
        for clip, label in zip(*index[index["neg_type"] == "real"][["video", "audio_class"]].T.values):
            assert class_pixels(clip, root, label).mean() < 0.002, clip


def test_sound_classes_are_separable(bench):
    """A nearest-centroid classifier on mean log-spectra (the models' 1-s crop) tells classes apart."""
    def feature(root: Path, clip: str) -> np.ndarray:
        wave, rate = load_audio(root / "audio" / f"{clip}.wav", duration=1.0)
        return np.log(spectrogram(wave, fs=rate, nperseg=128, noverlap=4)[2] + 1e-7).mean(axis=1)  # (65,)

    root = bench / "vggss"
    classes = read_classes(root / "metadata" / "classes.csv")
    train = read_id_list(root / "metadata" / "vggss_train.txt")[:120]
    test = read_id_list(root / "metadata" / "vggss_test.csv")
    names = sorted(set(classes.values()))
    x, y = np.stack([feature(root, c) for c in train]), np.array([classes[c] for c in train])
    centroids = np.stack([x[y == n].mean(axis=0) for n in names])  # (K, 65)
    xt = np.stack([feature(root, c) for c in test])
    predicted = np.array(names)[np.argmin(((xt[:, None] - centroids[None]) ** 2).sum(-1), axis=1)]
    assert (predicted == np.array([classes[c] for c in test])).mean() > 0.9


def _ciou(pred: np.ndarray, gt: np.ndarray) -> float:
    """cIoU with the official relative binarization (top 50 % after min-max normalization)."""
    pred = (pred - pred.min()) / (pred.max() - pred.min() + 1e-12)
    threshold = np.sort(pred.ravel())[int(224 * 224 * 0.5)]
    binary = (pred >= threshold).astype(np.float64)
    return float((binary * gt).sum() / (gt.sum() + (binary * (gt == 0)).sum()))


def _object_map(mask: np.ndarray) -> np.ndarray:
    """The mask as a map, ties outside it broken by closeness to it (so the top 50 % can hold it)."""
    return mask + 0.25 * np.exp(-ndimage.distance_transform_edt(mask == 0) / 20.0)


def _loc_acc(maps, gts) -> float:
    return float(np.mean([_ciou(m, g) >= 0.5 for m, g in zip(maps, gts)]))


def test_centre_prior_is_clearly_worse_than_the_true_object(bench):
    yy, xx = np.mgrid[0:224, 0:224] + 0.5
    centre = np.exp(-((xx - 112) ** 2 + (yy - 112) ** 2) / (2 * 56.0**2))  # (224, 224) centred Gaussian
    for name in ("flickr", "vggss"):
        index = extended_testset(name, bench / name)
        positives = index[index["positive"]]
        gts = gt_maps(positives, name)  # (N, 224, 224)
        oracle = _loc_acc([_object_map(g) for g in gts], gts)
        prior = _loc_acc([centre] * len(gts), gts)
        # Every object, distractors included, equally bright: rebuild the scenes from the plans.
        plans = plan_split(STYLES[name], "test", N_TEST[name], seed=0, n_classes=SCALE.n_classes)
        clips = [make_clip(STYLES[name], "test", i, plan, seed=0, scale=SCALE) for i, plan in enumerate(plans)]
        assert [c.id for c in clips] == list(positives["video"])
        any_object = []
        for clip, gt in zip(clips, gts):
            union = np.zeros((224, 224))
            for obj in clip.objects:
                x0, y0, x1, y1 = (int(v) for v in obj.visible)
                union[y0:y1, x0:x1] = 1.0
            any_object.append(_object_map(np.maximum(union, gt > 0)))
        distracted = _loc_acc(any_object, gts)
        assert oracle >= prior + 0.15 and prior <= 0.65 * oracle, (name, prior, oracle)
        assert distracted <= oracle, (name, distracted, oracle)


def test_flickr_annotators_agree_roughly(bench):
    root = bench / "flickr"
    for clip in read_flickr_test_ids(root / "metadata" / "flickr_test.csv")[:30]:
        boxes = read_flickr_boxes(root / "Annotations" / f"{clip}.xml")
        assert boxes.shape == (3, 4)
        consensus = dataset_class("flickr").gt_map(boxes)
        assert set(np.unique(consensus)) <= {0.0, 0.5, 1.0} and (consensus == 1.0).any()


@settings(max_examples=200, deadline=None)
@given(area=st.floats(16.0, 224.0**2), seed=st.integers(0, 2**32 - 1))
def test_place_object_gives_the_visible_area(area, seed):
    full, visible = synth_scene.place_object(np.random.default_rng(seed), area)
    assert synth_scene.box_area(visible) == pytest.approx(area, rel=1e-9)
    cx, cy = (full[0] + full[2]) / 2, (full[1] + full[3]) / 2
    assert 0 <= cx <= 224 and 0 <= cy <= 224  # centre inside: the visible box is the visible pixels' box
    assert 0 <= visible[0] < visible[2] <= 224 and 0 <= visible[1] < visible[3] <= 224


def test_apportion_matches_table1():
    assert list(apportion(TABLE1["flickr"], 250)) == [0, 9, 83, 158]
    assert list(apportion(TABLE1["vggss"], 5158)) == [134, 1796, 1726, 1502]
    assert list(apportion([1, 1, 1], 10)) == [4, 3, 3]
