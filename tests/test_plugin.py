"""The method plug-in contract: a method defined in this file alone goes through train → evaluate →
tables on the smoke benchmark, without touching any other module of the package."""

from __future__ import annotations

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from vslrepro import layout, stages, tables
from vslrepro.methods import METHODS, LocalizationMethod, register


@register("toy_plugin")
class ToyPlugin(LocalizationMethod):
    """A tiny cosine-map method: 8×8-patch image embedding, pooled audio embedding, MIL InfoNCE."""

    display_name = "Toy plug-in"
    trainable = True
    map_bounds = (-1.0, 1.0)

    def __init__(self, dim: int = 8) -> None:
        super().__init__()
        self.image = nn.Conv2d(3, dim, kernel_size=8, stride=8)                     # 56 px -> 7×7
        self.audio = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(16, dim))
        self.epochs_begun: list[int] = []

    def begin_epoch(self, epoch: int, data=None) -> None:
        self.epochs_begun.append(epoch)
        self.training_pairs_seen = len(data) if data is not None else None

    def _features(self, image, spec):
        return F.normalize(self.image(image), dim=1), F.normalize(self.audio(spec), dim=1)

    def forward(self, image, spec):
        v, a = self._features(image, spec)                                          # (B,D,h,w), (B,D)
        logits = torch.einsum("ndhw,md->nmhw", v, a).flatten(2).amax(2) / 0.1      # (B, B)
        target = torch.arange(len(logits))
        return F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)

    def raw_maps(self, image, spec):
        v, a = self._features(image, spec)
        return torch.einsum("bdhw,bd->bhw", v, a)                                   # (B, h, w) cosines


def test_a_method_registered_in_a_test_runs_through_train_evaluate_tables(tmp_path, monkeypatch, smoke_params):
    monkeypatch.setenv("VSLREPRO_RESULTS", str(tmp_path / "results"))
    params = {**smoke_params, "profile": "plugin", "datasets": ["flickr"],
              "methods": {"toy_plugin": {"dim": 8}}, "references": {},
              "train": {**smoke_params["train"], "epochs": 2}}
    assert METHODS["toy_plugin"] is ToyPlugin
    assert [e.checkpoint for e in layout.evaluations(params)] == ["best", "latest"]

    run = stages.train(params, "flickr", "toy_plugin", out=tmp_path / "run", progress=False)
    history = pd.read_csv(run / "history.csv")
    assert list(history["epoch"]) == [1, 2] and history["loss"].notna().all()
    for checkpoint in ("best", "latest"):
        path = stages.evaluate(params, "flickr", "toy_plugin", checkpoint, run=run, progress=False)
        assert path == layout.samples_csv(params, "flickr", "toy_plugin", checkpoint)
    written = stages.tables(params)

    table2 = tables.read_table(written["table2"])
    samples = pd.read_csv(layout.samples_csv(params, "flickr", "toy_plugin", "latest"), keep_default_na=False)
    locacc = 100 * (samples.loc[samples["positive"], "ciou"] >= 0.5).mean()
    assert table2.loc["Toy plug-in", ("Flickr-SoundNet", "NO Early Stop", "ours")] == locacc
    table3 = tables.read_table(written["table3"])
    assert 0 <= table3.loc["Toy plug-in", ("Extended Flickr-SoundNet", "AP", "ours")] <= 100


@register("toy_constant")
class ConstantMaps(ToyPlugin):
    """The toy model with a map that ignores the inputs: every epoch validates to the same LocAcc."""

    display_name = "Toy constant map"

    def raw_maps(self, image, spec):
        return torch.zeros(image.shape[0], 7, 7) + 0 * self.image.bias.sum()


def test_ties_in_validation_keep_the_later_epoch(tmp_path, smoke_params):
    """The official train.py keeps `best.pth` when the new score is >= the best so far."""
    params = {**smoke_params, "datasets": ["flickr"], "methods": {"toy_constant": {}}, "references": {},
              "train": {**smoke_params["train"], "epochs": 2}}
    run = stages.train(params, "flickr", "toy_constant", out=tmp_path / "run", progress=False)
    history = pd.read_csv(run / "history.csv")
    assert history["val_locacc"].nunique() == 1  # a tie at every epoch ...
    assert torch.load(run / "best.pt", weights_only=True)["epoch"] == 2  # ... goes to the later one
