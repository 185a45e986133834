"""The early-stopping set: a list, the dataset's own test positives, or the Flickr-SoundNet test
positives for VGG-SS (what the official VGGSound training scripts of EZ-VSL and SLAVC do)."""

from __future__ import annotations

import shutil

from vslrepro.data.datasets import locate as dataset_config
from vslrepro.data.datasets import synthetic_root
from vslrepro.data.splits import validation_split
from vslrepro.data.testsets import positives_index


def real_params(tmp_path, smoke_params, vggss_val):
    roots = {}
    for name in ("flickr", "vggss"):
        roots[name] = tmp_path / name
        shutil.copytree(synthetic_root(smoke_params) / name, roots[name])
    def entry(name, val):
        return {"train_root": str(roots[name]), "train_list": f"metadata/{name}_train.txt",
                "test_root": str(roots[name]), "metadata_root": str(roots[name]), "val": val}
    return {**smoke_params, "profile": "valtest",
            "data": {"source": "real", "flickr_list": "250", "flickr": entry("flickr", "test"),
                     "vggss": entry("vggss", vggss_val)}}


def test_vggss_validates_on_the_flickr_test_positives(tmp_path, smoke_params):
    params = real_params(tmp_path, smoke_params, "flickr_test")
    assert dataset_config(params, "vggss").val_from == "flickr"
    index, cache = validation_split(params, "vggss")
    flickr = positives_index("flickr", tmp_path / "flickr")
    assert index.attrs["dataset"] == "flickr"           # scored with the Flickr consensus maps
    assert list(index["video"]) == list(flickr["video"])
    assert [p[0] for p in cache.pairs] == list(flickr["video"])


def test_vggss_can_validate_on_its_own_test_positives(tmp_path, smoke_params):
    params = real_params(tmp_path, smoke_params, "test")
    assert dataset_config(params, "vggss").val_from is None
    index, _ = validation_split(params, "vggss")
    assert index.attrs["dataset"] == "vggss"
    assert list(index["video"]) == list(positives_index("vggss", tmp_path / "vggss")["video"])
