"""The papermill pipeline: `python -m vslrepro reproduce --profile quick`.

Stages, in order, each an executed notebook under `results/<profile>/notebooks/`:
data → extended test sets (Table 1) → object prior → train (dataset × method with a run) →
evaluate (dataset × method, each checkpoint) → tables & figures. `plan()` derives every stage's
dependencies and input files from the stage contract (`vslrepro.layout`): an evaluation needs the
training run its method uses and reads that run's checkpoints; the tables need every evaluation and
read every per-sample CSV and skip log.

A stage is skipped when its executed notebook exists and its stamp is unchanged: a hash of the
profile file, the stage's parameters, the notebook's source, the package's source and the contents
of the stage's input files. Training runs are cached in folders keyed by their parameters and
training code (`layout.run_key`), so a run is retrained after the training code changed. A failed
stage is reported, its stale outputs are removed, the stages that need it are blocked (and lose
their stamps, so nothing built from an earlier run's files passes as fresh), the others still run,
and the command exits non-zero at the end.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from vslrepro import layout
from vslrepro.methods import method_class
from vslrepro.paths import NOTEBOOKS_DIR, results_dir
from vslrepro.profiles import load_profile, profile_path


@dataclass(frozen=True)
class Stage:
    """One notebook execution: which notebook, with which parameters, after which stages, reading
    which files (`inputs`) and writing which (`outputs`, removed when the stage fails)."""

    key: str
    notebook: str
    parameters: dict[str, Any]
    needs: tuple[str, ...] = field(default_factory=tuple)
    inputs: tuple[Path, ...] = field(default_factory=tuple)
    outputs: tuple[Path, ...] = field(default_factory=tuple)


def _samples_files(params: dict[str, Any], evaluation: layout.Evaluation) -> tuple[Path, ...]:
    csv = layout.samples_csv(params, evaluation.dataset, evaluation.method, evaluation.checkpoint)
    return csv, layout.samples_record(csv), layout.skip_log(csv)


def plan(params: dict[str, Any]) -> list[Stage]:
    """The ordered stages of a profile: every dataset × method, plus the reference rows."""
    profile = params["profile"]
    stages = [Stage("data", "00_data.ipynb", {"profile": profile}),
              Stage("testsets", "01_testsets.ipynb", {"profile": profile}, ("data",)),
              Stage("object_prior", "02_object_prior.ipynb", {"profile": profile}, ("data",))]
    evaluation_stages = []
    for dataset in params["datasets"]:
        for method in layout.trained_methods(params):
            stages.append(Stage(f"train_{dataset}_{method}", "03_train.ipynb",
                                {"profile": profile, "dataset": dataset, "method": method},
                                ("data", "object_prior")))
        for method in layout.evaluated_methods(params):
            base = method_class(method).run_method()
            planned = layout.evaluations(params, dataset, method)
            inputs = tuple(layout.checkpoint_file(layout.run_dir(params, dataset, method), e.checkpoint)
                           for e in planned) if base else ()
            outputs = tuple(f for e in planned for f in _samples_files(params, e))
            key = f"evaluate_{dataset}_{method}"
            evaluation_stages.append(key)
            stages.append(Stage(key, "04_evaluate.ipynb", {"profile": profile, "dataset": dataset, "method": method},
                                ("testsets", "object_prior") + ((f"train_{dataset}_{base}",) if base else ()),
                                inputs, outputs))
    tables_inputs = tuple(f for e in layout.evaluations(params) for f in _samples_files(params, e))
    stages.append(Stage("tables", "05_tables.ipynb", {"profile": profile}, ("testsets", *evaluation_stages),
                        tables_inputs))
    return stages


def package_digest() -> str:
    """Hash of the package's source and data files: results follow the code that made them."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parent
    for path in sorted(package.rglob("*")):
        if path.suffix in (".py", ".csv") and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(package)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def stamp(stage: Stage, profile_text: str, code: str) -> str:
    """Hash of what a stage's output depends on: profile, parameters, notebook, package source and
    the contents of its input files (a missing input hashes as missing)."""
    digest = hashlib.sha256(profile_text.encode())
    digest.update(json.dumps(stage.parameters, sort_keys=True).encode())
    digest.update((NOTEBOOKS_DIR / stage.notebook).read_bytes())
    digest.update(code.encode())
    for path in stage.inputs:
        digest.update(str(path).encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest() if path.is_file() else b"<missing>")
    return digest.hexdigest()[:16]


def execute_notebook(stage: Stage, executed: Path) -> None:
    """Run a stage's notebook with papermill into `executed` (kernel python3, cwd notebooks/)."""
    import papermill

    papermill.execute_notebook(str(NOTEBOOKS_DIR / stage.notebook), str(executed),
                               parameters=stage.parameters, cwd=str(NOTEBOOKS_DIR),
                               kernel_name="python3", progress_bar=False, log_output=False)


@contextlib.contextmanager
def _stderr_to(path: Path):
    """Send file descriptor 2 (ours and the kernel's, which inherits it) to `path` for a while."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "w") as log:
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def reproduce(profile: str, *, force: bool = False, only: list[str] | None = None,
              log=print, execute: Callable[[Stage, Path], None] = execute_notebook) -> dict[str, str]:
    """Run the pipeline of `profile`; return {stage key: "ran" | "skipped" | "failed: ..." | "blocked ..."}.

    Args:
        profile: a profile name or YAML path.
        force: re-run every stage even when up to date.
        only: stage keys or notebook numbers ("00", "05") to run; the others are left alone.
        log: where progress lines go.
        execute: runs one stage (default: papermill); tests pass a stand-in.
    """
    params = load_profile(profile)
    profile_text = profile_path(profile).read_text()
    out = results_dir(params["profile"])
    status: dict[str, str] = {}
    code = package_digest()
    for stage in plan(params):
        if only and stage.key not in only and stage.notebook.split("_")[0] not in only:
            continue
        files = layout.stage_files(params, stage.key)
        for path in files.values():
            path.parent.mkdir(parents=True, exist_ok=True)
        blocked = [n for n in stage.needs if status.get(n, "").startswith(("failed", "blocked"))]
        if blocked:
            status[stage.key] = f"blocked by {', '.join(blocked)}"
            files["stamp"].unlink(missing_ok=True)  # whatever it built before is not fresh any more
            log(f"[{stage.key}] blocked: {', '.join(blocked)} did not finish")
            continue
        key = stamp(stage, profile_text, code)
        if not force and files["notebook"].is_file() and files["stamp"].is_file() \
                and json.loads(files["stamp"].read_text()).get("stamp") == key:
            status[stage.key] = "skipped"
            log(f"[{stage.key}] up to date, skipped")
            continue
        log(f"[{stage.key}] running {stage.notebook} {stage.parameters}")
        tic = time.perf_counter()
        files["stamp"].unlink(missing_ok=True)
        try:
            with _stderr_to(files["log"]):  # kernel warnings, progress bars
                execute(stage, files["notebook"])
        except Exception as error:  # a failed stage is reported; the others go on
            message = str(error).splitlines()[-1][:300] if str(error) else ""
            status[stage.key] = f"failed: {type(error).__name__}: {message}"
            for path in stage.outputs:  # never leave an earlier run's results behind as if fresh
                path.unlink(missing_ok=True)
            log(f"[{stage.key}] FAILED ({status[stage.key]}); see {files['notebook']} and {files['log']}")
            continue
        files["stamp"].write_text(json.dumps({"stamp": key,
                                              "parameters": stage.parameters,
                                              "seconds": round(time.perf_counter() - tic, 1)}) + "\n")
        status[stage.key] = "ran"
        log(f"[{stage.key}] done in {time.perf_counter() - tic:.1f} s")
    out.mkdir(parents=True, exist_ok=True)
    (out / "pipeline_status.json").write_text(json.dumps(status, indent=2) + "\n")
    return status


def main_reproduce(profile: str, force: bool = False, only: list[str] | None = None) -> int:
    tic = time.perf_counter()
    status = reproduce(profile, force=force, only=only)
    failed = {k: v for k, v in status.items() if v not in ("ran", "skipped")}
    print(f"pipeline {profile}: {sum(v == 'ran' for v in status.values())} ran, "
          f"{sum(v == 'skipped' for v in status.values())} skipped, {len(failed)} failed/blocked "
          f"in {time.perf_counter() - tic:.1f} s; results in {results_dir(load_profile(profile)['profile'])}")
    for key, value in failed.items():
        print(f"  {key}: {value}", file=sys.stderr)
    return 1 if failed else 0
