"""Metadata lists: training id lists, test lists, the extended test csv, class labels.

Formats (docs/data.md §2): `metadata/*.txt` has one id per line;
`flickr_test.csv` has rows `id,int` (CRLF, no header; only column 0 is used); `vggss_test.csv` one
id per row; `*_test_plus_silent.csv` has header `video,audio,label` and the official loader keeps the
rows whose label is `non-sounding`; `classes.csv` (our synthetic sets) has header `id,class`;
VGGSound's `vggsound.csv` has no header and rows `youtube_id,start_seconds,label,split`.

The Flickr test list exists in two versions (docs/data.md §3): 250 ids (SLAVC) and 249 ids
(EZ-VSL / LVS), which lack id 3908875350. `read_flickr_test_ids(variant=...)` selects either.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from vslrepro.data.errors import DataError

FLICKR_249_MISSING_ID = "3908875350"  # in SLAVC's 250-id Flickr test list, not in EZ-VSL/LVS's 249
FLICKR_LIST_VARIANTS = ("249", "250")
NEGATIVE_LABEL = "non-sounding"  # the label the official loader keeps in *_test_plus_silent.csv


def _require_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise DataError(f"{path}: {what} not found")


def _csv_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(1-based line number, stripped fields) of every non-blank csv row; CRLF or LF."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        try:
            for row in reader:
                fields = [field.strip() for field in row]
                if any(fields):
                    yield reader.line_num, fields
        except (csv.Error, UnicodeDecodeError) as error:
            raise DataError(f"{path}: unreadable csv near line {reader.line_num} ({error})") from error


def read_id_list(path: str | Path) -> list[str]:
    """Read a list of clip ids, one per line (blank lines skipped, whitespace stripped).

    Args:
        path: e.g. `metadata/flickr_144k.txt`.

    Returns:
        The ids in file order.

    Raises:
        DataError: the file is missing.
    """
    path = Path(path)
    _require_file(path, "id list")
    try:
        with path.open(encoding="utf-8-sig") as handle:
            return [line.strip() for line in handle if line.strip()]
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not a text file ({error})") from error


def read_csv_ids(path: str | Path) -> list[str]:
    """Column 0 of every non-blank row of a csv without header (e.g. `vggss_test.csv`).

    Raises:
        DataError: the file is missing, or a row has an empty first field.
    """
    path = Path(path)
    _require_file(path, "test list")
    ids = []
    for line, fields in _csv_rows(path):
        if not fields[0]:
            raise DataError(f"{path}: line {line} has an empty id")
        ids.append(fields[0])
    return ids


def read_flickr_test_ids(path: str | Path, variant: str = "250") -> list[str]:
    """Read the Flickr-SoundNet test list (rows `id,int`, CRLF allowed; column 0 only).

    Args:
        path: e.g. `metadata/flickr_test.csv`.
        variant: "250" keeps the file as it is (SLAVC); "249" drops id 3908875350 (EZ-VSL / LVS).

    Returns:
        The ids in file order.

    Raises:
        ValueError: unknown variant.
        DataError: the file is missing or a row has an empty id.
    """
    if variant not in FLICKR_LIST_VARIANTS:
        raise ValueError(f"unknown Flickr test-list variant {variant!r}: expected one of {FLICKR_LIST_VARIANTS}")
    ids = read_csv_ids(path)
    if variant == "249":
        ids = [clip for clip in ids if clip != FLICKR_249_MISSING_ID]
    return ids


def read_extended_csv(path: str | Path) -> pd.DataFrame:
    """Read the negatives of an extended test set (`*_test_plus_silent.csv`).

    Rows are `video,audio,label`; like the official loader, only rows whose label is
    `non-sounding` are kept (which also drops the header).

    Args:
        path: e.g. `metadata/vggss_test_plus_silent.csv`.

    Returns:
        DataFrame with str columns `video` (the frame's clip) and `audio` (the sound's clip).

    Raises:
        DataError: the file is missing, or a row has fewer than 3 fields or an empty one (the
            message names the line number).
    """
    path = Path(path)
    _require_file(path, "extended test csv")
    videos, audios = [], []
    for line, fields in _csv_rows(path):
        if len(fields) < 3 or not all(fields[:3]):
            raise DataError(f"{path}: line {line} needs video,audio,label, got {','.join(fields)!r}")
        if fields[2] == NEGATIVE_LABEL:
            videos.append(fields[0])
            audios.append(fields[1])
    return pd.DataFrame({"video": videos, "audio": audios}, dtype=str)


def _add_class(classes: dict[str, str], clip: str, label: str, path: Path, line: int) -> None:
    """Insert one id → class; a repeated id must repeat its class."""
    if classes.get(clip, label) != label:
        raise DataError(f"{path}: line {line}: id {clip} has class {label!r} but earlier {classes[clip]!r}")
    classes[clip] = label


def read_classes(path: str | Path) -> dict[str, str]:
    """Read a class table with header `id,class` (our synthetic sets' `metadata/classes.csv`).

    Returns:
        {clip id: class label}.

    Raises:
        DataError: missing file, wrong header, a row without id or class, or one id with two classes.
    """
    path = Path(path)
    _require_file(path, "class table")
    classes: dict[str, str] = {}
    rows = _csv_rows(path)
    header = next(rows, (0, []))[1]
    if header[:2] != ["id", "class"]:
        raise DataError(f"{path}: expected header 'id,class', got {','.join(header)!r}")
    for line, fields in rows:
        if len(fields) < 2 or not fields[0] or not fields[1]:
            raise DataError(f"{path}: line {line} needs id,class, got {','.join(fields)!r}")
        _add_class(classes, fields[0], fields[1], path, line)
    return classes


def read_vggsound_csv(path: str | Path) -> dict[str, str]:
    """Read VGGSound's official listing (no header: youtube_id, start_seconds, label, split).

    Returns:
        {f"{youtube_id}_{int(start):06d}": label}, the clip ids used by VGG-SS.

    Raises:
        DataError: missing file, a row with fewer than 3 fields, a non-numeric start, or one id
            with two labels.
    """
    path = Path(path)
    _require_file(path, "VGGSound listing")
    classes: dict[str, str] = {}
    for line, fields in _csv_rows(path):
        if len(fields) < 3 or not fields[0] or not fields[2]:
            raise DataError(f"{path}: line {line} needs youtube_id,start_seconds,label, got {','.join(fields)!r}")
        try:
            start = int(float(fields[1]))
        except ValueError:
            raise DataError(f"{path}: line {line}: start_seconds {fields[1]!r} is not a number") from None
        _add_class(classes, f"{fields[0]}_{start:06d}", fields[2], path, line)
    return classes
