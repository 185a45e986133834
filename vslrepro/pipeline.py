"""The papermill pipeline: `python -m vslrepro reproduce --profile quick` (design §8).

Stages, in order, each an executed notebook under `results/<profile>/notebooks/`:
data → extended test sets (Table 1) → object prior → train (dataset × trained method) →
evaluate (dataset × method, BEST and LATEST) → tables & figures.

A stage is skipped when its executed notebook exists and its stamp (a hash of the profile file, the
stage's parameters, the notebook's source and the package's source) is unchanged. Training runs
themselves are cached by their parameters only (`stages.run_key`): a finished run is reused after a
code change, so that editing, say, a table builder never retrains; delete the run folder (or the
cache) to retrain after changing training code. A failed stage is reported, the stages
that do not depend on it still run, and the command exits non-zero at the end.
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
from typing import Any

from vslrepro.methods import method_info
from vslrepro.paths import NOTEBOOKS_DIR, results_dir
from vslrepro.profiles import load_profile, profile_path


@dataclass(frozen=True)
class Stage:
    """One notebook execution: which notebook, with which parameters, depending on which stages."""

    key: str
    notebook: str
    parameters: dict[str, Any]
    needs: tuple[str, ...] = field(default_factory=tuple)


def plan(params: dict[str, Any]) -> list[Stage]:
    """The ordered stages of a profile: every dataset × method, plus the reference rows."""
    profile = params["profile"]
    stages = [Stage("data", "00_data.ipynb", {"profile": profile}),
              Stage("testsets", "01_testsets.ipynb", {"profile": profile}, ("data",)),
              Stage("object_prior", "02_object_prior.ipynb", {"profile": profile}, ("data",))]
    evaluations = []
    for dataset in params["datasets"]:
        trained = []
        for method in params["methods"]:
            base = method_info(method).trains_as or method
            if base not in trained:
                trained.append(base)
        for method in trained:
            stages.append(Stage(f"train_{dataset}_{method}", "03_train.ipynb",
                                {"profile": profile, "dataset": dataset, "method": method},
                                ("data", "object_prior")))
        for method in list(params["methods"]) + list(params.get("references", [])):
            base = method_info(method).trains_as or method
            needs = ("testsets", "object_prior") + ((f"train_{dataset}_{base}",)
                                                     if method_info(base).trainable else ())
            evaluations.append(f"evaluate_{dataset}_{method}")
            stages.append(Stage(f"evaluate_{dataset}_{method}", "04_evaluate.ipynb",
                                {"profile": profile, "dataset": dataset, "method": method}, needs))
    stages.append(Stage("tables", "05_tables.ipynb", {"profile": profile}, ("testsets",)))
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
    """Hash of what a stage's output depends on: profile, parameters, notebook and package source."""
    digest = hashlib.sha256(profile_text.encode())
    digest.update(json.dumps(stage.parameters, sort_keys=True).encode())
    digest.update((NOTEBOOKS_DIR / stage.notebook).read_bytes())
    digest.update(code.encode())
    return digest.hexdigest()[:16]


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
              log=print) -> dict[str, str]:
    """Run the pipeline of `profile`; return {stage key: "ran" | "skipped" | "failed: ..." | "blocked"}."""
    import papermill

    params = load_profile(profile)
    profile_text = profile_path(profile).read_text()
    out = results_dir(params["profile"])
    (out / "notebooks").mkdir(parents=True, exist_ok=True)
    stamps_dir = out / "stamps"
    stamps_dir.mkdir(parents=True, exist_ok=True)
    status: dict[str, str] = {}
    code = package_digest()
    for stage in plan(params):
        if only and stage.key not in only and stage.notebook.split("_")[0] not in only:
            continue
        blocked = [n for n in stage.needs if status.get(n, "").startswith(("failed", "blocked"))]
        if blocked:
            status[stage.key] = f"blocked by {', '.join(blocked)}"
            log(f"[{stage.key}] blocked: {', '.join(blocked)} failed")
            continue
        executed = out / "notebooks" / f"{stage.key}.ipynb"
        stamp_file = stamps_dir / f"{stage.key}.json"
        key = stamp(stage, profile_text, code)
        if not force and executed.is_file() and stamp_file.is_file() \
                and json.loads(stamp_file.read_text()).get("stamp") == key:
            status[stage.key] = "skipped"
            log(f"[{stage.key}] up to date, skipped")
            continue
        log(f"[{stage.key}] running {stage.notebook} {stage.parameters}")
        tic = time.perf_counter()
        try:
            with _stderr_to(out / "logs" / f"{stage.key}.log"):  # kernel warnings, progress bars
                papermill.execute_notebook(str(NOTEBOOKS_DIR / stage.notebook), str(executed),
                                           parameters=stage.parameters, cwd=str(NOTEBOOKS_DIR),
                                           kernel_name="python3", progress_bar=False, log_output=False)
        except Exception as error:  # a failed stage is reported; the others go on
            status[stage.key] = f"failed: {type(error).__name__}: {str(error).splitlines()[-1][:300] if str(error) else ''}"
            log(f"[{stage.key}] FAILED ({status[stage.key]}); see {executed} and {out / 'logs'}")
            stamp_file.unlink(missing_ok=True)
            continue
        stamp_file.write_text(json.dumps({"stamp": key, "parameters": stage.parameters,
                                          "seconds": round(time.perf_counter() - tic, 1)}) + "\n")
        status[stage.key] = "ran"
        log(f"[{stage.key}] done in {time.perf_counter() - tic:.1f} s")
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
