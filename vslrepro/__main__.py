"""The command line: every pipeline step can run without a notebook.

    python -m vslrepro reproduce --profile quick            # the whole pipeline (papermill)
    python -m vslrepro data synth --profile quick --out DIR  # the embedded synthetic benchmark
    python -m vslrepro data table1 --profile quick           # Table 1 of a profile's test sets
    python -m vslrepro pretrain --profile quick              # object prior (ImageNet stand-in)
    python -m vslrepro train --profile quick --dataset vggss --method ezvsl [--out DIR] [--allow-incomplete]
    python -m vslrepro evaluate --profile quick --dataset vggss --method ezvsl --checkpoint latest
    python -m vslrepro evaluate --run DIR --checkpoint best [--method ezvsl_ogl]
    python -m vslrepro evaluate --profile paper --dataset flickr --method ezvsl --checkpoint best.pth
    python -m vslrepro tables --profile quick
    python -m vslrepro localize --checkpoint RUN/latest.pt --video clip.mp4 --out overlay.png
    python -m vslrepro bench train --profile quick
"""

from __future__ import annotations

import argparse
import os
import sys


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
    p.add_argument("--profile", default="quick", choices=["smoke", "quick"], help="benchmark scale")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1, help="processes writing clips (same files for any number)")
    p = data.add_parser("table1", help="Table 1 (extended test-set statistics) of a profile's data")
    _profile(p)
    p.add_argument("--out", help="output stem (default results/<profile>/tables/table1)")

    p = sub.add_parser("pretrain", help="object-prior pretraining of the image backbone")
    _profile(p)

    p = sub.add_parser("train", help="train one method on one dataset (BEST + LATEST checkpoints)")
    _profile(p)
    p.add_argument("--dataset", required=True, choices=["flickr", "vggss"])
    p.add_argument("--method", required=True)
    p.add_argument("--out", help="run folder (default: the profile's cache)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda when available)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--allow-incomplete", action="store_true", default=None,
                   help="train on the listed clips whose frame and WAV exist, recording the list used and "
                        "its counts in the run's run.json (default: the profile's train.allow_incomplete, "
                        "else stop with an error naming the missing files)")

    p = sub.add_parser("evaluate", help="per-sample results of a run on the extended test set")
    _profile(p, default=None)
    p.add_argument("--run", help="a training run folder (its run.json names profile, dataset, method)")
    p.add_argument("--dataset", choices=["flickr", "vggss"])
    p.add_argument("--method", help="method to evaluate (default: the run's; e.g. ezvsl_ogl on an ezvsl run)")
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
    p.add_argument("--dataset", choices=["flickr", "vggss"], help="default: the run's (matters for OGL)")
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
    p.add_argument("--dataset", default="vggss", choices=["flickr", "vggss"])
    p.add_argument("--method", default="ezvsl")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--synthetic-size", type=int, help="model-only run on random tensors at this image size")
    p.add_argument("--device")
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
        from vslrepro.pipeline import main_reproduce
        return main_reproduce(args.profile, force=args.force, only=args.only, jobs=args.jobs)
    if args.command == "data" and args.data_command == "synth":
        from vslrepro.data.synth import generate
        manifest = generate(args.out, scale=args.profile, seed=args.seed, workers=args.workers)
        print(f"wrote the {args.profile} synthetic benchmark (seed {args.seed}) to {args.out}")
        print({k: v for k, v in manifest.items() if k in ("counts", "seconds")})
        return 0
    from vslrepro import stages
    if args.command == "data" and args.data_command == "table1":
        table, paths = stages.table1(args.profile, out=args.out)
        print(table.to_string())
        print("written:", *map(str, paths.values()))
        return 0
    if args.command == "pretrain":
        print(stages.object_prior(args.profile))
        return 0
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
        from vslrepro.localize import run as localize

        localize(args.checkpoint, args.out, video=args.video, image=args.image, audio=args.audio,
                 method=args.method, profile=args.profile, dataset=args.dataset, threshold=args.threshold,
                 evaluation=args.evaluation, sample_rate=args.sample_rate, device=args.device)
        return 0
    if args.command == "tables":
        for name, path in stages.tables(args.profile).items():
            print(f"{name}: {path}")
        return 0
    if args.command == "bench":
        from vslrepro.bench import bench_train
        bench_train(args)
        return 0
    raise AssertionError(args)


if __name__ == "__main__":
    sys.exit(main())
