"""Preflight check of a dataset copy: which listed clips have a usable frame, WAV and annotation.

Real copies of Flickr-SoundNet and VGG-Sound lack the videos that vanished from the web, and a few
files are damaged. The official loaders (docs/data.md §8) silently keep only the ids that have both
files and swap a failing sample for a random other one, so a damaged copy gives plausible but
different numbers. vslrepro stops at the first bad file instead; this check lists every problem at
once, before anything is trained, so that the user can decide.

For each split — the training list, the validation list a profile names, the test positives and the
extended test negatives — it counts the listed ids (rows for the negatives) that have a frame, a
WAV and (positives) an annotation, and inspects every file with the package's own readers:
`images.load_frame` (full decode: a truncated JPEG fails), `soundfile.info` and `audio.read_wav`,
the dataset module's own readers (`Dataset.inspect_positives`), and the list readers of `lists`.

Problems (`PROBLEMS`) are errors, which make a clip unusable because the pipeline would stop on
them, or warnings, which the loaders handle but which the user should know about:

- errors: frame missing or unreadable; WAV missing, of 0 bytes, unreadable or without samples; a
  sample rate other than the dataset's (the tensor cache needs one rate per split; docs/data.md
  §4); annotation missing or invalid;
- warnings: audio shorter than the model's window (tiled by the loader), silent (peak below
  `SILENT_PEAK` after the channel average), multi-channel (averaged); an annotation of zero area
  (cIoU 0 for every method; docs/data.md §7).

The expected sample rate is `sample_rate` when given (with a profile: its `input.sample_rate`, which
the tensor cache enforces), else the most common rate among all the dataset's checked WAV files.
Coverage = usable / listed, each distinct row counted once. The check passes when every evaluation
split (validation, test positives, test negatives) has a readable list without repeated rows (the
pipeline refuses them; docs/data.md §2) and coverage 1, or at least `min_coverage` when the user
accepts a threshold explicitly. The training split is reported but does not decide, since its list
usually names clips that no longer exist (write the usable ones with `usable_train_out` and train on
that list). """

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import soundfile
from tqdm.auto import tqdm

from vslrepro.atomic import atomic_write_text
from vslrepro.data.datasets import dataset_class, display_name, locate
from vslrepro.data.errors import DataError
from vslrepro.data.formats.audio import read_wav
from vslrepro.data.formats.images import load_frame
from vslrepro.data.formats.lists import read_extended_csv, read_id_list
from vslrepro.data.formats.media import COMMUNITY, media_files
from vslrepro.data.splits import ensure_data
from vslrepro.profiles import load_profile

SILENT_PEAK = 1e-4  # peak |x| of the mono waveform below which a clip counts as silent (~3 steps of 16-bit PCM)
DEFAULT_MIN_SECONDS = 3.0  # the official audio window (docs/data.md §4)

PROBLEMS = {  # kind -> (severity, meaning)
    "frame_missing": ("error", "no frames/<id>.jpg"),
    "frame_unreadable": ("error", "the image does not decode (corrupt or truncated)"),
    "audio_missing": ("error", "no audio/<id>.wav"),
    "audio_zero_length": ("error", "the WAV file has 0 bytes"),
    "audio_unreadable": ("error", "not a readable sound file"),
    "audio_no_samples": ("error", "a sound file without samples"),
    "audio_sample_rate": ("error", "a sample rate other than the dataset's (one rate per split is needed)"),
    "annotation_missing": ("error", "a test or validation id without annotation"),
    "annotation_invalid": ("error", "an annotation the reader refuses"),
    "audio_too_short": ("warning", "shorter than the audio window: the loader tiles it"),
    "audio_silent": ("warning", f"peak amplitude below {SILENT_PEAK} after the channel average"),
    "audio_multichannel": ("warning", "more than one channel: the loader averages them"),
    "annotation_empty": ("warning", "boxes of zero total area: cIoU 0 for every method"),
}
EVALUATION_SPLITS = ("val", "test_positives", "test_negatives")  # the splits that decide the exit status


@dataclass
class SplitSpec:
    """What one split lists: (video id, audio id) rows under a media root, and per-id annotation problems.

    `annotations` is None for splits without ground truth; otherwise {id: [(kind, file, detail)]}
    with an empty list for a valid annotation. `error` is set when the list itself is unreadable.
    Repeated rows are kept once in `rows` and listed in `repeated`: the pipeline refuses them.
    """

    name: str
    source: str
    media_root: Path
    rows: list[tuple[str, str]] = field(default_factory=list)
    media: tuple[str, str] = COMMUNITY  # the folders of media_root holding frames and sounds
    annotations: dict[str, list[tuple[str, str, str]]] | None = None
    error: str | None = None
    repeated: list[str] = field(default_factory=list)  # one entry per repeated row ("video/audio" for pairs)


# ---------------------------------------------------------------- inspecting one file

def inspect_frame(path: str) -> dict[str, Any]:
    """{"exists", "problem": kind or None, "detail"} of one frame, fully decoded by `load_frame`."""
    if not Path(path).is_file():
        return {"exists": False, "problem": "frame_missing", "detail": f"{path}: frame not found"}
    try:
        load_frame(path)
    except DataError as error:
        return {"exists": True, "problem": "frame_unreadable", "detail": str(error)}
    return {"exists": True, "problem": None, "detail": ""}


def inspect_audio(path: str) -> dict[str, Any]:
    """{"exists", "problem", "detail", "rate", "channels", "seconds", "peak"} of one WAV.

    `problem` covers what one file shows by itself (missing, 0 bytes, unreadable, no samples); the
    rate, length, silence and channel checks need the split's settings (`_audio_problems`).
    """
    info: dict[str, Any] = {"exists": Path(path).is_file(), "problem": None, "detail": "",
                            "rate": None, "channels": None, "seconds": None, "peak": None}
    if not info["exists"]:
        return {**info, "problem": "audio_missing", "detail": f"{path}: audio file not found"}
    if Path(path).stat().st_size == 0:
        return {**info, "problem": "audio_zero_length", "detail": f"{path}: the file has 0 bytes"}
    try:
        header = soundfile.info(path)
    except (RuntimeError, soundfile.LibsndfileError, ValueError) as error:
        return {**info, "problem": "audio_unreadable", "detail": f"{path}: unreadable audio file ({error})"}
    info.update(rate=int(header.samplerate), channels=int(header.channels),
                seconds=header.frames / header.samplerate if header.samplerate else 0.0)
    if header.frames == 0:
        return {**info, "problem": "audio_no_samples", "detail": f"{path}: the file holds no samples"}
    try:
        wave, _ = read_wav(path)  # the loader's own decoding: clip, then channel average
    except DataError as error:
        kind = "audio_no_samples" if "no samples" in str(error) else "audio_unreadable"
        return {**info, "problem": kind, "detail": str(error)}
    info["peak"] = float(abs(wave).max())
    return info


def _inspect(job: tuple[str, str]) -> tuple[tuple[str, str], dict[str, Any]]:
    kind, path = job
    return job, (inspect_frame(path) if kind == "frame" else inspect_audio(path))


def inspect_files(jobs: list[tuple[str, str]], workers: int = 1,
                  progress: bool = False) -> dict[tuple[str, str], dict[str, Any]]:
    """Inspect ("frame" | "audio", path) jobs, in `workers` processes; {job: result}."""
    def collect(results) -> dict:
        if progress:
            results = tqdm(results, total=len(jobs), desc="checking files", leave=False)
        return dict(results)

    if workers <= 1 or len(jobs) < 2:
        return collect(map(_inspect, jobs))
    with Pool(workers) as pool:
        return collect(pool.imap_unordered(_inspect, jobs, chunksize=max(1, min(64, len(jobs) // (4 * workers)))))


# ---------------------------------------------------------------- what each split lists

def _read_or_error(spec: SplitSpec, read) -> Any:
    """`read()`, or None with `spec.error` set when the list is missing or malformed."""
    try:
        return read()
    except DataError as error:
        spec.error = str(error)
        return None


def _once(items: list, spec: SplitSpec) -> list:
    """`items` without repeats (first-seen order); each repeat is recorded in `spec.repeated`."""
    unique = list(dict.fromkeys(items))
    if len(unique) < len(items):
        seen = set()
        for item in items:
            if item in seen:
                spec.repeated.append(item if isinstance(item, str) else "/".join(item))
            seen.add(item)
    return unique


def positives_spec(dataset: str, name: str, media_root: Path, metadata_root: Path, *, test_list: Path | None = None,
                   annotations: Path | None = None, variant: str | None = None) -> SplitSpec:
    """The annotated split `name` (test positives or a validation list) of a dataset, read by the
    dataset's module like `testsets.positives_index`, but every id is kept and each annotation
    problem recorded."""
    cls = dataset_class(dataset)
    spec = SplitSpec(name, str(test_list or metadata_root), media_root, media=cls.media())
    read = _read_or_error(spec, lambda: cls.inspect_positives(metadata_root, test_list=test_list,
                                                              annotations=annotations, variant=variant))
    if read is None:
        return spec
    ids, list_path, status = read
    spec.source = str(list_path)
    spec.rows = [(clip, clip) for clip in _once(ids, spec)]
    spec.annotations = status
    return spec


def negatives_spec(dataset: str, media_root: Path, metadata_root: Path) -> SplitSpec:
    """The extended test set's negatives: one (video, audio) row per `non-sounding` row of the csv."""
    cls = dataset_class(dataset)
    path = cls.extended_csv(metadata_root)
    spec = SplitSpec("test_negatives", str(path), media_root, media=cls.media())
    pairs = _read_or_error(spec, lambda: read_extended_csv(path, allow_duplicates=True))
    if pairs is not None:
        spec.rows = _once(list(zip(pairs["video"], pairs["audio"])), spec)
    return spec


def train_spec(train_root: Path, train_list: Path, media: tuple[str, str] = COMMUNITY) -> SplitSpec:
    """The training list: one (id, id) row per listed id."""
    spec = SplitSpec("train", str(train_list), train_root, media=media)
    ids = _read_or_error(spec, lambda: read_id_list(train_list, allow_duplicates=True))
    if ids is not None:
        spec.rows = [(clip, clip) for clip in _once(ids, spec)]
    return spec


# ---------------------------------------------------------------- the report

def _audio_problems(info: dict[str, Any], path: str, expected_rate: int | None,
                    min_seconds: float) -> list[tuple[str, str]]:
    """(kind, detail) of one readable WAV under the dataset's settings."""
    problems = []
    if expected_rate is not None and info["rate"] != expected_rate:
        problems.append(("audio_sample_rate",
                         f"{path}: {info['rate']} Hz, the dataset's clips are at {expected_rate} Hz"))
    if info["seconds"] < min_seconds:
        problems.append(("audio_too_short",
                         f"{path}: {info['seconds']:.3f} s, shorter than the {min_seconds:g}-s window"))
    if info["peak"] is not None and info["peak"] < SILENT_PEAK:
        problems.append(("audio_silent", f"{path}: peak amplitude {info['peak']:.2g}"))
    if info["channels"] > 1:
        problems.append(("audio_multichannel", f"{path}: {info['channels']} channels"))
    return problems


def _split_report(spec: SplitSpec, results: dict, expected_rate: int | None, min_seconds: float) -> dict[str, Any]:
    """Counts, coverage and named problems of one split."""
    # (kind, file, id) -> entry: a file shared by rows (a negative's frame) is named once; one
    # vggss.json entry per id
    problems: dict[tuple[str, str, str], dict[str, str]] = {}

    def note(kind: str, clip: str, file: str, detail: str) -> None:
        problems.setdefault((kind, file, clip), {"id": clip, "file": file, "kind": kind,
                                                 "severity": PROBLEMS[kind][0], "detail": detail})

    counts = Counter()
    unusable, rates, channels = [], Counter(), Counter()
    for video, sound in spec.rows:
        frame_path, audio_path = map(str, media_files(spec.media_root, video, sound, spec.media))
        frame, audio = results[("frame", frame_path)], results[("audio", audio_path)]
        row_kinds = []
        if frame["problem"]:
            note(frame["problem"], video, frame_path, frame["detail"])
            row_kinds.append(frame["problem"])
        if audio["problem"]:
            note(audio["problem"], sound, audio_path, audio["detail"])
            row_kinds.append(audio["problem"])
        else:
            rates[str(audio["rate"])] += 1
            channels[str(audio["channels"])] += 1
            for kind, detail in _audio_problems(audio, audio_path, expected_rate, min_seconds):
                note(kind, sound, audio_path, detail)
                row_kinds.append(kind)
        if spec.annotations is not None:
            for kind, file, detail in spec.annotations[video]:
                note(kind, video, file, detail)
                row_kinds.append(kind)
            counts["with_annotation"] += not any(k in ("annotation_missing", "annotation_invalid") for k in row_kinds)
        counts["with_frame"] += frame["exists"]
        counts["with_audio"] += audio["exists"]
        if any(PROBLEMS[kind][0] == "error" for kind in row_kinds):
            unusable.append(video if video == sound else f"{video}/{sound}")
    listed = len(spec.rows)
    usable = listed - len(unusable)
    return {
        "source": spec.source,
        "media_root": str(spec.media_root),
        "decides_exit": spec.name in EVALUATION_SPLITS,
        "error": spec.error,
        "repeated": spec.repeated,
        "listed": listed,
        "with_frame": counts["with_frame"],
        "with_audio": counts["with_audio"],
        "with_annotation": counts["with_annotation"] if spec.annotations is not None else None,
        "usable": usable,
        "coverage": usable / listed if listed else 0.0,
        "unusable": unusable,
        "sample_rates": dict(rates),
        "channels": dict(channels),
        "problem_counts": dict(Counter(entry["kind"] for entry in problems.values())),
        "problems": sorted(problems.values(),
                           key=lambda e: (PROBLEMS[e["kind"]][0] != "error", e["kind"], e["file"], e["id"])),
    }


def check_splits(dataset: str, specs: list[SplitSpec], *, sample_rate: int | None = None,
                 min_seconds: float = DEFAULT_MIN_SECONDS, workers: int = 1,
                 progress: bool = False) -> dict[str, Any]:
    """Inspect every frame and WAV the splits list (each file once) and report per split.

    Returns:
        {"dataset", "expected_sample_rate", "min_seconds", "splits": {name: split report}}; a split
        report holds listed, with_frame, with_audio, with_annotation, usable, coverage, the
        unusable ids ("video/audio" for a negative pair), sample-rate and channel counts, and one
        problem entry {id, file, kind, severity, detail} per file at fault.
    """
    jobs = {}
    for spec in specs:
        for video, sound in spec.rows:
            frame, audio = media_files(spec.media_root, video, sound, spec.media)
            jobs[("frame", str(frame))] = None
            jobs[("audio", str(audio))] = None
    results = inspect_files(sorted(jobs), workers, progress)
    if sample_rate is None:
        found = Counter(info["rate"] for (kind, _), info in results.items() if kind == "audio" and info["rate"])
        sample_rate = min(found, key=lambda rate: (-found[rate], rate)) if found else None  # most common, ties: lowest
    return {
        "dataset": dataset,
        "expected_sample_rate": sample_rate,
        "min_seconds": min_seconds,
        "splits": {spec.name: _split_report(spec, results, sample_rate, min_seconds) for spec in specs},
    }


def dataset_specs(dataset: str, test_root: str | Path, metadata_root: str | Path | None = None, *,
                  train_root: str | Path | None = None, train_list: str | Path | None = None,
                  val_list: str | Path | None = None, val_annotations: str | Path | None = None,
                  annotations: str | Path | None = None, variant: str | None = None) -> list[SplitSpec]:
    """The splits of one dataset copy in the community layout (docs/data.md §1).

    Args:
        dataset: a registered dataset.
        test_root: frames/ and audio/ of the extended test set.
        metadata_root: holds metadata/ (and Annotations/ for Flickr); default test_root.
        train_root, train_list: the training clips and their list (both or neither).
        val_list, val_annotations: an annotated validation split (as a profile names it), if any.
        annotations: the test positives' annotation file (None: the dataset's default layout).
        variant: the test list, for a dataset with several (Flickr: "250" or "249").
    """
    cls = dataset_class(dataset)
    test_root = Path(test_root)
    metadata_root = Path(metadata_root) if metadata_root is not None else test_root
    specs = []
    if train_list is not None:
        specs.append(train_spec(Path(train_root) if train_root is not None else test_root, Path(train_list),
                                cls.media()))
    if val_list is not None or val_annotations is not None:
        specs.append(positives_spec(dataset, "val", test_root, metadata_root, variant=variant,
                                    test_list=Path(val_list) if val_list else None,
                                    annotations=Path(val_annotations) if val_annotations else None))
    specs.append(positives_spec(dataset, "test_positives", test_root, metadata_root, variant=variant,
                                annotations=Path(annotations) if annotations else None))
    if cls.has_negatives():
        specs.append(negatives_spec(dataset, test_root, metadata_root))
    return specs


def verdict(report: dict[str, Any], min_coverage: float | None = None) -> list[str]:
    """Why a dataset report fails: one line per evaluation split that is unreadable or below the
    required coverage (1.0, or `min_coverage` when the user accepts a threshold); [] when it passes."""
    required = 1.0 if min_coverage is None else min_coverage
    failures = []
    for name, split in report["splits"].items():
        if not split["decides_exit"]:
            continue
        if split["error"]:
            failures.append(f"{report['dataset']} {name}: unreadable list: {split['error']}")
        elif split["listed"] == 0:
            failures.append(f"{report['dataset']} {name}: {split['source']} lists nothing")
        elif split["repeated"]:
            failures.append(f"{report['dataset']} {name}: {split['source']} repeats {len(split['repeated'])} "
                            f"rows (e.g. {split['repeated'][0]}); the pipeline refuses repeats")
        elif split["coverage"] < required:
            failures.append(f"{report['dataset']} {name}: {split['usable']} of {split['listed']} usable "
                            f"(coverage {split['coverage']:.4f} < {required:g})")
    return failures


def summary(report: dict[str, Any], examples: int = 3) -> str:
    """A readable table of one dataset report: counts per split, then problems by kind with examples."""
    lines = [f"{display_name(report['dataset'])}: expected sample rate {report['expected_sample_rate']} Hz, "
             f"audio window {report['min_seconds']:g} s",
             f"  {'split':<15} {'listed':>8} {'frame':>8} {'audio':>8} {'annot.':>8} {'usable':>8} {'coverage':>9}"]
    for name, split in report["splits"].items():
        if split["error"]:
            lines.append(f"  {name:<15} unreadable list: {split['error']}")
            continue
        annotated = "-" if split["with_annotation"] is None else split["with_annotation"]
        lines.append(f"  {name:<15} {split['listed']:>8} {split['with_frame']:>8} {split['with_audio']:>8} "
                     f"{annotated:>8} {split['usable']:>8} {100 * split['coverage']:>8.2f}%")
        if split["repeated"]:
            lines.append(f"  {'':<15} {len(split['repeated'])} repeated rows, counted once: "
                         f"{', '.join(split['repeated'][:examples])}")
    for name, split in report["splits"].items():
        for kind, count in sorted(split["problem_counts"].items(), key=lambda item: (PROBLEMS[item[0]][0], item[0])):
            named = [e["id"] for e in split["problems"] if e["kind"] == kind][:examples]
            more = ", ..." if count > examples else ""
            lines.append(f"  {PROBLEMS[kind][0]:<7} {name}: {kind} x{count} ({PROBLEMS[kind][1]}): "
                         f"{', '.join(named)}{more}")
    return "\n".join(lines)


def write_usable_list(report: dict[str, Any], split: str, path: str | Path) -> Path:
    """Write the usable ids of a split (list order) as a training list, one id per line."""
    if split not in report["splits"] or report["splits"][split]["error"]:
        raise ValueError(f"no readable {split} split in the {report['dataset']} report")
    entry = report["splits"][split]
    unusable = set(entry["unusable"])
    ids = read_id_list(entry["source"], allow_duplicates=True)
    kept = [clip for clip in dict.fromkeys(ids) if clip not in unusable]
    return atomic_write_text(path, "".join(f"{clip}\n" for clip in kept))


def write_report(reports: dict[str, dict[str, Any]], failures: list[str], min_coverage: float | None,
                 path: str | Path) -> Path:
    """The JSON report: {"passed", "min_coverage", "failures", "datasets": {name: report}}."""
    document = {"passed": not failures, "min_coverage": min_coverage, "failures": failures, "datasets": reports}
    return atomic_write_text(path, json.dumps(document, indent=1) + "\n")


def run_check(datasets: dict[str, dict[str, Any]], *, sample_rate: int | None = None,
              min_seconds: float = DEFAULT_MIN_SECONDS, min_coverage: float | None = None, workers: int = 1,
              out: str | Path | None = None, usable_train_out: str | Path | None = None) -> int:
    """The `data check` command: check each dataset, print the summaries, write the report.

    Args:
        datasets: {name: keyword arguments of `dataset_specs`}.
        sample_rate, min_seconds, workers: as in `check_splits`.
        min_coverage: accept evaluation splits with at least this fraction usable (default: all).
        out: JSON report path.
        usable_train_out: write the usable training ids there (one dataset only).

    Returns:
        0 when every evaluation split passes, else 1.
    """
    if min_coverage is not None and not 0.0 <= min_coverage <= 1.0:
        raise ValueError(f"--min-coverage must be in [0, 1], got {min_coverage}")
    if usable_train_out is not None and len(datasets) != 1:
        raise ValueError("--usable-train-out needs exactly one dataset (pass --dataset)")
    reports, failures = {}, []
    for name, locations in datasets.items():
        report = check_splits(name, dataset_specs(name, **locations), sample_rate=sample_rate,
                              min_seconds=min_seconds, workers=workers, progress=True)
        reports[name] = report
        failures += verdict(report, min_coverage)
        print(summary(report))
    if usable_train_out is not None:
        report = next(iter(reports.values()))
        if "train" not in report["splits"]:
            raise ValueError("--usable-train-out needs a training list (--train-list, or a profile)")
        path = write_usable_list(report, "train", usable_train_out)
        print(f"usable training ids: {report['splits']['train']['usable']} written to {path}")
    if out is not None:
        print(f"report: {write_report(reports, failures, min_coverage, out)}")
    for name, report in reports.items():
        train = report["splits"].get("train")
        if train and not train["error"] and train["usable"] < train["listed"]:
            print(f"note: {name} train: training stops at the first unusable clip; write the "
                  f"{train['usable']} usable ids with --usable-train-out and train on that list")
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        print("restore the files, or accept a threshold explicitly with --min-coverage and evaluate with "
              "--skip-bad (it leaves out missing or unreadable media; an id without annotation or a WAV at "
              "another rate must be fixed or removed from its list)")
        return 1
    if min_coverage is None:
        print("passed: every clip of the evaluation splits is usable")
    else:
        print(f"passed: every evaluation split has coverage >= {min_coverage:g} (accepted with --min-coverage)")
    return 0


def resolve_datasets(*, profile: str | None = None, dataset: str | None = None, root: str | Path | None = None,
                     metadata: str | Path | None = None, train_root: str | Path | None = None,
                     train_list: str | Path | None = None,
                     variant: str | None = None) -> tuple[dict[str, dict[str, Any]], float | None, int | None]:
    """Where the datasets to check live: from a profile (its datasets, or `dataset`; the embedded
    synthetic benchmark is generated first if needed) or from explicit roots.

    A relative `train_list` is taken as given when that file exists, else relative to the metadata
    root (as `train_list` in params/paper.yaml). `variant` selects the test list of a dataset that
    has several (default: the profile's, else the dataset's default).

    Returns:
        ({name: keyword arguments of `dataset_specs`}, the profile's audio window in seconds or None,
        the profile's `input.sample_rate` or None).
    """
    if profile is not None:
        if root is not None or metadata is not None or train_root is not None or train_list is not None:
            raise ValueError("give either --profile or --root/--metadata/--train-root/--train-list, not both")
        params = load_profile(profile)
        if params["data"]["source"] == "synthetic":
            ensure_data(params)  # generated once, like every stage that reads the benchmark
        names = [dataset] if dataset else list(params["datasets"])
        located = {}
        for name in names:
            cfg = locate(params, name)
            located[name] = {"test_root": cfg.test_root, "metadata_root": cfg.metadata_root,
                             "train_root": cfg.train_root, "train_list": cfg.train_list,
                             "val_list": cfg.val_list, "val_annotations": cfg.val_annotations,
                             "annotations": cfg.annotations, "variant": variant or cfg.list_variant}
        return located, float(params["input"]["audio_duration"]), int(params["input"]["sample_rate"])
    if dataset is None or root is None:
        raise ValueError("give --profile, or --dataset and --root (the extended test set's folder)")
    if train_root is not None and train_list is None:
        raise ValueError("--train-root needs --train-list (the ids to look for there)")
    metadata_root = Path(metadata) if metadata is not None else Path(root)
    if train_list is not None:
        train_list = Path(train_list)
        if not train_list.is_absolute() and not train_list.is_file():
            train_list = metadata_root / train_list
    return {dataset: {"test_root": Path(root), "metadata_root": metadata_root, "train_list": train_list,
                      "train_root": Path(train_root) if train_root is not None else None,
                      "variant": variant}}, None, None
