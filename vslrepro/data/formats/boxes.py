"""Ground-truth maps from boxes, and the size buckets of Table 1.

A box is `xmin, ymin, xmax, ymax` in 224-px coordinates with exclusive upper bounds (the official
`bbox2gtmap` sets rows ymin:ymax and columns xmin:xmax). Two conventions combine the boxes of a
clip (EZ-VSL / SLAVC `datasets.py:bbox2gtmap`; docs/data.md §6): the annotators' *consensus*
(Σ of the box masks / 2, clipped at 1: Flickr-SoundNet) and the *union* (any coverage is 1:
VGG-SS). Each dataset module says which one it uses and how its annotation files become boxes.
Size buckets follow SLAVC `utils.py:EvaluatorFull`: by the area Σ G of the ground-truth map in
224² pixels.
"""

from __future__ import annotations

import numpy as np

MAP_SIZE = 224  # side of every ground-truth map (the test-time image size)
SIZE_EDGES = (1024, 9216, 20736)  # 32², 96², 144²: small | medium | large | huge
SIZE_NAMES = ("small", "medium", "large", "huge")


def _box_counts(boxes) -> np.ndarray:
    """Number of boxes covering each pixel, (224, 224) float32; coordinates clamped to the frame."""
    boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)  # (n, 4): xmin, ymin, xmax, ymax
    grid = np.arange(MAP_SIZE)
    clamped = np.clip(boxes, 0, MAP_SIZE)
    rows = (grid[None, :] >= clamped[:, 1:2]) & (grid[None, :] < clamped[:, 3:4])  # (n, 224) y in box
    cols = (grid[None, :] >= clamped[:, 0:1]) & (grid[None, :] < clamped[:, 2:3])  # (n, 224) x in box
    return rows.astype(np.float32).T @ cols.astype(np.float32)  # (224, n) @ (n, 224) -> (224, 224), exact


def consensus_map(boxes) -> np.ndarray:
    """The annotators' consensus (Flickr-SoundNet): Σ box masks / 2, clipped at 1 (values in {0, 0.5, 1}).

    Args:
        boxes: (n, 4) ints xmin, ymin, xmax, ymax in 224 px, exclusive upper bounds; n may be 0.

    Returns:
        float32 array (224, 224).
    """
    return np.minimum(_box_counts(boxes) / np.float32(2.0), np.float32(1.0))


def union_map(boxes) -> np.ndarray:
    """The union (VGG-SS): 1 where any box covers the pixel, else 0.

    Args:
        boxes: (n, 4) ints xmin, ymin, xmax, ymax in 224 px, exclusive upper bounds; n may be 0.

    Returns:
        float32 array (224, 224).
    """
    return (_box_counts(boxes) > 0).astype(np.float32)


def size_buckets(areas) -> np.ndarray:
    """Size bucket of each ground-truth area (Σ G in 224² px), vectorized.

    small < 32² = 1024 <= medium < 96² = 9216 <= large < 144² = 20736 <= huge.

    Args:
        areas: array-like of non-negative areas, any shape.

    Returns:
        array of str ("small"/"medium"/"large"/"huge"), same shape.

    Raises:
        ValueError: a negative or NaN area.
    """
    areas = np.asarray(areas, dtype=np.float64)
    if np.isnan(areas).any() or (areas < 0).any():
        raise ValueError("areas must be non-negative numbers")
    index = np.searchsorted(np.asarray(SIZE_EDGES, dtype=np.float64), areas, side="right")
    return np.asarray(SIZE_NAMES, dtype=object)[index].astype(str)


def size_bucket(area: float) -> str:
    """Size bucket of one ground-truth area; see `size_buckets`."""
    return str(size_buckets(np.asarray([area]))[0])
