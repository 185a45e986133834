"""The training protocol on the smoke benchmark: BEST/LATEST, exact resume after SIGKILL, torchrun DDP;
a run folder belongs to one parameter set, and its records never lie."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from vslrepro import stages, train
from vslrepro.train import epoch_order


def _profile(tmp_path, smoke_params, epochs=3, method="ezvsl"):
    """A copy of the smoke profile with fewer epochs (tests stay fast), under its own name, with the
    trained method only (the other methods' stage schedules may need more epochs)."""
    params = {**smoke_params, "profile": "smoke-train-test", "train": {**smoke_params["train"], "epochs": epochs},
              "methods": {method: smoke_params["methods"][method]}}
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


def assert_same_run(profile, straight, resumed, tmp_path):
    """An interrupted-then-resumed run equals the uninterrupted one: the same history (times aside)
    and the same per-sample results of its LATEST checkpoint."""
    pd.testing.assert_frame_equal(pd.read_csv(resumed / "history.csv").drop(columns="seconds"),
                                  pd.read_csv(straight / "history.csv").drop(columns="seconds"))
    pd.testing.assert_frame_equal(_evaluate_latest(profile, straight, tmp_path / "straight.csv"),
                                  _evaluate_latest(profile, resumed, tmp_path / "resumed.csv"))


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
    assert_same_run(profile, tmp_path / "straight", killed, tmp_path)


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


# ------------------------------------------------------------- a run folder, one parameter set

def _with(params, section, **values):
    return {**params, section: {**params[section], **values}}


def _files(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(run.iterdir()) if p.is_file() and p.name != ".lock"}


def _refused(params, run, dataset="flickr", match=None):
    with pytest.raises(RuntimeError, match=match) as error:
        stages.train(params, dataset, "ezvsl", out=run, progress=False)
    message = str(error.value)
    assert str(run) in message and "--out" in message and "delete" in message  # the folder and the way out
    return message


@pytest.fixture()
def one_epoch(smoke_params):
    return _with(smoke_params, "train", epochs=1)


def test_a_finished_run_is_found_never_rewritten_and_refused_with_other_parameters(tmp_path, one_epoch):
    run = stages.train(one_epoch, "flickr", "ezvsl", out=tmp_path / "run", progress=False)
    before = _files(run)
    assert set(before) == {"best.pt", "latest.pt", "history.csv", "run.json"}
    # The report: other parameters over a finished run trained nothing but rewrote run.json.
    assert "dataset: \"flickr\" -> \"vggss\"" in _refused(one_epoch, run, dataset="vggss")
    _refused(_with(one_epoch, "train", lr=0.01), run, match=r"identity\.profile\.train\.lr: 0\.0005 -> 0\.01")
    _refused(_with(one_epoch, "evaluate", iou_thr=0.3), run, match=r"identity\.validation\.iou_thr: 0\.5 -> 0\.3")
    _refused(_with(one_epoch, "methods", ezvsl={"tau": 0.05}), run, match=r"method_config\.tau")
    # Settings the run does not depend on find it; its records keep the parameters it was trained with.
    stages.train(_with(one_epoch, "evaluate", n_boot=7), "flickr", "ezvsl", out=run, progress=False)
    assert _files(run) == before
    recorded = json.loads((run / "run.json").read_text())["params"]["evaluate"]
    assert recorded["n_boot"] == one_epoch["evaluate"]["n_boot"]


def test_a_folder_holding_only_run_json_is_refused_with_other_parameters(tmp_path, one_epoch):
    run = stages.train(one_epoch, "flickr", "ezvsl", out=tmp_path / "run", progress=False)
    for name in ("best.pt", "latest.pt", "history.csv"):
        (run / name).unlink()
    _refused(one_epoch, run, dataset="vggss", match=r"run\.json differs in: dataset")
    _refused(_with(one_epoch, "train", lr=0.01), run, match=r"run\.json differs in: identity\.profile\.train\.lr")
    assert set(_files(run)) == {"run.json"}
    stages.train(one_epoch, "flickr", "ezvsl", out=run, progress=False)  # its own parameters train it again
    assert set(_files(run)) == {"best.pt", "latest.pt", "history.csv", "run.json"}


def test_a_partly_finished_run_is_refused_with_other_parameters(tmp_path, smoke_params, monkeypatch):
    params = _with(smoke_params, "train", epochs=2)
    calls = []
    real_validate = train.validate

    def validate_then_die(*args, **kwargs):  # the process dies in epoch 2, after epoch 1's files
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed in epoch 2")
        return real_validate(*args, **kwargs)

    monkeypatch.setattr(train, "validate", validate_then_die)
    with pytest.raises(KeyboardInterrupt):
        stages.train(params, "flickr", "ezvsl", out=tmp_path / "run", progress=False)
    monkeypatch.setattr(train, "validate", real_validate)
    run = tmp_path / "run"
    assert set(_files(run)) == {"best.pt", "latest.pt", "history.csv"}  # no run.json: unfinished
    before = _files(run)
    _refused(params, run, dataset="vggss", match=r"latest\.pt differs in: dataset")
    _refused(_with(params, "input", nperseg=64), run, match=r"identity\.profile\.input\.nperseg: 128 -> 64")
    _refused(_with(params, "evaluate", binarize="absolute"), run, match=r"identity\.validation\.binarize")
    monkeypatch.setenv("WORLD_SIZE", "2")  # refused before any process group starts
    _refused(params, run, match="unfinished run of 1 process")
    monkeypatch.delenv("WORLD_SIZE")
    assert _files(run) == before
    stages.train(params, "flickr", "ezvsl", out=run, progress=False)  # its own parameters resume it
    assert list(pd.read_csv(run / "history.csv")["epoch"]) == [1, 2]
    record = json.loads((run / "run.json").read_text())
    assert record["dataset"] == "flickr" and record["identity"]["validation"]["iou_thr"] == 0.5


def test_a_kill_between_latest_and_best_is_mended(tmp_path, one_epoch, monkeypatch):
    real_save = train.atomic_torch_save

    def die_at_best(obj, path):
        if Path(path).name == "best.pt":
            raise KeyboardInterrupt("killed after latest.pt")
        return real_save(obj, path)

    monkeypatch.setattr(train, "atomic_torch_save", die_at_best)
    with pytest.raises(KeyboardInterrupt):
        stages.train(one_epoch, "flickr", "ezvsl", out=tmp_path / "run", progress=False)
    monkeypatch.setattr(train, "atomic_torch_save", real_save)
    run = tmp_path / "run"
    assert not (run / "best.pt").exists() and (run / "latest.pt").is_file()
    stages.train(one_epoch, "flickr", "ezvsl", out=run, progress=False)
    best = torch.load(run / "best.pt", weights_only=False)
    latest = torch.load(run / "latest.pt", weights_only=False)
    assert best["epoch"] == latest["best"]["epoch"] == 1
    assert all(torch.equal(best["model"][k], v) for k, v in latest["model"].items())
    # best.pt of another epoch than the recorded one cannot be mended: refused, not used
    latest["best"]["epoch"] = 0
    torch.save(latest, run / "latest.pt")
    (run / "run.json").unlink()
    _refused(one_epoch, run, match="records epoch 0 as BEST but best.pt holds epoch 1")


def test_every_record_file_is_written_atomically(tmp_path, one_epoch, monkeypatch):
    written = []
    real_text, real_save = train.atomic_write_text, train.atomic_torch_save
    monkeypatch.setattr(train, "atomic_write_text", lambda path, text: written.append(Path(path).name)
                        or real_text(path, text))
    monkeypatch.setattr(train, "atomic_torch_save", lambda obj, path: written.append(Path(path).name)
                        or real_save(obj, path))
    run = stages.train(one_epoch, "flickr", "ezvsl", out=tmp_path / "run", progress=False)
    assert set(written) == set(_files(run)) == {"best.pt", "latest.pt", "history.csv", "run.json"}


def test_two_processes_training_one_folder_take_turns(tmp_path, smoke_params):
    """The second waits on the folder's lock, then finds the finished run: one training, no mixed files."""
    profile = _profile(tmp_path, smoke_params, epochs=1)
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    processes = [subprocess.Popen(_train_cmd(profile, run), env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errors = [p.communicate(timeout=300)[1] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], errors
    assert list(pd.read_csv(run / "history.csv")["epoch"]) == [1]
    assert torch.load(run / "latest.pt", weights_only=False)["epoch"] == 1
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]


def test_a_run_does_not_depend_on_the_callers_torch_threads(tmp_path, one_epoch):
    """`train.cpu_threads` fixes the threads a run trains on, so the pipeline (a kernel per stage with
    cpu_count/jobs threads), the CLI and in-process callers (tests, notebooks) train the same run."""
    assert one_epoch["train"]["cpu_threads"] == 1
    before = torch.get_num_threads()
    weights = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            run = stages.train(one_epoch, "flickr", "ezvsl", out=tmp_path / f"threads{threads}", progress=False)
            assert torch.get_num_threads() == threads  # the caller's setting is restored
            weights.append(torch.load(run / "latest.pt", weights_only=True)["model"])
            histories = [pd.read_csv(tmp_path / f"threads{t}" / "history.csv") for t in (1, threads)]
            pd.testing.assert_frame_equal(*(h.drop(columns="seconds") for h in histories))  # not the timing
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])
