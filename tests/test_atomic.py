"""Atomic writes: a failed write leaves the previous file intact and no temporary file behind;
`exclusive` serializes the holders of one lock."""

import threading
import time

import numpy as np
import pytest
import torch

from vslrepro.atomic import atomic_np_save, atomic_torch_save, atomic_write, atomic_write_text, exclusive


def test_round_trips(tmp_path):
    atomic_torch_save({"w": torch.arange(3)}, tmp_path / "sub" / "a.pt")
    assert torch.equal(torch.load(tmp_path / "sub" / "a.pt")["w"], torch.arange(3))
    atomic_np_save(np.eye(2), tmp_path / "b.npy")
    assert np.array_equal(np.load(tmp_path / "b.npy"), np.eye(2))


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "ckpt.pt"
    atomic_torch_save({"epoch": 1}, target)

    def crash(stream):
        stream.write(b"half a checkpoint")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError, match="killed mid-write"):
        atomic_write(target, crash)
    assert torch.load(target)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]


def test_text_round_trip(tmp_path):
    atomic_write_text(tmp_path / "run.json", "{\"é\": 1}\n")
    assert (tmp_path / "run.json").read_text(encoding="utf-8") == "{\"é\": 1}\n"


def test_exclusive_makes_the_second_holder_wait(tmp_path):
    lock, events = tmp_path / "sub" / "x.lock", []

    def second():
        with exclusive(lock, "the second"):
            events.append("second")

    with exclusive(lock, "the first"):
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.3)
        events.append("first done")
    thread.join(timeout=10)
    assert events == ["first done", "second"]
