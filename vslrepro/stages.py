"""The pipeline's steps as plain functions: the notebooks and the CLI call these, nothing else.

Each step takes a profile (name, YAML path or an already-loaded dict) and writes its outputs under
`results/<profile>/` (tables, figures, per-sample CSVs) or the cache (data, checkpoints).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd

from vslrepro.paths import results_dir, runs_dir
from vslrepro.profiles import dataset_config, load_profile, synthetic_root

DATASET_NAMES = {"flickr": "Extended Flickr-SoundNet", "vggss": "Extended VGG-SS"}


def resolve(profile: str | Path | dict[str, Any]) -> dict[str, Any]:
    """A loaded profile dict, from a name, a YAML path or a dict."""
    return dict(profile) if isinstance(profile, dict) else load_profile(profile)


def display_dataset(params: dict[str, Any], name: str) -> str:
    prefix = "Synthetic " if params["data"]["source"] == "synthetic" else ""
    return prefix + DATASET_NAMES[name]


# ---------------------------------------------------------------- 00 data

def prepare_data(profile) -> dict[str, Any]:
    """Generate the synthetic benchmark of a profile (once), or check that real roots exist."""
    params = resolve(profile)
    if params["data"]["source"] == "synthetic":
        root = synthetic_root(params)
        manifest = root / "manifest.json"
        if not manifest.is_file():
            from vslrepro.data.synth import generate
            generate(root, scale=params["data"]["synth_scale"], seed=int(params["seed"]))
        return json.loads(manifest.read_text())
    missing = []
    for name in params["datasets"]:
        cfg = dataset_config(params, name)
        for path in (cfg.train_root, cfg.train_list, cfg.test_root, cfg.metadata_root / "metadata"):
            if not Path(path).exists():
                missing.append(f"{name}: {path}")
    if missing:
        raise FileNotFoundError("profile " + params["profile"] + " points at data that is not there:\n  "
                                + "\n  ".join(missing) + "\nedit the data section of its YAML file")
    return {"source": "real", "datasets": {n: dataset_config(params, n).as_dict() for n in params["datasets"]}}


# ---------------------------------------------------------------- 01 test sets / Table 1

def testsets(profile) -> dict[str, pd.DataFrame]:
    """The extended test-set index of every dataset of the profile (metadata only)."""
    from vslrepro.data.testsets import extended_testset

    params = resolve(profile)
    out = {}
    for name in params["datasets"]:
        cfg = dataset_config(params, name)
        out[name] = extended_testset(name, cfg.metadata_root, flickr_list=cfg.flickr_list)
    return out


def table1(profile, out: str | Path | None = None):
    """Table 1 of the profile's extended test sets, exported to csv/md/tex."""
    from vslrepro import tables

    params = resolve(profile)
    prepare_data(params)  # the synthetic benchmark is generated on first use
    sets = {display_dataset(params, name): index for name, index in testsets(params).items()}
    table = tables.with_paper_values(tables.table1(sets), 1)
    stem = Path(out) if out else results_dir(params["profile"]) / "tables" / "table1"
    stem.parent.mkdir(parents=True, exist_ok=True)
    caption = "Statistics of the extended test sets (" + params["profile"] + " profile)"
    return table, tables.export(table, stem, caption=caption)


# ---------------------------------------------------------------- 02 object prior

def object_prior(profile) -> dict[str, Any]:
    """The image-backbone weights that stand in for ImageNet (cached), and how they were made."""
    from vslrepro.methods.loading import object_prior_weights

    params = resolve(profile)
    return object_prior_weights(params, info_only=True)


# ---------------------------------------------------------------- 03 train

def run_key(params: dict[str, Any]) -> str:
    """Hash of everything a training run depends on (not the evaluation settings)."""
    relevant = {k: params.get(k) for k in ("seed", "data", "input", "model", "object_prior", "train")}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()[:10]


def run_dir(params: dict[str, Any], dataset: str, method: str) -> Path:
    """The cache folder of the training run of (dataset, method) under this profile."""
    return runs_dir(params["profile"]) / f"{dataset}_{method}_{run_key(params)}"


def train(profile, dataset: str, method: str, *, out: str | Path | None = None,
          device: str | None = None, progress: bool = True) -> Path:
    """Train (or resume, or find finished) the run of `method` on `dataset`."""
    from vslrepro.train import train_run

    params = resolve(profile)
    return train_run(params, dataset, method, out or run_dir(params, dataset, method),
                     device=device, progress=progress)


def history(profile, dataset: str, method: str) -> pd.DataFrame:
    """Per-epoch loss and validation scores of a finished run."""
    params = resolve(profile)
    return pd.read_csv(run_dir(params, dataset, method) / "history.csv")


# ---------------------------------------------------------------- 04 evaluate

def samples_path(params: dict[str, Any], dataset: str, method: str, checkpoint: str) -> Path:
    return results_dir(params["profile"]) / "samples" / f"{dataset}_{method}_{checkpoint}.csv"


def checkpoints_of(method: str) -> list[str]:
    """BEST and LATEST for methods with a training run, "none" for training-free references."""
    from vslrepro.methods import method_info

    info = method_info(method)
    return ["best", "latest"] if (info.trainable or info.trains_as) else ["none"]


def _resolve_run(profile, dataset: str | None, method: str | None, run: str | Path | None):
    """(params, dataset, method, run folder or None) from a profile or from a run's run.json."""
    from vslrepro.methods import method_info

    if run is not None:
        recorded = json.loads((Path(run) / "run.json").read_text())
        params = recorded["params"] if profile is None else resolve(profile)
        return params, dataset or recorded["dataset"], method or recorded["method"], Path(run)
    if profile is None or dataset is None or method is None:
        raise ValueError("evaluate needs --run DIR, or --profile, --dataset and --method")
    params = resolve(profile)
    info = method_info(method)
    base = info.trains_as or method
    return params, dataset, method, (run_dir(params, dataset, base) if (info.trainable or info.trains_as) else None)


def evaluate(profile, dataset: str | None, method: str | None, checkpoint: str = "latest", *,
             run: str | Path | None = None, out: str | Path | None = None,
             device: str | None = None, progress: bool = True, skip_bad: bool = False) -> Path:
    """Per-sample results of one method/checkpoint on the extended test set, as CSV.

    A missing or unreadable frame/WAV stops the evaluation with an error naming it; with
    `skip_bad`, such samples are left out and listed in `<csv stem>.skipped.csv` (and counted in the
    provenance JSON) instead — never replaced by another sample.
    """
    import torch

    from vslrepro.data.errors import SkipLog
    from vslrepro.data.splits import test_split
    from vslrepro.evaluate import score_samples, write_samples
    from vslrepro.methods.loading import load_for_evaluation
    from vslrepro.provenance import environment

    params, dataset, method, run = _resolve_run(profile, dataset, method, run)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = load_for_evaluation(params, method, dataset, run, checkpoint).to(dev)
    skip = SkipLog() if skip_bad else None
    index, cache = test_split(params, dataset, skip=skip, progress=progress)
    ev = params["evaluate"]
    samples = score_samples(model, index, cache, dataset, batch_size=ev["batch_size"], device=dev,
                            image_size=params["input"]["image_size"], binarize=ev["binarize"],
                            pred_size=ev["pred_size"], pred_thr=ev["pred_thr"], progress=progress)
    path = Path(out) if out else samples_path(params, dataset, method, checkpoint)
    provenance = {"dataset": dataset, "method": method, "checkpoint": checkpoint,
                  "run": str(run) if run else None, "flickr_list": index.attrs.get("flickr_list"),
                  "skipped": len(skip) if skip is not None else 0, "params": params,
                  "environment": environment()}
    if skip is not None and len(skip):
        skip.write_csv(path.with_name(path.stem + ".skipped.csv"))
    return write_samples(samples, path, primary_confidence=ev["confidence"], provenance=provenance)


# ---------------------------------------------------------------- 05 tables

def load_samples(profile) -> pd.DataFrame:
    """Every per-sample CSV of the profile, concatenated with `dataset`, `method`, `checkpoint`."""
    params = resolve(profile)
    frames = []
    for path in sorted((results_dir(params["profile"]) / "samples").glob("*.csv")):
        meta = json.loads(path.with_suffix(".json").read_text())
        frame = pd.read_csv(path, keep_default_na=False, dtype={"video": str, "audio": str})
        frame.insert(0, "checkpoint", meta["checkpoint"])
        frame.insert(0, "method", meta["method"])
        frame.insert(0, "dataset", meta["dataset"])
        frames.append(frame)
    if not frames:
        raise FileNotFoundError(f"no per-sample CSVs under {results_dir(params['profile']) / 'samples'}")
    return pd.concat(frames, ignore_index=True)


def tables(profile) -> dict[str, Path]:
    """Tables 1–4 (ours beside the paper's values) from the profile's per-sample CSVs."""
    from vslrepro import tables as tb

    params = resolve(profile)
    samples = load_samples(params)
    ev = params["evaluate"]
    folder = results_dir(params["profile"]) / "tables"
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    built = {2: tb.table2(samples, iou_thr=ev["iou_thr"]),
             3: tb.table3(samples, mode=ev["mode"], iou_thr=ev["iou_thr"]),
             4: tb.table4(samples, seed=int(params["seed"]), mode=ev["mode"], iou_thr=ev["iou_thr"])}
    for number, table in built.items():
        name = f"table{number}"
        table = tb.with_paper_values(table, number)
        written[name] = tb.export(table, folder / name, caption=f"{name} ({params['profile']} profile)")["csv"]
    caption = (f"Beyond the paper: {int(ev['n_boot'])}-replicate stratified bootstrap 95 % intervals "
               f"(seed {params['seed']}) and Table 4's spread over {int(ev.get('table4_draws', 10))} draws "
               f"of positives ({params['profile']} profile)")
    written["intervals"] = tb.export(intervals(params, samples), folder / "intervals", caption=caption)["csv"]
    return written


def intervals(params: dict[str, Any], samples: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, method, checkpoint): LocAcc, AP, max-F1 with bootstrap intervals (x100), and the
    mean ± std of Table 4's max-F1 per negative type over several draws of positives."""
    from vslrepro import metrics

    ev, seed = params["evaluate"], int(params["seed"])
    rows = []
    for (dataset, method, checkpoint), group in samples.groupby(["dataset", "method", "checkpoint"], sort=False):
        row = {"dataset": dataset, "method": method, "checkpoint": checkpoint}
        ci = metrics.bootstrap(group, ("locacc", "ap", "max_f1"), n_boot=int(ev["n_boot"]), seed=seed,
                               mode=ev["mode"], iou_thr=ev["iou_thr"])
        for stat, values in ci.iterrows():
            row.update({stat: 100 * values["estimate"], f"{stat}_low": 100 * values["low"],
                        f"{stat}_high": 100 * values["high"]})
        spread = metrics.negative_type_breakdown(group, seed=seed, n_draws=int(ev.get("table4_draws", 10)),
                                                 mode=ev["mode"], iou_thr=ev["iou_thr"])
        for neg_type, values in spread.iterrows():
            row[f"max_f1_{neg_type}_mean"] = 100 * values["max_f1"]
            row[f"max_f1_{neg_type}_std"] = 100 * values.get("max_f1_std", 0.0)
        rows.append(row)
    return pd.DataFrame(rows).set_index(["dataset", "method", "checkpoint"])


# ---------------------------------------------------------------- figures and summaries

def preview_data(profile, n: int = 8) -> list[Path]:
    """One figure per dataset: test frames with their boxes, and a few negatives."""
    from vslrepro import figures

    params = resolve(profile)
    paths = []
    for name, index in testsets(params).items():
        cfg = dataset_config(params, name)
        path = results_dir(params["profile"]) / "figures" / f"data_{name}.png"
        paths.append(figures.data_preview(cfg.test_root, index, path, n=n,
                                          title=display_dataset(params, name)))
    return paths


def plot_history(profile, dataset: str, method: str) -> Path:
    """Training curves of a run, saved under results/<profile>/figures/ (history.csv copied beside)."""
    from vslrepro import figures

    params = resolve(profile)
    table = history(params, dataset, method)
    folder = results_dir(params["profile"]) / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    table.drop(columns=["seconds"]).to_csv(results_dir(params["profile"]) / f"history_{dataset}_{method}.csv",
                                           index=False, float_format="%.6g")
    return figures.training_curves(table, folder / f"training_{dataset}_{method}.png",
                                   title=f"{method} on {display_dataset(params, dataset)}")


def summary_table(profile, dataset: str, method: str) -> pd.DataFrame:
    """LocAcc, AUC, AP, max-F1 of one method's per-sample CSVs (one row per checkpoint)."""
    from vslrepro import metrics

    params = resolve(profile)
    ev = params["evaluate"]
    rows = {}
    for checkpoint in checkpoints_of(method):
        samples = pd.read_csv(samples_path(params, dataset, method, checkpoint), keep_default_na=False)
        stats = metrics.summarize(samples["ciou"].to_numpy(float), samples["confidence"].to_numpy(float),
                                  samples["positive"].to_numpy(bool), iou_thr=ev["iou_thr"], mode=ev["mode"])
        rows[checkpoint] = {k: float(stats[k]) for k in ("locacc", "auc", "ap", "max_f1")}
    return pd.DataFrame.from_dict(rows, orient="index")


def plot_pr_curves(profile, checkpoint: str = "latest") -> list[Path]:
    """Precision–recall curves (exact sweep) of every method, one figure per dataset."""
    from vslrepro import figures, metrics
    from vslrepro.methods import method_info

    params = resolve(profile)
    samples = load_samples(params)
    paths = []
    for dataset, group in samples.groupby("dataset"):
        curves = {}
        for method, rows in group.groupby("method"):
            ckpt = checkpoint if checkpoint in set(rows["checkpoint"]) else rows["checkpoint"].iloc[0]
            rows = rows[rows["checkpoint"] == ckpt]
            recall, precision = metrics.pr_curve(rows["ciou"].to_numpy(float), rows["confidence"].to_numpy(float),
                                                 rows["positive"].to_numpy(bool), iou_thr=params["evaluate"]["iou_thr"])
            curves[method_info(method).display_name] = (recall, precision)
        path = results_dir(params["profile"]) / "figures" / f"pr_{dataset}.png"
        paths.append(figures.pr_curves(curves, path, title=display_dataset(params, dataset)))
    return paths


def plot_overlays(profile, dataset: str, method: str, checkpoint: str | None = None, n: int = 8) -> Path:
    """Predicted maps over a few test frames (positives with their ground truth, then negatives)."""
    import numpy as np
    import torch

    from vslrepro import figures
    from vslrepro.data.annotations import gt_map
    from vslrepro.data.cache import normalize_images
    from vslrepro.data.splits import test_split
    from vslrepro.methods.loading import load_for_evaluation

    params, dataset, method, run = _resolve_run(profile, dataset, method, None)
    checkpoint = checkpoint or checkpoints_of(method)[-1]
    model = load_for_evaluation(params, method, dataset, run, checkpoint)
    index, cache = test_split(params, dataset)
    positives = np.flatnonzero(index["positive"].to_numpy(bool))
    negatives = np.flatnonzero(~index["positive"].to_numpy(bool))
    rows = np.r_[positives[: n - n // 4], negatives[: n // 4]]
    images = torch.from_numpy(cache.images[rows].copy())          # (n, 3, S, S) uint8
    with torch.no_grad():
        maps, confidence = model.localize(normalize_images(images), torch.from_numpy(cache.specs[rows].copy()))
    boxes = index.attrs["boxes"]
    gts = np.stack([gt_map(dataset, boxes[index["video"][r]]) if index["positive"][r]
                    else np.zeros((224, 224), np.float32) for r in rows])
    titles = [(f"{index['class'][r]}" if index["positive"][r] else f"negative ({index['neg_type'][r]})")
              + f"\nconf {float(c):.2f}" for r, c in zip(rows, confidence["max"])]
    path = results_dir(params["profile"]) / "figures" / f"overlays_{dataset}_{method}_{checkpoint}.png"
    return figures.overlays(images.permute(0, 2, 3, 1).numpy(), maps.numpy(), gts, titles, path)
