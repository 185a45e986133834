"""VGG-Sound Source (VGG-SS; Chen et al. 2021) and its extended test set (Mo & Morgado): files and readers.

Layout (docs/data.md §1–2): the annotations `metadata/vggss.json`, a list of `{"file": id, "class":
label, "bbox": [[x0, y0, x1, y1], ...]}` with normalized coordinates; the test ids in
`metadata/vggss_test.csv` (one id per row) when it exists, else every entry of the JSON; the extended
set's negatives in `metadata/vggss_test_plus_silent.csv`.

Original (EZ-VSL / SLAVC `datasets.py:load_all_bboxes`, `bbox2gtmap`; docs/data.md §6): each box is
clipped to [0, 1], × 224 and truncated; the ground truth is the union of the boxes (one annotator).
Ours: the same values, with every coordinate checked: 0 <= x0 <= x1 <= 1 and the same for y (zero
extent allowed). The one tolerated exception is the corrupt coordinate ≈ -2.88e16 of the released
file (14 of them; docs/data.md §7), clipped to 0 as in the original.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import NamedTuple

import numpy as np

from vslrepro.data.datasets.base import PATH, Dataset, Positives, SyntheticStyle, resolve
from vslrepro.data.datasets.registry import register_dataset
from vslrepro.data.errors import DataError
from vslrepro.data.formats.boxes import MAP_SIZE
from vslrepro.data.formats.ids import to_vggss_id
from vslrepro.data.formats.lists import read_csv_ids, write_lines

CORRUPT = -2.8823037615171176e16  # the 14 corrupt coordinates of the released vggss.json
ANNOTATIONS = "metadata/vggss.json"
TEST_LIST = "metadata/vggss_test.csv"  # pairs with the default JSON only


class Entry(NamedTuple):
    """One clip of vggss.json: its class label and its boxes, (n, 4) int64 in 224 px."""

    cls: str
    boxes: np.ndarray


def _is_corrupt(value: float) -> bool:
    """The known corrupt coordinate of the released vggss.json (docs/data.md §7)."""
    return math.isclose(value, CORRUPT, rel_tol=1e-9)


def _box(box: object, path: Path, clip: str, index: int) -> list[int]:
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


def read_annotations(path: str | Path) -> dict[str, Entry]:
    """Read vggss.json (a list of {"file", "class", "bbox"}) as boxes in 224 px.

    Each bbox [x0, y0, x1, y1] is normalized: 0 <= x0 <= x1 <= 1 and 0 <= y0 <= y1 <= 1 (zero
    extent allowed); it is multiplied by 224 and floored. The real file has 14 corrupt coordinates
    ≈ -2.88e16 which, as in the original, are clipped to 0; any other coordinate outside [0, 1]
    (e.g. pixels) is an error. An entry without "class" gets class "".

    Args:
        path: the JSON file (e.g. `metadata/vggss.json`).

    Returns:
        {clip id: Entry(cls, boxes (n, 4) int64)} in file order.

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
    result: dict[str, Entry] = {}
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
        boxes = [_box(box, path, clip, index) for box in raw_boxes]
        result[clip] = Entry(cls, np.asarray(boxes, dtype=np.int64).reshape(-1, 4))
    return result


@register_dataset("vggss")
class VGGSoundSource(Dataset):
    """VGG-SS: one annotator's boxes per clip (union ground truth), 5,158 test clips with classes."""

    display_name = "VGG-SS"
    extended_name = "Extended VGG-SS"
    ground_truth = "union"
    entry_schema = {"type": "object", "additionalProperties": False,
                    "properties": {"train_root": PATH, "train_list": PATH, "test_root": PATH,
                                   "metadata_root": PATH, "val": PATH, "annotations": PATH},
                    "required": ["train_root", "train_list", "test_root"]}
    clip_id_from_file = staticmethod(to_vggss_id)
    synthetic = SyntheticStyle(code=2, sizes=(134, 1796, 1726, 1502), real_fraction=0.15, annotators=1,
                               box_units="normalized", id_style="youtube")  # paper 379/5158; more for small sets

    @classmethod
    def test_ids(cls, root: Path, *, test_list=None, annotations=None, variant=None,
                 allow_duplicates: bool = False) -> tuple[list[str], Path]:
        """The test ids and the file that lists them: `test_list`, else `metadata/vggss_test.csv`
        when it exists and `annotations` is not given, else every entry of the JSON."""
        json_path = resolve(root, annotations or ANNOTATIONS)
        if test_list is not None:
            path = resolve(root, test_list)
            return read_csv_ids(path, allow_duplicates=allow_duplicates), path
        if annotations is None and (root / TEST_LIST).is_file():
            return read_csv_ids(root / TEST_LIST, allow_duplicates=allow_duplicates), root / TEST_LIST
        return list(read_annotations(json_path)), json_path

    @classmethod
    def read_positives(cls, root: Path, *, test_list=None, annotations=None, variant=None,
                       allow_duplicates: bool = False) -> Positives:
        annotation_path = resolve(root, annotations or ANNOTATIONS)
        entries = read_annotations(annotation_path)
        ids, list_path = cls.test_ids(root, test_list=test_list, annotations=annotations,
                                      allow_duplicates=allow_duplicates)
        missing = [clip for clip in ids if clip not in entries]
        if missing:
            raise DataError(
                f"{annotation_path}: no annotation for id {missing[0]} listed in {list_path}"
                + (f" ({len(missing)} ids without annotation in all)" if len(missing) > 1 else "")
            )
        boxes = {clip: entries[clip].boxes for clip in ids}
        classes = {clip: entry.cls for clip, entry in entries.items() if entry.cls}
        return Positives(ids, boxes, classes, {"test_list": str(list_path), "annotations": str(annotation_path)})

    @classmethod
    def inspect_positives(cls, root: Path, *, test_list=None, annotations=None, variant=None):
        ids, list_path = cls.test_ids(root, test_list=test_list, annotations=annotations, allow_duplicates=True)
        json_path = resolve(root, annotations or ANNOTATIONS)
        try:
            entries = read_annotations(json_path)
        except DataError as error:
            kind = "annotation_missing" if not json_path.is_file() else "annotation_invalid"
            return ids, list_path, {clip: [(kind, str(json_path), str(error))] for clip in ids}
        status = {}
        for clip in dict.fromkeys(ids):
            if clip not in entries:
                status[clip] = [("annotation_missing", str(json_path), f"{json_path}: no entry for id {clip}")]
            elif cls.gt_map(entries[clip].boxes).sum() == 0:
                status[clip] = [("annotation_empty", str(json_path),
                                 f"{json_path}: id {clip} has boxes of zero total area")]
            else:
                status[clip] = []
        return ids, list_path, status

    @classmethod
    def map_boxes(cls, boxes) -> np.ndarray:
        """Normalized boxes → floor(clip(v, 0, 1) × 224), as `read_annotations` converts them."""
        return np.array([[int(np.floor(min(max(v, 0.0), 1.0) * MAP_SIZE)) for v in box] for box in boxes],
                        dtype=np.int64).reshape(-1, 4)

    @classmethod
    def synthetic_validation(cls, metadata: Path) -> tuple[Path | None, Path | None]:
        return None, metadata / "vggss_val.json"  # the ids come from the validation JSON itself

    @classmethod
    def write_synthetic(cls, root: Path, val, test, tail) -> None:
        """`vggss_val.json` and `vggss.json` (entries {"file", "class", "bbox"}), `vggss_test.csv`."""
        for entries, name in ((val, "vggss_val.json"), (test, "vggss.json")):
            rows = [{"file": clip, "class": label, "bbox": boxes} for clip, label, boxes in entries]
            (root / "metadata" / name).write_text(json.dumps(rows) + "\n")
        write_lines(root / "metadata" / "vggss_test.csv", [clip for clip, *_ in test])
