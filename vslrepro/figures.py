"""Figures of the pipeline: data preview, training curves, precision–recall curves, overlays.

Each function saves a PNG (small, 100 dpi) and returns its path; notebooks display the file.
Figures are plain `matplotlib.figure.Figure` objects drawn by the Agg canvas: no pyplot, and the
global backend and rcParams are left as they were (the seaborn style applies only inside `_style`).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from vslrepro.data.formats.images import load_frame
from vslrepro.data.formats.media import COMMUNITY, media_files

STYLE = "whitegrid"      # seaborn axes style of every figure
PALETTE = "colorblind"   # seaborn palette: one colour per method, in the order given


def _seaborn():
    """seaborn, imported on first use (it pulls in scipy.stats: seconds that a pipeline stage which
    draws nothing should not pay)."""
    import seaborn

    return seaborn


@contextmanager
def _style(*, axes: bool = True):
    """The seaborn style, set for the figures made inside the block and restored on exit. Image
    grids (`axes=False`: their axes are hidden) need no style and skip importing seaborn."""
    if not axes:
        yield
        return
    with _seaborn().axes_style(STYLE):
        yield


def _figure(figsize: tuple[float, float]) -> Figure:
    """A figure with its own Agg canvas (no pyplot, no backend switch), laid out without overlaps."""
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    if getattr(fig.canvas, "manager", None) is not None:  # a figure made by pyplot: release it there
        import matplotlib.pyplot as plt

        plt.close(fig)
    return path


def data_preview(root: str | Path, index: pd.DataFrame, path: str | Path, *, n: int = 8,
                 title: str = "", media: tuple[str, str] = COMMUNITY) -> Path:
    """A row of test frames with their ground-truth boxes (positives) or 'negative' labels."""
    rows = pd.concat([index[index["positive"]].head(n - n // 4), index[~index["positive"]].head(n // 4)])
    boxes = index.attrs.get("boxes", {})
    with _style(axes=False):
        fig = _figure((1.6 * len(rows), 1.9))
        axes = fig.subplots(1, len(rows), squeeze=False)[0]
        for ax, (_, row) in zip(axes, rows.iterrows()):
            image = load_frame(media_files(root, row["video"], row["video"], media)[0]).resize((224, 224))
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
    line = dict(data=history, x="epoch", marker="o", markersize=4, markeredgewidth=0, estimator=None, sort=False)
    with _style():
        fig = _figure((7, 2.4))
        left, right = fig.subplots(1, 2)
        _seaborn().lineplot(**line, y="loss", ax=left)
        left.set(xlabel="epoch", ylabel="training loss")
        _seaborn().lineplot(**line, y="val_locacc", ax=right, label="val LocAcc")
        best = history.loc[history["val_locacc"].idxmax()]
        right.axvline(best["epoch"], color="grey", ls="--", lw=1, label=f"BEST (epoch {int(best['epoch'])})")
        right.set(xlabel="epoch", ylabel="validation LocAcc")
        for ax in (left, right):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        right.legend(fontsize=7)
        fig.suptitle(title, fontsize=9)
        return _save(fig, path)


def pr_curves(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path, *, title: str = "") -> Path:
    """Precision–recall curves, one line per method: {label: (recall, precision)}."""
    with _style():
        fig = _figure((3.6, 3.0))
        ax = fig.subplots()
        if curves:
            # long form: one row per (method, point); points are drawn in sweep order, not averaged
            table = pd.concat([pd.DataFrame({"method": label, "recall": np.asarray(recall, float),
                                             "precision": np.asarray(precision, float)})
                               for label, (recall, precision) in curves.items()], ignore_index=True)
            _seaborn().lineplot(data=table, x="recall", y="precision", hue="method", hue_order=list(curves),
                         palette=_seaborn().color_palette(PALETTE, len(curves)), estimator=None, sort=False,
                         lw=1.2, ax=ax)
            _seaborn().move_legend(ax, "best", title=None, fontsize=6)
        ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title=title)
        return _save(fig, path)


def overlay_figure(images: np.ndarray, maps: np.ndarray, gts: np.ndarray, titles: list[str]) -> Figure:
    """Frames (N, H, W, 3) uint8 with predicted maps (N, 224, 224) and ground-truth contours."""
    with _style(axes=False):
        fig = _figure((1.6 * len(images), 1.9))
        axes = fig.subplots(1, len(images), squeeze=False)[0]
        for ax, image, pred, gt, title in zip(axes, images, maps, gts, titles):
            ax.imshow(image, extent=(0, 224, 224, 0))
            ax.imshow(pred, cmap="jet", alpha=0.45, extent=(0, 224, 224, 0))
            if gt.any():
                ax.contour(gt, levels=[0.25], colors="white", linewidths=0.8)
            ax.set_title(title, fontsize=7)
            ax.axis("off")
        return fig


def overlays(images: np.ndarray, maps: np.ndarray, gts: np.ndarray, titles: list[str],
             path: str | Path) -> Path:
    """`overlay_figure` saved as a PNG at `path`."""
    return _save(overlay_figure(images, maps, gts, titles), path)


def clip_overlay(frame: np.ndarray, heat: np.ndarray, title: str, path: str | Path) -> Path:
    """One frame (H, W, 3) uint8 at its own size with a localization map (h, w) stretched over it.

    The evaluation squashes the frame to a square (docs/data.md §5), so the square map covers the
    whole frame: stretching it back keeps every cell over the pixels it was computed from. The map
    is min–max scaled for display only.
    """
    height, width = frame.shape[:2]
    span = float(heat.max() - heat.min())
    shown = (heat - heat.min()) / span if span > 0 else np.zeros_like(heat)
    with _style(axes=False):
        fig = _figure((4.0 * width / max(height, width) + 0.6, 4.0 * height / max(height, width) + 0.6))
        ax = fig.subplots()
        ax.imshow(frame, extent=(0, width, height, 0))
        image = ax.imshow(shown, cmap="jet", alpha=0.45, extent=(0, width, height, 0))
        fig.colorbar(image, ax=ax, shrink=0.8, label="map (min–max scaled)")
        ax.set_title(title, fontsize=8)
        ax.axis("off")
        return _save(fig, path)
