"""The dataset contract: what a test set (and its training data) is, so that no other module
branches on a dataset's name.

A dataset is one module under `vslrepro/data/datasets/` holding one `Dataset` subclass, registered
with `@register_dataset("<name>")`. The class owns everything about its data:

- **what it is called**: `display_name` (Table 2's column, "Flickr-SoundNet") and `extended_name`
  (Tables 1, 3 and 4, "Extended Flickr-SoundNet");
- **its file layout**: where the frames and sounds of a split root live (`frames_dir`, `audio_dir`),
  which files list and annotate its test positives (`read_positives`, `inspect_positives`), and the
  csv of its extended set's negatives (`extended_csv`; None for a set of positives only, such as IS3);
- **its ground-truth convention**: `gt_map(boxes)` — the annotators' consensus (Σ of the box masks
  / 2, clipped at 1) or the union of the boxes — and `map_boxes`, how its annotation units become
  224-px boxes;
- **what it can be used for**: `trainable` (a training list: its own runs) and, for a test set
  only (`trainable = False`), `default_runs_from`: whose training runs are evaluated on it;
- **where it lives under a profile**: `entry_schema` (its `data.<name>:` keys for real data),
  `variant_key` / `list_variants` (a selectable test list, e.g. Flickr's 250 or 249 ids) and
  `locate(params)`;
- **its synthetic counterpart**, if the embedded benchmark has one: `synthetic` (sizes, annotation
  style, ids) and the writer of its annotation files (`write_synthetic`).

Boxes everywhere are int64 arrays (n, 4) of xmin, ymin, xmax, ymax in 224-px coordinates with
exclusive upper bounds; ground-truth maps are float32 (224, 224).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from vslrepro.data.datasets.registry import DATASETS
from vslrepro.data.formats.boxes import consensus_map, union_map
from vslrepro.paths import synthetic_data_dir

GROUND_TRUTHS = ("consensus", "union")
PATH = {"type": "string", "minLength": 1}


@dataclass(frozen=True)
class Positives:
    """The annotated positives of a test (or validation) split, as its files list them.

    ids: the listed ids in list order (a repeat is kept only when the reader allowed it);
    boxes: {id: (n, 4) int64 boxes in 224 px}; classes: {id: label} where the annotation file
    gives one (may be empty); files: what was read ({"test_list": ..., "annotations": ...}).
    """

    ids: list[str]
    boxes: dict[str, np.ndarray]
    classes: dict[str, str]
    files: dict[str, str]


@dataclass(frozen=True)
class SyntheticStyle:
    """How the embedded benchmark draws a dataset's counterpart (`vslrepro.data.synthetic`).

    code: its component of the random streams' seed (never reuse one: the clips would repeat);
    sizes: the real test set's positives per size bucket (small, medium, large, huge: Table 1),
        whose proportions the synthetic test set follows;
    real_fraction: real negatives per test positive;
    annotators: boxes per clip (several jittered annotators, or one exact box);
    box_units: "grid256" (integer coordinates on a 256×256 frame) or "normalized" (in [0, 1]);
    id_style: "number" (Flickr's) or "youtube" (`<11 characters>_<6-digit second>`);
    max_test: at most this many test positives (the real set's size), else the scale's.
    """

    code: int
    sizes: tuple[int, int, int, int]
    real_fraction: float
    annotators: int
    box_units: str
    id_style: str
    max_test: int | None = None


@dataclass(frozen=True)
class DatasetConfig:
    """Where one dataset lives under a profile (`Dataset.locate`).

    Attributes:
        name: the registry name.
        train_root: folder with the training clips' media (None: an evaluation-only test set).
        train_list: file with one training id per line (None: evaluation-only).
        test_root: folder with the (extended) test clips' media.
        metadata_root: folder holding metadata/ (and the annotation files).
        val_list: annotated validation ids for early stopping (None: the test positives).
        val_annotations: annotations of the validation ids (None: the dataset's default files).
        list_variant: the selected test list (Flickr: "250" or "249"); None without variants.
        val_from: validate on the test positives of this dataset instead (e.g. "flickr" for
            VGG-SS, as the official VGGSound training scripts do); None: this dataset's own.
        runs_from: for an evaluation-only test set, the dataset whose training runs it evaluates.
        annotations: the test positives' annotation file (None: the dataset's default layout).
        media: the sub-folders of a split root holding the frames and the sounds.
    """

    name: str
    train_root: Path | None
    train_list: Path | None
    test_root: Path
    metadata_root: Path
    val_list: Path | None
    val_annotations: Path | None
    list_variant: str | None
    val_from: str | None = None
    runs_from: str | None = None
    annotations: Path | None = None
    media: tuple[str, str] = ("frames", "audio")

    def as_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


def resolve(root: Path, path: str | Path) -> Path:
    """`path` as given when absolute, else relative to the data root."""
    path = Path(path)
    return path if path.is_absolute() else root / path


class Dataset:
    """Base class of every dataset (the contract is in the module docstring); never instantiated.

    Class attributes (override in subclasses):
        name: the registry name ("flickr", ...), set by `register_dataset`.
        display_name, extended_name: table names of the test set and of its extended version.
        ground_truth: "consensus" or "union" (`gt_map`).
        trainable: whether the dataset has a training list (its own training runs).
        default_runs_from: an evaluation-only test set's default `runs_from` (a registry name).
        frames_dir, audio_dir: where a split root holds `<id>.jpg` and `<id>.wav`.
        list_variants, variant_key: selectable test lists (the first is the default) and the
            profile key under `data:` that selects one.
        entry_schema: the JSON schema of the dataset's `data.<name>:` entry (real data).
        synthetic: the embedded benchmark's style for it (None: no synthetic counterpart).
        clip_id_from_file: how `data prepare --ids <name>` spells a clip from its video's file
            name, when the dataset's ids are not file names (VGG-SS); None: the file name.
    """

    name: str = ""
    display_name: str = ""
    extended_name: str = ""
    ground_truth: str = "union"
    trainable: bool = True
    default_runs_from: str | None = None
    frames_dir: str = "frames"
    audio_dir: str = "audio"
    list_variants: tuple[str, ...] = ()
    variant_key: str | None = None
    entry_schema: dict[str, Any] = {}
    synthetic: SyntheticStyle | None = None
    clip_id_from_file: Callable[[str], str] | None = None  # a media file's stem -> the dataset's id spelling

    # ------------------------------------------------------------------ readers (override)

    @classmethod
    def test_ids(cls, root: Path, *, test_list: str | Path | None = None, annotations: str | Path | None = None,
                 variant: str | None = None, allow_duplicates: bool = False) -> tuple[list[str], Path]:
        """The ids the test list names (the default variant: the widest list) and the file that
        lists them; no annotation is checked beyond what listing the ids needs.

        Raises:
            DataError: a missing or malformed list, or a repeated id (unless allow_duplicates).
        """
        raise NotImplementedError(f"{cls.__name__} must implement test_ids")

    @classmethod
    def read_positives(cls, root: Path, *, test_list: str | Path | None = None,
                       annotations: str | Path | None = None, variant: str | None = None,
                       allow_duplicates: bool = False) -> Positives:
        """The annotated positives under the metadata root `root` (or another `test_list` /
        `annotations`, relative to `root` unless absolute), every box checked.

        Raises:
            DataError: a missing or malformed list or annotation, a listed id without annotation,
                a repeated id (unless allow_duplicates); the message names the file and the id.
        """
        raise NotImplementedError(f"{cls.__name__} must implement read_positives")

    @classmethod
    def inspect_positives(cls, root: Path, *, test_list: str | Path | None = None,
                          annotations: str | Path | None = None,
                          variant: str | None = None) -> tuple[list[str], Path, dict[str, list[tuple[str, str, str]]]]:
        """For `data check`: every listed id (repeats kept), the file that listed them, and per id
        its annotation problems [(kind, file, detail)] — kind "annotation_missing",
        "annotation_invalid" or "annotation_empty"; an empty list for a usable annotation.

        Raises:
            DataError: the list itself is missing or unreadable.
        """
        raise NotImplementedError(f"{cls.__name__} must implement inspect_positives")

    @classmethod
    def extended_csv(cls, root: Path) -> Path | None:
        """The csv of the extended test set's negatives (`*_test_plus_silent.csv`), None for a
        test set of positives only."""
        return root / "metadata" / f"{cls.name}_test_plus_silent.csv"

    @classmethod
    def has_negatives(cls) -> bool:
        """Whether the extended test set has negatives (AP, max-F1 and Table 4 need them)."""
        return cls.extended_csv(Path(".")) is not None

    # ------------------------------------------------------------------ ground truth

    @classmethod
    def gt_map(cls, boxes) -> np.ndarray:
        """The (224, 224) float32 ground-truth map of one clip's boxes (224 px, n may be 0)."""
        if cls.ground_truth not in GROUND_TRUTHS:
            raise ValueError(f"{cls.__name__}.ground_truth must be one of {GROUND_TRUTHS}")
        return consensus_map(boxes) if cls.ground_truth == "consensus" else union_map(boxes)

    @classmethod
    def map_boxes(cls, boxes) -> np.ndarray:
        """Annotation boxes in the dataset's own units → (n, 4) int64 boxes in 224 px, as its reader
        converts them (the synthetic benchmark sizes its objects with it)."""
        raise NotImplementedError(f"{cls.__name__} has no annotation units to convert")

    # ------------------------------------------------------------------ where it lives

    @classmethod
    def media(cls) -> tuple[str, str]:
        """(frames folder, sounds folder) of a split root."""
        return cls.frames_dir, cls.audio_dir

    @classmethod
    def variant(cls, params: dict[str, Any]) -> str | None:
        """The profile's choice of test list (`data.<variant_key>`), else the default one."""
        if not cls.list_variants:
            return None
        return str(params["data"].get(cls.variant_key, cls.list_variants[0]))

    @classmethod
    def locate(cls, params: dict[str, Any]) -> DatasetConfig:
        """Where this dataset lives under profile `params`: inside the embedded synthetic benchmark
        (`data.source: synthetic`) or at the roots of its `data.<name>:` entry (real data)."""
        data = params["data"]
        if data["source"] == "synthetic":
            if cls.synthetic is None:
                raise ValueError(f"the embedded benchmark has no {cls.display_name}-like test set: list "
                                 f"{cls.name!r} under datasets: only with data.source: real")
            root = synthetic_root(params) / cls.name
            val_list, val_annotations = cls.synthetic_validation(root / "metadata")
            return DatasetConfig(cls.name, root, root / "metadata" / f"{cls.name}_train.txt", root, root,
                                 val_list, val_annotations, cls.variant(params), media=cls.media())
        entry = data.get(cls.name)
        if not entry:
            raise ValueError(f"profile {params['profile']!r}: data.{cls.name} is not configured")
        metadata_root = Path(entry.get("metadata_root", entry["test_root"]))
        annotations = resolve(metadata_root, entry["annotations"]) if entry.get("annotations") else None
        if not cls.trainable:
            return DatasetConfig(cls.name, None, None, Path(entry["test_root"]), metadata_root, None, None,
                                 cls.variant(params), runs_from=entry.get("runs_from", cls.default_runs_from),
                                 annotations=annotations, media=cls.media())
        val = str(entry.get("val", "test"))
        other = val[: -len("_test")] if val.endswith("_test") else None
        val_from = other if other is not None and other in DATASETS else None
        val_list = None if val == "test" or val_from else metadata_root / val
        return DatasetConfig(cls.name, Path(entry["train_root"]), metadata_root / entry["train_list"],
                             Path(entry["test_root"]), metadata_root, val_list, None, cls.variant(params),
                             val_from, annotations=annotations, media=cls.media())

    # ------------------------------------------------------------------ the synthetic counterpart

    @classmethod
    def synthetic_validation(cls, metadata: Path) -> tuple[Path | None, Path | None]:
        """(validation list, validation annotations) that `write_synthetic` writes under `metadata`."""
        raise NotImplementedError(f"{cls.__name__} has no synthetic counterpart")

    @classmethod
    def write_synthetic(cls, root: Path, val: list[tuple[str, str, list]], test: list[tuple[str, str, list]],
                        tail: np.ndarray) -> None:
        """Write the annotation files of a synthetic counterpart under `root` in the dataset's own
        format: the validation and test positives, each (clip id, class, boxes in the dataset's
        annotation units); `tail` holds one unused integer per val + test clip for formats with a
        second list column."""
        raise NotImplementedError(f"{cls.__name__} has no synthetic counterpart")


def synthetic_root(params: dict[str, Any]) -> Path:
    """Folder of the embedded synthetic benchmark of a profile (docs/synthetic.md)."""
    return synthetic_data_dir(params["profile"], params["data"]["synth_scale"], params["seed"])
