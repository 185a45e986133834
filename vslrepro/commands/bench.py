"""Benchmarks: training throughput (`bench train`) and the training-data loader (`bench loader`).

`python -m vslrepro bench loader [--pairs 5000] [--size 224] [--storage decoded compressed
compressed_flac] [--workers 1 2]`: bytes per pair and DataLoader pairs/s per CPU core of the
train-cache storages (`vslrepro.data.caches`), on synthetic 320-px frames with the paper's audio settings
(`bench_loader`). The rest of this docstring is `bench train`:

`python -m vslrepro bench train --profile quick`.

Measures image+audio pairs per second of fwd + bwd + optimizer step, two ways, in one run:
- model-only: the same batch of tensors already on the device, over and over;
- with the data pipeline: the tensor cache → DataLoader (workers as in the profile) → device →
  normalization, exactly the trainer's path.
The ratio says whether training is compute-bound. `--synthetic-size 224` runs the model-only
part on random tensors at that image size with the profile's backbone (e.g. `--profile paper` on a
GPU without the real data), and the data part on an in-memory cache of random uint8 frames.
"""

from __future__ import annotations

import json
import os
import resource
import time
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from vslrepro.data.caches import AudioParams, CachedPairs, TensorCache, build_cache
from vslrepro.data.datasets import synthetic_datasets
from vslrepro.data.formats.audio import spectrogram_shape
from vslrepro.data.formats.images import normalize_images
from vslrepro.data.formats.lists import read_id_list
from vslrepro.data.splits import train_split
from vslrepro.data.synthetic import BENCH_SCALE, write_train_split
from vslrepro.factory import untrained_model
from vslrepro.paths import cache_dir
from vslrepro.profiles import load_profile
from vslrepro.seeding import cpu_threads, seed_everything
from vslrepro.train import epoch_order


def _step(model, optimizer, images, specs, amp: bool, device: torch.device) -> None:
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        loss = model(images, specs)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _random_cache(n: int, size: int, spec_shape: tuple[int, int]) -> TensorCache:
    rng = np.random.default_rng(0)
    side = int(size * 1.1)
    images = rng.integers(0, 256, (n, 3, side, side), dtype=np.uint8)
    specs = rng.standard_normal((n, 1, *spec_shape), dtype=np.float32)
    return TensorCache(images, specs, [(str(i), str(i)) for i in range(n)], folder=None)


def bench_train(profile: str | dict[str, Any], *, method: str = "ezvsl", dataset: str | None = None,
                batch_size: int | None = None, steps: int = 20, synthetic_size: int | None = None,
                device: str | None = None) -> dict[str, float]:
    """Run the benchmark described in the module docstring and print a small report.

    Args:
        profile: a profile name, YAML path or loaded dict.
        method: the method trained.
        dataset: whose training pairs feed the data part (default: the profile's first dataset).
        batch_size: per step (default: the profile's `train.batch_size`).
        steps: timed steps of each part.
        synthetic_size: run the model-only part on random tensors at this image size, the data part
            on an in-memory cache of random frames (no data needed).
        device: cpu, cuda, cuda:1 (default: cuda when available).

    Returns:
        {"model_only": pairs/s, "with_data": pairs/s}.
    """
    params = dict(profile) if isinstance(profile, dict) else load_profile(profile)
    dataset = dataset or params["datasets"][0]
    seed_everything(0)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    batch = batch_size or params["train"]["batch_size"]
    size = synthetic_size or params["input"]["image_size"]
    amp = bool(params["train"].get("amp")) and device.type == "cuda"
    model = untrained_model(params, method).to(device)  # random init: throughput only
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    if synthetic_size:
        inp = params["input"]
        spec_shape = spectrogram_shape(16000, inp["audio_duration"], inp["nperseg"], inp["noverlap"])
        cache = _random_cache(batch * (steps + 3), size, spec_shape)
    else:
        cache = train_split(params, dataset)
    data = CachedPairs(cache, size=size, train=True, seed=0)
    loader = DataLoader(data, batch_size=batch, shuffle=True, drop_last=True,
                        num_workers=params["train"]["num_workers"], pin_memory=device.type == "cuda",
                        persistent_workers=params["train"]["num_workers"] > 0)

    first = next(iter(loader))
    images = normalize_images(first[0].to(device))
    specs = first[1].to(device)
    for _ in range(3):  # warm-up (cuDNN autotune, allocator)
        _step(model, optimizer, images, specs, amp, device)
    _sync(device)
    tic = time.perf_counter()
    for _ in range(steps):
        _step(model, optimizer, images, specs, amp, device)
    _sync(device)
    model_only = steps * batch / (time.perf_counter() - tic)

    steps, tic = 0, time.perf_counter()
    while steps < steps:
        for raw_images, raw_specs, _ in loader:
            images = normalize_images(raw_images.to(device, non_blocking=True))
            if device.type == "cuda":
                images = images.contiguous(memory_format=torch.channels_last)
            _step(model, optimizer, images, raw_specs.to(device, non_blocking=True), amp, device)
            steps += 1
            if steps >= steps:
                break
    _sync(device)
    with_data = steps * batch / (time.perf_counter() - tic)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"bench train: profile {params['profile']}, method {method}, dataset {dataset}, backbone "
          f"{params['model']['backbone']}, image {size} px, batch {batch}, amp {amp}, device {name}, "
          f"workers {params['train']['num_workers']}")
    print(f"  model only        : {model_only:9.1f} pairs/s")
    print(f"  with data pipeline: {with_data:9.1f} pairs/s ({100 * with_data / model_only:.0f} % of model only)")
    return {"model_only": model_only, "with_data": with_data}


# ------------------------------------------------------------------------------ loader benchmark

def _storage_bytes(cache) -> int:
    """Bytes of a cache folder's array files (as its manifest records them)."""
    manifest = json.loads((cache.folder / "done.json").read_text())
    return sum(record["bytes"] for record in manifest["arrays"].values())


def _cpu_seconds() -> tuple[float, float]:
    """CPU seconds (user + system) used so far by this process and by its finished children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def _loader_rate(cache, size: int, batch: int, workers: int, batches: int | None) -> dict[str, float]:
    """Throughput of the trainer's DataLoader over `cache` (seeded crops, collated batches of `batch`).

    Two measures: wall-clock pairs/s, timed after each worker's first batch (start-up is not steady
    state), and pairs per CPU-second, all pairs over the CPU time the loading took (workers, and
    the main process receiving the batches). The second does not depend on what else the machine
    runs; on a busy machine the first is lower than the cores would give.
    """
    data = CachedPairs(cache, size=size, train=True, seed=0)
    order = epoch_order(len(data), 0, 0, batch).tolist()
    if batches is not None:
        order = order[:batch * batches]
    warm = max(workers, 1)
    if len(order) // batch <= warm:
        raise ValueError(f"bench loader: {len(order)} pairs give no batch of {batch} after the {warm} warm-up "
                         "batch(es); use more --pairs or a smaller --batch-size")
    own, children = _cpu_seconds()
    loader = DataLoader(data, batch_size=batch, sampler=order, num_workers=workers, persistent_workers=False)
    timed, tic = 0, None
    for step, (images, specs, _) in enumerate(loader):
        if step == warm - 1:
            tic = time.perf_counter()
        elif step >= warm:
            timed += len(images)
    wall = time.perf_counter() - tic
    del loader  # its workers end (they are children: their CPU time is counted once they are reaped)
    own_after, children_after = _cpu_seconds()
    main_cpu, worker_cpu = own_after - own, children_after - children
    return {"pairs_per_s": timed / wall, "timed_pairs": timed,
            "pairs_per_cpu_s": len(order) / (main_cpu + worker_cpu),
            "main_cpu_ms_per_pair": 1e3 * main_cpu / len(order)}


def bench_loader(*, pairs: int = 5000, size: int = 224, storages: tuple[str, ...] = ("decoded", "compressed",
                 "compressed_flac"), workers: tuple[int, ...] = (1, 2), batch_size: int = 128,
                 batches: int | None = None, dataset: str | None = None) -> dict[str, Any]:
    """Bytes per pair and DataLoader pairs/s per CPU core of the train-cache storages.

    On `pairs` synthetic training pairs of `dataset`'s counterpart (`synthetic.BENCH_SCALE`: 320-px
    JPEG frames, 4-s 16 kHz WAVs; generated once under `<cache>/bench/`; default: the first dataset
    the benchmark has a counterpart of) with the paper's audio settings (3-s window, nperseg 512,
    noverlap 274) and `size`-px crops, each of `storages` is built (timed, reused when present) and
    read through the trainer's DataLoader with each worker count in `workers`, batches of
    `batch_size` collated (`batches` of them, default one epoch). Prints a report, including the
    projection to 16 cores and to the paper's 144k pairs, and returns the numbers.
    """
    dataset = dataset or synthetic_datasets()[0].name
    scale = replace(BENCH_SCALE, train=pairs)
    root = cache_dir() / "bench" / f"loader-synth-{dataset}-{pairs}"
    tic = time.perf_counter()
    ids = read_id_list(write_train_split(root, scale, dataset=dataset, workers=max(workers)))
    generated = time.perf_counter() - tic
    training = [(i, i) for i in ids]
    audio = AudioParams(3.0, 512, 274, sample_rate=scale.sample_rate)
    jpeg = np.array([(root / "frames" / f"{i}.jpg").stat().st_size for i in ids])
    window = int(round(audio.duration * scale.sample_rate))
    print(f"bench loader: {len(training)} synthetic pairs ({scale.frame_size} px JPEG q{scale.jpeg_quality} frames, "
          f"mean {jpeg.mean() / 1e3:.1f} KB; {scale.seconds:g}-s {scale.sample_rate} Hz WAVs) in {root} "
          f"({generated:.0f} s); {size}-px crops, spectrogram "
          f"{spectrogram_shape(scale.sample_rate, 3.0, 512, 274)}, "
          f"batches of {batch_size}; {os.cpu_count()} CPU core(s), load average {os.getloadavg()[0]:.1f}")
    report: dict[str, Any] = {"pairs": len(training), "jpeg_mean_bytes": float(jpeg.mean()), "storages": {}}
    for storage in storages:
        tic = time.perf_counter()
        with cpu_threads(1):  # one torch thread, as in a DataLoader worker (the items do not depend on it)
            cache = build_cache(root, training, cache_dir() / "bench" / "tensors", mode="train", size=size,
                                audio=audio, storage=storage)
        built = time.perf_counter() - tic
        per_pair = _storage_bytes(cache) / len(cache)
        entry = {"bytes_per_pair": per_pair, "build_seconds": built, "rates": {}}
        print(f"  {storage:15}: {per_pair / 1e3:7.1f} KB/pair on disk "
              f"(144k pairs: {per_pair * 144_000 / 1e9:5.1f} GB); "
              f"built or verified in {built:.0f} s")
        for count in workers:
            rate = _loader_rate(cache, size, batch_size, count, batches)
            rate["per_core"] = rate["pairs_per_s"] / max(count, 1)
            entry["rates"][count] = rate
            print(f"    {count} worker(s): {rate['pairs_per_s']:8.1f} pairs/s wall = {rate['per_core']:7.1f} "
                  f"pairs/s per core ({rate['timed_pairs']} pairs timed) -> 16 cores: {16 * rate['per_core']:7.0f}; "
                  f"CPU time: {rate['pairs_per_cpu_s']:7.1f} pairs per CPU-second -> 16 cores: "
                  f"{16 * rate['pairs_per_cpu_s']:7.0f} pairs/s "
                  f"(main process {rate['main_cpu_ms_per_pair']:.2f} ms/pair)")
        report["storages"][storage] = entry
    paper = jpeg.mean() + 8 + 2 * window  # JPEG bytes + offset + int16 3-s 16 kHz window
    report["paper_compressed_bytes_per_pair"] = float(paper)
    print(f"  paper settings, compressed: {jpeg.mean() / 1e3:.1f} KB frame + {2 * window / 1e3:.1f} KB int16 audio "
          f"= {paper / 1e3:.1f} KB/pair -> 144k pairs: {paper * 144_000 / 1e9:.1f} GB (frames of this synthetic set; "
          "the dry-run of a real profile measures its own frames)")
    return report
