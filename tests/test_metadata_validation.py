"""Metadata validated on read: every bad list, csv or box raises a DataError naming the file, the
row or id and the rule, instead of giving a plausible wrong test set (an empty Table 1 column, an
area-0 positive). Fixtures are written in the real on-disk formats (docs/data.md §2)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vslrepro.data import DataError, extended_testset, positives_index
from vslrepro.data.datasets.flickr import MISSING_FROM_249 as FLICKR_249_MISSING_ID
from vslrepro.data.datasets.flickr import read_boxes as read_flickr_boxes
from vslrepro.data.datasets.flickr import read_test_ids as read_flickr_test_ids
from vslrepro.data.datasets.vggss import read_annotations as read_vggss_json
from vslrepro.data.formats.lists import read_csv_ids, read_extended_csv, read_id_list

from test_testsets import write_xml  # a Flickr-SoundNet annotation file in the real format

HEADER = b"video,audio,label\r\n"


@pytest.fixture
def flickr_root(tmp_path):
    """2 positives (flickr_test.csv, CRLF `id,int`) and 2 negatives (SLAVC's extended csv)."""
    root = tmp_path / "flickr"
    (root / "metadata").mkdir(parents=True)
    (root / "Annotations").mkdir()
    (root / "metadata" / "flickr_test.csv").write_bytes(b"1001,202\r\n1002,17\r\n")
    write_xml(root / "Annotations" / "1001.xml", [(0, 0, 64, 64), (16, 16, 128, 128)])
    write_xml(root / "Annotations" / "1002.xml", [(0, 0, 256, 256)])
    (root / "metadata" / "flickr_test_plus_silent.csv").write_bytes(
        HEADER + b"1001,1002,non-sounding\r\n1002,1001,non-sounding\r\n"
    )
    return root


@pytest.fixture
def vggss_root(tmp_path):
    """2 positives (vggss_test.csv, vggss.json normalized boxes) and 2 negatives."""
    root = tmp_path / "vggss"
    (root / "metadata").mkdir(parents=True)
    entries = [
        {"file": "aaa_000010", "class": "dog barking", "bbox": [[0.0, 0.0, 0.5, 0.5]]},
        {"file": "bbb_000020", "class": "cat purring", "bbox": [[0.25, 0.25, 1.0, 1.0]]},
    ]
    (root / "metadata" / "vggss.json").write_text(json.dumps(entries))
    (root / "metadata" / "vggss_test.csv").write_bytes(b"aaa_000010\r\nbbb_000020\r\n")
    (root / "metadata" / "vggss_test_plus_silent.csv").write_bytes(
        HEADER + b"ccc_000030,ccc_000030,non-sounding\r\naaa_000010,bbb_000020,non-sounding\r\n"
    )
    return root


def test_valid_fixtures_load(flickr_root, vggss_root):
    """The fixtures themselves are valid: 2 positives and 2 negatives each, no duplicates recorded."""
    for name, root in (("flickr", flickr_root), ("vggss", vggss_root)):
        index = extended_testset(name, root)
        assert list(index["positive"]) == [True, True, False, False]
        assert index.attrs["duplicate_ids"] == [] and index.attrs["duplicate_pairs"] == []


# ---------------------------------------------------------------- lists and csvs: shape, labels, rows


def test_empty_vggss_test_list_is_an_error(vggss_root):
    """An empty vggss_test.csv used to give a test set with 0 positives (Table 1: all zeros)."""
    (vggss_root / "metadata" / "vggss_test.csv").write_bytes(b"")
    with pytest.raises(DataError, match=r"vggss_test\.csv: no positives: .*annotations .*vggss\.json"):
        extended_testset("vggss", vggss_root)


def test_flickr_list_without_ids_is_an_error(flickr_root):
    """The 249 variant of a list that only holds the dropped id leaves no positive."""
    (flickr_root / "metadata" / "flickr_test.csv").write_bytes(f"{FLICKR_249_MISSING_ID},3\r\n".encode())
    with pytest.raises(DataError, match=r"flickr_test\.csv: no positives: the test list \(Flickr-SoundNet list 249\)"):
        positives_index("flickr", flickr_root, variant="249")


@pytest.mark.parametrize("content, problem", [
    (b"", r"the file is empty, expected header 'video,audio,label'"),
    (HEADER, r"no negatives: no row is labelled 'non-sounding' \(positives from .*vggss_test\.csv\)"),
])
def test_empty_extended_csv_is_an_error(vggss_root, content, problem):
    """An empty *_test_plus_silent.csv used to give a test set with 0 negatives."""
    (vggss_root / "metadata" / "vggss_test_plus_silent.csv").write_bytes(content)
    with pytest.raises(DataError, match=r"vggss_test_plus_silent\.csv: " + problem):
        extended_testset("vggss", vggss_root)


@pytest.mark.parametrize("header", [b"audio,video,label", b"label,video,audio", b"video,label,audio"])
def test_reordered_extended_columns_are_an_error(flickr_root, header):
    """Reordered columns used to swap frame and sound, or drop every row (0 negatives)."""
    path = flickr_root / "metadata" / "flickr_test_plus_silent.csv"
    path.write_bytes(header + b"\r\n1001,1002,non-sounding\r\n")
    with pytest.raises(DataError, match=r"flickr_test_plus_silent\.csv: line 1: expected header "
                                        r"'video,audio,label', got '" + header.decode() + "'"):
        extended_testset("flickr", flickr_root)


@pytest.mark.parametrize("label", ["non_sounding", "Non-sounding", "nonsounding", "silent"])
def test_unknown_extended_label_is_an_error(vggss_root, label):
    """A label spelled differently from `non-sounding` used to drop the row silently."""
    path = vggss_root / "metadata" / "vggss_test_plus_silent.csv"
    path.write_bytes(HEADER + f"aaa_000010,bbb_000020,{label}\r\n".encode())
    with pytest.raises(DataError, match=rf"vggss_test_plus_silent\.csv: line 2: unknown label '{label}'"):
        extended_testset("vggss", vggss_root)


def test_sounding_rows_are_known_and_dropped(vggss_root):
    """`sounding` is a known label: like the official loader, only `non-sounding` rows are kept."""
    path = vggss_root / "metadata" / "vggss_test_plus_silent.csv"
    path.write_bytes(HEADER + b"aaa_000010,aaa_000010,sounding\r\naaa_000010,bbb_000020,non-sounding\r\n")
    assert list(read_extended_csv(path)["audio"]) == ["bbb_000020"]


def test_extended_rows_need_three_fields(tmp_path):
    path = tmp_path / "vggss_test_plus_silent.csv"
    path.write_bytes(HEADER + b"aaa_000010,bbb_000020,non-sounding,extra\r\n")
    with pytest.raises(DataError, match=r"vggss_test_plus_silent\.csv: line 2 needs video,audio,label"):
        read_extended_csv(path)


@pytest.mark.parametrize("content, line", [
    (b"id,int\r\n1001,202\r\n", 1),                     # a header row
    (b"1001,202\r\n1002\r\n", 2),                       # one field
    (b"1001,202\r\nvideo,audio,label\r\n", 2),          # another file's rows
    (b"1001,202\r\n,17\r\n", 2),                        # no id
])
def test_flickr_test_list_rows_are_id_int(flickr_root, content, line):
    path = flickr_root / "metadata" / "flickr_test.csv"
    path.write_bytes(content)
    with pytest.raises(DataError, match=rf"flickr_test\.csv: line {line}: expected rows 'id,int'"):
        read_flickr_test_ids(path)


def test_vggss_test_list_rows_are_one_id(tmp_path):
    path = tmp_path / "vggss_test.csv"
    path.write_bytes(b"aaa_000010\r\naaa_000010,bbb_000020,non-sounding\r\n")
    with pytest.raises(DataError, match=r"vggss_test\.csv: line 2: expected rows 'id' \(one field\)"):
        read_csv_ids(path)


def test_id_list_lines_are_one_id(tmp_path):
    path = tmp_path / "vggss_144k.txt"
    path.write_text("aaa_000010\nbbb_000020 ccc_000030\n")
    with pytest.raises(DataError, match=r"vggss_144k\.txt: line 2: expected one id per line, got "
                                        r"'bbb_000020 ccc_000030'"):
        read_id_list(path)


# ---------------------------------------------------------------- boxes in their declared units


@pytest.mark.parametrize("box, problem", [
    ([0.6, 0.2, 0.4, 0.8], r"\[0\.6, 0\.2, 0\.4, 0\.8\] \(x0, y0, x1, y1\) has x1 < x0"),
    ([0.2, 0.8, 0.4, 0.6], r"\[0\.2, 0\.8, 0\.4, 0\.6\] \(x0, y0, x1, y1\) has y1 < y0"),
    ([-0.1, 0.2, 0.4, 0.8], r"\[-0\.1, 0\.2, 0\.4, 0\.8\] has coordinate -0\.1 outside \[0, 1\];"),
    ([0.1, 0.2, 1.5, 0.8], r"\[0\.1, 0\.2, 1\.5, 0\.8\] has coordinate 1\.5 outside \[0, 1\] \(pixel"),
    ([12, 40, 180, 200], r"\[12, 40, 180, 200\] has coordinate 12 outside \[0, 1\] \(pixel coordinates\?\)"),
])
def test_impossible_vggss_box_is_an_error(vggss_root, box, problem):
    """Such boxes used to clip into an empty ground truth: an area-0 "small" positive with cIoU 0."""
    path = vggss_root / "metadata" / "vggss.json"
    entries = json.loads(path.read_text())
    entries[1]["bbox"].append(box)
    path.write_text(json.dumps(entries))
    with pytest.raises(DataError, match=r"vggss\.json: entry 1 \(bbb_000020\): bbox " + problem):
        extended_testset("vggss", vggss_root)


def test_known_corrupt_vggss_coordinate_is_still_clipped(tmp_path):
    """The released file's ≈ -2.88e16 coordinates (docs/data.md §7) clip to 0 as in the original,
    also where that leaves x1 < x0 (an empty box), so the real vggss.json still loads unchanged."""
    path = tmp_path / "vggss.json"
    corrupt = -2.8823037615171176e16
    path.write_text(json.dumps([
        {"file": "MKC9LvRivTM_000030", "class": "c", "bbox": [[0.396875, 0.6625, corrupt, 0.984375]]},
        {"file": "P-NCCepeHdI_000125", "class": "c", "bbox": [[0, 0.38125, 0.30625, corrupt]]},
    ]))
    entries = read_vggss_json(path)
    np.testing.assert_array_equal(entries["MKC9LvRivTM_000030"].boxes, [[88, 148, 0, 220]])
    np.testing.assert_array_equal(entries["P-NCCepeHdI_000125"].boxes, [[0, 85, 68, 0]])


@pytest.mark.parametrize("box, problem", [
    ((128, 0, 64, 64), r"bbox 1 \[128, 0, 64, 64\] \(xmin, ymin, xmax, ymax on the 256 grid\) has xmax < xmin"),
    ((0, 200, 64, 100), r"bbox 1 \[0, 200, 64, 100\] \(xmin, ymin, xmax, ymax on the 256 grid\) has ymax < ymin"),
    ((0, 0, 300, 64), r"bbox 1 \[0, 0, 300, 64\] \(xmin, ymin, xmax, ymax on the 256 grid\) has xmax 300, "
                      r"beyond the 256-px grid of Flickr annotations"),
    ((0, 0, 64, 257), r"bbox 1 \[0, 0, 64, 257\] \(xmin, ymin, xmax, ymax on the 256 grid\) has ymax 257, "
                      r"beyond the 256-px grid of Flickr annotations"),
])
def test_impossible_flickr_box_is_an_error(flickr_root, box, problem):
    """Such boxes used to give an empty ground truth: an area-0 "small" positive with cIoU 0."""
    write_xml(flickr_root / "Annotations" / "1002.xml", [(0, 0, 256, 256), box])
    with pytest.raises(DataError, match=r"1002\.xml: " + problem + r" \(id 1002 listed in .*flickr_test\.csv\)"):
        extended_testset("flickr", flickr_root)


def test_flickr_box_edges_of_the_grid_are_valid(tmp_path):
    """0 and 256 are the grid's edges (exclusive upper bound), a zero-extent box is possible."""
    path = tmp_path / "1001.xml"
    write_xml(path, [(0, 0, 256, 256), (30, 30, 30, 40)])
    np.testing.assert_array_equal(read_flickr_boxes(path), [[0, 0, 224, 224], [26, 26, 26, 35]])


# ---------------------------------------------------------------- duplicated ids and pairs


def test_repeated_flickr_test_id_is_an_error(flickr_root):
    """A repeated test id used to be kept once, while a repeated negative pair counted twice."""
    (flickr_root / "metadata" / "flickr_test.csv").write_bytes(b"1001,202\r\n1002,17\r\n1001,5\r\n")
    with pytest.raises(DataError, match=r"flickr_test\.csv: line 3: duplicate id 1001 \(first on line 1\); "
                                        r"pass allow_duplicates=True"):
        extended_testset("flickr", flickr_root)


def test_repeated_vggss_test_id_is_an_error(vggss_root):
    (vggss_root / "metadata" / "vggss_test.csv").write_bytes(b"aaa_000010\r\nbbb_000020\r\naaa_000010\r\n")
    with pytest.raises(DataError, match=r"vggss_test\.csv: line 3: duplicate id aaa_000010 \(first on line 1\)"):
        positives_index("vggss", vggss_root)


def test_repeated_negative_pair_is_an_error(vggss_root):
    path = vggss_root / "metadata" / "vggss_test_plus_silent.csv"
    path.write_bytes(HEADER + b"aaa_000010,bbb_000020,non-sounding\r\nccc_000030,ccc_000030,non-sounding\r\n"
                              b"aaa_000010,bbb_000020,non-sounding\r\n")
    with pytest.raises(DataError, match=r"vggss_test_plus_silent\.csv: line 4: duplicate pair "
                                        r"video=aaa_000010 audio=bbb_000020 \(first on line 2\)"):
        extended_testset("vggss", vggss_root)


def test_repeated_id_in_id_list_is_an_error(tmp_path):
    path = tmp_path / "flickr_10k.txt"
    path.write_text("1001\n1002\n1001\n")
    with pytest.raises(DataError, match=r"flickr_10k\.txt: line 3: duplicate id 1001 \(first on line 1\)"):
        read_id_list(path)
    assert read_id_list(path, allow_duplicates=True) == ["1001", "1002", "1001"]


def test_allowed_duplicates_are_kept_like_the_official_loader_and_counted(flickr_root):
    """With allow_duplicates: a test id is kept once (the official set), a pair as often as listed
    (the official loader appends every row); each repeat is recorded in attrs."""
    (flickr_root / "metadata" / "flickr_test.csv").write_bytes(b"1001,202\r\n1002,17\r\n1001,5\r\n1001,6\r\n")
    (flickr_root / "metadata" / "flickr_test_plus_silent.csv").write_bytes(
        HEADER + b"1001,1002,non-sounding\r\n1002,1001,non-sounding\r\n1001,1002,non-sounding\r\n"
    )
    index = extended_testset("flickr", flickr_root, allow_duplicates=True)
    assert list(index.loc[index["positive"], "video"]) == ["1001", "1002"]
    assert index.attrs["duplicate_ids"] == ["1001", "1001"]
    negatives = index[~index["positive"]]
    assert list(zip(negatives["video"], negatives["audio"])) == [("1001", "1002"), ("1002", "1001"), ("1001", "1002")]
    assert index.attrs["duplicate_pairs"] == [("1001", "1002")]
    positives = positives_index("flickr", flickr_root, allow_duplicates=True)
    assert len(positives) == 2 and len(positives.attrs["duplicate_ids"]) == 2
