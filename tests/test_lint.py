"""The linter (ruff, configured in pyproject.toml: line length 120, pycodestyle, pyflakes, import
order) passes on the package, the tests, the tools and the benchmarks."""

import subprocess
import sys

from vslrepro.paths import REPO_ROOT


def test_ruff_finds_nothing():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "vslrepro", "tests", "tools", "benchmarks"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
