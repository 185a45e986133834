"""The paper-scale training-data path: `compressed` train caches (original JPEG bytes + int16 audio
windows, decoded in the DataLoader workers) give the decoded cache's items bit for bit, take a
fraction of its disk, are covered by the integrity check, and the disk footprint is projected —
and a run refused — before anything is decoded (`train --dry-run`)."""

from __future__ import annotations

import json
from collections import namedtuple

import numpy as np
import pytest
import soundfile
import torch
import yaml
from PIL import Image
from test_evaluate import real_profile  # noqa: F401  (the smoke Flickr-like set as user data)
from torch.utils.data import DataLoader

from vslrepro.__main__ import main
from vslrepro.config import ProfileError
from vslrepro.data.caches import AudioParams, CachedPairs, CompressedCache, build_cache, load_cache, projected_bytes
from vslrepro.data.caches import build as cache_module
from vslrepro.data.caches.integrity import array_records
from vslrepro.data.errors import DataError
from vslrepro.data.formats.lists import read_id_list
from vslrepro.profiles import load_profile, validate_profile

PAPER_AUDIO = AudioParams(3.0, 512, 274, sample_rate=16000)  # the paper's window and STFT
SIZE = 56  # crops of 56 px: frames resized to a shorter side of 61


def _write_clip(root, clip, frame_size, rng, *, stereo=False, seconds=3.5, rate=16000):
    (root / "frames").mkdir(parents=True, exist_ok=True)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    pixels = rng.integers(0, 256, (frame_size[1], frame_size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(root / "frames" / f"{clip}.jpg", quality=90)
    shape = (int(seconds * rate), 2) if stereo else (int(seconds * rate),)
    samples = rng.integers(-32768, 32768, shape, dtype=np.int16)  # full scale: -32768 is clipped by read_wav
    soundfile.write(root / "audio" / f"{clip}.wav", samples, rate, subtype="PCM_16")


@pytest.fixture
def media(tmp_path):
    """Five pairs: landscape, portrait and square frames; one stereo WAV (its channel average is not
    int16-exact) and one clip shorter than the 3-s window (tiled)."""
    root, rng = tmp_path / "media", np.random.default_rng(0)
    _write_clip(root, "wide", (90, 64), rng)
    _write_clip(root, "tall", (64, 100), rng)
    _write_clip(root, "square", (70, 70), rng)
    _write_clip(root, "stereo", (80, 64), rng, stereo=True)
    _write_clip(root, "short", (64, 80), rng, seconds=1.2)
    return root


PAIRS = [("wide", "wide"), ("tall", "tall"), ("square", "stereo"), ("stereo", "short"), ("short", "wide")]


def _both(media, tmp_path, storage="compressed"):
    kwargs = dict(mode="train", size=SIZE, audio=PAPER_AUDIO)
    decoded = build_cache(media, PAIRS, tmp_path / "cache", storage="decoded", **kwargs)
    compressed = build_cache(media, PAIRS, tmp_path / "cache", storage=storage, **kwargs)
    return decoded, compressed


@pytest.mark.parametrize("storage", ["compressed", "compressed_flac"])
def test_compressed_items_equal_decoded_items_bit_for_bit(media, tmp_path, storage):
    decoded, compressed = _both(media, tmp_path, storage)
    assert isinstance(compressed, CompressedCache) and decoded.folder != compressed.folder  # own cache keys
    assert compressed.storage == storage
    manifest = json.loads((compressed.folder / "done.json").read_text())
    assert manifest["storage"] == storage and manifest["float_windows"] == 1  # the stereo WAV's window
    assert compressed.float_rows.tolist() == [2]
    # the stored frame is the original file, byte for byte
    assert compressed.frame_bytes(1) == (media / "frames" / "tall.jpg").read_bytes()
    for epoch in (0, 3):
        for train in (True, False):  # seeded crops + flips, and the central crops of TrainingData
            a, b = (CachedPairs(c, size=SIZE, train=train, seed=7) for c in (decoded, compressed))
            a.set_epoch(epoch)
            b.set_epoch(epoch)
            for index in range(len(PAIRS)):
                image_a, spec_a, _ = a[index]
                image_b, spec_b, _ = b[index]
                assert image_a.dtype == image_b.dtype == torch.uint8 and spec_b.dtype == torch.float32
                assert torch.equal(image_a, image_b) and torch.equal(spec_a, spec_b)
                assert spec_b.is_contiguous() and spec_b.shape == (1, 257, 200)
    # through DataLoader workers (one torch thread each), collated: the same batches
    a, b = (CachedPairs(c, size=SIZE, train=True, seed=7) for c in (decoded, compressed))
    batches_a = list(DataLoader(a, batch_size=2, sampler=[4, 0, 2, 1], num_workers=0))
    batches_b = list(DataLoader(b, batch_size=2, sampler=[4, 0, 2, 1], num_workers=2))
    for (ia, sa, xa), (ib, sb, xb) in zip(batches_a, batches_b):
        assert torch.equal(ia, ib) and torch.equal(sa, sb) and torch.equal(xa, xb)
    # a method's deterministic pass over the training set (TrainingData), decoded by 2 workers
    from vslrepro.train import TrainingData
    cpu = torch.device("cpu")
    passes = [list(TrainingData(c, SIZE, 2, cpu, workers=w).batches()) for c, w in ((decoded, 0), (compressed, 2))]
    assert len(passes[0]) == len(passes[1]) == 3
    for batch_a, batch_b in zip(*passes):
        assert all(torch.equal(a, b) for a, b in zip(batch_a, batch_b))


def test_flac_audio_is_lossless_and_smaller_on_tonal_audio(tmp_path):
    root = tmp_path / "tones"
    (root / "frames").mkdir(parents=True)
    (root / "audio").mkdir()
    t = np.arange(4 * 16000) / 16000
    for k in range(3):
        Image.new("RGB", (64, 64), (40 * k, 90, 200)).save(root / "frames" / f"t{k}.jpg")
        tone = 0.3 * np.sin(2 * np.pi * 220 * (k + 1) * t) * (1 + 0.2 * np.sin(2 * np.pi * 3 * t))
        soundfile.write(root / "audio" / f"t{k}.wav", tone, 16000, subtype="PCM_16")
    pairs = [(f"t{k}", f"t{k}") for k in range(3)]
    caches = {storage: build_cache(root, pairs, tmp_path / "cache", mode="train", size=SIZE, audio=PAPER_AUDIO,
                                   storage=storage) for storage in ("compressed", "compressed_flac")}
    for k in range(3):
        assert np.array_equal(caches["compressed"].window(k), caches["compressed_flac"].window(k))
        assert np.array_equal(caches["compressed"].waves[k],
                              soundfile.read(root / "audio" / f"t{k}.wav", dtype="int16")[0][8000:56000])
    flac = json.loads((caches["compressed_flac"].folder / "done.json").read_text())["arrays"]
    assert set(flac) == {"frames.bin", "frame_offsets.npy", "audio.bin", "audio_offsets.npy", "float_waves.bin",
                         "float_rows.npy"}
    assert flac["audio.bin"]["bytes"] < 0.5 * 3 * 2 * 48_000  # tones: FLAC well under half the int16 bytes


def test_compressed_cache_is_smaller_and_projected(media, tmp_path):
    decoded, compressed = _both(media, tmp_path)
    on_disk = {}
    for name, cache in (("decoded", decoded), ("compressed", compressed)):
        records = json.loads((cache.folder / "done.json").read_text())["arrays"]
        assert records == array_records(cache.folder)  # every array file is recorded
        on_disk[name] = sum(r["bytes"] for r in records.values())
    assert set(json.loads((compressed.folder / "done.json").read_text())["arrays"]) == {
        "frames.bin", "frame_offsets.npy", "waves.bin", "float_waves.bin", "float_rows.npy"}
    jpegs = sum((media / "frames" / f"{v}.jpg").stat().st_size for v, _ in PAIRS)
    n, header = 48_000, 128  # samples of a 3-s 16 kHz window; bytes of a .npy header
    # compressed: the JPEG files, 5 int16 windows, 1 float32 window, 6 offsets, 1 row index
    assert on_disk["compressed"] == jpegs + 5 * 2 * n + 4 * n + (header + 6 * 8) + (header + 8)
    # decoded: the ragged frames, 5 float32 (1, 257, 200) spectrograms and 5 int32 (h, w)
    assert on_disk["decoded"] == (header + decoded.images.size) + (header + 5 * 4 * 257 * 200) + (header + 5 * 8)
    assert on_disk["compressed"] < on_disk["decoded"]  # (noise frames: JPEG hardly smaller than pixels)
    # the projection, from file sizes and image headers only: the same bytes but the .npy headers,
    # the closing offset and the float window (not foreseeable without decoding)
    projected = {name: projected_bytes(media, PAIRS, mode="train", size=SIZE, audio=PAPER_AUDIO, storage=name)
                 for name in ("decoded", "compressed")}
    assert all(p["missing"] == 0 and p["pairs"] == 5 for p in projected.values())
    assert on_disk["decoded"] - projected["decoded"]["bytes"] == 3 * header
    assert on_disk["compressed"] - projected["compressed"]["bytes"] == 2 * header + 8 + (4 * n + 8)


@pytest.mark.parametrize("storage, audio_file", [("compressed", "waves.bin"), ("compressed_flac", "audio.bin")])
def test_integrity_check_covers_the_compressed_files(media, tmp_path, capsys, storage, audio_file):
    _, compressed = _both(media, tmp_path, storage)
    folder = compressed.folder
    original = (folder / "frames.bin").read_bytes()
    with (folder / "frames.bin").open("r+b") as stream:  # one flipped byte in the middle of a JPEG
        stream.seek(compressed.frame_offsets[2] + 50)
        stream.write(bytes([original[compressed.frame_offsets[2] + 50] ^ 0xFF]))
    with pytest.raises(DataError, match="frames.bin fails its checksum"):
        load_cache(folder)
    (folder / "frames.bin").write_bytes(original)
    load_cache(folder)  # restored: passes
    with (folder / audio_file).open("r+b") as stream:
        stream.truncate(1000)
    with pytest.raises(DataError, match=f"{audio_file} holds 1000 bytes"):
        load_cache(folder)
    # build_cache rebuilds it, saying so, and the rebuilt cache passes
    rebuilt = build_cache(media, PAIRS, tmp_path / "cache", mode="train", size=SIZE, audio=PAPER_AUDIO,
                          storage=storage)
    assert "rebuilding" in capsys.readouterr().err
    assert rebuilt.frame_bytes(2) == (media / "frames" / "square.jpg").read_bytes()
    (folder / "float_rows.npy").unlink()
    with pytest.raises(DataError, match="float_rows.npy is missing"):
        load_cache(folder)


def test_unreadable_frame_is_named_and_compressed_needs_train(media, tmp_path):
    (media / "frames" / "tall.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="tall.jpg: unreadable"):
        build_cache(media, PAIRS, tmp_path / "cache", mode="train", size=SIZE, audio=PAPER_AUDIO,
                    storage="compressed")
    assert not list((tmp_path / "cache").glob("*/.*.partial"))  # the streams were removed
    with pytest.raises(ValueError, match="train caches only"):
        build_cache(media, PAIRS, tmp_path / "cache", mode="test", size=SIZE, audio=PAPER_AUDIO,
                    storage="compressed")


def test_a_cache_that_would_not_fit_is_refused_before_decoding(media, tmp_path, monkeypatch):
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(cache_module.shutil, "disk_usage", lambda path: Usage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(DataError, match=r"needs about .* GB .* free; free space, or set VSLREPRO_CACHE"):
        build_cache(media, PAIRS, tmp_path / "cache", mode="train", size=SIZE, audio=PAPER_AUDIO,
                    storage="compressed")
    assert not any((tmp_path / "cache").glob("*/done.json"))


@pytest.fixture
def paper_like(real_profile, tmp_path, monkeypatch):  # noqa: F811
    """The smoke Flickr-like set described as user data, with the paper's train storage."""
    path, root = real_profile
    params = yaml.safe_load(path.read_text())
    params["input"]["train_storage"] = "compressed"
    path.write_text(yaml.safe_dump(params))
    monkeypatch.setenv("VSLREPRO_CACHE", str(tmp_path / "vcache"))
    return path, root


def test_dry_run_prints_the_footprint_and_refuses_when_it_does_not_fit(paper_like, monkeypatch, capsys):
    path, root = paper_like
    Usage = namedtuple("Usage", "total used free")
    ids = read_id_list(root / "metadata" / "flickr_train.txt")
    params = load_profile(path)
    window = int(round(params["input"]["audio_duration"] * params["input"]["sample_rate"]))
    train_bytes = sum((root / "frames" / f"{i}.jpg").stat().st_size + 8 + 2 * window for i in ids)

    monkeypatch.setattr(cache_module.shutil, "disk_usage", lambda p: Usage(10**12, 0, 10**12))
    argv = ["train", "--profile", str(path), "--dataset", "flickr", "--method", "ezvsl", "--dry-run"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "train storage: compressed" in out
    train_row = next(line for line in out.splitlines() if line.strip().startswith("flickr") and " train " in line)
    assert f"{len(ids):8d} {train_bytes / 1e9:8.2f}" in train_row and "to build" in train_row
    assert "validation" in out and "refusing" not in out
    assert not (paper_like[0].parent / "vcache" / "runs").exists()  # nothing trained, nothing decoded
    assert not list((paper_like[0].parent / "vcache").rglob("done.json"))

    monkeypatch.setattr(cache_module.shutil, "disk_usage", lambda p: Usage(10**12, 10**12 - 10**5, 10**5))
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert "refusing to start" in out and "0.00 GB are free" in out


def test_paper_profile_uses_compressed_storage_and_smoke_quick_stay_decoded():
    from vslrepro.data.splits import train_storage

    assert train_storage(load_profile("paper")) == "compressed"
    assert train_storage(load_profile("smoke")) == train_storage(load_profile("quick")) == "decoded"
    assert "train_storage" not in load_profile("smoke")["input"]  # smoke/quick run identities unchanged
    bad = {**load_profile("smoke")}
    bad["input"] = {**bad["input"], "train_storage": "jpeg"}
    with pytest.raises(ProfileError, match="train_storage"):
        validate_profile(bad, "bad.yaml")


def test_bench_loader_smoke_size(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VSLREPRO_CACHE", str(tmp_path))
    assert main(["bench", "loader", "--pairs", "12", "--size", "224", "--workers", "0", "1",
                 "--batch-size", "4"]) == 0
    out = capsys.readouterr().out
    assert "12 synthetic pairs (320 px JPEG" in out
    for storage in ("decoded", "compressed", "compressed_flac"):
        assert f"  {storage:15}:" in out
    assert out.count("pairs/s per core") == 6 and out.count("pairs per CPU-second") == 6 and "144k pairs" in out
    sizes = [float(line.split(":")[1].split("KB/pair")[0]) for line in out.splitlines()
             if "KB/pair on disk" in line]
    assert sizes[0] > 3 * sizes[1]  # decoded ≈ 390 KB/pair, compressed ≈ 110 KB/pair


def test_training_on_a_compressed_cache_gives_the_same_weights(smoke_params, tmp_path):
    """One smoke EZ-VSL epoch (DataLoader workers as the profile says) trained from each storage:
    the same items, hence the same loss, validation and weights, bit for bit."""
    from vslrepro import stages

    weights, histories = {}, {}
    for storage in ("decoded", "compressed"):
        params = {**smoke_params, "profile": f"storage-{storage}",
                  "input": {**smoke_params["input"], "train_storage": storage},
                  "train": {**smoke_params["train"], "epochs": 1}}
        if storage == "decoded":
            del params["input"]["train_storage"]
        run = stages.train(params, "flickr", "ezvsl", out=tmp_path / storage, progress=False)
        weights[storage] = torch.load(run / "latest.pt", weights_only=False)["model"]
        histories[storage] = (run / "history.csv").read_text().split("\n")[1].split(",")[:4]  # epoch, loss, val
    assert histories["decoded"] == histories["compressed"]
    assert weights["decoded"].keys() == weights["compressed"].keys()
    assert all(torch.equal(weights["decoded"][k], weights["compressed"][k]) for k in weights["decoded"])
