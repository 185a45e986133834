"""Training-throughput benchmark: `python -m vslrepro bench train --profile quick`.

Measures image+audio pairs per second of fwd + bwd + optimizer step, two ways, in one run:
- model-only: the same batch of tensors already on the device, over and over;
- with the data pipeline: the tensor cache → DataLoader (workers as in the profile) → device →
  normalization, exactly the trainer's path.
The ratio says whether training is compute-bound. `--synthetic-size 224` runs the model-only
part on random tensors at that image size with the profile's backbone (e.g. `--profile paper` on a
GPU without the real data), and the data part on an in-memory cache of random uint8 frames.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import torch
from torch.utils.data import DataLoader

from vslrepro.data.cache import CachedPairs, TensorCache
from vslrepro.data.images import normalize_images
from vslrepro.methods import method_class
from vslrepro.profiles import load_profile
from vslrepro.seeding import seed_everything


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


def bench_train(args: SimpleNamespace) -> dict[str, float]:
    """Run the benchmark described in the module docstring and print a small report."""
    params = load_profile(args.profile)
    seed_everything(0)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    batch = args.batch_size or params["train"]["batch_size"]
    size = args.synthetic_size or params["input"]["image_size"]
    amp = bool(params["train"].get("amp")) and device.type == "cuda"
    cls = method_class(args.method)
    model = cls(**cls.config(params)).to(device)  # random init: throughput only
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    if args.synthetic_size:
        from vslrepro.data.audio import spectrogram_shape
        inp = params["input"]
        spec_shape = spectrogram_shape(16000, inp["audio_duration"], inp["nperseg"], inp["noverlap"])
        cache = _random_cache(batch * (args.steps + 3), size, spec_shape)
    else:
        from vslrepro.data.splits import train_split
        cache = train_split(params, args.dataset)
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
    for _ in range(args.steps):
        _step(model, optimizer, images, specs, amp, device)
    _sync(device)
    model_only = args.steps * batch / (time.perf_counter() - tic)

    steps, tic = 0, time.perf_counter()
    while steps < args.steps:
        for raw_images, raw_specs, _ in loader:
            images = normalize_images(raw_images.to(device, non_blocking=True))
            if device.type == "cuda":
                images = images.contiguous(memory_format=torch.channels_last)
            _step(model, optimizer, images, raw_specs.to(device, non_blocking=True), amp, device)
            steps += 1
            if steps >= args.steps:
                break
    _sync(device)
    with_data = steps * batch / (time.perf_counter() - tic)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"bench train: profile {params['profile']}, method {args.method}, backbone "
          f"{params['model']['backbone']}, image {size} px, batch {batch}, amp {amp}, device {name}, "
          f"workers {params['train']['num_workers']}")
    print(f"  model only        : {model_only:9.1f} pairs/s")
    print(f"  with data pipeline: {with_data:9.1f} pairs/s ({100 * with_data / model_only:.0f} % of model only)")
    return {"model_only": model_only, "with_data": with_data}
