"""Flickr-SoundNet (Senocak et al. 2018) and its extended test set (Mo & Morgado): files and readers.

Layout (docs/data.md §1–3): the test list `metadata/flickr_test.csv` (rows `id,int`, CRLF, no header;
only column 0 is used), one annotation XML per clip `Annotations/<id>.xml`, the extended set's
negatives in `metadata/flickr_test_plus_silent.csv`. The test list exists in two versions: 250 ids
(SLAVC) and 249 ids (EZ-VSL / LVS, which lack id 3908875350); the profile key `data.flickr_list`
selects one and every result records which.

Original (EZ-VSL / SLAVC `datasets.py:load_all_bboxes`, `bbox2gtmap`; docs/data.md §6): every `bbox`
grandchild of the XML root holds an index field and then xmin, ymin, xmax, ymax on a 256×256 grid,
mapped by int(224 v / 256); the ground truth is the annotators' consensus (Σ of the box masks / 2,
clipped at 1). Ours: the same values, with explicit errors for malformed files (the official loader
crashes or silently swaps in another sample) and for boxes impossible on the grid
(0 <= xmin <= xmax <= 256, the same for y).
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np

from vslrepro.data.datasets.base import PATH, Dataset, Positives, SyntheticStyle, resolve
from vslrepro.data.datasets.registry import register_dataset
from vslrepro.data.errors import DataError
from vslrepro.data.formats.boxes import MAP_SIZE
from vslrepro.data.formats.lists import read_id_rows, write_lines

GRID = 256  # Flickr XML coordinates live on a 256×256 frame
MISSING_FROM_249 = "3908875350"  # in SLAVC's 250-id Flickr test list, not in EZ-VSL/LVS's 249
LIST_VARIANTS = ("250", "249")
TEST_LIST = "metadata/flickr_test.csv"
ANNOTATIONS = "Annotations"


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def read_test_ids(path: str | Path, variant: str = "250", *, allow_duplicates: bool = False) -> list[str]:
    """Read the Flickr-SoundNet test list (rows `id,int`, CRLF allowed; column 0 only).

    Args:
        path: e.g. `metadata/flickr_test.csv`.
        variant: "250" keeps the file as it is (SLAVC); "249" drops id 3908875350 (EZ-VSL / LVS).
        allow_duplicates: keep a repeated id instead of raising.

    Returns:
        The ids in file order.

    Raises:
        ValueError: unknown variant.
        DataError: the file is missing, a row is not `id,int` with a non-empty id (a header row
            included), or an id is repeated (unless allow_duplicates).
    """
    if variant not in LIST_VARIANTS:
        raise ValueError(f"unknown Flickr test-list variant {variant!r}: expected one of {LIST_VARIANTS}")
    ids = read_id_rows(Path(path), "test list", "'id,int' (two fields)",
                       lambda fields: len(fields) == 2 and bool(fields[0]) and _is_int(fields[1]), allow_duplicates)
    if variant == "249":
        ids = [clip for clip in ids if clip != MISSING_FROM_249]
    return ids


def _coordinate(text: str | None, path: Path, box_index: int, field: str) -> int:
    """One XML coordinate on the 256 grid, checked to be a non-negative integer."""
    try:
        value = int((text or "").strip())
    except ValueError:
        raise DataError(f"{path}: bbox {box_index} field {field!r} is not an integer ({text!r})") from None
    if value < 0:
        raise DataError(f"{path}: bbox {box_index} field {field!r} is negative ({value})")
    return value


def _grid_box(values: list[int], path: Path, box_index: int) -> list[int]:
    """A 256-grid box xmin, ymin, xmax, ymax → int(224 v / 256); DataError unless 0 <= min <= max <= 256."""
    where = f"{path}: bbox {box_index} {values} (xmin, ymin, xmax, ymax on the {GRID} grid)"
    for name, value in zip(("xmin", "ymin", "xmax", "ymax"), values):
        if value > GRID:
            raise DataError(f"{where} has {name} {value}, beyond the {GRID}-px grid of Flickr annotations")
    xmin, ymin, xmax, ymax = values
    if xmax < xmin or ymax < ymin:
        raise DataError(f"{where} has {'xmax < xmin' if xmax < xmin else 'ymax < ymin'}")
    return [int(MAP_SIZE * value / GRID) for value in values]


def read_boxes(path: str | Path) -> np.ndarray:
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
            values = [_coordinate(field.text, path, len(boxes), field.tag) for field in fields[1:5]]
            boxes.append(_grid_box(values, path, len(boxes)))
    if not boxes:
        raise DataError(f"{path}: no bbox element found")
    return np.asarray(boxes, dtype=np.int64).reshape(-1, 4)


def annotation_xml(clip: str, boxes: list) -> str:
    """A Flickr-SoundNet annotation: one <object><bbox> per annotator, 256-grid coordinates."""
    parts = [f"<annotation>\n  <file>{clip}.jpg</file>\n"]
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        parts.append(f"  <object>\n    <bbox>\n      <index>{i}</index>\n      <xmin>{x0}</xmin>\n"
                     f"      <ymin>{y0}</ymin>\n      <xmax>{x1}</xmax>\n      <ymax>{y1}</ymax>\n"
                     "    </bbox>\n  </object>\n")
    return "".join(parts) + "</annotation>\n"


@register_dataset("flickr")
class FlickrSoundNet(Dataset):
    """Flickr-SoundNet: several annotators' boxes per clip (consensus ground truth), 250 test clips."""

    display_name = "Flickr-SoundNet"
    extended_name = "Extended Flickr-SoundNet"
    ground_truth = "consensus"
    list_variants = LIST_VARIANTS
    variant_key = "flickr_list"
    entry_schema = {"type": "object", "additionalProperties": False,
                    "properties": {"train_root": PATH, "train_list": PATH, "test_root": PATH,
                                   "metadata_root": PATH, "val": PATH, "annotations": PATH},
                    "required": ["train_root", "train_list", "test_root"]}
    synthetic = SyntheticStyle(code=1, sizes=(0, 9, 83, 158), real_fraction=42 / 250, annotators=3,
                               box_units="grid256", id_style="number", max_test=250)

    @classmethod
    def test_ids(cls, root: Path, *, test_list=None, annotations=None, variant: str | None = None,
                 allow_duplicates: bool = False) -> tuple[list[str], Path]:
        """The ids of the test list (`metadata/flickr_test.csv`, or `test_list`) and its path."""
        path = resolve(root, test_list or TEST_LIST)
        return read_test_ids(path, variant or LIST_VARIANTS[0], allow_duplicates=allow_duplicates), path

    @classmethod
    def read_positives(cls, root: Path, *, test_list=None, annotations=None, variant=None,
                       allow_duplicates: bool = False) -> Positives:
        ids, list_path = cls.test_ids(root, test_list=test_list, variant=variant, allow_duplicates=allow_duplicates)
        annotation_dir = resolve(root, annotations or ANNOTATIONS)
        boxes = {}
        for clip in dict.fromkeys(ids):
            try:
                boxes[clip] = read_boxes(annotation_dir / f"{clip}.xml")
            except DataError as error:
                raise DataError(f"{error} (id {clip} listed in {list_path})") from error
        return Positives(ids, boxes, {}, {"test_list": str(list_path), "annotations": str(annotation_dir)})

    @classmethod
    def inspect_positives(cls, root: Path, *, test_list=None, annotations=None, variant=None):
        ids, list_path = cls.test_ids(root, test_list=test_list, variant=variant, allow_duplicates=True)
        annotation_dir = resolve(root, annotations or ANNOTATIONS)
        status = {}
        for clip in dict.fromkeys(ids):
            path = annotation_dir / f"{clip}.xml"
            if not path.is_file():
                status[clip] = [("annotation_missing", str(path), f"{path}: annotation not found")]
                continue
            try:
                boxes = read_boxes(path)
            except DataError as error:
                status[clip] = [("annotation_invalid", str(path), str(error))]
                continue
            empty = cls.gt_map(boxes).sum() == 0
            status[clip] = [("annotation_empty", str(path), f"{path}: boxes of zero total area")] if empty else []
        return ids, list_path, status

    @classmethod
    def map_boxes(cls, boxes) -> np.ndarray:
        """256-grid boxes → int(224 v / 256), as `read_boxes` converts them."""
        return np.array([[int(MAP_SIZE * v / GRID) for v in box] for box in boxes], dtype=np.int64).reshape(-1, 4)

    @classmethod
    def synthetic_validation(cls, metadata: Path) -> tuple[Path | None, Path | None]:
        return metadata / "flickr_val.csv", None  # boxes in Annotations/, like the test clips'

    @classmethod
    def write_synthetic(cls, root: Path, val, test, tail) -> None:
        """Annotations/<id>.xml of every val and test clip; `flickr_val.csv` and `flickr_test.csv`
        as the real list (`id,int` rows, CRLF; the integers are `tail`)."""
        (root / "Annotations").mkdir(parents=True, exist_ok=True)
        for clip, _, boxes in val + test:
            (root / "Annotations" / f"{clip}.xml").write_text(annotation_xml(clip, boxes))
        rows = [f"{clip},{t}" for (clip, *_), t in zip(val + test, tail)]
        write_lines(root / "metadata" / "flickr_val.csv", rows[: len(val)], "\r\n")
        write_lines(root / "metadata" / "flickr_test.csv", rows[len(val):], "\r\n")
