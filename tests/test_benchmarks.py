"""The benchmark scripts run end to end at smoke size (CI runs benchmarks only this small)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_metrics_benchmark_smoke():
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_metrics.py"), "--smoke"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "bit-identical: True" in result.stdout


def test_training_benchmark_smoke(smoke_params):
    result = subprocess.run([sys.executable, "-m", "vslrepro", "bench", "train", "--profile", "smoke",
                             "--steps", "2"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "model only" in result.stdout and "with data pipeline" in result.stdout
