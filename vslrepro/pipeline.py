"""The papermill pipeline: `python -m vslrepro reproduce --profile quick`.

Stages, in order, each an executed notebook under `results/<profile>/notebooks/` (`<profile>`: the
profile file's own `profile:` name; every notebook loads that same file, a shipped profile by its
name, any other file by its absolute path, see `vslrepro.profiles`):
data → extended test sets (Table 1) → object prior → train (dataset × method with a run) →
evaluate (dataset × method, each checkpoint) → tables & figures. `plan()` derives every stage's
dependencies and input files from the stage contract (`vslrepro.layout`): an evaluation needs the
training run its method uses and reads that run's checkpoints; the tables need every evaluation and
read every per-sample CSV and skip log.

A stage is skipped when its executed notebook and the files it makes exist (a training stage's
checkpoints included) and its stamp is unchanged: a hash of the profile file, the stage's
parameters, the notebook's source, the package's source and the contents of the stage's input files.
Training runs are cached in folders keyed by their parameters and training code (`layout.run_key`),
so a run is retrained after the training code changed. A failed stage is reported, its stale outputs
are removed, the stages that need it are blocked (and lose their stamps, so nothing built from an
earlier run's files passes as fresh), the others still run, and the command exits non-zero at the
end.

Two `reproduce` of one profile never run at once: the second waits for the first (a lock in the
cache), then finds every stage up to date. Other profiles proceed; the cache artefacts they share
(synthetic data, tensor caches, the object prior, training runs) have locks of their own.

Stages run in parallel (`--jobs`, default one per CPU core, at most 4), each notebook in its own
papermill process with cpu_count / jobs torch threads: a stage starts once every stage it needs has
finished. Most of a small stage's time is its kernel importing torch, which one core does alone, so
on 2 cores two stages at once take little more than one.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from vslrepro import layout
from vslrepro.atomic import exclusive
from vslrepro.data.datasets import run_dataset
from vslrepro.methods import method_class
from vslrepro.paths import NOTEBOOKS_DIR, cache_dir, results_dir
from vslrepro.profiles import load_profile, profile_argument, profile_path


@dataclass(frozen=True)
class Stage:
    """One notebook execution: which notebook, with which parameters, after which stages, reading
    which files (`inputs`), writing which (`outputs`: must exist for the stage to be up to date,
    removed when the stage fails), perhaps writing which (`optional_outputs`: written only when
    there is something to record, such as a skip log; removed when the stage fails, never required)
    and keeping which (`products`: files that must exist for the stage to be up to date, kept on
    failure — a training run's checkpoints, which an interrupted run resumes from)."""

    key: str
    notebook: str
    parameters: dict[str, Any]
    needs: tuple[str, ...] = field(default_factory=tuple)
    inputs: tuple[Path, ...] = field(default_factory=tuple)
    outputs: tuple[Path, ...] = field(default_factory=tuple)
    optional_outputs: tuple[Path, ...] = field(default_factory=tuple)
    products: tuple[Path, ...] = field(default_factory=tuple)


def _samples_files(params: dict[str, Any], evaluation: layout.Evaluation) -> tuple[Path, Path]:
    """The files every evaluation writes: its per-sample CSV and the provenance record beside it."""
    csv = layout.samples_csv(params, evaluation.dataset, evaluation.method, evaluation.checkpoint)
    return csv, layout.samples_record(csv)


def _skip_log(params: dict[str, Any], evaluation: layout.Evaluation) -> Path:
    """The evaluation's skip log: written only when `--allow-incomplete` left samples out."""
    return layout.skip_log(layout.samples_csv(params, evaluation.dataset, evaluation.method, evaluation.checkpoint))


def plan(params: dict[str, Any], profile: str | None = None) -> list[Stage]:
    """The ordered stages of a profile: every dataset × method, plus the reference rows.

    Args:
        params: the loaded profile.
        profile: what each notebook loads the profile from, `profiles.profile_argument(file)`
            (default: the profile's name, i.e. `params/<name>.yaml`).
    """
    profile = profile or params["profile"]
    stages = [Stage("data", "00_data.ipynb", {"profile": profile}),
              Stage("testsets", "01_testsets.ipynb", {"profile": profile}, ("data",)),
              Stage("object_prior", "02_object_prior.ipynb", {"profile": profile}, ("data",))]
    evaluation_stages = []
    trained = layout.trained_datasets(params)
    for dataset in params["datasets"]:
        for method in layout.trained_methods(params) if dataset in trained else ():
            run = layout.run_dir(params, dataset, method)
            stages.append(Stage(f"train_{dataset}_{method}", "03_train.ipynb",
                                {"profile": profile, "dataset": dataset, "method": method},
                                ("data", "object_prior"),
                                products=tuple(layout.checkpoint_file(run, c) for c in ("best", "latest"))))
        for method in layout.evaluated_methods(params):
            base = method_class(method).run_method()
            planned = layout.evaluations(params, dataset, method)
            inputs = tuple(layout.checkpoint_file(layout.run_dir(params, dataset, method), e.checkpoint)
                           for e in planned) if base else ()
            outputs = tuple(f for e in planned for f in _samples_files(params, e))
            key = f"evaluate_{dataset}_{method}"
            evaluation_stages.append(key)
            run = f"train_{run_dataset(params, dataset)}_{base}"  # an evaluation-only test set: another's run
            stages.append(Stage(key, "04_evaluate.ipynb", {"profile": profile, "dataset": dataset, "method": method},
                                ("testsets", "object_prior") + ((run,) if base else ()),
                                inputs, outputs, optional_outputs=tuple(_skip_log(params, e) for e in planned)))
    tables_inputs = tuple(f for e in layout.evaluations(params)
                          for f in (*_samples_files(params, e), _skip_log(params, e)))
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


def default_jobs() -> int:
    """Stages run at once by default: one per CPU core, at most 4 (kernels spend seconds importing
    torch single-threaded; four share a 16-core machine's cores among their training threads)."""
    return max(1, min(4, os.cpu_count() or 1))


def execute_notebook(stage: Stage, executed: Path, log: Path, threads: int | None = None) -> None:
    """Run a stage's notebook with papermill in a child process (kernel python3, cwd notebooks/),
    its stderr (kernel warnings, progress bars, the traceback of a failure) into `log`.

    Args:
        threads: CPU threads of the kernel's torch (OMP_NUM_THREADS); None leaves torch's default.

    Raises:
        RuntimeError: the notebook failed; the message is the last line of its traceback.
    """
    command = [sys.executable, "-m", "papermill", str(NOTEBOOKS_DIR / stage.notebook), str(executed),
               "--cwd", str(NOTEBOOKS_DIR), "--kernel", "python3", "--no-progress-bar",
               "--no-log-output", "--parameters_yaml", json.dumps(stage.parameters)]
    env = dict(os.environ)
    if threads is not None:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as stream:
        done = subprocess.run(command, stdout=stream, stderr=subprocess.STDOUT, env=env, check=False)
    if done.returncode != 0:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
        raise RuntimeError(lines[-1] if lines else f"papermill exited with {done.returncode}")


def reproduce(profile: str, *, force: bool = False, only: list[str] | None = None, jobs: int | None = None,
              log=print, execute: Callable[..., None] = execute_notebook) -> dict[str, str]:
    """Run the pipeline of `profile`; return {stage key: "ran" | "skipped" | "failed: ..." | "blocked ..."}.

    Stages whose needs have finished run at once, up to `jobs` of them, each kernel with
    cpu_count / jobs torch threads; a stage starts only after every stage it needs has finished
    (so a run's checkpoints exist before its evaluation is stamped and started).

    Args:
        profile: a profile name or YAML path (the notebooks load this same file).
        force: re-run every stage even when up to date.
        only: stage keys or notebook numbers ("00", "05") to run; the others are left alone.
        jobs: stages run at once (default `default_jobs()`).
        log: where progress lines go.
        execute: runs one stage, `execute(stage, executed, log, threads)` (default: papermill);
            tests pass a stand-in.
    """
    params = load_profile(profile)
    # One reproduction of a profile at a time: a second one waits, then finds the stages up to date.
    with exclusive(cache_dir() / "locks" / f"reproduce-{params['profile']}.lock",
                   f"reproducing profile {params['profile']!r}"):
        return _reproduce(profile, params, force=force, only=only, jobs=jobs, log=log, execute=execute)


def _reproduce(profile: str, params: dict[str, Any], *, force: bool, only: list[str] | None,
               jobs: int | None, log, execute: Callable[..., None]) -> dict[str, str]:
    """`reproduce`'s work, under the profile's lock."""
    profile_text = profile_path(profile).read_text()
    out = results_dir(params["profile"])
    notebook_profile = profile_argument(profile)  # every notebook loads this same file
    jobs = jobs or default_jobs()
    threads = max(1, (os.cpu_count() or 1) // jobs)
    code = package_digest()
    planned = [stage for stage in plan(params, notebook_profile)
               if not only or stage.key in only or stage.notebook.split("_")[0] in only]
    keys = {stage.key for stage in planned}
    status: dict[str, str] = {}
    pending = list(planned)
    running: dict[Future, tuple[Stage, dict[str, Path], str, float]] = {}

    stamps: dict[str, str] = {}  # computed once a stage's needs have finished

    def start_ready(pool: ThreadPoolExecutor) -> None:
        """Settle every stage whose needs have finished: blocked, up to date, or started (while a
        slot is free); the others stay pending, in plan order."""
        for stage in list(pending):
            if any(n in keys and n not in status for n in stage.needs):
                continue
            files = layout.stage_files(params, stage.key)
            blocked = [n for n in stage.needs if status.get(n, "").startswith(("failed", "blocked"))]
            if blocked:
                pending.remove(stage)
                status[stage.key] = f"blocked by {', '.join(blocked)}"
                files["stamp"].unlink(missing_ok=True)  # whatever it built before is not fresh any more
                log(f"[{stage.key}] blocked: {', '.join(blocked)} did not finish")
                continue
            key = stamps.setdefault(stage.key, stamp(stage, profile_text, code))
            if not force and files["notebook"].is_file() and files["stamp"].is_file() \
                    and all(path.is_file() for path in stage.outputs + stage.products) \
                    and json.loads(files["stamp"].read_text()).get("stamp") == key:
                pending.remove(stage)
                status[stage.key] = "skipped"
                log(f"[{stage.key}] up to date, skipped")
                continue
            if len(running) >= jobs:
                continue  # no free slot: it starts when a running stage finishes
            pending.remove(stage)
            for path in files.values():
                path.parent.mkdir(parents=True, exist_ok=True)
            log(f"[{stage.key}] running {stage.notebook} {stage.parameters}")
            files["stamp"].unlink(missing_ok=True)
            future = pool.submit(execute, stage, files["notebook"], files["log"], threads)
            running[future] = (stage, files, key, time.perf_counter())

    def finish(future: Future) -> None:
        stage, files, key, tic = running.pop(future)
        error = future.exception()
        if error is not None:  # a failed stage is reported; the others go on
            message = str(error).splitlines()[-1][:300] if str(error) else ""
            status[stage.key] = f"failed: {type(error).__name__}: {message}"
            # never leave an earlier run's results behind as if fresh
            for path in stage.outputs + stage.optional_outputs:
                path.unlink(missing_ok=True)
            log(f"[{stage.key}] FAILED ({status[stage.key]}); see {files['notebook']} and {files['log']}")
            return
        seconds = time.perf_counter() - tic
        files["stamp"].write_text(json.dumps({"stamp": key, "parameters": stage.parameters,
                                              "seconds": round(seconds, 1)}) + "\n")
        status[stage.key] = "ran"
        log(f"[{stage.key}] done in {seconds:.1f} s")

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        start_ready(pool)
        while running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                finish(future)
            start_ready(pool)
    assert not pending, f"stages never started: {[stage.key for stage in pending]}"
    status = {stage.key: status[stage.key] for stage in planned}  # plan order
    out.mkdir(parents=True, exist_ok=True)
    (out / "pipeline_status.json").write_text(json.dumps(status, indent=2) + "\n")
    return status


def main_reproduce(profile: str, force: bool = False, only: list[str] | None = None,
                   jobs: int | None = None) -> int:
    tic = time.perf_counter()
    status = reproduce(profile, force=force, only=only, jobs=jobs)
    failed = {k: v for k, v in status.items() if v not in ("ran", "skipped")}
    print(f"pipeline {profile}: {sum(v == 'ran' for v in status.values())} ran, "
          f"{sum(v == 'skipped' for v in status.values())} skipped, {len(failed)} failed/blocked "
          f"in {time.perf_counter() - tic:.1f} s; results in {results_dir(load_profile(profile)['profile'])}")
    for key, value in failed.items():
        print(f"  {key}: {value}", file=sys.stderr)
    return 1 if failed else 0
