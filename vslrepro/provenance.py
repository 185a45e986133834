"""Provenance: the versions, hardware and commit that produced a result (style.md, Provenance)."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from vslrepro import __version__
from vslrepro.paths import REPO_ROOT


def git_commit() -> str:
    """The repository's HEAD commit, with `+dirty` when tracked files changed; "" outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=REPO_ROOT, capture_output=True, text=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return ""


def environment() -> dict[str, Any]:
    """Versions of Python, torch (and CUDA, GPU name), the package, and the git commit."""
    import numpy
    import torchvision

    return {
        "vslrepro": __version__,
        "git_commit": git_commit(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu_threads": torch.get_num_threads(),
    }


def write_provenance(path: str | Path, params: dict[str, Any], **extra: Any) -> Path:
    """Write `{params, environment, time, **extra}` as JSON next to a result."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"params": params, "environment": environment(),
              "written": datetime.now(timezone.utc).isoformat(timespec="seconds"), **extra}
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    return path
