"""IS3 (Senocak et al., "Sound Source Localization is All about Cross-Modal Alignment", ICCV 2023):
an evaluation-only test set of positives.

IS3 holds synthetic scenes that each show two sound-making objects; an entry pairs a scene with
the sound of one of them and boxes that one. The annotation file released with the authors'
code (kaistmm/SSLalignment, `metadata/synthetic3240_bbox.json`) is a list of
`{"image": ".../visual_frames/<stem>.jpg", "audio": ".../audio_wav/<stem>.wav", "gt_box": [x0, y0,
x1, y1]}`, one entry per annotated object, with the box in pixels of the 224×224 test frame. Their
loader (`datasets.py:load_all_bboxes`, format 'is3') keys each entry by the image's file stem,
truncates the coordinates with int() and builds a binary map (the union rule of `bbox2gtmap`).

Ours: the same ids, boxes and ground truth. The user supplies the media, in the released folders
under the profile's `data.is3.test_root`: `visual_frames/<stem>.jpg` and `audio_wav/<stem>.wav`
(only the file names of the JSON's paths are used; nothing is downloaded). Every entry is checked:
its image and audio stems must be equal (a positive is a scene with its own sound), its box must
lie in the 224-px frame with x0 <= x1 and y0 <= y1, and no stem may repeat. IS3 has no negatives:
its tables report LocAcc and AUC only (Table 2); AP, max-F1 and Table 4 need negatives and leave it
out, saying so. It has no training list either: it evaluates the runs of another dataset
(`data.is3.runs_from`, VGG-SS by default, as the authors evaluate their VGGSound-trained models).
The audio is the same centred window as for every test set (the authors' loader reads 10 s and
centre-crops the spectrogram to the same 3 s).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from vslrepro.data.datasets.base import PATH, Dataset, Positives, resolve
from vslrepro.data.datasets.registry import register_dataset
from vslrepro.data.errors import DataError
from vslrepro.data.formats.boxes import MAP_SIZE

ANNOTATIONS = "metadata/synthetic3240_bbox.json"


def _stem(value: object, path: Path, index: int, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{path}: entry {index} has no {key!r} file name")
    return Path(value.strip()).stem


def _box(value: object, path: Path, clip: str, index: int) -> list[int]:
    """One [x0, y0, x1, y1] in 224-px pixels → int() of each, checked to lie in the frame."""
    if not isinstance(value, list) or len(value) != 4:
        raise DataError(f"{path}: entry {index} ({clip}): gt_box is not a list of 4 numbers ({value!r})")
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise DataError(f"{path}: entry {index} ({clip}): bad gt_box coordinate {v!r} in {value!r}")
        if not 0 <= v <= MAP_SIZE:
            raise DataError(f"{path}: entry {index} ({clip}): gt_box {value!r} has coordinate {v!r} outside "
                            f"[0, {MAP_SIZE}] (IS3 boxes are pixels of the 224-px frame)")
    x0, y0, x1, y1 = value
    if x1 < x0 or y1 < y0:
        raise DataError(f"{path}: entry {index} ({clip}): gt_box {value!r} (x0, y0, x1, y1) has "
                        f"{'x1 < x0' if x1 < x0 else 'y1 < y0'}")
    return [int(v) for v in value]


def read_annotations(path: str | Path) -> dict[str, np.ndarray]:
    """Read `synthetic3240_bbox.json` as {image stem: (1, 4) int64 box in 224 px}, in file order.

    Raises:
        DataError: missing or unparsable file, top level not a list, an entry that is not an object,
            without image/audio file names or with different stems, a bad box (see the module
            docstring), or a repeated image.
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
    boxes: dict[str, np.ndarray] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise DataError(f"{path}: entry {index} is not an object")
        clip, sound = _stem(entry.get("image"), path, index, "image"), _stem(entry.get("audio"), path, index, "audio")
        if sound != clip:
            raise DataError(f"{path}: entry {index} pairs image {clip} with audio {sound}; an IS3 positive is a "
                            "scene with its own sound (same file stem)")
        if clip in boxes:
            raise DataError(f"{path}: entry {index}: image {clip} is listed twice")
        boxes[clip] = np.asarray([_box(entry.get("gt_box"), path, clip, index)], dtype=np.int64)
    return boxes


@register_dataset("is3")
class IS3(Dataset):
    """IS3: one box per (scene, sounding object) entry, union ground truth, positives only."""

    display_name = "IS3"
    extended_name = "IS3 (positives only)"
    ground_truth = "union"
    trainable = False
    default_runs_from = "vggss"
    frames_dir = "visual_frames"
    audio_dir = "audio_wav"
    entry_schema = {"type": "object", "additionalProperties": False,
                    "properties": {"test_root": PATH, "metadata_root": PATH, "annotations": PATH,
                                   "runs_from": PATH},
                    "required": ["test_root"]}

    @classmethod
    def extended_csv(cls, root: Path) -> Path | None:
        return None  # positives only

    @classmethod
    def test_ids(cls, root: Path, *, test_list=None, annotations=None, variant=None,
                 allow_duplicates: bool = False) -> tuple[list[str], Path]:
        """Every image stem of the annotation file (which is the list), and its path."""
        if test_list is not None:
            raise ValueError("IS3 has no test list besides its annotation file: give annotations=")
        path = resolve(root, annotations or ANNOTATIONS)
        return list(read_annotations(path)), path

    @classmethod
    def read_positives(cls, root: Path, *, test_list=None, annotations=None, variant=None,
                       allow_duplicates: bool = False) -> Positives:
        if test_list is not None:
            raise ValueError("IS3 has no test list besides its annotation file: give annotations=")
        path = resolve(root, annotations or ANNOTATIONS)
        boxes = read_annotations(path)
        return Positives(list(boxes), boxes, {}, {"test_list": str(path), "annotations": str(path)})

    @classmethod
    def inspect_positives(cls, root: Path, *, test_list=None, annotations=None, variant=None):
        path = resolve(root, annotations or ANNOTATIONS)
        boxes = read_annotations(path)  # an unreadable file is an unreadable list
        status = {clip: ([("annotation_empty", str(path), f"{path}: image {clip} has a box of zero area")]
                         if cls.gt_map(box).sum() == 0 else []) for clip, box in boxes.items()}
        return list(boxes), path, status

    @classmethod
    def map_boxes(cls, boxes) -> np.ndarray:
        """224-px boxes → int() of each coordinate, as `read_annotations` converts them."""
        return np.asarray([[int(v) for v in box] for box in boxes], dtype=np.int64).reshape(-1, 4)
