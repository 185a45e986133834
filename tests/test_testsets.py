"""Test-set indexes (vslrepro.data.testsets) and metadata lists (vslrepro.data.formats.lists), on small
fixtures written in the real on-disk formats, with counts computed by hand."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from vslrepro.data import DataError, SkipLog, extended_testset, gt_maps, positives_index
from vslrepro.data.datasets.flickr import MISSING_FROM_249 as FLICKR_249_MISSING_ID
from vslrepro.data.datasets.flickr import read_test_ids as read_flickr_test_ids
from vslrepro.data.formats.lists import read_classes, read_extended_csv, read_id_list, read_vggsound_csv
from vslrepro.data.testsets import check_media, negative_type


def write_xml(path, boxes_256) -> None:
    objects = "".join(
        f"<object><bbox><index>{i}</index><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{c}</xmax><ymax>{d}</ymax>"
        f"</bbox></object>"
        for i, (a, b, c, d) in enumerate(boxes_256)
    )
    path.write_text(f"<annotation><size><width>256</width></size>{objects}</annotation>")


@pytest.fixture
def flickr_root(tmp_path):
    """4 positives (3 with the 249 list), 4 negatives (real, hard, easy, automated) + 1 dropped row."""
    root = tmp_path / "flickr"
    (root / "metadata").mkdir(parents=True)
    (root / "Annotations").mkdir()
    # CRLF, `id,int` rows, no header, as the official flickr_test.csv.
    (root / "metadata" / "flickr_test.csv").write_bytes(
        f"1001,202\r\n1002,17\r\n{FLICKR_249_MISSING_ID},5\r\n1003,900\r\n".encode()
    )
    write_xml(root / "Annotations" / "1001.xml", [(0, 0, 64, 64), (0, 0, 64, 64)])  # 56x56 twice -> 3136
    write_xml(root / "Annotations" / "1002.xml", [(0, 0, 256, 256)])  # 224x224 once -> 25088 / 2
    # three annotators, area worked out in test_flickr_positives_sizes_and_areas
    write_xml(root / "Annotations" / "1003.xml", [(0, 0, 64, 64), (32, 32, 96, 96), (0, 0, 128, 32)])
    write_xml(root / "Annotations" / f"{FLICKR_249_MISSING_ID}.xml", [(0, 0, 32, 32)])  # 28x28 once -> 392
    (root / "metadata" / "classes.csv").write_text("id,class\n1001,dog\n1002,dog\n1003,cat\n2001,dog\n")
    (root / "metadata" / "flickr_test_plus_silent.csv").write_bytes(
        b"video,audio,label\r\n"
        b"1001,1002,non-sounding\r\n"  # dog / dog -> hard
        b"1002,1003,non-sounding\r\n"  # dog / cat -> easy
        b"1003,2002,non-sounding\r\n"  # cat / unknown -> automated
        b"2001,2001,non-sounding\r\n"  # video == audio -> real; 2001 is not a positive
        b"1001,9999,sounding\r\n"  # not `non-sounding`: dropped like the official loader
    )
    return root


def test_flickr_positives_sizes_and_areas(flickr_root):
    index = positives_index("flickr", flickr_root)
    assert list(index["video"]) == ["1001", "1002", FLICKR_249_MISSING_ID, "1003"]
    assert (index["video"] == index["audio"]).all() and index["positive"].all()
    by_id = index.set_index("video")
    assert by_id.loc["1001", "area"] == 56 * 56 and by_id.loc["1001", "size"] == "medium"
    assert by_id.loc["1002", "area"] == 224 * 224 / 2 and by_id.loc["1002", "size"] == "huge"
    assert by_id.loc[FLICKR_249_MISSING_ID, "area"] == 28 * 28 / 2
    assert by_id.loc[FLICKR_249_MISSING_ID, "size"] == "small"
    # 1003: boxes A=[0,56)², B=[28,84)², C=x[0,112) y[0,28). Union = 3136 + 3136 - 784 + (112*28 - 28*56)
    # = 5488 + 1568 = 7056. Twice or more: A∩B (784) + A∩C (56*28 = 1568) - A∩B∩C (0) = 2352.
    # Sum = 2352 + (7056 - 2352) / 2 = 4704.
    assert by_id.loc["1003", "n_boxes"] == 3 and by_id.loc["1003", "area"] == 4704.0
    assert by_id.loc["1003", "class"] == "cat"
    assert index.attrs["dataset"] == "flickr" and index.attrs["list_variant"] == "250"
    np.testing.assert_array_equal(index.attrs["boxes"]["1001"], [[0, 0, 56, 56], [0, 0, 56, 56]])


def test_flickr_249_vs_250(flickr_root):
    csv_path = flickr_root / "metadata" / "flickr_test.csv"
    assert read_flickr_test_ids(csv_path, "250") == ["1001", "1002", FLICKR_249_MISSING_ID, "1003"]
    assert read_flickr_test_ids(csv_path, "249") == ["1001", "1002", "1003"]
    index = positives_index("flickr", flickr_root, variant="249")
    assert list(index["video"]) == ["1001", "1002", "1003"] and index.attrs["list_variant"] == "249"
    with pytest.raises(ValueError, match="'248'"):
        read_flickr_test_ids(csv_path, "248")
    with pytest.raises(ValueError, match="'248'"):
        extended_testset("flickr", flickr_root, variant="248")


def test_flickr_extended_counts_and_negative_types(flickr_root):
    index = extended_testset("flickr", flickr_root)
    assert len(index) == 8 and index["positive"].sum() == 4
    negatives = index[~index["positive"]]
    assert list(zip(negatives["video"], negatives["audio"], negatives["neg_type"])) == [
        ("1001", "1002", "hard"), ("1002", "1003", "easy"), ("1003", "2002", "automated"), ("2001", "2001", "real")
    ]
    assert list(negatives["class"]) == ["dog", "dog", "cat", "dog"]
    assert list(negatives["audio_class"]) == ["dog", "cat", "", "dog"]
    assert (negatives["n_boxes"] == 0).all() and (negatives["area"] == 0.0).all() and (negatives["size"] == "").all()
    assert (index.loc[index["positive"], "neg_type"] == "").all()
    assert index.attrs["files"]["extended_csv"].endswith("flickr_test_plus_silent.csv")
    with_249 = extended_testset("flickr", flickr_root, variant="249")
    assert len(with_249) == 7 and with_249["positive"].sum() == 3


def test_index_column_dtypes_are_stable(flickr_root):
    index = extended_testset("flickr", flickr_root)
    assert list(index.columns) == ["video", "audio", "positive", "neg_type", "n_boxes", "area", "size", "class",
                                   "audio_class"]
    assert index["positive"].dtype == bool and index["n_boxes"].dtype == np.int64
    assert index["area"].dtype == np.float64
    for column in ("video", "audio", "neg_type", "size", "class", "audio_class"):
        assert pd.api.types.is_string_dtype(index[column]), column
        assert not index[column].isna().any(), column


def test_negative_type_rules():
    classes = {"a": "dog", "b": "dog", "c": "cat"}
    assert negative_type("a", "a", classes) == "real"
    assert negative_type("x", "x", {}) == "real"
    assert negative_type("a", "b", classes) == "hard"
    assert negative_type("a", "c", classes) == "easy"
    assert negative_type("a", "z", classes) == "automated"
    assert negative_type("z", "a", classes) == "automated"


def test_gt_maps_follow_row_order_and_zero_negatives(flickr_root):
    index = extended_testset("flickr", flickr_root)
    maps = gt_maps(index, "flickr")
    assert maps.shape == (8, 224, 224) and maps.dtype == np.float32
    np.testing.assert_array_equal(maps.sum(axis=(1, 2)), index["area"].to_numpy())
    assert maps[0, 0, 0] == 1.0 and maps[1, 0, 0] == 0.5  # 1001: two identical boxes; 1002: one box
    assert not maps[4:].any()
    reordered = index.iloc[::-1].reset_index(drop=True)
    np.testing.assert_array_equal(gt_maps(reordered, "flickr"), maps[::-1])
    with pytest.raises(ValueError, match="built for 'flickr'"):
        gt_maps(index, "vggss")


def test_flickr_missing_and_malformed_annotation(flickr_root):
    (flickr_root / "Annotations" / "1002.xml").unlink()
    with pytest.raises(DataError, match=r"1002.xml: annotation file not found \(id 1002 listed in .*flickr_test.csv"):
        positives_index("flickr", flickr_root)
    (flickr_root / "Annotations" / "1002.xml").write_text("<annotation><object><bbox><i>0</i><a>1</a>")
    with pytest.raises(DataError, match="1002.xml: malformed XML"):
        positives_index("flickr", flickr_root)


def test_validation_split_paths_resolve_against_root(flickr_root):
    (flickr_root / "metadata" / "flickr_val.csv").write_text("1003,1\n")
    index = positives_index("flickr", flickr_root, test_list="metadata/flickr_val.csv")
    assert list(index["video"]) == ["1003"]


def test_real_negative_that_is_a_positive_is_an_error(flickr_root):
    path = flickr_root / "metadata" / "flickr_test_plus_silent.csv"
    path.write_text("video,audio,label\n1002,1002,non-sounding\n")
    with pytest.raises(DataError, match="id 1002 .*real negative.*positive"):
        extended_testset("flickr", flickr_root)


@pytest.fixture
def vggss_root(tmp_path):
    root = tmp_path / "vggss"
    (root / "metadata").mkdir(parents=True)
    entries = [
        {"file": "aaa_000010", "class": "dog barking", "bbox": [[0.0, 0.0, 0.5, 0.5], [0.25, 0.25, 0.75, 0.75]]},
        {"file": "bbb_000020", "class": "dog barking", "bbox": [[-2.8823037615171174e16, 0.0, 0.125, 1.0]]},
        {"file": "ccc_000030", "class": "cat purring", "bbox": [[0.0, 0.0, 1.0, 1.0]]},
    ]
    (root / "metadata" / "vggss.json").write_text(json.dumps(entries))
    (root / "metadata" / "vggss_test.csv").write_text("aaa_000010\nbbb_000020\n")
    # No header: youtube_id, start_seconds, label (quoted comma), split.
    (root / "metadata" / "vggsound.csv").write_text(
        'ddd,40,"people cheering, clapping",test\nbbb,20,dog barking,test\n'
    )
    (root / "metadata" / "vggss_test_plus_silent.csv").write_text(
        "video,audio,label\n"
        "aaa_000010,bbb_000020,non-sounding\n"  # dog / dog -> hard
        "bbb_000020,ccc_000030,non-sounding\n"  # dog / cat (ccc: json, not in the test list) -> easy
        "aaa_000010,ddd_000040,non-sounding\n"  # dog / cheering (vggsound.csv) -> easy
        "eee_000050,eee_000050,non-sounding\n"  # real, not a positive
        "aaa_000010,fff_000060,non-sounding\n"  # unknown audio class -> automated
    )
    return root


def test_vggss_positives_use_test_list_or_all_of_json(vggss_root):
    index = positives_index("vggss", vggss_root)
    assert list(index["video"]) == ["aaa_000010", "bbb_000020"]
    # aaa: union of [0,112)² and [56,168)² = 2 * 12544 - 3136 = 21952 -> huge
    # bbb: x [0, 28) (the corrupt -2.88e16 clips to 0), y [0, 224) -> 6272 -> medium
    assert list(index["area"]) == [21952.0, 6272.0]
    assert list(index["size"]) == ["huge", "medium"]
    assert list(index["n_boxes"]) == [2, 1] and list(index["class"]) == ["dog barking"] * 2
    assert index.attrs["list_variant"] is None
    (vggss_root / "metadata" / "vggss_test.csv").unlink()
    assert list(positives_index("vggss", vggss_root)["video"]) == ["aaa_000010", "bbb_000020", "ccc_000030"]


def test_vggss_extended_counts_and_classes(vggss_root):
    index = extended_testset("vggss", vggss_root)
    assert len(index) == 7 and index["positive"].sum() == 2
    negatives = index[~index["positive"]]
    assert list(negatives["neg_type"]) == ["hard", "easy", "easy", "real", "automated"]
    assert list(negatives["audio_class"]) == ["dog barking", "cat purring", "people cheering, clapping", "", ""]
    assert gt_maps(index, "vggss")[0].max() == 1.0


def test_vggss_listed_id_without_annotation(vggss_root):
    (vggss_root / "metadata" / "vggss_test.csv").write_text("aaa_000010\nzzz_000099\n")
    with pytest.raises(DataError, match="no annotation for id zzz_000099 listed in .*vggss_test.csv"):
        positives_index("vggss", vggss_root)


def test_vggss_validation_json_uses_all_its_entries(vggss_root):
    val = [{"file": "val_000001", "class": "owl hooting", "bbox": [[0, 0, 1, 1]]}]
    (vggss_root / "metadata" / "vggss_val.json").write_text(json.dumps(val))
    index = positives_index("vggss", vggss_root, annotations="metadata/vggss_val.json")
    assert list(index["video"]) == ["val_000001"] and list(index["class"]) == ["owl hooting"]


def test_unknown_dataset_name(vggss_root):
    with pytest.raises(ValueError, match="unknown dataset 'audioset'; known datasets: flickr, is3, vggss"):
        positives_index("audioset", vggss_root)


def write_media(root, ids, *, frames=True, audio=True) -> None:
    (root / "frames").mkdir(exist_ok=True)
    (root / "audio").mkdir(exist_ok=True)
    for clip in ids:
        if frames:
            (root / "frames" / f"{clip}.jpg").write_bytes(b"jpg")
        if audio:
            (root / "audio" / f"{clip}.wav").write_bytes(b"wav")


def test_check_media_error_and_skiplog(vggss_root):
    index = extended_testset("vggss", vggss_root)
    write_media(vggss_root, ["aaa_000010", "bbb_000020", "ccc_000030", "ddd_000040", "eee_000050"])
    write_media(vggss_root, ["fff_000060"], audio=False)  # no fff audio: the automated negative
    with pytest.raises(DataError, match=r"fff_000060.wav: audio not found \(pair video=aaa_000010 audio=fff_000060, "
                                        r"listed in .*vggss_test_plus_silent.csv"):
        check_media(index, vggss_root)
    skip = SkipLog()
    kept = check_media(index, vggss_root, skip=skip)
    assert len(kept) == 6 and "fff_000060" not in set(kept["audio"])
    assert len(skip) == 1 and skip.entries[0].id == "fff_000060" and skip.entries[0].file.endswith("fff_000060.wav")
    assert kept.attrs["dataset"] == "vggss" and "aaa_000010" in kept.attrs["boxes"]
    (vggss_root / "frames" / "aaa_000010.jpg").unlink()
    with pytest.raises(DataError, match=r"aaa_000010.jpg: frame not found \(id aaa_000010, listed in .*vggss_test.csv"):
        check_media(index, vggss_root)


def test_lists_formats(tmp_path):
    ids = tmp_path / "flickr_10k.txt"
    ids.write_bytes(b"123\r\n\r\n 456 \n789")
    assert read_id_list(ids) == ["123", "456", "789"]
    with pytest.raises(DataError, match="nope.txt: id list not found"):
        read_id_list(tmp_path / "nope.txt")
    bad = tmp_path / "broken_plus_silent.csv"
    bad.write_text("video,audio,label\na,b,non-sounding\nc,d\n")
    with pytest.raises(DataError, match="broken_plus_silent.csv: line 3"):
        read_extended_csv(bad)
    classes = tmp_path / "classes.csv"
    classes.write_text("id,class\na,dog\na,cat\n")
    with pytest.raises(DataError, match="classes.csv: line 3: id a has class 'cat'"):
        read_classes(classes)
    classes.write_text("clip,label\na,dog\n")
    with pytest.raises(DataError, match="expected header 'id,class'"):
        read_classes(classes)
    listing = tmp_path / "vggsound.csv"
    listing.write_text("-abc,7,dog barking,train\nxyz,soon,cat,test\n")
    with pytest.raises(DataError, match="vggsound.csv: line 2: start_seconds 'soon'"):
        read_vggsound_csv(listing)
    listing.write_text("-abc,7,dog barking,train\n")
    assert read_vggsound_csv(listing) == {"-abc_000007": "dog barking"}


def test_boxes_are_shared_not_copied_and_index_pickles(flickr_root):
    import pickle

    index = extended_testset("flickr", flickr_root)
    boxes = index.attrs["boxes"]
    assert index["video"].attrs["boxes"] is boxes and index.iloc[:2].attrs["boxes"] is boxes  # no deep copy
    assert not boxes["1001"].flags.writeable
    restored = pickle.loads(pickle.dumps(index))
    np.testing.assert_array_equal(gt_maps(restored, "flickr"), gt_maps(index, "flickr"))


def test_repeated_test_id_refused_or_kept_once_and_reported(flickr_root):
    (flickr_root / "metadata" / "flickr_test.csv").write_text("1001,1\n1002,2\n1001,3\n")
    with pytest.raises(DataError, match=r"flickr_test.csv: line 3: duplicate id 1001"):
        positives_index("flickr", flickr_root)
    index = positives_index("flickr", flickr_root, allow_duplicates=True)
    assert list(index["video"]) == ["1001", "1002"] and index.attrs["duplicate_ids"] == ["1001"]
