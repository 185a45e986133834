"""The command line: every pipeline step can run without a notebook.

    python -m vslrepro reproduce --profile quick            # the whole pipeline (papermill)
    python -m vslrepro data synth --profile quick --out DIR  # the embedded synthetic benchmark
    python -m vslrepro data table1 --profile quick           # Table 1 of a profile's test sets
    python -m vslrepro data check --dataset vggss --root DIR [--min-coverage 0.95] [--out report.json]
    python -m vslrepro data check --profile quick            # the same on a profile's roots
    python -m vslrepro data audit --dataset vggss --root DIR --train LIST [--clean-out FILE]
    python -m vslrepro data prepare --videos DIR --out ROOT [--time S | --frame-index N] [--workers N]
    python -m vslrepro pretrain --profile quick              # object prior (ImageNet stand-in)
    python -m vslrepro train --profile quick --dataset vggss --method ezvsl [--out DIR] [--allow-incomplete]
    python -m vslrepro evaluate --profile quick --dataset vggss --method ezvsl --checkpoint latest
    python -m vslrepro evaluate --run DIR --checkpoint best [--method ezvsl_ogl]
    python -m vslrepro evaluate --profile paper --dataset flickr --method ezvsl --checkpoint best.pth
    python -m vslrepro tables --profile quick
    python -m vslrepro localize --checkpoint RUN/latest.pt --video clip.mp4 --out overlay.png
    python -m vslrepro bench train --profile quick
    python -m vslrepro bench loader --pairs 5000 --size 224     # train-cache storages: bytes, pairs/s/core
"""

from __future__ import annotations

import argparse
import os
import sys

from vslrepro import stages
from vslrepro.commands.audit import run_audit
from vslrepro.commands.bench import bench_loader, bench_train
from vslrepro.commands.check import DEFAULT_MIN_SECONDS, resolve_datasets, run_check
from vslrepro.commands.localize import run as localize
from vslrepro.commands.prepare import ID_STYLES, prepare_videos
from vslrepro.data.caches import STORAGES
from vslrepro.data.datasets import DATASETS, dataset_names, locate
from vslrepro.data.splits import footprint_report
from vslrepro.data.synthetic import SCALES, generate
from vslrepro.methods import METHODS
from vslrepro.pipeline import main_reproduce
from vslrepro.profiles import load_profile

DATASET_CHOICES = dataset_names()
TRAINABLE = sorted(name for name, cls in METHODS.items() if cls.run_method() == name)
VARIANTS = sorted({variant for cls in DATASETS.values() for variant in cls.list_variants})
VARIANT_HELP = "; ".join(f"{cls.display_name}: {', '.join(cls.list_variants)}" for cls in DATASETS.values()
                         if cls.list_variants)


def _profile(parser: argparse.ArgumentParser, default: str | None = "quick") -> None:
    parser.add_argument("--profile", default=default,
                        help="a profile name (smoke, quick, paper: params/<name>.yaml) or the path of a "
                             "profile YAML file; results go to results/<its profile: name>/")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m vslrepro", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("reproduce", help="run the notebooks in order with papermill")
    _profile(p)
    p.add_argument("--force", action="store_true", help="re-run stages even when up to date")
    p.add_argument("--only", nargs="*", help="stage keys or notebook numbers (e.g. 00 05) to run")
    p.add_argument("--jobs", type=int, help="stages run at once (default: one per CPU core, at most 4)")

    data = sub.add_parser("data", help="data utilities").add_subparsers(dest="data_command", required=True)
    p = data.add_parser("synth", help="generate the embedded synthetic benchmark")
    p.add_argument("--profile", default="quick", choices=sorted(SCALES), help="benchmark scale")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1, help="processes writing clips (same files for any number)")
    p = data.add_parser("table1", help="Table 1 (extended test-set statistics) of a profile's data")
    _profile(p)
    p.add_argument("--out", help="output stem (default results/<profile>/tables/table1)")
    p = data.add_parser("check", help="preflight: which listed clips have a usable frame, WAV and annotation")
    _profile(p, default=None)
    p.add_argument("--dataset", choices=DATASET_CHOICES, help="with --root; with --profile: only this one")
    p.add_argument("--root", help="the extended test set's folder (frames/, audio/)")
    p.add_argument("--metadata", help="the folder holding metadata/ (and Annotations/); default --root")
    p.add_argument("--train-list", help="a training list to check too (relative: to the metadata folder)")
    p.add_argument("--train-root", help="frames/ and audio/ of the training clips (default --root)")
    p.add_argument("--variant", "--flickr-list", dest="variant", choices=VARIANTS,
                   help=f"the test list of a dataset that has several ({VARIANT_HELP}; default: the profile's, "
                        "else the first)")
    p.add_argument("--sample-rate", type=int,
                   help="expected WAV rate (default: the profile's input.sample_rate, else the most common one)")
    p.add_argument("--min-seconds", type=float,
                   help="shorter audio is reported (default: the profile's audio window, else 3 s)")
    p.add_argument("--min-coverage", type=float,
                   help="accept evaluation splits with at least this fraction usable (default: all must be)")
    p.add_argument("--workers", type=int, default=1, help="processes decoding files")
    p.add_argument("--out", help="JSON report path")
    p.add_argument("--usable-train-out", help="write the usable ids of the training list there")
    p = data.add_parser("audit", help="train/test leakage: training ids that are test clips, in any id spelling")
    _profile(p, default=None)
    p.add_argument("--train", action="append", required=True, help="a training list (repeatable)")
    p.add_argument("--dataset", choices=DATASET_CHOICES, help="whose test sets to compare with")
    p.add_argument("--root", help="the folder holding the dataset's metadata/ (default: the profile's)")
    p.add_argument("--vggsound-csv", help="VGGSound's vggsound.csv: its test-split rows count as test clips")
    p.add_argument("--test", action="append", default=[],
                   help="another list of test clips (repeatable): ids in any spelling in the first column")
    p.add_argument("--clean-out", action="append", help="cleaned list, one per --train in the same order")
    p.add_argument("--out", help="JSON report path")
    p = data.add_parser("prepare", help="raw videos -> frames/<id>.jpg and 16 kHz mono audio/<id>.wav")
    p.add_argument("--videos", required=True, help="folder of videos (searched recursively)")
    p.add_argument("--out", required=True, help="the data root to fill")
    when = p.add_mutually_exclusive_group()
    when.add_argument("--time", type=float, help="frame shown at this second (default: the middle)")
    when.add_argument("--frame-index", type=int, help="the N-th frame from 0 instead of a time")
    p.add_argument("--workers", type=int, default=1, help="processes")
    p.add_argument("--sample-rate", type=int, default=16000)
    p.add_argument("--ids", choices=ID_STYLES, default="stem",
                   help="id = file name (stem), or a dataset's spelling of it (vggss: <YouTube id>_<start ms>_<end ms> "
                        "-> <YouTube id>_<start s:06d>)")
    p.add_argument("--report", help="failure report (default ROOT/prepare_report.json)")

    p = sub.add_parser("pretrain", help="object-prior pretraining of the image backbone")
    _profile(p)

    p = sub.add_parser("train", help="train one method on one dataset (BEST + LATEST checkpoints)")
    _profile(p)
    p.add_argument("--dataset", required=True, choices=DATASET_CHOICES)
    p.add_argument("--method", required=True, choices=TRAINABLE, help="a method with its own training run")
    p.add_argument("--out", help="run folder (default: the profile's cache)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda when available)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--dry-run", action="store_true",
                   help="print the projected disk footprint of the tensor caches and the free space; exit "
                        "non-zero, training nothing, when they would not fit")
    p.add_argument("--allow-incomplete", action="store_true", default=None,
                   help="train on the listed clips whose frame and WAV exist, recording the list used and "
                        "its counts in the run's run.json (default: the profile's train.allow_incomplete, "
                        "else stop with an error naming the missing files)")

    p = sub.add_parser("evaluate", help="per-sample results of a run on the extended test set")
    _profile(p, default=None)
    p.add_argument("--run", help="a training run folder (its run.json names profile, dataset, method)")
    p.add_argument("--dataset", choices=DATASET_CHOICES)
    p.add_argument("--method", choices=sorted(METHODS),
                   help="method to evaluate (default: the run's; e.g. ezvsl_ogl on an ezvsl run)")
    p.add_argument("--checkpoint", default="latest",
                   help="best or latest (the run's), none (training-free references), or a checkpoint "
                        "file such as an official EZ-VSL best.pth")
    p.add_argument("--out", help="per-sample CSV path (default results/<profile>/samples/...)")
    p.add_argument("--device")
    p.add_argument("--allow-incomplete", "--skip-bad", dest="allow_incomplete", action="store_true", default=None,
                   help="leave out samples whose frame/WAV is missing or unreadable, listing them in "
                        "results/<profile>/skipped/; the results and tables say 'N of M' (default: the "
                        "profile's evaluate.allow_incomplete, else stop with an error naming the samples)")

    p = sub.add_parser("localize", help="a method's map over your own clip, its confidence and the detection decision")
    p.add_argument("--checkpoint", required=True,
                   help="best.pt/latest.pt of a run (its run.json gives method, dataset, profile) or a released "
                        "checkpoint such as EZ-VSL's best.pth (then give --profile paper)")
    p.add_argument("--method", help="default: the run's method, else ezvsl (e.g. ezvsl_ogl on an ezvsl run)")
    _profile(p, default=None)
    p.add_argument("--dataset", choices=DATASET_CHOICES, help="default: the run's (matters for OGL)")
    p.add_argument("--video", help="a video file: its middle frame and its sound (decoded with PyAV)")
    p.add_argument("--image", help="a frame (with --audio)")
    p.add_argument("--audio", help="the sound (with --image): a WAV, or any file PyAV decodes")
    p.add_argument("--out", required=True, help="the overlay PNG to write")
    decision = p.add_mutually_exclusive_group()
    decision.add_argument("--threshold", type=float, help="detection threshold on the method's confidence")
    decision.add_argument("--evaluation",
                          help="a per-sample CSV (or a results folder holding it): the threshold is its max-F1 "
                               "operating point")
    p.add_argument("--sample-rate", type=int,
                   help="the rate the model expects (default: that of the profile's data; other rates are resampled)")
    p.add_argument("--device")

    p = sub.add_parser("tables", help="Tables 1-4 and figures from the per-sample CSVs")
    _profile(p)

    bench = sub.add_parser("bench", help="benchmarks").add_subparsers(dest="bench_command", required=True)
    p = bench.add_parser("train", help="training throughput (pairs/s), model-only and with the data pipeline")
    _profile(p)
    p.add_argument("--dataset", choices=DATASET_CHOICES, help="whose training pairs (default: the profile's first)")
    p.add_argument("--method", default="ezvsl", choices=TRAINABLE)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--synthetic-size", type=int, help="model-only run on random tensors at this image size")
    p.add_argument("--device")
    p = bench.add_parser("loader", help="train-cache bytes per pair and DataLoader pairs/s per core, each storage")
    p.add_argument("--pairs", type=int, default=5000, help="synthetic training pairs (generated once, cached)")
    p.add_argument("--size", type=int, default=224, help="crop size (frames are resized to int(1.1 size))")
    p.add_argument("--storage", nargs="+", choices=STORAGES, default=list(STORAGES))
    p.add_argument("--workers", nargs="+", type=int, default=[1, 2], help="DataLoader worker counts to time")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--batches", type=int, help="batches timed per run (default: one epoch)")
    p.add_argument("--dataset", choices=DATASET_CHOICES, help="whose synthetic counterpart (default: the first)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run a command; bad input ends with one line naming the problem (VSLREPRO_DEBUG=1: traceback)."""
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except (ValueError, FileNotFoundError, RuntimeError) as error:  # DataError, ProfileError: ValueErrors
        if os.environ.get("VSLREPRO_DEBUG"):
            raise
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    if args.command == "reproduce":
        return main_reproduce(args.profile, force=args.force, only=args.only, jobs=args.jobs)
    if args.command == "data" and args.data_command == "synth":
        manifest = generate(args.out, scale=args.profile, seed=args.seed, workers=args.workers)
        print(f"wrote the {args.profile} synthetic benchmark (seed {args.seed}) to {args.out}")
        print({k: v for k, v in manifest.items() if k in ("counts", "seconds")})
        return 0
    if args.command == "data" and args.data_command == "check":
        datasets, window, rate = resolve_datasets(profile=args.profile, dataset=args.dataset, root=args.root,
                                                  metadata=args.metadata, train_root=args.train_root,
                                                  train_list=args.train_list, variant=args.variant)
        min_seconds = args.min_seconds if args.min_seconds is not None else window or DEFAULT_MIN_SECONDS
        return run_check(datasets, sample_rate=args.sample_rate or rate, min_seconds=min_seconds,
                         min_coverage=args.min_coverage, workers=args.workers, out=args.out,
                         usable_train_out=args.usable_train_out)
    if args.command == "data" and args.data_command == "audit":
        root = args.root
        if root is None and args.profile is not None and args.dataset is not None:
            root = locate(load_profile(args.profile), args.dataset).metadata_root
        return run_audit(args.train, dataset=args.dataset, metadata_root=root, vggsound_csv=args.vggsound_csv,
                         extra=args.test, clean_out=args.clean_out, out=args.out)
    if args.command == "data" and args.data_command == "prepare":
        report = prepare_videos(args.videos, args.out, time=args.time, frame_index=args.frame_index,
                                workers=args.workers, sample_rate=args.sample_rate, ids=args.ids,
                                report=args.report, progress=True)
        print(report["counts"])
        for entry in report["failed"]:
            print(f"failed: {entry['video']}: {entry['error']}")
        return 1 if report["failed"] else 0
    if args.command == "data" and args.data_command == "table1":
        table, paths = stages.table1(args.profile, out=args.out)
        print(table.to_string())
        print("written:", *map(str, paths.values()))
        return 0
    if args.command == "pretrain":
        print(stages.object_prior(args.profile))
        return 0
    if args.command == "train" and args.dry_run:
        report, fits = footprint_report(stages.resolve(args.profile), [args.dataset])
        print(report)
        return 0 if fits else 1
    if args.command == "train":
        run = stages.train(args.profile, args.dataset, args.method, out=args.out, device=args.device,
                           progress=not args.no_progress, allow_incomplete=args.allow_incomplete)
        print(f"run folder: {run}")
        return 0
    if args.command == "evaluate":
        path = stages.evaluate(args.profile, args.dataset, args.method, args.checkpoint, run=args.run,
                               out=args.out, device=args.device, allow_incomplete=args.allow_incomplete)
        print(f"per-sample results: {path}")
        return 0
    if args.command == "localize":
        localize(args.checkpoint, args.out, video=args.video, image=args.image, audio=args.audio,
                 method=args.method, profile=args.profile, dataset=args.dataset, threshold=args.threshold,
                 evaluation=args.evaluation, sample_rate=args.sample_rate, device=args.device)
        return 0
    if args.command == "tables":
        for name, path in stages.tables(args.profile).items():
            print(f"{name}: {path}")
        return 0
    if args.command == "bench" and args.bench_command == "loader":
        bench_loader(pairs=args.pairs, size=args.size, storages=tuple(args.storage), workers=tuple(args.workers),
                     batch_size=args.batch_size, batches=args.batches, dataset=args.dataset)
        return 0
    if args.command == "bench":
        bench_train(args.profile, method=args.method, dataset=args.dataset, batch_size=args.batch_size,
                    steps=args.steps, synthetic_size=args.synthetic_size, device=args.device)
        return 0
    raise AssertionError(args)


if __name__ == "__main__":
    sys.exit(main())
