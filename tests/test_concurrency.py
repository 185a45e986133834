"""Shared-cache artefacts built by several processes at once: the first builds, the others wait
for its lock and then use its result; nobody fails and nothing is corrupted."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

from vslrepro.atomic import exclusive
from vslrepro.data.synthetic import generate
from vslrepro.objectprior import load_or_pretrain

GENERATE = "from vslrepro.data.synthetic import generate; import sys; generate(sys.argv[1], scale='smoke', seed=0)"


def _tree_hash(root: Path) -> str:
    """Paths and bytes of every file under root (as tests/test_synth.py)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def test_two_processes_generating_one_benchmark_both_succeed_with_the_same_bytes(tmp_path):
    out = tmp_path / "shared" / "synth-smoke-seed0"
    logs = [tmp_path / f"stderr{i}.txt" for i in range(2)]
    # Hold the lock while both start, so that both are waiting on it when the race begins.
    with exclusive(out.with_name(out.name + ".lock"), "the test's head start"):
        processes = [subprocess.Popen([sys.executable, "-c", GENERATE, str(out)], stdout=subprocess.DEVNULL,
                                      stderr=log.open("w")) for log in logs]
        deadline = time.time() + 120
        while not all("waiting for another process" in log.read_text() for log in logs):
            assert time.time() < deadline and all(p.poll() is None for p in processes), \
                [log.read_text() for log in logs]
            time.sleep(0.05)
    assert [p.wait(timeout=300) for p in processes] == [0, 0], [log.read_text()[-2000:] for log in logs]
    single = tmp_path / "single" / "synth-smoke-seed0"
    generate(single, scale="smoke", seed=0)
    assert _tree_hash(out) == _tree_hash(single)
    assert sorted(p.name for p in out.parent.iterdir()) == ["synth-smoke-seed0", "synth-smoke-seed0.lock"]


def test_a_finished_benchmark_is_found_not_regenerated(tmp_path):
    out = tmp_path / "synth"
    manifest = generate(out, scale="smoke", seed=0)
    stamp = (out / "manifest.json").stat().st_mtime_ns
    assert generate(out, scale="smoke", seed=0) == manifest
    assert (out / "manifest.json").stat().st_mtime_ns == stamp


def test_the_object_prior_is_trained_once_when_asked_twice_at_once(tmp_path):
    images = torch.randint(0, 256, (32, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(32) % 4
    infos = []

    def ask():
        infos.append(load_or_pretrain(tmp_path, "smoke", images, labels, seed=0, epochs=1, batch_size=16)[1])

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(info["cached"] for info in infos) == [False, True]  # one trained, the other read its file


def test_a_second_reproduce_of_one_profile_waits_for_the_first(tmp_path):
    """Two `reproduce` of one profile never run at once (they would race on the same stage outputs):
    while one holds the profile's lock, another waits for it, saying so."""
    from vslrepro.paths import cache_dir

    log = tmp_path / "stderr.txt"
    with exclusive(cache_dir() / "locks" / "reproduce-smoke.lock", "the test's stand-in reproduction"):
        waiting = subprocess.Popen([sys.executable, "-m", "vslrepro", "reproduce", "--profile", "smoke",
                                    "--only", "no-such-stage"], stdout=subprocess.DEVNULL, stderr=log.open("w"))
        deadline = time.time() + 120
        try:
            while "waiting for another process to finish reproducing profile 'smoke'" not in log.read_text():
                assert time.time() < deadline and waiting.poll() is None, log.read_text()
                time.sleep(0.1)
        finally:
            waiting.kill()
            waiting.wait()
