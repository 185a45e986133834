"""The training protocol on the smoke benchmark: BEST/LATEST, exact resume after SIGKILL, torchrun DDP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from vslrepro import stages
from vslrepro.train import epoch_order


def _profile(tmp_path, smoke_params, epochs=3):
    """A copy of the smoke profile with fewer epochs (tests stay fast)."""
    params = {**smoke_params, "train": {**smoke_params["train"], "epochs": epochs}}
    path = tmp_path / "profile.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def _train_cmd(profile, out, *, launcher=(sys.executable, "-m")):
    return [*launcher, "vslrepro", "train", "--profile", str(profile), "--dataset", "flickr",
            "--method", "ezvsl", "--out", str(out), "--no-progress"]


def test_epoch_order_shards_global_batches():
    full = epoch_order(10, seed=0, epoch=1, batch_size=4)
    assert len(full) == 8 and len(set(full)) == 8  # drop_last: 2 global batches
    halves = [epoch_order(10, seed=0, epoch=1, batch_size=4, rank=r, world=2) for r in (0, 1)]
    # each global batch is split between the ranks
    assert np.array_equal(np.concatenate([halves[0][:2], halves[1][:2]]), full[:4])
    assert not np.array_equal(full, epoch_order(10, seed=0, epoch=2, batch_size=4))


def test_run_keeps_best_and_latest(tmp_path, smoke_params):
    profile = _profile(tmp_path, smoke_params)
    run = stages.train(profile, "flickr", "ezvsl", out=tmp_path / "run", progress=False)
    history = pd.read_csv(run / "history.csv")
    assert list(history["epoch"]) == [1, 2, 3]
    best = torch.load(run / "best.pt", weights_only=False)
    latest = torch.load(run / "latest.pt", weights_only=False)
    assert latest["epoch"] == 3
    assert best["epoch"] == int(history.loc[history["val_locacc"].idxmax(), "epoch"])
    assert latest["best"]["val_locacc"] == pytest.approx(history["val_locacc"].max())
    # a finished run is found again, not retrained
    tic = os.path.getmtime(run / "latest.pt")
    stages.train(profile, "flickr", "ezvsl", out=run, progress=False)
    assert os.path.getmtime(run / "latest.pt") == tic


def _evaluate_latest(profile, run, out):
    return pd.read_csv(stages.evaluate(profile, None, None, "latest", run=run, out=out, progress=False))


def test_sigkill_mid_epoch_then_resume_gives_the_same_results(tmp_path, smoke_params):
    profile = _profile(tmp_path, smoke_params)
    subprocess.run(_train_cmd(profile, tmp_path / "straight"), check=True, capture_output=True)

    env = {**os.environ, "VSLREPRO_BATCH_DELAY": "0.1"}  # slow batches so the kill lands mid-epoch
    killed = tmp_path / "killed"
    process = subprocess.Popen(_train_cmd(profile, killed), env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (killed / "history.csv").is_file() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.25)  # a few batches into epoch 2
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    interrupted = pd.read_csv(killed / "history.csv")
    assert len(interrupted) < 3, "the run finished before it was killed"
    assert torch.load(killed / "latest.pt", weights_only=False)["epoch"] == len(interrupted)  # whole, readable

    subprocess.run(_train_cmd(profile, killed), check=True, capture_output=True)
    resumed = pd.read_csv(killed / "history.csv")
    straight = pd.read_csv(tmp_path / "straight" / "history.csv")
    pd.testing.assert_frame_equal(resumed.drop(columns="seconds"), straight.drop(columns="seconds"))
    a = _evaluate_latest(profile, tmp_path / "straight", tmp_path / "a.csv")
    b = _evaluate_latest(profile, killed, tmp_path / "b.csv")
    pd.testing.assert_frame_equal(a, b)


def test_torchrun_two_processes_on_cpu(tmp_path, smoke_params):
    profile = _profile(tmp_path, smoke_params, epochs=2)
    run = tmp_path / "ddp"
    launcher = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m")
    result = subprocess.run(_train_cmd(profile, run, launcher=launcher), capture_output=True, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    record = yaml.safe_load((run / "run.json").read_text())
    assert record["world_size"] == 2
    assert len(pd.read_csv(run / "history.csv")) == 2
    samples = _evaluate_latest(profile, run, tmp_path / "ddp.csv")
    assert len(samples) == 192 and samples["ciou"].between(0, 1).all()
