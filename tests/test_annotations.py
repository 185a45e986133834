"""Boxes, ground-truth maps and size buckets (vslrepro.data.formats.boxes; the Flickr-SoundNet and
VGG-SS readers of vslrepro.data.datasets), on files in the real formats."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vslrepro.data.datasets import dataset_class
from vslrepro.data.datasets.flickr import read_boxes as read_flickr_boxes
from vslrepro.data.datasets.vggss import Entry as VGGSSEntry
from vslrepro.data.datasets.vggss import read_annotations as read_vggss_json
from vslrepro.data.errors import DataError
from vslrepro.data.formats.boxes import SIZE_EDGES, consensus_map, size_bucket, size_buckets, union_map


def gt_map(dataset: str, boxes) -> np.ndarray:
    """The ground truth of `dataset`'s convention (consensus for Flickr, union for VGG-SS)."""
    return dataset_class(dataset).gt_map(boxes)


def write_flickr_xml(path, boxes_256, extra: str = "") -> None:
    """A Flickr-SoundNet-style annotation: <annotation><object><bbox><index/>x0 y0 x1 y1</bbox></object>…"""
    objects = "".join(
        f"<object><name>source</name><bbox><index>{i}</index><xmin>{x0}</xmin><ymin>{y0}</ymin>"
        f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bbox></object>"
        for i, (x0, y0, x1, y1) in enumerate(boxes_256)
    )
    path.write_text(
        f"<annotation><filename>{path.stem}.jpg</filename><size><width>256</width><height>256</height>"
        f"</size>{objects}{extra}</annotation>"
    )


def test_flickr_boxes_scaled_from_256_to_224(tmp_path):
    path = tmp_path / "10000130166.xml"
    write_flickr_xml(path, [(10, 0, 128, 255), (1, 64, 256, 100)])
    boxes = read_flickr_boxes(path)
    # int(224 * v / 256): 10 -> 8, 0 -> 0, 128 -> 112, 255 -> 223, 1 -> 0, 64 -> 56, 256 -> 224, 100 -> 87
    np.testing.assert_array_equal(boxes, [[8, 0, 112, 223], [0, 56, 224, 87]])
    assert boxes.dtype == np.int64 and boxes.shape == (2, 4)


def test_flickr_ignores_non_bbox_grandchildren_and_extra_fields(tmp_path):
    path = tmp_path / "clip.xml"
    # <size><width>… and <object><name>… are grandchildren the official parser would choke on.
    extra = "<object><bbox><i>9</i><a>16</a><b>32</b><c>48</c><d>64</d><e>99</e></bbox></object>"
    write_flickr_xml(path, [(0, 0, 32, 32)], extra=extra)
    np.testing.assert_array_equal(read_flickr_boxes(path), [[0, 0, 28, 28], [14, 28, 42, 56]])


@pytest.mark.parametrize(
    "content, problem",
    [
        ("<annotation><object><bbox>", "malformed XML"),
        ("<annotation><object><bbox><i>0</i><a>1</a><b>2</b><c>3</c></bbox></object></annotation>", "4 fields"),
        ("<annotation><object><bbox><i>0</i><a>1</a><b>x</b><c>3</c><d>4</d></bbox></object></annotation>",
         "not an integer"),
        ("<annotation><object><bbox><i>0</i><a>1</a><b>2.5</b><c>3</c><d>4</d></bbox></object></annotation>",
         "not an integer"),
        ("<annotation><object><bbox><i>0</i><a>-1</a><b>2</b><c>3</c><d>4</d></bbox></object></annotation>",
         "negative"),
        ("<annotation><object><name>dog</name></object></annotation>", "no bbox"),
    ],
)
def test_flickr_malformed_files_name_file_and_problem(tmp_path, content, problem):
    path = tmp_path / "2468.xml"
    path.write_text(content)
    with pytest.raises(DataError, match=f"2468.xml.*{problem}"):
        read_flickr_boxes(path)


def test_flickr_missing_file(tmp_path):
    with pytest.raises(DataError, match="1357.xml: annotation file not found"):
        read_flickr_boxes(tmp_path / "1357.xml")


def write_vggss_json(path, entries) -> None:
    path.write_text(json.dumps(entries))


def test_vggss_json_clip_scale_floor_and_corrupt_coordinate(tmp_path):
    path = tmp_path / "vggss.json"
    write_vggss_json(
        path,
        [
            {"file": "zpWuikVorYg_000032", "class": "elk bugling", "bbox": [[0.403125, 0.253125, 0.6, 0.75]]},
            {"file": "multi_000010", "class": "dog barking",
             "bbox": [[-2.8823037615171174e16, 0.5, 1.0, 0.999], [0.0, 0.0, 1.0, 1.0]]},
        ],
    )
    entries = read_vggss_json(path)
    assert list(entries) == ["zpWuikVorYg_000032", "multi_000010"]
    assert isinstance(entries["multi_000010"], VGGSSEntry)
    assert entries["zpWuikVorYg_000032"].cls == "elk bugling"
    # 0.403125*224 = 90.3 -> 90, 0.253125*224 = 56.7 -> 56, 0.6*224 = 134.4 -> 134, 0.75*224 = 168
    np.testing.assert_array_equal(entries["zpWuikVorYg_000032"].boxes, [[90, 56, 134, 168]])
    # -2.88e16 -> clipped to 0; 1.0 -> 224; 0.999*224 = 223.78 -> 223
    np.testing.assert_array_equal(entries["multi_000010"].boxes, [[0, 112, 224, 223], [0, 0, 224, 224]])
    assert entries["multi_000010"].boxes.dtype == np.int64


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"class": "x", "bbox": [[0, 0, 1, 1]]}, "entry 1 has no 'file'"),
        ({"file": "bad_000001", "bbox": [[0, 0, 1]]}, "bad_000001.*not a list of 4 numbers"),
        ({"file": "bad_000001", "bbox": [[0, "a", 1, 1]]}, "bad_000001.*bad bbox coordinate"),
        ({"file": "bad_000001", "bbox": [[0, float("nan"), 1, 1]]}, "bad_000001.*bad bbox coordinate"),
        ({"file": "bad_000001", "bbox": []}, "bad_000001.*no boxes"),
        ({"file": "good_000000", "bbox": [[0, 0, 1, 1]]}, "duplicate id good_000000"),
    ],
)
def test_vggss_malformed_entries(tmp_path, entry, message):
    path = tmp_path / "vggss_bad.json"
    write_vggss_json(path, [{"file": "good_000000", "class": "c", "bbox": [[0, 0, 1, 1]]}, entry])
    with pytest.raises(DataError, match=f"vggss_bad.json: .*{message}"):
        read_vggss_json(path)


def test_vggss_not_a_list_or_not_json(tmp_path):
    path = tmp_path / "v.json"
    path.write_text('{"file": "a"}')
    with pytest.raises(DataError, match="v.json: expected a list"):
        read_vggss_json(path)
    path.write_text("[{")
    with pytest.raises(DataError, match="v.json: malformed JSON"):
        read_vggss_json(path)


# Three overlapping boxes (224 px, exclusive upper bounds):
# A = [0, 4) x [0, 4) (16 px), B = [2, 6) x [2, 6) (16 px), C = [3, 5) x [3, 5) (4 px, inside B).
# Union = 16 + 16 - 4 = 28 px. Covered >= 2 times: (A ∩ B) ∪ C = 4 + 4 - 1 = 7 px -> 1.
# Covered once: 28 - 7 = 21 px -> 0.5. Consensus sum = 7 + 10.5 = 17.5.
BOXES = np.array([[0, 0, 4, 4], [2, 2, 6, 6], [3, 3, 5, 5]])


def test_consensus_map_by_hand():
    gt = consensus_map(BOXES)
    assert gt.shape == (224, 224) and gt.dtype == np.float32
    assert set(np.unique(gt)) == {0.0, 0.5, 1.0}
    assert gt[0, 0] == 0.5  # A only
    assert gt[2, 2] == 1.0  # A, B
    assert gt[3, 3] == 1.0  # A, B, C: 3 / 2 clipped at 1
    assert gt[4, 4] == 1.0  # B, C
    assert gt[5, 5] == 0.5  # B only (C ends at 5, exclusive)
    assert gt[6, 6] == 0.0 and gt[0, 4] == 0.0
    assert gt[1, 5] == 0.0  # row 1 is in A only, col 5 outside A
    assert gt.sum() == 17.5


def test_rows_are_y_and_cols_are_x():
    gt = union_map([[10, 20, 30, 25]])  # xmin 10, ymin 20, xmax 30, ymax 25
    assert gt[20:25, 10:30].all() and gt.sum() == 5 * 20
    assert gt[19, 10] == 0 and gt[20, 9] == 0 and gt[25, 10] == 0 and gt[20, 30] == 0


def test_union_map_and_gt_map_dispatch():
    union = union_map(BOXES)
    assert set(np.unique(union)) == {0.0, 1.0} and union.sum() == 28
    np.testing.assert_array_equal(gt_map("vggss", BOXES), union)
    np.testing.assert_array_equal(gt_map("flickr", BOXES), consensus_map(BOXES))
    assert gt_map("flickr", np.zeros((0, 4), dtype=np.int64)).sum() == 0
    with pytest.raises(ValueError, match="unknown dataset 'coco'"):
        gt_map("coco", BOXES)


def test_single_flickr_box_counts_half():
    assert consensus_map([[0, 0, 10, 10]]).sum() == 50.0
    assert consensus_map([[0, 0, 10, 10], [0, 0, 10, 10]]).sum() == 100.0


@pytest.mark.parametrize(
    "area, bucket",
    [(0, "small"), (1023, "small"), (1023.5, "small"), (1024, "medium"), (9215, "medium"),
     (9216, "large"), (20735, "large"), (20736, "huge"), (224 * 224, "huge")],
)
def test_size_bucket_edges(area, bucket):
    assert size_bucket(area) == bucket


def test_size_buckets_vectorized():
    areas = np.array([1023, 1024, 9215, 9216, 20735, 20736])
    assert SIZE_EDGES == (32**2, 96**2, 144**2)
    assert list(size_buckets(areas)) == ["small", "medium", "medium", "large", "large", "huge"]
    assert size_buckets(np.zeros((2, 3))).shape == (2, 3)
    with pytest.raises(ValueError, match="non-negative"):
        size_buckets([-1.0])
