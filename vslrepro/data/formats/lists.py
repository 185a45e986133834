"""Metadata lists: training id lists, test lists, the extended test csv, class labels.

Formats (docs/data.md §2): `metadata/*.txt` has one id per line; `vggss_test.csv` one id per
row; `*_test_plus_silent.csv` has header `video,audio,label` and the official loader keeps the
rows whose label is `non-sounding`; `classes.csv` (our synthetic sets) has header `id,class`;
VGGSound's `vggsound.csv` has no header and rows `youtube_id,start_seconds,label,split`.

Every reader validates what it reads (docs/data.md §2, "Validation on read"): the expected header
and number of fields, known labels only, and no repeated id or pair unless the caller passes
`allow_duplicates=True` (then the repeats are kept, as the official loaders do, for the caller to
record). A bad row raises a `DataError` naming the file, the line and the rule.

A dataset's own list formats (Flickr-SoundNet's `id,int` test list, ...) are read by its module
under `vslrepro.data.datasets`, with the helpers here.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Hashable, Iterator
from pathlib import Path

import pandas as pd

from vslrepro.data.errors import DataError

NEGATIVE_LABEL = "non-sounding"  # the label the official loader keeps in *_test_plus_silent.csv
EXTENDED_LABELS = (NEGATIVE_LABEL, "sounding")  # known labels; "sounding" rows are dropped like the official loader
EXTENDED_HEADER = ["video", "audio", "label"]


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


def _check_repeat(seen: dict, key: Hashable, path: Path, line: int, what: str, allow_duplicates: bool) -> bool:
    """Record `key` as seen on `line`; True when it is a repeat (allowed), DataError when not allowed."""
    if key not in seen:
        seen[key] = line
        return False
    if not allow_duplicates:
        raise DataError(
            f"{path}: line {line}: duplicate {what} (first on line {seen[key]}); "
            "pass allow_duplicates=True to keep repeats"
        )
    return True


def read_id_list(path: str | Path, *, allow_duplicates: bool = False) -> list[str]:
    """Read a list of clip ids, one per line (blank lines skipped, whitespace stripped).

    Args:
        path: e.g. `metadata/flickr_144k.txt`.
        allow_duplicates: keep a repeated id (it then appears as often as listed) instead of raising.

    Returns:
        The ids in file order.

    Raises:
        DataError: the file is missing or not text, a line holds more than one field (a comma or
            inner whitespace), or an id is repeated (unless allow_duplicates).
    """
    path = Path(path)
    _require_file(path, "id list")
    try:
        with path.open(encoding="utf-8-sig") as handle:
            lines = [(number, line.strip()) for number, line in enumerate(handle, start=1) if line.strip()]
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not a text file ({error})") from error
    seen: dict[str, int] = {}
    for number, clip in lines:
        if "," in clip or len(clip.split()) > 1:
            raise DataError(f"{path}: line {number}: expected one id per line, got {clip!r}")
        _check_repeat(seen, clip, path, number, f"id {clip}", allow_duplicates)
    return [clip for _, clip in lines]


def read_id_rows(
    path: Path, what: str, fields_format: str, check: Callable[[list[str]], bool], allow_duplicates: bool
) -> list[str]:
    """Column 0 of every non-blank csv row, each row validated by `check(fields) -> bool`."""
    _require_file(path, what)
    ids: list[str] = []
    seen: dict[str, int] = {}
    for line, fields in _csv_rows(path):
        if not check(fields):
            raise DataError(f"{path}: line {line}: expected rows {fields_format}, got {','.join(fields)!r}")
        _check_repeat(seen, fields[0], path, line, f"id {fields[0]}", allow_duplicates)
        ids.append(fields[0])
    return ids


def read_csv_ids(path: str | Path, *, allow_duplicates: bool = False) -> list[str]:
    """The ids of a one-column csv without header (e.g. `vggss_test.csv`), in file order.

    Args:
        path: e.g. `metadata/vggss_test.csv`.
        allow_duplicates: keep a repeated id instead of raising.

    Raises:
        DataError: the file is missing, a row is not exactly one non-empty id, or an id is
            repeated (unless allow_duplicates).
    """
    return read_id_rows(Path(path), "test list", "'id' (one field)",
                         lambda fields: len(fields) == 1 and bool(fields[0]), allow_duplicates)


def read_extended_csv(path: str | Path, *, allow_duplicates: bool = False) -> pd.DataFrame:
    """Read the negatives of an extended test set (`*_test_plus_silent.csv`).

    The first row must be the header `video,audio,label`; every other row holds exactly these
    three non-empty fields and a known label. Like the official loader, only rows labelled
    `non-sounding` are kept (`sounding` rows are dropped).

    Args:
        path: e.g. `metadata/vggss_test_plus_silent.csv`.
        allow_duplicates: keep a repeated (video, audio) pair, counted as often as listed (the
            official loader appends every row), instead of raising.

    Returns:
        DataFrame with str columns `video` (the frame's clip) and `audio` (the sound's clip), in
        file order. `attrs["duplicate_pairs"]`: one (video, audio) per repeated row kept.

    Raises:
        DataError: the file is missing or empty, the header is not `video,audio,label` (e.g.
            reordered columns), a row is not three non-empty fields, a label is unknown, or a
            pair is repeated (unless allow_duplicates); the message names the line.
    """
    path = Path(path)
    _require_file(path, "extended test csv")
    rows = _csv_rows(path)
    line, header = next(rows, (0, None))
    if header is None:
        raise DataError(f"{path}: the file is empty, expected header {','.join(EXTENDED_HEADER)!r}")
    if header != EXTENDED_HEADER:
        raise DataError(f"{path}: line {line}: expected header {','.join(EXTENDED_HEADER)!r}, got {','.join(header)!r}")
    videos, audios, repeated = [], [], []
    seen: dict[tuple[str, str], int] = {}
    for line, fields in rows:
        if len(fields) != 3 or not all(fields):
            raise DataError(f"{path}: line {line} needs video,audio,label, got {','.join(fields)!r}")
        if fields[2] not in EXTENDED_LABELS:
            raise DataError(f"{path}: line {line}: unknown label {fields[2]!r}, expected one of {EXTENDED_LABELS}")
        if fields[2] != NEGATIVE_LABEL:
            continue
        pair = (fields[0], fields[1])
        if _check_repeat(seen, pair, path, line, f"pair video={pair[0]} audio={pair[1]}", allow_duplicates):
            repeated.append(pair)
        videos.append(fields[0])
        audios.append(fields[1])
    frame = pd.DataFrame({"video": videos, "audio": audios}, dtype=str)
    frame.attrs["duplicate_pairs"] = repeated
    return frame


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
        clip = _vggsound_clip_id(path, line, fields, ("youtube_id", "start_seconds", "label"))
        _add_class(classes, clip, fields[2], path, line)
    return classes


def _vggsound_clip_id(path: Path, line: int, fields: list[str], columns: tuple[str, ...]) -> str:
    """The VGG-SS id f"{youtube_id}_{int(start):06d}" of one row of VGGSound's listing, after checking
    that the row has the `columns` it is read for, the first and last of them non-empty.

    Raises:
        DataError: naming the file and line, for a short row or a non-numeric start.
    """
    if len(fields) < len(columns) or not fields[0] or not fields[len(columns) - 1]:
        raise DataError(f"{path}: line {line} needs {','.join(columns)}, got {','.join(fields)!r}")
    try:
        start = int(float(fields[1]))
    except ValueError:
        raise DataError(f"{path}: line {line}: start_seconds {fields[1]!r} is not a number") from None
    return f"{fields[0]}_{start:06d}"


def read_vggsound_split(path: str | Path, split: str = "test") -> list[str]:
    """The VGG-SS-spelled ids of one split of VGGSound's listing (`youtube_id,start_seconds,label,split`).

    Args:
        path: VGGSound's `vggsound.csv` (no header).
        split: the value of the 4th column to keep ("train" or "test").

    Returns:
        [f"{youtube_id}_{int(start):06d}"] of the rows of that split, in file order.

    Raises:
        DataError: missing file, a row without 4 fields (the split column is needed here), or a
            non-numeric start.
    """
    path = Path(path)
    _require_file(path, "VGGSound listing")
    ids = []
    for line, fields in _csv_rows(path):
        clip = _vggsound_clip_id(path, line, fields, ("youtube_id", "start_seconds", "label", "split"))
        if fields[3] == split:
            ids.append(clip)
    return ids


def read_first_column(path: str | Path) -> list[str]:
    """Column 0 of every non-blank row of a csv or txt list, in file order (repeats kept, no header
    expected; a header row is read as one more id). For lists in other formats than the ones
    above, e.g. `hche11/VGGSound data/test.csv` (`<id>.mp4,label`).

    Raises:
        DataError: missing or unreadable file, or a row with an empty first field.
    """
    path = Path(path)
    _require_file(path, "id list")
    ids = []
    for line, fields in _csv_rows(path):
        if not fields[0]:
            raise DataError(f"{path}: line {line}: empty first field in {','.join(fields)!r}")
        ids.append(fields[0])
    return ids


def write_lines(path: str | Path, lines: list[str], newline: str = "\n") -> None:
    """Write `lines`, each ended by `newline` ("\r\n" for the Flickr test list), as UTF-8."""
    Path(path).write_bytes("".join(line + newline for line in lines).encode("utf-8"))
