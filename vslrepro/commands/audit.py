"""Leakage audit: which ids of a training list are clips of the test sets, in any id spelling.

The community's training lists were never checked against the test sets: in the released files
`vggss_144k.txt` holds 3,709 of the 5,158 VGG-SS test ids and `flickr_144k.txt` 20 of the 250
Flickr test ids (docs/data.md §7). The comparison must survive the different spellings of one clip
(`abc_000030` in VGG-SS lists, `abc_30000_40000` in downloaders' file names, `abc,30` in
`vggsound.csv`; `vslrepro.data.formats.ids`), so ids are compared by `clip_key`, never as text.

Test clips come from a dataset's metadata (docs/data.md §2): the test list (Flickr:
`flickr_test.csv`, the 250-id list, which contains the 249-id one; VGG-SS: `vggss_test.csv`, or
the ids of `vggss.json` when the csv is absent), both clips of every negative of
`*_test_plus_silent.csv` (its frame's clip and its sound's clip, which need not be test ids), and,
when given, the rows of VGGSound's listing whose split is `test` and any further list of test
clips (`extra`, e.g. `hche11/VGGSound data/test.csv`, rows `<id>.mp4,label`). The cleaned list leaves out every
training id that matches any of them, keeps the others in their order and spelling, and drops
repeated ids (the pipeline's `read_id_list` refuses repeats); its line endings follow the input's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vslrepro.atomic import atomic_write_text
from vslrepro.data.datasets import dataset_class
from vslrepro.data.formats.ids import clip_key
from vslrepro.data.formats.lists import read_extended_csv, read_first_column, read_id_list, read_vggsound_split


def evaluation_clips(dataset: str | None = None, metadata_root: str | Path | None = None, *,
                     vggsound_csv: str | Path | None = None,
                     extra: list[str | Path] = ()) -> tuple[dict[str, dict[tuple, str]], dict[str, str]]:
    """The test clips of a dataset by source, keyed by `clip_key`.

    Args:
        dataset: a registered dataset (None: only the VGGSound csv).
        metadata_root: the folder holding `metadata/` (and the test lists) of that dataset.
        vggsound_csv: VGGSound's `vggsound.csv`; None uses `metadata/vggsound.csv` when it exists.
        extra: further lists of test clips, any spelling in the first column (source `extra:<file name>`).

    Returns:
        ({source: {key: the id as the test file spells it}}, {source: file read}); sources in the
        order test_list, negative_frames, negative_sounds, vggsound_test, extra:..., those present.

    Raises:
        ValueError: unknown dataset, or nothing to compare with.
        DataError: a missing or malformed test list (the extended csv is optional).
    """
    cls = dataset_class(dataset) if dataset is not None else None
    if dataset is None and vggsound_csv is None and not extra:
        raise ValueError("nothing to audit against: give a dataset and its metadata root, a VGGSound csv "
                         "or a list of test clips")
    lists: dict[str, list[str]] = {}
    files: dict[str, str] = {}
    meta = Path(metadata_root) / "metadata" if metadata_root is not None else None
    if dataset is not None:
        if meta is None:
            raise ValueError(f"the {dataset} test set needs its metadata root")
        lists["test_list"], test_list = cls.test_ids(Path(metadata_root), allow_duplicates=True)  # the widest list
        files["test_list"] = str(test_list)
        extended = cls.extended_csv(Path(metadata_root))
        if extended is not None and extended.is_file():
            pairs = read_extended_csv(extended, allow_duplicates=True)
            lists["negative_frames"], lists["negative_sounds"] = list(pairs["video"]), list(pairs["audio"])
            files["negative_frames"] = files["negative_sounds"] = str(extended)
        if vggsound_csv is None and (meta / "vggsound.csv").is_file():
            vggsound_csv = meta / "vggsound.csv"
    if vggsound_csv is not None:
        files["vggsound_test"] = str(vggsound_csv)
        lists["vggsound_test"] = read_vggsound_split(vggsound_csv, "test")
    for path in extra:
        source = f"extra:{Path(path).name}"
        if source in lists:
            raise ValueError(f"two extra test lists named {Path(path).name}: rename one")
        files[source], lists[source] = str(path), read_first_column(path)
    clips = {source: {clip_key(clip): clip for clip in reversed(ids)} for source, ids in lists.items()}
    return clips, files  # reversed: each key keeps its first spelling


def audit_list(train_list: str | Path, clips: dict[str, dict[tuple, str]]) -> dict[str, Any]:
    """Compare one training list with the test clips.

    Returns:
        {"train_list", "listed" (lines), "unique", "repeated" (ids listed again), "overlaps":
        {source: count}, "overlapping": count over all sources, "kept", "leaks": [{"train_id",
        "test_id", "sources"}] in list order, "kept_ids": the cleaned list's ids}.
    """
    ids = read_id_list(train_list, allow_duplicates=True)
    unique = list(dict.fromkeys(ids))
    leaks, kept = [], []
    for clip in unique:
        key = clip_key(clip)
        sources = [source for source, keys in clips.items() if key in keys]
        if sources:
            leaks.append({"train_id": clip, "test_id": clips[sources[0]][key], "sources": sources})
        else:
            kept.append(clip)
    return {
        "train_list": str(train_list),
        "listed": len(ids),
        "unique": len(unique),
        "repeated": len(ids) - len(unique),
        "overlaps": {source: sum(source in leak["sources"] for leak in leaks) for source in clips},
        "overlapping": len(leaks),
        "kept": len(kept),
        "leaks": leaks,
        "kept_ids": kept,
    }


def write_clean_list(result: dict[str, Any], path: str | Path) -> Path:
    """Write the audited list without its leaking (and repeated) ids, with the input's line endings."""
    newline = "\r\n" if b"\r\n" in Path(result["train_list"]).read_bytes()[:65536] else "\n"
    return atomic_write_text(path, "".join(clip + newline for clip in result["kept_ids"]))


def summary(result: dict[str, Any], files: dict[str, str], examples: int = 5) -> str:
    """Readable lines for one audited list."""
    lines = [f"{result['train_list']}: {result['listed']} lines, {result['unique']} distinct ids"
             + (f" ({result['repeated']} repeats dropped)" if result["repeated"] else "")]
    for source, count in result["overlaps"].items():
        lines.append(f"  in {source:<22} {count:>7}   ({files[source]})")
    named = ", ".join(f"{leak['train_id']}" + (f" (= {leak['test_id']})" if leak["test_id"] != leak["train_id"] else "")
                      for leak in result["leaks"][:examples])
    more = ", ..." if result["overlapping"] > examples else ""
    lines.append(f"  overlapping with any test clip: {result['overlapping']}" + (f": {named}{more}" if named else ""))
    lines.append(f"  kept: {result['kept']}")
    return "\n".join(lines)


def run_audit(train_lists: list[str | Path], *, dataset: str | None = None, metadata_root: str | Path | None = None,
              vggsound_csv: str | Path | None = None, extra: list[str | Path] = (),
              clean_out: list[str | Path] | None = None, out: str | Path | None = None) -> int:
    """The `data audit` command: audit each list, print a summary, write the cleaned lists and the report.

    Args:
        train_lists: training lists, one id per line.
        dataset, metadata_root, vggsound_csv, extra: the test clips (`evaluation_clips`).
        clean_out: one output path per training list, in the same order.
        out: JSON report path.

    Returns:
        0 (overlaps are findings, reported; not an error).
    """
    clean_out = list(clean_out or [])
    if clean_out and len(clean_out) != len(train_lists):
        raise ValueError(f"--clean-out is given {len(clean_out)} times for {len(train_lists)} --train lists; "
                         "give one output per list, in the same order")
    clips, files = evaluation_clips(dataset, metadata_root, vggsound_csv=vggsound_csv, extra=extra)
    print("test clips: " + ", ".join(f"{source} {len(keys)}" for source, keys in clips.items()))
    results = []
    for index, train_list in enumerate(train_lists):
        result = audit_list(train_list, clips)
        print(summary(result, files))
        if clean_out:
            result["clean_list"] = str(write_clean_list(result, clean_out[index]))
            print(f"  cleaned list: {result['clean_list']}")
        results.append(result)
    if out is not None:
        document = {"dataset": dataset, "test_files": files,
                    "test_clips": {source: len(keys) for source, keys in clips.items()},
                    "lists": [{k: v for k, v in result.items() if k != "kept_ids"} for result in results]}
        print(f"report: {atomic_write_text(out, json.dumps(document, indent=1) + chr(10))}")
    return 0
