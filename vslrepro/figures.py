"""Figures of the pipeline: data preview, training curves, precision–recall curves, overlays.

Each function saves a PNG (small, 100 dpi) and returns its path; notebooks display the file.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; notebooks show the saved PNG
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def data_preview(root: str | Path, index: pd.DataFrame, path: str | Path, *, n: int = 8,
                 title: str = "") -> Path:
    """A row of test frames with their ground-truth boxes (positives) or 'negative' labels."""
    from vslrepro.data.images import load_frame

    rows = pd.concat([index[index["positive"]].head(n - n // 4), index[~index["positive"]].head(n // 4)])
    boxes = index.attrs.get("boxes", {})
    fig, axes = plt.subplots(1, len(rows), figsize=(1.6 * len(rows), 1.9))
    for ax, (_, row) in zip(np.atleast_1d(axes), rows.iterrows()):
        image = load_frame(Path(root) / "frames" / f"{row['video']}.jpg").resize((224, 224))
        ax.imshow(image)
        if row["positive"]:
            for x0, y0, x1, y1 in boxes.get(row["video"], []):
                ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, color="lime", lw=1))
            ax.set_title(f"{row['class']}\n{row['size']}", fontsize=7)
        else:
            ax.set_title(f"negative ({row['neg_type']})\nsound: {row['audio_class'] or '?'}", fontsize=7)
        ax.axis("off")
    fig.suptitle(title, fontsize=8)
    return _save(fig, path)


def training_curves(history: pd.DataFrame, path: str | Path, *, title: str = "") -> Path:
    """Loss and validation LocAcc per epoch, with the BEST epoch marked."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(7, 2.4))
    left.plot(history["epoch"], history["loss"], marker="o", ms=3)
    left.set(xlabel="epoch", ylabel="training loss")
    right.plot(history["epoch"], history["val_locacc"], marker="o", ms=3, label="val LocAcc")
    best = history.loc[history["val_locacc"].idxmax()]
    right.axvline(best["epoch"], color="grey", ls="--", lw=1, label=f"BEST (epoch {int(best['epoch'])})")
    right.set(xlabel="epoch", ylabel="validation LocAcc")
    right.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def pr_curves(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path, *, title: str = "") -> Path:
    """Precision–recall curves, one line per method: {label: (recall, precision)}."""
    fig, ax = plt.subplots(figsize=(3.6, 3.0))
    for label, (recall, precision) in curves.items():
        ax.plot(recall, precision, label=label, lw=1.2)
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title=title)
    ax.legend(fontsize=6)
    return _save(fig, path)


def overlays(images: np.ndarray, maps: np.ndarray, gts: np.ndarray, titles: list[str],
             path: str | Path) -> Path:
    """Frames (N, H, W, 3) uint8 with predicted maps (N, 224, 224) and ground-truth contours."""
    fig, axes = plt.subplots(1, len(images), figsize=(1.6 * len(images), 1.9))
    for ax, image, pred, gt, title in zip(np.atleast_1d(axes), images, maps, gts, titles):
        ax.imshow(image, extent=(0, 224, 224, 0))
        ax.imshow(pred, cmap="jet", alpha=0.45, extent=(0, 224, 224, 0))
        if gt.any():
            ax.contour(gt, levels=[0.25], colors="white", linewidths=0.8)
        ax.set_title(title, fontsize=7)
        ax.axis("off")
    return _save(fig, path)
