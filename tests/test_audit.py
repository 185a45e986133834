"""`python -m vslrepro data audit` (vslrepro.commands.audit) and the id spellings it normalizes
(vslrepro.data.formats.ids): planted overlaps, some spelled in the other convention, must be found, and the
cleaned list must leave out exactly them."""

from __future__ import annotations

import json

import pytest

from vslrepro.__main__ import main
from vslrepro.commands.audit import audit_list, evaluation_clips
from vslrepro.data.formats.ids import clip_key, to_vggss_id


@pytest.mark.parametrize("spelling, key", [
    ("abc_000030", ("youtube", "abc", 30000)),
    ("abc_30000_40000", ("youtube", "abc", 30000)),
    ("abc_30", ("youtube", "abc", 30000)),
    ("abc_000030.wav", ("youtube", "abc", 30000)),
    ("-x_Yz12_9Q_000010", ("youtube", "-x_Yz12_9Q", 10000)),  # underscores inside the YouTube id
    ("Ab_12345678_000030", ("youtube", "Ab_12345678", 30000)),  # ms reading would end before it starts
    ("abcdefghijk_100000_110000", ("youtube", "abcdefghijk", 100000)),  # the 11-character id wins
    ("abcdefghi_1_000030", ("youtube", "abcdefghi_1", 30000)),  # ... in both directions
    ("10000130166", ("number", 10000130166)),
    ("10000130166.jpg", ("number", 10000130166)),
    ("not-a-clip", ("raw", "not-a-clip")),
])
def test_clip_key(spelling, key):
    assert clip_key(spelling) == key


def test_to_vggss_id():
    assert to_vggss_id("abc_30000_40000") == "abc_000030"
    assert to_vggss_id("-x_Yz12_9Q_000010") == "-x_Yz12_9Q_000010"
    with pytest.raises(ValueError, match="not a VGGSound clip id"):
        to_vggss_id("abc")


@pytest.fixture
def vggss_metadata(tmp_path):
    root = tmp_path / "VGGSS-test"
    (root / "metadata").mkdir(parents=True)
    (root / "metadata" / "vggss_test.csv").write_text("abc_000030\ndef_000010\nghi_000000\n")
    (root / "metadata" / "vggss_test_plus_silent.csv").write_text(
        "video,audio,label\nabc_000030,jkl_000020,non-sounding\nmno_000005,mno_000005,non-sounding\n")
    vggsound = tmp_path / "vggsound.csv"
    vggsound.write_text("pqr,40,dog barking,test\nstu,0,dog barking,train\n\"vwx\",12,\"cat, purring\",train\n")
    return root, vggsound


PLANTED = {  # training spelling -> where the clip is a test clip
    "abc_30000_40000": ["test_list", "negative_frames"],  # ms spelling of test id abc_000030
    "def_000010": ["test_list"],
    "jkl_20000_30000": ["negative_sounds"],  # a negative's sound clip, ms spelling
    "mno_000005": ["negative_frames", "negative_sounds"],  # a real negative
    "pqr_000040": ["vggsound_test"],  # VGGSound's test split
}
CLEAN = ["abc_000040", "stu_000000", "zzz_000030", "ghi_000001", "vwx_12000_22000"]  # near misses


def test_audit_finds_planted_overlaps_and_cleans(vggss_metadata, tmp_path, capsys):
    root, vggsound = vggss_metadata
    train = tmp_path / "vggss_144k.txt"
    order = ["abc_000040", "abc_30000_40000", "stu_000000", "def_000010", "zzz_000030", "jkl_20000_30000",
             "mno_000005", "ghi_000001", "pqr_000040", "vwx_12000_22000", "def_000010"]  # last: a repeat
    train.write_bytes("".join(f"{clip}\r\n" for clip in order).encode())
    clean, out = tmp_path / "clean.txt", tmp_path / "audit.json"
    assert main(["data", "audit", "--dataset", "vggss", "--root", str(root), "--vggsound-csv", str(vggsound),
                 "--train", str(train), "--clean-out", str(clean), "--out", str(out)]) == 0
    assert clean.read_bytes() == "".join(f"{clip}\r\n" for clip in CLEAN).encode()  # order, spelling, CRLF kept
    report = json.loads(out.read_text())
    (result,) = report["lists"]
    assert {leak["train_id"]: leak["sources"] for leak in result["leaks"]} == PLANTED
    assert {leak["train_id"]: leak["test_id"] for leak in result["leaks"]}["abc_30000_40000"] == "abc_000030"
    assert result["overlaps"] == {"test_list": 2, "negative_frames": 2, "negative_sounds": 2, "vggsound_test": 1}
    assert (result["listed"], result["unique"], result["repeated"], result["overlapping"], result["kept"]) == \
        (11, 10, 1, 5, 5)
    assert report["test_clips"] == {"test_list": 3, "negative_frames": 2, "negative_sounds": 2, "vggsound_test": 1}
    assert "overlapping with any test clip: 5" in capsys.readouterr().out


def test_audit_flickr_several_lists(tmp_path, capsys):
    root = tmp_path / "Flickr-test"
    (root / "metadata").mkdir(parents=True)
    (root / "metadata" / "flickr_test.csv").write_bytes(b"1001,3\r\n3908875350,7\r\n")
    lists = {"flickr_10k.txt": "5000\n1001\n", "flickr_144k.txt": "3908875350.wav\n5001\n10010\n"}
    for name, text in lists.items():
        (tmp_path / name).write_text(text)
    clips, _ = evaluation_clips("flickr", root)
    results = [audit_list(tmp_path / name, clips) for name in lists]
    assert [r["kept_ids"] for r in results] == [["5000"], ["5001", "10010"]]
    assert [[leak["train_id"] for leak in r["leaks"]] for r in results] == [["1001"], ["3908875350.wav"]]
    assert main(["data", "audit", "--dataset", "flickr", "--root", str(root),
                 "--train", str(tmp_path / "flickr_10k.txt"), "--train", str(tmp_path / "flickr_144k.txt"),
                 "--clean-out", str(tmp_path / "x.txt")]) == 2
    assert "one output per list" in capsys.readouterr().err and not (tmp_path / "x.txt").exists()


def test_extra_test_list_in_another_format(vggss_metadata, tmp_path):
    """A list such as hche11/VGGSound's data/test.csv: rows `<id>.mp4,label`, labels may be quoted."""
    root, _ = vggss_metadata
    extra = tmp_path / "test.csv"
    extra.write_text('stu_000000.mp4,dog barking\nyyy_000003.mp4,"cat, purring"\n')
    train = tmp_path / "train.txt"
    train.write_text("stu_0_10000\nyyy_000004\nyyy_000003\n")
    clips, files = evaluation_clips(None, None, extra=[extra])
    assert list(clips) == ["extra:test.csv"] and files == {"extra:test.csv": str(extra)}
    result = audit_list(train, clips)
    assert [leak["train_id"] for leak in result["leaks"]] == ["stu_0_10000", "yyy_000003"]
    assert result["leaks"][0]["test_id"] == "stu_000000.mp4" and result["kept_ids"] == ["yyy_000004"]
    clips, _ = evaluation_clips("vggss", root, extra=[extra])
    assert list(clips) == ["test_list", "negative_frames", "negative_sounds", "extra:test.csv"]

