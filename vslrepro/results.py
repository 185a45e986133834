"""Reading a profile's per-sample results back: the long table the paper's tables are built from.

`load_samples` reads exactly the evaluations the profile plans (`vslrepro.layout.evaluations`) —
never whatever CSVs happen to lie in `samples/` — and says which were skipped or are missing.
`coverage_notes` turns the provenance records into the sentences the tables print under
themselves, one per evaluation that left samples out ("evaluated on 190 of 192 listed samples …");
an evaluation of the whole test set adds nothing, so complete results keep their tables unchanged.
`intervals` and `summary` are the numbers beyond the paper: bootstrap intervals and one method's row.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from vslrepro import layout, metrics
from vslrepro.data.datasets import dataset_class
from vslrepro.methods import display_name, method_class


def _read_one(evaluation: layout.Evaluation, params: dict[str, Any]) -> tuple[pd.DataFrame, dict]:
    path = layout.samples_csv(params, evaluation.dataset, evaluation.method, evaluation.checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"per-sample results {path} not found: run the evaluation first "
                                f"(python -m vslrepro evaluate --profile {params['profile']} --dataset "
                                f"{evaluation.dataset} --method {evaluation.method} --checkpoint "
                                f"{evaluation.checkpoint})")
    record = json.loads(layout.samples_record(path).read_text())
    frame = pd.read_csv(path, keep_default_na=False, dtype={"video": str, "audio": str})
    frame.insert(0, "checkpoint", evaluation.checkpoint)
    frame.insert(0, "method", evaluation.method)
    frame.insert(0, "dataset", evaluation.dataset)
    return frame, record


def load_samples(params: dict[str, Any]) -> pd.DataFrame:
    """Every planned per-sample CSV of the profile, concatenated with `dataset`, `method`, `checkpoint`.

    `attrs["records"]` holds each evaluation's provenance record ({(dataset, method, checkpoint): …}).

    Raises:
        FileNotFoundError: a planned evaluation has no per-sample CSV (naming it and the command).
    """
    frames, records = [], {}
    for evaluation in layout.evaluations(params):
        frame, record = _read_one(evaluation, params)
        frames.append(frame)
        records[(evaluation.dataset, evaluation.method, evaluation.checkpoint)] = record
    if not frames:
        raise ValueError(f"profile {params['profile']!r} plans no evaluation (no datasets or methods)")
    samples = pd.concat(frames, ignore_index=True)
    samples.attrs["records"] = records
    return samples


def coverage_notes(samples: pd.DataFrame, checkpoints: tuple[str, ...] | None = None) -> list[str]:
    """One sentence per evaluation that left samples out (`evaluate --allow-incomplete`), else nothing.

    Args:
        samples: `load_samples`'s table (its `attrs["records"]`).
        checkpoints: only the evaluations at these checkpoints (those a table shows); None: all.
    """
    notes = []
    for (dataset, method, checkpoint), record in samples.attrs.get("records", {}).items():
        if checkpoints is not None and checkpoint not in checkpoints:
            continue
        skipped = int(record.get("skipped", 0))
        if skipped:
            left_out = record.get("left_out") or []
            ids = (f" (ids {', '.join(map(str, left_out[:5]))}" + (f" and {len(left_out) - 5} more" if len(left_out) > 5
                                                                      else "") + ")") if left_out else ""
            notes.append(f"{dataset} / {display_name(method)} / {checkpoint}: evaluated on {record['evaluated']} "
                         f"of {record['listed']} listed samples; {skipped} left out for missing or unreadable "
                         f"media{ids}, listed in {record.get('skip_log')}")
    return notes


def intervals(params: dict[str, Any], samples: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, method, checkpoint): LocAcc, AP, max-F1 with bootstrap intervals (×100), and the
    mean ± std of Table 4's max-F1 per negative type over several draws of positives. A test set of
    positives only (IS3) has LocAcc alone: AP, max-F1 and Table 4 need negatives."""
    ev, seed = params["evaluate"], int(params["seed"])
    rows = []
    for (dataset, method, checkpoint), group in samples.groupby(["dataset", "method", "checkpoint"], sort=False):
        row = {"dataset": dataset, "method": method, "checkpoint": checkpoint}
        negatives = dataset_class(dataset).has_negatives()
        ci = metrics.bootstrap(group, ("locacc", "ap", "max_f1") if negatives else ("locacc",),
                               n_boot=int(ev["n_boot"]), seed=seed, mode=ev["mode"], iou_thr=ev["iou_thr"])
        for stat, values in ci.iterrows():
            row.update({stat: 100 * values["estimate"], f"{stat}_low": 100 * values["low"],
                        f"{stat}_high": 100 * values["high"]})
        if not negatives:  # no AP or max-F1 without negatives
            rows.append({**row, **{f"{stat}{end}": float("nan") for stat in ("ap", "max_f1")
                                   for end in ("", "_low", "_high")}})
            continue
        spread = metrics.negative_type_breakdown(group, seed=seed, n_draws=int(ev.get("table4_draws", 10)),
                                                 mode=ev["mode"], iou_thr=ev["iou_thr"])
        for neg_type, values in spread.iterrows():
            row[f"max_f1_{neg_type}_mean"] = 100 * values["max_f1"]
            row[f"max_f1_{neg_type}_std"] = 100 * values.get("max_f1_std", 0.0)
        rows.append(row)
    return pd.DataFrame(rows).set_index(["dataset", "method", "checkpoint"])


def summary(params: dict[str, Any], dataset: str, method: str) -> pd.DataFrame:
    """LocAcc, AUC, AP, max-F1 of one method on one dataset (one row per checkpoint)."""
    ev = params["evaluate"]
    rows = {}
    for evaluation in [layout.Evaluation(dataset, method, c) for c in method_class(method).checkpoints()]:
        frame, _ = _read_one(evaluation, params)
        stats = metrics.summarize(frame["ciou"].to_numpy(float), frame["confidence"].to_numpy(float),
                                  frame["positive"].to_numpy(bool), iou_thr=ev["iou_thr"], mode=ev["mode"])
        rows[evaluation.checkpoint] = {k: float(stats[k]) for k in ("locacc", "auc", "ap", "max_f1")}
    return pd.DataFrame.from_dict(rows, orient="index")
