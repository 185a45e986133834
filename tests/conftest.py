"""Shared fixtures: the smoke profile and its synthetic benchmark (generated once per session).

The benchmark and tensor caches go to the package's cache folder (`$VSLREPRO_CACHE`, default
`<repo>/.cache`), so the pipeline test, the training tests and nbval reuse the same files.
"""

from __future__ import annotations

import pytest

from vslrepro import stages


@pytest.fixture(scope="session")
def smoke_params():
    params = stages.resolve("smoke")
    stages.prepare_data(params)
    return params
