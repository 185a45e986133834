"""The paper's Tables 1–4 as DataFrames, the published values beside ours, and csv/md/tex export.

Tables 2–4 are built from a *long* per-sample DataFrame: the per-sample CSVs that the evaluate step
writes (one per dataset × method × checkpoint; columns video, audio, positive, neg_type, size, area,
n_boxes, class, ciou, confidence, confidence_<kind>...) concatenated, with three more columns:
`dataset` (a registered dataset), `method` (registry name) and `checkpoint` ("best"/"latest", or "none" for
training-free references such as the centre prior, which then fill both checkpoint columns).
Rows are methods (display names from the method registry) in the order of the per-sample table (the
profile's order); `with_paper_values` puts the paper's rows first, in the paper's order, then ours. Columns are
a (Dataset, Metric) MultiIndex.
"""

from __future__ import annotations

import functools
import importlib.resources
import io
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import pandas as pd

from vslrepro import metrics
from vslrepro.data.datasets import DATASETS, dataset_class, extended_name
from vslrepro.data.datasets import display_name as dataset_display_name
from vslrepro.methods import METHODS, display_name

REFERENCE_CHECKPOINT = "none"
SIZE_COLUMNS = {"small": "Small", "medium": "Medium", "large": "Large", "huge": "Huge"}
NEG_COLUMNS = {"real": "Real Neg", "easy": "Automated Easy Neg", "hard": "Automated Hard Neg",
               "automated": "Automated Neg (class unknown)"}
TABLE1_COLUMNS = ("Small", "Medium", "Large", "Huge", "Total Pos", "Real Neg", "Automated Easy Neg",
                  "Automated Hard Neg", "Total Neg", "Total")
TABLE2_COLUMNS = ("Early Stop", "NO Early Stop")
TABLE3_COLUMNS = {"AP": "ap", "max-F1": "max_f1", "Precision": "precision"}
COLUMN_NAMES = ["Dataset", "Metric"]


def _display(method: str) -> str:
    """A row name: the registered method's display name, else the paper's name for a paper-only row."""
    if method in METHODS:
        return display_name(method)
    return paper_display_names().get(method, method)


@functools.cache
def paper_display_names() -> dict[str, str]:
    """{method key: the paper's row name} for the methods of `paper_values.csv` (read once)."""
    ref = paper_values()
    return dict(zip(ref["method"], ref["display"]))


def _check_long(samples: pd.DataFrame, extra: tuple[str, ...] = ()) -> None:
    needed = ("dataset", "method", "checkpoint", "positive", "ciou") + extra
    missing = [c for c in needed if c not in samples.columns]
    if missing:
        raise ValueError(f"long per-sample table lacks column(s) {missing}; it has {list(samples.columns)}")


def _runs(samples: pd.DataFrame, checkpoint: str) -> dict[tuple[str, str], pd.DataFrame]:
    """{(dataset, method): rows} at `checkpoint`, or at "none" for methods that have only that."""
    out = {}
    for (dataset, method), rows in samples.groupby(["dataset", "method"], sort=False):
        for ckpt in (checkpoint, REFERENCE_CHECKPOINT):
            picked = rows[rows["checkpoint"] == ckpt]
            if not picked.empty:
                out[(dataset, method)] = picked
                break
    return out


def _grid(values: dict[tuple[str, str, str], float], label: Callable[[str], str],
          columns: tuple[str, ...]) -> pd.DataFrame:
    """A methods × (Dataset, Metric) table from {(dataset, method, column): value}; datasets and
    methods in the order the values were computed in (the profile's), datasets named by `label`."""
    datasets = list(dict.fromkeys(k[0] for k in values))
    methods = list(dict.fromkeys(k[1] for k in values))
    table = pd.DataFrame(
        [[values.get((d, m, c), np.nan) for d in datasets for c in columns] for m in methods],
        index=pd.Index([_display(m) for m in methods], name="Method"),
        columns=pd.MultiIndex.from_tuples([(label(d), c) for d in datasets for c in columns],
                                          names=COLUMN_NAMES))
    return table


def _without_negatives(samples: pd.DataFrame) -> list[str]:
    """The datasets of `samples` whose test sets have no negatives (IS3), in order."""
    return [d for d in dict.fromkeys(samples["dataset"]) if d in DATASETS and not dataset_class(d).has_negatives()]


def _note_positives_only(table: pd.DataFrame, skipped: list[str], what: str) -> pd.DataFrame:
    """Say under `table` which test sets it leaves out for having no negatives."""
    if skipped:
        names = ", ".join(dataset_display_name(d) for d in skipped)
        table.attrs.setdefault("notes", []).append(
            f"{names}: positives only (no negatives), so {what} is not defined; its LocAcc is in Table 2")
    return table


def table1(sets: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Statistics of the extended test sets (Table 1).

    Args:
        sets: {row name: extended test-set index} with columns positive, size (small/medium/large/huge
            for positives) and neg_type (real/easy/hard/automated for negatives).

    Returns:
        int DataFrame, one row per set, columns exactly TABLE1_COLUMNS; "Automated Neg (class unknown)"
        is inserted before "Total Neg" only when some set has negatives of type "automated".

    Raises:
        ValueError: a missing column, a positive with an unknown size or a negative with an unknown type
            (naming the set and the video).
    """
    rows, unknown_class = {}, False
    for name, index in sets.items():
        missing = [c for c in ("positive", "size", "neg_type") if c not in index.columns]
        if missing:
            raise ValueError(f"test set {name!r} lacks column(s) {missing}")
        positive = index["positive"].astype(bool)
        pos, neg = index[positive], index[~positive]
        for frame, column, allowed in ((pos, "size", SIZE_COLUMNS), (neg, "neg_type", NEG_COLUMNS)):
            bad = ~frame[column].isin(list(allowed))
            if bad.any():
                row = frame[bad].iloc[0]
                raise ValueError(f"test set {name!r}: {row.get('video', row.name)!r} has {column} "
                                 f"{row[column]!r}, expected one of {list(allowed)}")
        counts = {label: int((pos["size"] == key).sum()) for key, label in SIZE_COLUMNS.items()}
        counts.update({label: int((neg["neg_type"] == key).sum()) for key, label in NEG_COLUMNS.items()})
        unknown_class |= counts[NEG_COLUMNS["automated"]] > 0
        counts.update({"Total Pos": len(pos), "Total Neg": len(neg), "Total": len(index)})
        rows[name] = counts
    columns = list(TABLE1_COLUMNS)
    if unknown_class:
        columns.insert(columns.index("Total Neg"), NEG_COLUMNS["automated"])
    table = pd.DataFrame.from_dict(rows, orient="index").reindex(columns=columns).astype(int)
    table.index.name = "Test set"
    return table


def table2(samples: pd.DataFrame, *, iou_thr: float = 0.5) -> pd.DataFrame:
    """LocAcc × 100 with early stopping (BEST checkpoint) and without (LATEST) (Table 2).

    LocAcc is computed over the positives only, i.e. on the original (non-extended) test set.

    Args:
        samples: the long per-sample table (module docstring).
        iou_thr: the cIoU threshold γ.

    Returns:
        methods × (Dataset, "Early Stop" / "NO Early Stop"); NaN where a checkpoint is missing.

    Raises:
        ValueError: missing columns, or a run without positives (naming dataset/method/checkpoint).
    """
    _check_long(samples)
    values = {}
    for column, checkpoint in zip(TABLE2_COLUMNS, ("best", "latest")):
        for (dataset, method), rows in _runs(samples, checkpoint).items():
            positive = rows["positive"].astype(bool).to_numpy()
            if not positive.any():
                raise ValueError(f"{dataset}/{method}/{checkpoint}: no positive sample")
            hit = rows["ciou"].to_numpy(dtype=np.float64)[positive] >= iou_thr
            values[(dataset, method, column)] = 100 * hit.mean()
    return _grid(values, dataset_display_name, TABLE2_COLUMNS)


def table3(samples: pd.DataFrame, *, checkpoint: str = "latest", mode: str = "exact",
           iou_thr: float = 0.5, score: str = "confidence") -> pd.DataFrame:
    """AP, max-F1 and Precision × 100 on the extended test sets, no early stopping (Table 3).

    Args:
        samples: the long per-sample table (module docstring).
        checkpoint: which checkpoint to score ("latest" = no early stopping).
        mode: "exact" or "official" (see `vslrepro.metrics`).
        iou_thr: the cIoU threshold γ.
        score: the confidence column.

    Returns:
        methods × (Dataset, AP / max-F1 / Precision).

    Raises:
        ValueError: missing columns, or invalid per-sample values (see `metrics.summarize`).
    """
    _check_long(samples, (score,))
    skipped = _without_negatives(samples)
    values = {}
    for (dataset, method), rows in _runs(samples, checkpoint).items():
        if dataset in skipped:
            continue
        stats = metrics.summarize(rows["ciou"].to_numpy(), rows[score].to_numpy(),
                                  rows["positive"].to_numpy(dtype=bool), iou_thr=iou_thr, mode=mode)
        values.update({(dataset, method, col): 100 * stats[key] for col, key in TABLE3_COLUMNS.items()})
    return _note_positives_only(_grid(values, extended_name, tuple(TABLE3_COLUMNS)), skipped, "AP or max-F1")


def table4(samples: pd.DataFrame, *, checkpoint: str = "latest", seed: int = 0, n_draws: int = 1,
           mode: str = "exact", iou_thr: float = 0.5, score: str = "confidence") -> pd.DataFrame:
    """max-F1 × 100 per negative type, each padded with as many positives (Table 4).

    Args:
        samples: the long per-sample table (module docstring), with `neg_type`.
        checkpoint: which checkpoint to score.
        seed, n_draws: the positive draws (see `metrics.negative_type_breakdown`).
        mode: "exact" or "official".
        iou_thr: the cIoU threshold γ.
        score: the confidence column.

    Returns:
        methods × (Dataset, Real Neg / Automated Easy Neg / Automated Hard Neg [/ class unknown]);
        means over draws, with `attrs` seed, n_draws, mode and, when n_draws > 1, "std" (a table of
        the std × 100).

    Raises:
        ValueError: missing columns, unknown negative types, a run without positives or negatives.
    """
    _check_long(samples, ("neg_type", score))
    skipped = _without_negatives(samples)
    values, spread = {}, {}
    for (dataset, method), rows in _runs(samples, checkpoint).items():
        if dataset in skipped:
            continue
        out = metrics.negative_type_breakdown(rows, seed=seed, n_draws=n_draws, mode=mode,
                                              iou_thr=iou_thr, score=score)
        for neg_type, row in out.iterrows():
            values[(dataset, method, NEG_COLUMNS[neg_type])] = 100 * row["max_f1"]
            spread[(dataset, method, NEG_COLUMNS[neg_type])] = 100 * row.get("max_f1_std", np.nan)
    columns = tuple(c for c in NEG_COLUMNS.values() if any(k[2] == c for k in values))
    table = _grid(values, extended_name, columns)
    table.attrs.update(seed=seed, n_draws=n_draws, mode=mode)
    if n_draws > 1:
        table.attrs["std"] = _grid(spread, extended_name, columns)
    return _note_positives_only(table, skipped, "max-F1 per negative type")


# ----------------------------------------------------------------------------------------------------
# The paper's values
# ----------------------------------------------------------------------------------------------------

def paper_values() -> pd.DataFrame:
    """The published numbers of Tables 1–4 (`paper_values.csv`: table, method, dataset, column, value,
    note); "-" entries of the paper are absent, starred entries carry a note."""
    text = importlib.resources.files("vslrepro").joinpath("paper_values.csv").read_text()
    return pd.read_csv(io.StringIO(text), dtype={"table": int, "value": float}, keep_default_na=False)


def with_paper_values(table: pd.DataFrame, table_id: int) -> pd.DataFrame:
    """Put the paper's published values beside ours.

    Table 1: the paper's four rows are appended as "Paper: <row>". Tables 2–4: a third column level
    `Source` ("ours", "paper") splits each column; methods that only the paper has get "ours" = NaN.
    Notes on the paper's values (e.g. "18.50 reported in the LVS paper") go to `attrs["notes"]`.

    Args:
        table: the output of table1..table4.
        table_id: 1, 2, 3 or 4.

    Raises:
        ValueError: unknown table_id, or a table 2–4 without (Dataset, Metric) columns.
    """
    if table_id not in (1, 2, 3, 4):
        raise ValueError(f"table_id must be 1, 2, 3 or 4, got {table_id!r}")
    ref = paper_values()
    ref = ref[ref["table"] == table_id]
    label = dataset_display_name if table_id == 2 else extended_name
    notes = [f"{_display(r.method) or r.dataset} / {label(r.dataset)} / {r.column}: "
             f"paper {r.value:.2f}; {r.note}" for r in ref.itertuples() if r.note]
    if table_id == 1:
        paper = ref.pivot(index="dataset", columns="column", values="value")
        paper = paper.reindex(index=list(dict.fromkeys(ref["dataset"])), columns=table.columns)
        paper.index = [f"Paper: {name}" for name in paper.index]
        out = pd.concat([table, paper.astype("Int64")]).astype("Int64")
        out.index.name = table.index.name
    else:
        if table.columns.nlevels != 2:
            raise ValueError(f"table {table_id} must have (Dataset, Metric) columns")
        values = {(r.dataset, r.method, r.column): r.value for r in ref.itertuples()}
        paper = _grid(values, label, tuple(dict.fromkeys(ref["column"])))
        methods = list(paper.index) + [m for m in table.index if m not in set(paper.index)]  # paper order, then ours
        columns = list(table.columns) + [c for c in paper.columns if c not in table.columns]
        ours = table.reindex(index=methods, columns=columns)
        paper = paper.reindex(index=methods, columns=columns)
        out = pd.concat({"ours": ours, "paper": paper}, axis=1, names=["Source"])
        out = out.reorder_levels([1, 2, 0], axis=1)[[(*c, s) for c in columns for s in ("ours", "paper")]]
    out.attrs = {**table.attrs, "notes": notes + table.attrs.get("notes", [])}
    return out


# ----------------------------------------------------------------------------------------------------
# Export
# ----------------------------------------------------------------------------------------------------

def _cell(value) -> str:
    """A table cell as text: floats with 2 decimals, ints as they are, missing as an en dash."""
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return "–"
    if isinstance(value, (float, np.floating)):
        return f"{value:.2f}"
    return str(value)


def _latex_escape(text: str) -> str:
    for char, escaped in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("$", r"\$"),
                          ("#", r"\#"), ("_", r"\_"), ("{", r"\{"), ("}", r"\}")):
        text = text.replace(char, escaped)
    return text


def export(table: pd.DataFrame, stem: str | Path, *, caption: str = "") -> dict[str, Path]:
    """Write `stem.csv` (full precision), `stem.md` and `stem.tex` (booktabs, 2 decimals).

    `attrs["notes"]`, when present, is written under the markdown table and as a LaTeX comment block.

    Returns:
        {"csv": path, "md": path, "tex": path}.
    """
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = {ext: stem.with_name(f"{stem.name}.{ext}") for ext in ("csv", "md", "tex")}
    table.to_csv(paths["csv"])
    text = table.map(_cell)                                            # every cell formatted once
    flat = text.copy()
    if isinstance(flat.columns, pd.MultiIndex):
        flat.columns = [" / ".join(map(str, c)) for c in flat.columns]
    notes = table.attrs.get("notes", [])
    md = ([caption, ""] if caption else []) + [flat.to_markdown(disable_numparse=True)]
    md += ["", *[f"- {n}" for n in notes]] if notes else []
    paths["md"].write_text("\n".join(md) + "\n")
    tex = text.to_latex(caption=_latex_escape(caption) if caption else None, escape=True,
                        multicolumn=True, multicolumn_format="c")
    tex += "".join(f"% {n}\n" for n in notes)
    paths["tex"].write_text(tex)
    return paths


def read_table(path: str | Path) -> pd.DataFrame:
    """Read back a table written by `export` (its csv), with its header levels restored.

    Table 1 has one header row; Tables 2–4 have three (Dataset, Metric, Source) and the intervals
    table is long with a (dataset, method, checkpoint) index. Numbers come back unrounded.
    """
    path = Path(path)
    first = path.read_text().splitlines()[0].split(",")[0]
    if first == "Dataset":  # Tables 2–4: a (Dataset, Metric, Source) column MultiIndex
        return pd.read_csv(path, header=[0, 1, 2], index_col=0)
    if first == "dataset":  # intervals
        return pd.read_csv(path, index_col=[0, 1, 2])
    return pd.read_csv(path, index_col=0)
