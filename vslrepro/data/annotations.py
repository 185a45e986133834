"""Ground-truth boxes (Flickr XML, VGG-SS JSON), ground-truth maps and size buckets.

Original (EZ-VSL / SLAVC `datasets.py:load_all_bboxes`, `bbox2gtmap`; docs/data.md §6): Flickr
boxes come from one XML per clip, every `bbox` grandchild of the root holding an index field and
then xmin, ymin, xmax, ymax on a 256×256 grid, mapped by int(224 v / 256); VGG-SS boxes are
normalized [x0, y0, x1, y1] clipped to [0, 1], ×224 and truncated. The map adds 1 over rows
ymin:ymax, cols xmin:xmax of each box; Flickr divides by 2 and clips at 1 (annotator consensus),
VGG-SS sets any coverage to 1.

Ours: the same values, with explicit errors for malformed files (the official loaders crash or
silently swap in another sample) and for boxes that are impossible in the declared units: Flickr
needs 0 <= xmin <= xmax <= 256 (and the same for y), VGG-SS needs 0 <= x0 <= x1 <= 1 (and y). The
one tolerated exception is the corrupt VGG-SS coordinate ≈ -2.88e16 of the released file
(docs/data.md §7), clipped to 0 as in the original. Size buckets follow SLAVC
`utils.py:EvaluatorFull`: by the area Σ G of the ground-truth map in 224² pixels.
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import NamedTuple

import numpy as np

from vslrepro.data.errors import DataError

MAP_SIZE = 224  # side of every ground-truth map (the test-time image size)
FLICKR_GRID = 256  # Flickr XML coordinates live on a 256×256 frame
VGGSS_CORRUPT = -2.8823037615171176e16  # the 14 corrupt coordinates of the released vggss.json
SIZE_EDGES = (1024, 9216, 20736)  # 32², 96², 144²: small | medium | large | huge
SIZE_NAMES = ("small", "medium", "large", "huge")


class VGGSSEntry(NamedTuple):
    """One clip of vggss.json: its class label and its boxes, (n, 4) int64 in 224 px."""

    cls: str
    boxes: np.ndarray


def _flickr_coordinate(text: str | None, path: Path, box_index: int, field: str) -> int:
    """One XML coordinate on the 256 grid, checked to be a non-negative integer."""
    try:
        value = int((text or "").strip())
    except ValueError:
        raise DataError(f"{path}: bbox {box_index} field {field!r} is not an integer ({text!r})") from None
    if value < 0:
        raise DataError(f"{path}: bbox {box_index} field {field!r} is negative ({value})")
    return value


def _flickr_box(values: list[int], path: Path, box_index: int) -> list[int]:
    """A 256-grid box xmin, ymin, xmax, ymax → int(224 v / 256); DataError unless 0 <= min <= max <= 256."""
    where = f"{path}: bbox {box_index} {values} (xmin, ymin, xmax, ymax on the {FLICKR_GRID} grid)"
    for name, value in zip(("xmin", "ymin", "xmax", "ymax"), values):
        if value > FLICKR_GRID:
            raise DataError(f"{where} has {name} {value}, beyond the {FLICKR_GRID}-px grid of Flickr annotations")
    xmin, ymin, xmax, ymax = values
    if xmax < xmin or ymax < ymin:
        raise DataError(f"{where} has {'xmax < xmin' if xmax < xmin else 'ymax < ymin'}")
    return [int(MAP_SIZE * value / FLICKR_GRID) for value in values]


def read_flickr_boxes(path: str | Path) -> np.ndarray:
    """Read one Flickr-SoundNet annotation XML as boxes in 224 px.

    Every `bbox` element that is a grandchild of the root (root → object → bbox) is one box: its
    first child (an index field) is skipped and the next four are xmin, ymin, xmax, ymax on a
    256×256 grid (0 <= min <= max <= 256), each mapped to int(224 v / 256) (e.g. 128 → 112,
    255 → 223, 10 → 8).

    Deviation: the official parser appends an empty box for every non-`bbox` grandchild and then
    crashes; here non-`bbox` elements are ignored.

    Args:
        path: the `Annotations/<id>.xml` file.

    Returns:
        int64 array of shape (n, 4), n >= 1, rows xmin, ymin, xmax, ymax.

    Raises:
        DataError: missing file, XML parse error, a bbox with fewer than 5 children, a
            non-integer coordinate or one outside [0, 256], xmax < xmin or ymax < ymin, or no bbox
            at all.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: annotation file not found")
    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError as error:
        raise DataError(f"{path}: malformed XML ({error})") from error
    boxes = []
    for child in root:
        for element in child:
            if element.tag != "bbox":
                continue
            fields = list(element)
            if len(fields) < 5:
                raise DataError(
                    f"{path}: bbox {len(boxes)} has {len(fields)} fields, expected an index and xmin, ymin, xmax, ymax"
                )
            values = [_flickr_coordinate(field.text, path, len(boxes), field.tag) for field in fields[1:5]]
            boxes.append(_flickr_box(values, path, len(boxes)))
    if not boxes:
        raise DataError(f"{path}: no bbox element found")
    return np.asarray(boxes, dtype=np.int64).reshape(-1, 4)


def _is_corrupt(value: float) -> bool:
    """The known corrupt coordinate of the released vggss.json (docs/data.md §7)."""
    return math.isclose(value, VGGSS_CORRUPT, rel_tol=1e-9)


def _vggss_box(box: object, path: Path, clip: str, index: int) -> list[int]:
    """One normalized [x0, y0, x1, y1] in [0, 1] with x0 <= x1, y0 <= y1 → ×224, floored.

    The known corrupt coordinate (≈ -2.88e16) is clipped to 0 as in the original, and its box is
    not checked for order (clipping already makes it inverted or empty).
    """
    if not isinstance(box, list) or len(box) != 4:
        raise DataError(f"{path}: entry {index} ({clip}): bbox is not a list of 4 numbers ({box!r})")
    values, corrupt = [], False
    for value in box:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise DataError(f"{path}: entry {index} ({clip}): bad bbox coordinate {value!r} in {box!r}")
        if _is_corrupt(value):
            corrupt = True
            value = 0.0
        elif not 0.0 <= value <= 1.0:
            hint = " (pixel coordinates?)" if value > 1.0 else ""
            raise DataError(
                f"{path}: entry {index} ({clip}): bbox {box!r} has coordinate {value!r} outside [0, 1]{hint}; "
                "vggss.json boxes are normalized"
            )
        values.append(float(value))
    x0, y0, x1, y1 = values
    if not corrupt and (x1 < x0 or y1 < y0):
        axis = "x1 < x0" if x1 < x0 else "y1 < y0"
        raise DataError(f"{path}: entry {index} ({clip}): bbox {box!r} (x0, y0, x1, y1) has {axis}")
    return [int(math.floor(v * MAP_SIZE)) for v in values]


def read_vggss_json(path: str | Path) -> dict[str, VGGSSEntry]:
    """Read vggss.json (a list of {"file", "class", "bbox"}) as boxes in 224 px.

    Each bbox [x0, y0, x1, y1] is normalized: 0 <= x0 <= x1 <= 1 and 0 <= y0 <= y1 <= 1 (zero
    extent allowed); it is multiplied by 224 and floored. The real file has 14 corrupt coordinates
    ≈ -2.88e16 which, as in the original, are clipped to 0; any other coordinate outside [0, 1]
    (e.g. pixels) is an error. An entry without "class" gets class "".

    Args:
        path: the JSON file (e.g. `metadata/vggss.json`).

    Returns:
        {clip id: VGGSSEntry(cls, boxes (n, 4) int64)} in file order.

    Raises:
        DataError: missing/unparsable file, top level not a list, an entry that is not an object,
            has no "file", has no boxes, has a bbox that is not 4 finite numbers, a coordinate
            outside [0, 1] (other than the known corrupt one), x1 < x0 or y1 < y0, a non-string
            class, or a duplicate id.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: annotation file not found")
    try:
        entries = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: malformed JSON ({error})") from error
    if not isinstance(entries, list):
        raise DataError(f"{path}: expected a list of entries, got {type(entries).__name__}")
    result: dict[str, VGGSSEntry] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise DataError(f"{path}: entry {index} is not an object")
        clip = entry.get("file")
        if not isinstance(clip, str) or not clip:
            raise DataError(f"{path}: entry {index} has no 'file' id")
        cls = entry.get("class", "")
        if not isinstance(cls, str):
            raise DataError(f"{path}: entry {index} ({clip}): class is not a string ({cls!r})")
        raw_boxes = entry.get("bbox")
        if not isinstance(raw_boxes, list) or not raw_boxes:
            raise DataError(f"{path}: entry {index} ({clip}): no boxes ('bbox' = {raw_boxes!r})")
        if clip in result:
            raise DataError(f"{path}: entry {index}: duplicate id {clip}")
        boxes = [_vggss_box(box, path, clip, index) for box in raw_boxes]
        result[clip] = VGGSSEntry(cls, np.asarray(boxes, dtype=np.int64).reshape(-1, 4))
    return result


def _box_counts(boxes) -> np.ndarray:
    """Number of boxes covering each pixel, (224, 224) float32; coordinates clamped to the frame."""
    boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)  # (n, 4): xmin, ymin, xmax, ymax
    grid = np.arange(MAP_SIZE)
    clamped = np.clip(boxes, 0, MAP_SIZE)
    rows = (grid[None, :] >= clamped[:, 1:2]) & (grid[None, :] < clamped[:, 3:4])  # (n, 224) y in box
    cols = (grid[None, :] >= clamped[:, 0:1]) & (grid[None, :] < clamped[:, 2:3])  # (n, 224) x in box
    return rows.astype(np.float32).T @ cols.astype(np.float32)  # (224, n) @ (n, 224) -> (224, 224), exact


def consensus_map(boxes) -> np.ndarray:
    """Flickr ground truth: Σ box masks / 2, clipped at 1 (values in {0, 0.5, 1}).

    Args:
        boxes: (n, 4) ints xmin, ymin, xmax, ymax in 224 px, exclusive upper bounds; n may be 0.

    Returns:
        float32 array (224, 224).
    """
    return np.minimum(_box_counts(boxes) / np.float32(2.0), np.float32(1.0))


def union_map(boxes) -> np.ndarray:
    """VGG-SS ground truth: 1 where any box covers the pixel, else 0.

    Args:
        boxes: (n, 4) ints xmin, ymin, xmax, ymax in 224 px, exclusive upper bounds; n may be 0.

    Returns:
        float32 array (224, 224).
    """
    return (_box_counts(boxes) > 0).astype(np.float32)


def gt_map(dataset: str, boxes) -> np.ndarray:
    """The ground-truth map of `dataset`: "flickr" → consensus_map, "vggss" → union_map.

    Raises:
        ValueError: unknown dataset name.
    """
    if dataset == "flickr":
        return consensus_map(boxes)
    if dataset == "vggss":
        return union_map(boxes)
    raise ValueError(f"unknown dataset {dataset!r}: expected 'flickr' or 'vggss'")


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
