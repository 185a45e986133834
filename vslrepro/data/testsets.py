"""The index of a (extended) test set: one row per (frame, sound) pair, built from metadata only.

Original (SLAVC `datasets.py:get_test_dataset`; docs/data.md §1–2): the positives are the ids of
the test list that have both media files, sorted, with their boxes; the extended set appends one
negative per `non-sounding` row of `metadata/{name}_test_plus_silent.csv` (frame from `video`,
sound from `audio`, no boxes) and shuffles without a seed.

Ours: the same rows, in file order (the metrics do not depend on order), with the columns the
evaluation needs — n_boxes, area Σ G of the ground-truth map, size bucket, classes, and the
negative's type (docs/data.md §2, "Negative types"): `video == audio` → "real"; otherwise "hard"
when both clips have the same known class, "easy" when their known classes differ, "automated"
when a class is unknown.
Metadata are validated on read (docs/data.md §2, "Validation on read"): a repeated id or pair is an
error unless the caller passes `allow_duplicates=True`, and a test set without positives or without
negatives is an error naming its files.
Media are not read here; `check_media` checks they exist and, unlike the official loader which
silently drops missing ids (and later swaps failing samples for random others), raises or records
each one in a SkipLog.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from vslrepro.data.datasets import dataset_class
from vslrepro.data.errors import DataError, SkipLog
from vslrepro.data.formats.boxes import MAP_SIZE, size_bucket
from vslrepro.data.formats.lists import NEGATIVE_LABEL, read_classes, read_extended_csv, read_vggsound_csv
from vslrepro.data.formats.media import COMMUNITY, media_files

COLUMNS = ("video", "audio", "positive", "neg_type", "n_boxes", "area", "size", "class", "audio_class")
STR_COLUMNS = ("video", "audio", "neg_type", "size", "class", "audio_class")


def _resolve(root: Path, path: str | Path) -> Path:
    """`path` as given when absolute, else relative to the data root."""
    path = Path(path)
    return path if path.is_absolute() else root / path


def _unique(ids: list[str]) -> tuple[list[str], list[str]]:
    """(ids without repeats, in first-seen order; the repeated ids). The official loader uses a set."""
    seen: set[str] = set()
    unique, repeated = [], []
    for clip in ids:
        (repeated if clip in seen else unique).append(clip)
        seen.add(clip)
    return unique, repeated


def _class_tables(root: Path) -> tuple[dict[str, str], list[str]]:
    """Classes from `metadata/vggsound.csv` then `metadata/classes.csv` (the latter wins), if present."""
    classes: dict[str, str] = {}
    files = []
    for path, reader in ((root / "metadata" / "vggsound.csv", read_vggsound_csv),
                         (root / "metadata" / "classes.csv", read_classes)):
        if path.is_file():
            classes.update(reader(path))
            files.append(str(path))
    return classes, files


class BoxTable(dict):
    """{clip id: (n, 4) int64 boxes}, shared rather than copied when pandas copies `DataFrame.attrs`.

    pandas deep-copies `attrs` on every derived frame or column; copying thousands of box arrays
    each time would dominate indexing. The arrays are made read-only; treat the table as immutable.
    """

    def __init__(self, boxes: dict[str, np.ndarray]):
        super().__init__()
        for clip, value in boxes.items():
            value = np.asarray(value, dtype=np.int64).reshape(-1, 4)
            value.setflags(write=False)
            dict.__setitem__(self, clip, value)

    def __copy__(self) -> "BoxTable":
        return self

    def __deepcopy__(self, memo: dict) -> "BoxTable":
        return self


def _frame(rows: dict[str, list]) -> pd.DataFrame:
    """DataFrame with the stable column dtypes: pandas str, bool, int64, float64 (empty frames too)."""
    frame = pd.DataFrame({column: rows[column] for column in COLUMNS})
    dtypes = {column: str for column in STR_COLUMNS}
    return frame.astype({**dtypes, "positive": bool, "n_boxes": np.int64, "area": np.float64})


def _positive_rows(dataset: type, ids: list[str], boxes: dict[str, np.ndarray], classes: dict[str, str]) -> dict:
    """Columns of the positive rows, one per id."""
    areas = [float(dataset.gt_map(boxes[clip]).sum()) for clip in ids]
    labels = [classes.get(clip, "") for clip in ids]
    return {
        "video": list(ids),
        "audio": list(ids),
        "positive": [True] * len(ids),
        "neg_type": [""] * len(ids),
        "n_boxes": [len(boxes[clip]) for clip in ids],
        "area": areas,
        "size": [size_bucket(area) for area in areas],
        "class": labels,
        "audio_class": labels,
    }


def _negative_rows(pairs: pd.DataFrame, classes: dict[str, str]) -> dict:
    """Columns of the negative rows, one per (video, audio) pair."""
    videos, audios = list(pairs["video"]), list(pairs["audio"])
    count = len(videos)
    return {
        "video": videos,
        "audio": audios,
        "positive": [False] * count,
        "neg_type": [negative_type(video, audio, classes) for video, audio in zip(videos, audios)],
        "n_boxes": [0] * count,
        "area": [0.0] * count,
        "size": [""] * count,
        "class": [classes.get(clip, "") for clip in videos],
        "audio_class": [classes.get(clip, "") for clip in audios],
    }


def _check_variant(dataset: type, variant: str | None) -> str | None:
    """The test-list variant to read: the dataset's default when None; an unknown one is refused."""
    if variant is None:
        return dataset.list_variants[0] if dataset.list_variants else None
    if variant not in dataset.list_variants:
        known = f"one of {dataset.list_variants}" if dataset.list_variants else "none (it has one test list)"
        raise ValueError(f"unknown {dataset.display_name} test-list variant {variant!r}: expected {known}")
    return variant


def _positives(
    name: str, root: Path, test_list, annotations, variant: str | None, allow_duplicates: bool
) -> tuple[dict, dict[str, object], dict[str, str]]:
    """(positive rows, attrs, class table: annotation file over classes.csv over vggsound.csv)."""
    dataset = dataset_class(name)
    variant = _check_variant(dataset, variant)
    read = dataset.read_positives(root, test_list=test_list, annotations=annotations, variant=variant,
                                  allow_duplicates=allow_duplicates)
    ids, repeated = _unique(read.ids)
    if not ids:
        which = f" ({dataset.display_name} list {variant})" if variant else ""
        raise DataError(f"{read.files['test_list']}: no positives: the test list{which} gives no ids "
                        f"(annotations {read.files['annotations']})")
    classes, class_files = _class_tables(root)
    classes.update(read.classes)
    attrs = {
        "dataset": name,
        "list_variant": variant,
        "files": {**read.files, "classes": class_files},
        "boxes": BoxTable(read.boxes),
        "duplicate_ids": repeated,
    }
    return _positive_rows(dataset, ids, read.boxes, classes), attrs, classes


def positives_index(
    name: str,
    root: str | Path,
    *,
    test_list: str | Path | None = None,
    annotations: str | Path | None = None,
    variant: str | None = None,
    allow_duplicates: bool = False,
) -> pd.DataFrame:
    """Index the annotated positives of a test (or annotated validation) split.

    The dataset's module reads its files (`Dataset.read_positives`): e.g. Flickr-SoundNet's
    `metadata/flickr_test.csv` and `Annotations/<id>.xml`, VGG-SS's `metadata/vggss.json` (with
    `metadata/vggss_test.csv` when present). `test_list` / `annotations` name other files, relative
    to `root` unless absolute. Classes missing from the annotations come from
    `metadata/classes.csv` / `metadata/vggsound.csv` when present, else "". A repeated id in the
    test list is an error; with `allow_duplicates` it is kept once (the official loader uses a set)
    and each repeat is listed in `attrs["duplicate_ids"]`.

    Args:
        name: a registered dataset ("flickr", "vggss", "is3", ...).
        root: the test split's metadata root.
        test_list: another id list (e.g. "metadata/flickr_val.csv").
        annotations: another annotation directory (Flickr) or file (VGG-SS, IS3).
        variant: the test list of a dataset that has several (Flickr: "250", SLAVC's, the default,
            or "249", EZ-VSL/LVS's, without id 3908875350).
        allow_duplicates: accept a repeated id in the test list (kept once, recorded) instead of raising.

    Returns:
        DataFrame, one row per positive: video, audio (= video), positive (True), neg_type (""),
        n_boxes, area (Σ of the ground-truth map, 224² px), size (bucket), class, audio_class
        (= class). `attrs`: dataset, list_variant (None without variants), files (what was read),
        boxes (a `BoxTable` {id: (n, 4) int64}), duplicate_ids (one entry per repeated row of the
        test list, so its length is the number of rows dropped; empty unless allow_duplicates).

    Raises:
        ValueError: unknown dataset or variant.
        DataError: a missing or malformed list/annotation, a listed id without annotation, a
            repeated id (unless allow_duplicates), or no positive at all.
    """
    rows, attrs, _ = _positives(name, Path(root), test_list, annotations, variant, allow_duplicates)
    index = _frame(rows)
    index.attrs = attrs
    return index


def negative_type(video: str, audio: str, classes: dict[str, str]) -> str:
    """'real' (video == audio), else 'hard' / 'easy' (same / different known class), else 'automated'."""
    if video == audio:
        return "real"
    video_class, audio_class = classes.get(video, ""), classes.get(audio, "")
    if video_class and audio_class:
        return "hard" if video_class == audio_class else "easy"
    return "automated"


def extended_testset(
    name: str,
    root: str | Path,
    *,
    variant: str | None = None,
    extended_csv: str | Path | None = None,
    test_list: str | Path | None = None,
    annotations: str | Path | None = None,
    allow_duplicates: bool = False,
) -> pd.DataFrame:
    """Index an extended test set: the positives plus one row per negative pair.

    Negatives come from the dataset's `*_test_plus_silent.csv` (`Dataset.extended_csv`, e.g.
    `root/metadata/vggss_test_plus_silent.csv`; or `extended_csv`), rows labelled `non-sounding`;
    they get n_boxes 0, area 0.0, size "" and a neg_type (see `negative_type`), with classes from the
    annotations, `metadata/classes.csv` and `metadata/vggsound.csv` when present. A negative's video
    need not be a positive id. A test set of positives only (IS3: `extended_csv` None) has no
    negative rows. Only metadata are read, never frames or audio.

    Args:
        name: a registered dataset.
        root: the extended test split's data root.
        variant: the test list (see `positives_index`).
        extended_csv: another negatives csv (relative to root unless absolute).
        test_list, annotations: as in `positives_index`.
        allow_duplicates: accept repeats: a repeated test id is kept once, a repeated negative pair
            as often as listed (both as the official loader), each repeat recorded in attrs.

    Returns:
        DataFrame with columns video, audio, positive (bool), neg_type, n_boxes (int), area
        (float), size, class, audio_class — positives first, then negatives in file order.
        `attrs` as in `positives_index`, with files["extended_csv"] and duplicate_pairs (one
        (video, audio) per repeated row of the extended csv) added.

    Raises:
        ValueError: unknown dataset or variant.
        DataError: as `positives_index`; a missing/malformed extended csv; a repeated pair (unless
            allow_duplicates); no negative at all; a real negative whose id is also a positive.
    """
    root = Path(root)
    positives, attrs, classes = _positives(name, root, test_list, annotations, variant, allow_duplicates)
    default_csv = dataset_class(name).extended_csv(root)
    if extended_csv is None and default_csv is None:  # positives only
        index = _frame(positives)
        attrs["duplicate_pairs"] = []
        index.attrs = attrs
        return index
    csv_path = _resolve(root, extended_csv or default_csv)
    pairs = read_extended_csv(csv_path, allow_duplicates=allow_duplicates)
    if pairs.empty:
        raise DataError(f"{csv_path}: no negatives: no row is labelled {NEGATIVE_LABEL!r} "
                        f"(positives from {attrs['files']['test_list']})")
    positive_ids = set(positives["video"])
    for video, audio in zip(pairs["video"], pairs["audio"]):
        if video == audio and video in positive_ids:
            raise DataError(f"{csv_path}: id {video} is listed as a real negative but is also an annotated positive")
    negatives = _negative_rows(pairs, classes)
    index = _frame({column: positives[column] + negatives[column] for column in COLUMNS})
    attrs["files"]["extended_csv"] = str(csv_path)
    attrs["duplicate_pairs"] = list(pairs.attrs["duplicate_pairs"])
    index.attrs = attrs
    return index


def gt_maps(index: pd.DataFrame, dataset: str) -> np.ndarray:
    """Ground-truth maps of the rows of `index`, in row order (zeros for negatives).

    Float32 (N, 224, 224): 200 kB a row, so chunk a large index (`index.iloc[a:b]` keeps attrs).

    Args:
        index: from `positives_index` / `extended_testset` (needs attrs["boxes"]).
        dataset: whose ground-truth convention applies (`Dataset.gt_map`: Flickr-SoundNet's
            consensus, VGG-SS's union, ...).

    Returns:
        float32 array (N, 224, 224).

    Raises:
        ValueError: unknown dataset, or one different from index.attrs["dataset"], or no boxes.
        DataError: a positive row whose id has no boxes.
    """
    convention = dataset_class(dataset)
    recorded = index.attrs.get("dataset")
    if recorded is not None and recorded != dataset:
        raise ValueError(f"index was built for {recorded!r}, not {dataset!r}")
    boxes = index.attrs.get("boxes")
    if boxes is None:
        raise ValueError("index has no attrs['boxes']: build it with positives_index or extended_testset")
    maps = np.zeros((len(index), MAP_SIZE, MAP_SIZE), dtype=np.float32)  # (N, 224, 224)
    for row, (video, positive) in enumerate(zip(index["video"], index["positive"])):
        if positive:
            if video not in boxes:
                raise DataError(f"positive id {video} has no boxes in the index")
            maps[row] = convention.gt_map(boxes[video])
    return maps


def _source(index: pd.DataFrame, positive: bool) -> str:
    files = index.attrs.get("files", {})
    return str(files.get("test_list" if positive else "extended_csv", "the index"))


def check_media(index: pd.DataFrame, media_root: str | Path, *, skip: SkipLog | None = None,
                media: tuple[str, str] = COMMUNITY) -> pd.DataFrame:
    """Check that every row has `frames/<video>.jpg` and `audio/<audio>.wav` under media_root.

    Args:
        index: from `positives_index` / `extended_testset`.
        media_root: the split root holding `frames/` and `audio/` (or the dataset's `media` folders).
        skip: when given, each missing file is recorded there (id, file, reason) and its row dropped.

    Returns:
        The rows whose media exist (all of them without `skip`), index reset, attrs kept.

    Raises:
        DataError: without `skip`, the first missing file, with its id, the list it came from and
            the total number of missing files.
    """
    media_root = Path(media_root)
    problems = []  # (row, clip id, file, reason)
    for row, (video, audio, positive) in enumerate(zip(index["video"], index["audio"], index["positive"])):
        source = _source(index, bool(positive))
        pair = f"pair video={video} audio={audio}" if video != audio else f"id {video}"
        frame, sound = media_files(media_root, video, audio, media)
        for clip, path, kind in ((video, frame, "frame"), (audio, sound, "audio")):
            if not path.is_file():
                problems.append((row, clip, path, f"{path}: {kind} not found ({pair}, listed in {source})"))
    if problems and skip is None:
        _, _, _, reason = problems[0]
        more = f"; {len(problems)} media files missing in all" if len(problems) > 1 else ""
        raise DataError(reason + more)
    for _, clip, path, reason in problems:
        skip.add(clip, path, reason)
    dropped = {row for row, _, _, _ in problems}
    kept = index.iloc[[row for row in range(len(index)) if row not in dropped]].reset_index(drop=True)
    kept.attrs = dict(index.attrs)
    return kept
