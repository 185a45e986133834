"""Helpers of the teaching notebooks (`notebooks/methods/<method>.ipynb`): a small batch, a model, a figure.

The method notebooks compute each method's loss and map step by step with the method's own module
(`vslrepro.methods.<method>`); this module only supplies what every one of them needs around that:

- `test_batch`: a few positives and negatives of a synthetic (or real) extended test set, as the
  model sees them (normalized frames, spectrograms) and as a reader sees them (frames, ground truth);
- `fresh_model` / `trained_model`: a method as it starts training (seeded), and the weights of the
  profile's training run (trained first when the run is not in the cache, as `reproduce` would);
- `shapes`: one line per tensor, its shape and dtype (the notebooks print every shape);
- `maps_figure`: maps over the frames with the ground-truth contours and each sample's confidence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from vslrepro import factory, figures, layout
from vslrepro.data.datasets import run_dataset
from vslrepro.data.formats.images import normalize_images
from vslrepro.data.splits import test_split
from vslrepro.data.testsets import gt_maps
from vslrepro.methods import LocalizationMethod
from vslrepro.train import train_run


@dataclass
class Batch:
    """A few test samples, model-ready and human-readable.

    images: (B, 3, S, S) float32, ImageNet-normalized — the model's input.
    specs: (B, 1, F, T) float32 log-spectrograms / 12 — the model's input.
    frames: (B, S, S, 3) uint8 — the same frames for display.
    gt: (B, 224, 224) float32 ground-truth maps (all zeros for negatives).
    rows: the samples' rows of the extended test index (id, class, positive, neg_type, ...).
    """

    images: torch.Tensor
    specs: torch.Tensor
    frames: np.ndarray
    gt: np.ndarray
    rows: pd.DataFrame

    @property
    def positive(self) -> np.ndarray:
        """(B,) bool: which samples have a visible sounding object."""
        return self.rows["positive"].to_numpy(bool)

    @property
    def labels(self) -> list[str]:
        """The class of each positive, "negative (<type>)" for each negative."""
        return [row["class"] if row["positive"] else f"negative ({row['neg_type']})"
                for _, row in self.rows.iterrows()]


def test_batch(params: dict[str, Any], dataset: str, *, n_positive: int = 6, n_negative: int = 2) -> Batch:
    """The first `n_positive` positives and `n_negative` negatives of `dataset`'s extended test set
    (the negatives taken from each negative type in turn: silent, off-screen, ...).

    Raises:
        ValueError: when the test set has fewer positives or negatives than asked.
    """
    index, cache = test_split(params, dataset)
    positive = index["positive"].to_numpy(bool)
    negatives = pd.DataFrame({"row": np.flatnonzero(~positive), "type": index["neg_type"][~positive].to_numpy()})
    negatives["turn"] = negatives.groupby("type").cumcount()  # one of each negative type in turn
    chosen = [np.flatnonzero(positive)[:n_positive],
              negatives.sort_values(["turn", "row"])["row"].to_numpy()[:n_negative]]
    if len(chosen[0]) < n_positive or len(chosen[1]) < n_negative:
        raise ValueError(f"{dataset}: the test set has {positive.sum()} positives and {(~positive).sum()} "
                         f"negatives; asked for {n_positive} and {n_negative}")
    rows = np.concatenate(chosen)
    frames = torch.from_numpy(cache.images[rows].copy())  # (B, 3, S, S) uint8
    return Batch(images=normalize_images(frames), specs=torch.from_numpy(cache.specs[rows].copy()),
                 frames=frames.permute(0, 2, 3, 1).numpy(),  # (B, 3, S, S) -> (B, S, S, 3)
                 gt=gt_maps(index.iloc[rows], dataset),
                 rows=index.iloc[rows].reset_index(drop=True))


def fresh_model(params: dict[str, Any], method: str) -> LocalizationMethod:
    """`method` as its training starts under profile `params` (pretrained image weights), seeded."""
    return factory.fresh_model(params, method)


def trained_model(params: dict[str, Any], dataset: str, method: str, checkpoint: str = "latest",
                  *, progress: bool = False) -> LocalizationMethod:
    """The method with the weights of its profile run's `checkpoint` (best/latest), in eval mode.

    The run is trained first if the cache does not hold it yet (what `reproduce` does; minutes on
    the smoke profile).
    """
    run = layout.run_dir(params, dataset, method)
    if not layout.checkpoint_file(run, checkpoint).is_file():
        train_run(params, run_dataset(params, dataset), layout.run_method(method), run, progress=progress)
    return factory.evaluation_model(params, dataset, method, layout.checkpoint_file(run, checkpoint))


def shapes(**tensors: torch.Tensor | np.ndarray) -> None:
    """Print `name: (d0, d1, ...) dtype` for each tensor, one per line."""
    width = max(map(len, tensors))
    for name, value in tensors.items():
        print(f"{name:<{width}}: {tuple(value.shape)} {str(value.dtype).replace('torch.', '')}")


def maps_figure(batch: Batch, maps: torch.Tensor | np.ndarray, confidence: torch.Tensor | np.ndarray,
                *, score: str = "conf") -> Figure:
    """Each sample's map (224²) over its frame, with its ground truth and its confidence."""
    maps = maps.detach().cpu().numpy() if isinstance(maps, torch.Tensor) else np.asarray(maps)
    confidence = confidence.detach().cpu().numpy() if isinstance(confidence, torch.Tensor) else confidence
    titles = [f"{label}\n{score} {float(c):.2f}" for label, c in zip(batch.labels, confidence)]
    return figures.overlay_figure(batch.frames, maps, batch.gt, titles)

