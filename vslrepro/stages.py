"""The pipeline's steps, one entry point per notebook step: the notebooks and the CLI call these.

Each function takes a profile (a name, a YAML path or an already-loaded dict), does one step with
the library's modules and returns what the notebook shows. Where files go is decided by
`vslrepro.layout`; the logic lives in the modules named in each docstring.

    00 data        prepare_data, preview_data
    01 testsets    testsets, table1
    02 object prior  object_prior
    03 train       train, history, plot_history
    04 evaluate    evaluate, checkpoints_of, plot_overlays, summary_table
    05 tables      tables, plot_pr_curves
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vslrepro import figures, layout, metrics, results
from vslrepro import tables as tb
from vslrepro.data.datasets import dataset_class, extended_name, locate
from vslrepro.data.splits import ensure_data, test_split
from vslrepro.data.testsets import extended_testset
from vslrepro.evaluate import evaluate as evaluate_to_csv
from vslrepro.evaluate import localize_rows, weights_file
from vslrepro.factory import evaluation_model
from vslrepro.methods import display_name, method_class
from vslrepro.pretrained import image_weights_info
from vslrepro.profiles import load_profile
from vslrepro.train import train_run


def resolve(profile: str | Path | dict[str, Any]) -> dict[str, Any]:
    """A loaded profile dict: a name (`params/<name>.yaml`) or a YAML path is read and checked by
    `profiles.load_profile` (a `ProfileError` names the file and key); a dict is taken as it is."""
    return dict(profile) if isinstance(profile, dict) else load_profile(profile)


def display_dataset(params: dict[str, Any], name: str) -> str:
    """The extended test set's row name in Table 1 ("Synthetic …" for the embedded benchmark)."""
    prefix = "Synthetic " if params["data"]["source"] == "synthetic" else ""
    return prefix + extended_name(name)


# ---------------------------------------------------------------- 00 data

def prepare_data(profile) -> dict[str, Any]:
    """Generate the synthetic benchmark of a profile (once), or check that the real roots exist
    (`data.splits.ensure_data`)."""
    return ensure_data(resolve(profile))


def preview_data(profile, n: int = 8) -> list[Path]:
    """One figure per dataset: test frames with their boxes, and a few negatives."""
    params = resolve(profile)
    return [figures.data_preview(locate(params, name).test_root, index, layout.figure(params, f"data_{name}"),
                                 n=n, title=display_dataset(params, name), media=locate(params, name).media)
            for name, index in testsets(params).items()]


# ---------------------------------------------------------------- 01 test sets / Table 1

def testsets(profile) -> dict[str, pd.DataFrame]:
    """The extended test-set index of every dataset of the profile (metadata only)."""
    params = resolve(profile)
    out = {}
    for name in params["datasets"]:
        cfg = locate(params, name)
        out[name] = extended_testset(name, cfg.metadata_root, annotations=cfg.annotations, variant=cfg.list_variant)
    return out


def table1(profile, out: str | Path | None = None):
    """Table 1 of the profile's extended test sets, exported to csv/md/tex."""
    params = resolve(profile)
    prepare_data(params)  # the synthetic benchmark is generated on first use
    sets = {display_dataset(params, name): index for name, index in testsets(params).items()}
    table = tb.with_paper_values(tb.table1(sets), 1)
    stem = Path(out) if out else layout.table_stem(params, "table1")
    caption = "Statistics of the extended test sets (" + params["profile"] + " profile)"
    return table, tb.export(table, stem, caption=caption)


# ---------------------------------------------------------------- 02 object prior

def object_prior(profile) -> dict[str, Any]:
    """The image-backbone weights that stand in for ImageNet (cached), and how they were made."""
    return image_weights_info(resolve(profile))


# ---------------------------------------------------------------- 03 train

def train(profile, dataset: str, method: str, *, out: str | Path | None = None,
          device: str | None = None, progress: bool = True, allow_incomplete: bool | None = None) -> Path:
    """Train (or resume, or find finished) the run of `method` on `dataset` (vslrepro.train).

    `allow_incomplete` (None: the profile's `train.allow_incomplete`) trains on the listed clips
    whose media exist, recording the list used in the run's run.json; it does not change the run
    folder (`layout.run_identity` leaves the permission out: the list used is what counts).
    """
    params = resolve(profile)
    if allow_incomplete is not None:
        params = {**params, "train": {**params["train"], "allow_incomplete": bool(allow_incomplete)}}
    return train_run(params, dataset, method, out or layout.run_dir(params, dataset, method),
                     device=device, progress=progress)


def history(profile, dataset: str, method: str) -> pd.DataFrame:
    """Per-epoch loss and validation scores of a finished run."""
    params = resolve(profile)
    return pd.read_csv(layout.run_dir(params, dataset, method) / "history.csv")


def plot_history(profile, dataset: str, method: str) -> Path:
    """Training curves of a run as a figure; its history.csv is copied under results/ too."""
    params = resolve(profile)
    table = history(params, dataset, method)
    copy = layout.history_copy(params, dataset, method)
    copy.parent.mkdir(parents=True, exist_ok=True)
    table.drop(columns=["seconds"]).to_csv(copy, index=False, float_format="%.6g")
    return figures.training_curves(table, layout.figure(params, f"training_{dataset}_{method}"),
                                   title=f"{display_name(method)} on {display_dataset(params, dataset)}")


# ---------------------------------------------------------------- 04 evaluate

def checkpoints_of(method: str) -> list[str]:
    """BEST and LATEST for methods with a training run, "none" for training-free references."""
    return list(method_class(method).checkpoints())


def _from_run(profile, dataset, method, run) -> tuple[dict[str, Any], str, str]:
    """(params, dataset, method): a profile's, or those recorded in a run folder's run.json."""
    if run is None:
        if profile is None or dataset is None or method is None:
            raise ValueError("evaluate needs --run DIR, or --profile, --dataset and --method")
        return resolve(profile), dataset, method
    recorded = json.loads((Path(run) / "run.json").read_text())
    params = recorded["params"] if profile is None else resolve(profile)
    return params, dataset or recorded["dataset"], method or recorded["method"]


def evaluate(profile, dataset: str | None, method: str | None, checkpoint: str = "latest", *,
             run: str | Path | None = None, out: str | Path | None = None,
             device: str | None = None, progress: bool = True, allow_incomplete: bool | None = None) -> Path:
    """Per-sample results of one method/checkpoint on the extended test set (vslrepro.evaluate).

    `checkpoint` is best/latest (the profile's run, or `run`), "none" (training-free references) or
    the path of a checkpoint file, e.g. an official EZ-VSL `best.pth`. `allow_incomplete` (None:
    the profile's `evaluate.allow_incomplete`) evaluates a test set with missing media on the rest.
    """
    params, dataset, method = _from_run(profile, dataset, method, run)
    return evaluate_to_csv(params, dataset, method, checkpoint, run=run, out=out, device=device,
                           progress=progress, allow_incomplete=allow_incomplete)


def summary_table(profile, dataset: str, method: str) -> pd.DataFrame:
    """LocAcc, AUC, AP, max-F1 of one method's per-sample CSVs (one row per checkpoint)."""
    return results.summary(resolve(profile), dataset, method)


def plot_overlays(profile, dataset: str, method: str, checkpoint: str | None = None, n: int = 8) -> Path:
    """Predicted maps over a few test frames (positives with their ground truth, then negatives)."""
    params = resolve(profile)
    checkpoint = checkpoint or checkpoints_of(method)[-1]
    model = evaluation_model(params, dataset, method, weights_file(params, dataset, method, checkpoint))
    index, cache = test_split(params, dataset)
    positive = index["positive"].to_numpy(bool)
    rows = np.r_[np.flatnonzero(positive)[: n - n // 4], np.flatnonzero(~positive)[: n // 4]]
    shown = localize_rows(model, index, cache, rows, dataset)
    titles = [(f"{index['class'][r]}" if index["positive"][r] else f"negative ({index['neg_type'][r]})")
              + f"\nconf {float(c):.2f}" for r, c in zip(rows, shown["confidence"]["max"])]
    return figures.overlays(shown["images"], shown["maps"], shown["gt"], titles,
                            layout.figure(params, f"overlays_{dataset}_{method}_{checkpoint}"))


# ---------------------------------------------------------------- 05 tables

def tables(profile) -> dict[str, Path]:
    """Tables 2–4 (ours beside the paper's values) and the intervals, from the planned per-sample
    CSVs; a note under a table names each evaluation it shows that covers only N of M listed samples
    (vslrepro.results.coverage_notes)."""
    params = resolve(profile)
    samples = results.load_samples(params)
    ev = params["evaluate"]
    shown = {2: ("best", "latest", tb.REFERENCE_CHECKPOINT), 3: ("latest", tb.REFERENCE_CHECKPOINT),
             4: ("latest", tb.REFERENCE_CHECKPOINT)}  # the checkpoints each table reads
    built = {2: tb.table2(samples, iou_thr=ev["iou_thr"]),
             3: tb.table3(samples, mode=ev["mode"], iou_thr=ev["iou_thr"]),
             4: tb.table4(samples, seed=int(params["seed"]), mode=ev["mode"], iou_thr=ev["iou_thr"])}
    written: dict[str, Path] = {}
    for number, table in built.items():
        name = f"table{number}"
        table = tb.with_paper_values(table, number)
        table.attrs["notes"] = results.coverage_notes(samples, shown[number]) + table.attrs.get("notes", [])
        written[name] = tb.export(table, layout.table_stem(params, name),
                                  caption=f"{name} ({params['profile']} profile)")["csv"]
    caption = (f"Beyond the paper: {int(ev['n_boot'])}-replicate stratified bootstrap 95 % intervals "
               f"(seed {params['seed']}) and Table 4's spread over {int(ev.get('table4_draws', 10))} draws "
               f"of positives ({params['profile']} profile)")
    spread = results.intervals(params, samples)
    spread.attrs["notes"] = results.coverage_notes(samples)
    written["intervals"] = tb.export(spread, layout.table_stem(params, "intervals"), caption=caption)["csv"]
    return written


def plot_pr_curves(profile, checkpoint: str = "latest") -> list[Path]:
    """Precision–recall curves (exact sweep) of every method, one figure per dataset with negatives."""
    params = resolve(profile)
    samples = results.load_samples(params)
    paths = []
    for dataset, group in samples.groupby("dataset", sort=False):
        if not dataset_class(dataset).has_negatives():
            continue  # positives only: no precision-recall trade-off
        curves = {}
        for method, rows in group.groupby("method", sort=False):
            ckpt = checkpoint if checkpoint in set(rows["checkpoint"]) else rows["checkpoint"].iloc[0]
            rows = rows[rows["checkpoint"] == ckpt]
            curves[display_name(method)] = metrics.pr_curve(
                rows["ciou"].to_numpy(float), rows["confidence"].to_numpy(float),
                rows["positive"].to_numpy(bool), iou_thr=params["evaluate"]["iou_thr"])
        paths.append(figures.pr_curves(curves, layout.figure(params, f"pr_{dataset}"),
                                       title=display_dataset(params, dataset)))
    return paths
