"""Shared fixtures: the smoke profile and its synthetic benchmark (generated once per session).

The benchmark and tensor caches go to the package's cache folder (`$VSLREPRO_CACHE`, default
`<repo>/.cache`), so the pipeline test, the training tests and nbval reuse the same files.

Results: unless `$VSLREPRO_RESULTS` is set, the session works on a temporary copy of the committed
`results/` (set before any test or notebook kernel starts, which inherit it), so running the suite
never rewrites committed files; nbval's notebooks then read the committed smoke results from there.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from vslrepro import stages
from vslrepro.paths import REPO_ROOT


def pytest_configure(config):
    if "VSLREPRO_RESULTS" not in os.environ:
        copy = Path(tempfile.mkdtemp(prefix="vslrepro-results-"))
        if (REPO_ROOT / "results" / "smoke").is_dir():
            shutil.copytree(REPO_ROOT / "results" / "smoke", copy / "smoke")
        os.environ["VSLREPRO_RESULTS"] = str(copy)
        config.add_cleanup(lambda: shutil.rmtree(copy, ignore_errors=True))


@pytest.fixture(scope="session")
def smoke_params():
    params = stages.resolve("smoke")
    stages.prepare_data(params)
    return params
