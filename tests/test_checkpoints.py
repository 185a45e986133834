"""Checkpoint files: official EZ-VSL releases pickled under numpy 1.x load safely and evaluate
directly (`evaluate --checkpoint FILE`); the absolute binarization works on the method's [0, 1] scale."""

from __future__ import annotations

import zipfile

import numpy as np
import pandas as pd
import pytest
import torch

from vslrepro import metrics, stages
from vslrepro.data import splits
from vslrepro.data.caches import TensorCache
from vslrepro.data.errors import DataError
from vslrepro.evaluate import score_samples
from vslrepro.factory import training_model
from vslrepro.methods import LocalizationMethod, load_weights_file, unit_scale
from vslrepro.methods.ezvsl import EZVSL, load_official_checkpoint


def save_like_numpy1(checkpoint: dict, path) -> None:
    """torch.save, then rename numpy 2's `numpy._core` to numpy 1.x's `numpy.core` inside the pickle,
    as in the released EZ-VSL `best.pth` files (their `best_cIoU` / `best_Auc` are numpy scalars)."""
    plain = path.with_suffix(".tmp")
    torch.save(checkpoint, plain)
    with zipfile.ZipFile(plain) as source, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as target:
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename.endswith("data.pkl"):
                assert b"numpy._core.multiarray" in data
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            target.writestr(info, data)
    plain.unlink()


def official_checkpoint(model: EZVSL) -> dict:
    """The official train.py layout: DDP-prefixed weights under "model", numpy metrics beside them."""
    return {"model": {f"module.{k}": v for k, v in model.state_dict().items()}, "optimizer": {},
            "epoch": 20, "best_cIoU": np.float64(0.8394), "best_Auc": np.float64(0.6321)}


def test_an_official_resnet18_checkpoint_pickled_under_numpy1_loads(tmp_path):
    torch.manual_seed(0)
    source = EZVSL(backbone="resnet18", dim=512)
    path = tmp_path / "best.pth"
    save_like_numpy1(official_checkpoint(source), path)
    with pytest.raises(Exception, match="Weights only load failed"):  # plain safe loading refuses it
        torch.load(path, weights_only=True)
    loaded = load_weights_file(path)
    assert loaded["best_cIoU"] == np.float64(0.8394)
    target = load_official_checkpoint(EZVSL(backbone="resnet18", dim=512), path).eval()
    image, spec = torch.randn(2, 3, 224, 224), torch.randn(2, 1, 257, 200)
    with torch.no_grad():
        assert torch.equal(target.raw_maps(image, spec), source.eval().raw_maps(image, spec))
    with pytest.raises(DataError, match="does not fit EZVSL"):
        load_official_checkpoint(EZVSL(backbone="resnet18", dim=128), path)


def test_evaluate_accepts_an_official_checkpoint_file(tmp_path, monkeypatch, smoke_params):
    monkeypatch.setenv("VSLREPRO_RESULTS", str(tmp_path / "results"))
    torch.manual_seed(1)
    model = training_model(smoke_params, "ezvsl")
    released = tmp_path / "release" / "best.pth"
    released.parent.mkdir()
    save_like_numpy1(official_checkpoint(model), released)
    ours = tmp_path / "ours.pt"
    torch.save({"model": model.state_dict(), "epoch": 1}, ours)

    from_release = stages.evaluate(smoke_params, "flickr", "ezvsl", str(released), progress=False)
    assert from_release.name == "flickr_ezvsl_best-file.csv"
    from_ours = stages.evaluate(smoke_params, "flickr", "ezvsl", str(ours), progress=False,
                                out=tmp_path / "ours.csv")
    a, b = pd.read_csv(from_release), pd.read_csv(from_ours)
    pd.testing.assert_frame_equal(a, b)
    # the OGL variants take the same file for their AV part
    fused = stages.evaluate(smoke_params, "flickr", "ezvsl_ogl", str(released), progress=False)
    assert len(pd.read_csv(fused)) == len(a)


class ShiftedMaps(LocalizationMethod):
    """Maps in raw units (-10, 10): the absolute threshold must apply to (m + 10)/20, not to m."""

    map_bounds = (-10.0, 10.0)

    def raw_maps(self, image, spec):
        return image[:, 0, ::8, ::8] * 4.0  # (B, 7, 7) values of both signs, several units wide


def test_absolute_binarization_uses_the_method_scale(smoke_params):
    full_index, full = splits.test_split(smoke_params, "flickr")
    index = full_index.iloc[:40]
    cache = TensorCache(full.images[:40], full.specs[:40], full.pairs[:40], full.folder)
    method = ShiftedMaps()
    scored = score_samples(method, index, cache, "flickr", image_size=56, binarize="absolute", pred_thr=0.5)
    from vslrepro.data.formats.images import normalize_images
    from vslrepro.data.testsets import gt_maps
    images = normalize_images(torch.from_numpy(cache.images[:40].copy()))
    maps = method.localize(images, torch.from_numpy(cache.specs[:40].copy())).maps
    gt = gt_maps(index, "flickr")
    expected = metrics.ciou(unit_scale(maps, (-10.0, 10.0)), gt, binarize="absolute", pred_thr=0.5)
    np.testing.assert_array_equal(scored["ciou"].to_numpy(), expected)
    raw = metrics.ciou(maps, gt, binarize="absolute", pred_thr=0.5)  # the old, wrong scale differs
    assert not np.array_equal(np.nan_to_num(raw), np.nan_to_num(expected))
    manual = metrics.ciou((maps >= 0).float(), gt, binarize="absolute", pred_thr=0.5)  # cos >= 0
    np.testing.assert_array_equal(expected, manual)
