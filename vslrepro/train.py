"""The training protocol: fixed epochs, BEST and LATEST checkpoints, exact resume.

One run trains one method on one dataset for `train.epochs` epochs. After every epoch it scores
the annotated validation split and writes, atomically,
- `latest.pt` — the weights after the last finished epoch (the fair, weakly-supervised protocol),
- `best.pt`   — the weights of the epoch with the highest validation LocAcc (early stopping;
  ties keep the later epoch, as the official `train.py` compares with `>=`),
- `history.csv` — loss, validation LocAcc/AUC and time per epoch.

The validation split is the profile's choice (`data.<dataset>.val`): the official VGGSound scripts of
EZ-VSL and SLAVC validate on the Flickr-SoundNet test positives, which the `paper` profile follows.
Training runs in fp32, as the official code does; `train.amp: true` opts into bf16 autocast.

A run folder belongs to one parameter set (`run_binding`): the dataset, the run identity
(`vslrepro.layout.run_identity`: profile sections, the method's hyperparameters, the training code's
hash) and the validation settings that select BEST, recorded in `latest.pt` and `run.json`.
Resuming or reusing a folder made under another one is refused, naming what differs; so is resuming
an unfinished run on another number of processes. A finished run is found, never rewritten: its
`run.json` keeps the parameters it was trained with. Every file of a run is written atomically, and
one process at a time trains a folder (the lock `<out>/.lock`): a second one waits, then finds the run.

Incomplete data (docs/training.md). A training list or validation set whose media are partly
missing stops the run with an error naming the clips, unless `train.allow_incomplete` (CLI
`train --allow-incomplete`) allows it. The run then trains on the clips that exist and `run.json`
records, under "data", the list used: its counts, the ids left out and a digest of the ids used
(with `train_list_used.txt` and the skip logs in the run folder). The digest is also kept in
`latest.pt`: resuming, or finding a finished run, with another list used is refused. A complete
list trains exactly as before.

Every random choice of epoch e derives from (seed, e) through `vslrepro.seeding`: the batch order,
each sample's crop and flip (with its index), and torch's global RNG (dropout and other in-model
draws; purpose "model"). A run killed at any point and started again resumes from
`latest.pt` and ends with the same weights as an uninterrupted run (on CPU; GPU kernels may not be
bitwise deterministic).

Under torchrun (WORLD_SIZE > 1) each process trains on its shard with a per-process batch of
batch_size / world_size and in-batch negatives from its own shard — as the official EZ-VSL code
does (no all-gather); gradients are averaged by DistributedDataParallel; rank 0 validates and saves.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Iterator, NoReturn

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from vslrepro import metrics
from vslrepro.atomic import atomic_torch_save, atomic_write_text, exclusive
from vslrepro.data.caches import CachedPairs
from vslrepro.data.datasets import locate
from vslrepro.data.errors import IncompleteDataError, SkipLog
from vslrepro.data.formats.images import normalize_images
from vslrepro.data.formats.lists import read_id_list
from vslrepro.data.splits import train_split, validation_split
from vslrepro.evaluate import score_samples
from vslrepro.factory import training_model
from vslrepro.layout import run_identity
from vslrepro.methods import load_weights_file, method_class
from vslrepro.provenance import environment
from vslrepro.seeding import cpu_threads, derive_seed, numpy_generator, seed_everything


def epoch_order(n: int, seed: int, epoch: int, batch_size: int, rank: int = 0, world: int = 1) -> np.ndarray:
    """This process's sample order for one epoch (drop_last, like the official loaders)."""
    order = numpy_generator(seed, epoch).permutation(n)
    usable = (n // batch_size) * batch_size  # global batches only
    order = order[:usable].reshape(-1, batch_size)  # (batches, global batch)
    per_rank = batch_size // world
    return order[:, rank * per_rank:(rank + 1) * per_rank].reshape(-1)


def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    return (dist.get_rank() if world > 1 else 0), world


def _device(requested: str | None, rank: int) -> torch.device:
    if requested:
        return torch.device(requested)
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", rank))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


class TrainingData:
    """The training set as a method sees it between epochs: a deterministic pass, no augmentation.

    `begin_epoch(epoch, data)` receives one; a method whose objective needs the whole training set
    at a stage boundary (e.g. DSOL's k-means over the training features) iterates `data.batches()`,
    which yields (images, specs, indices): ImageNet-normalized (B, 3, S, S) central crops of the
    training frames, their (B, 1, F, T) spectrograms and (B,) pair indices, in index order, on the
    training device. Nothing is loaded until a method asks, so methods without a schedule pay nothing.
    Every process of a torchrun job sees the whole set (the same result on every rank). `workers`
    DataLoader workers decode the items (a compressed cache decodes each frame; the items, hence
    the batches, do not depend on the count).
    """

    def __init__(self, cache, size: int, batch_size: int, device: torch.device, workers: int = 0) -> None:
        self.pairs = CachedPairs(cache, size=size, train=False)
        self.batch_size, self.device, self.workers = batch_size, device, workers

    def __len__(self) -> int:
        return len(self.pairs)

    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(images, specs, indices) batches of the whole training set, in index order."""
        for images, specs, indices in DataLoader(self.pairs, batch_size=self.batch_size, shuffle=False,
                                                 num_workers=self.workers):
            yield normalize_images(images.to(self.device)), specs.to(self.device), indices


def validate(model: torch.nn.Module, index: pd.DataFrame, cache, params: dict[str, Any],
             device: torch.device) -> dict[str, float]:
    """Validation LocAcc and AUC over the annotated positives (ground truth of the validation
    split's own dataset, `index.attrs["dataset"]`, which may differ from the training dataset)."""
    ev = params["evaluate"]
    samples = score_samples(model, index, cache, index.attrs["dataset"], batch_size=ev["batch_size"],
                            device=device,
                            image_size=params["input"]["image_size"], binarize=ev["binarize"],
                            pred_size=ev["pred_size"], pred_thr=ev["pred_thr"])
    ious = samples["ciou"].to_numpy()
    stats = metrics.summarize(ious, np.ones_like(ious), np.ones(len(ious), dtype=bool),
                              iou_thr=ev["iou_thr"])  # positives only: LocAcc and AUC
    return {"val_locacc": float(stats["locacc"]), "val_auc": float(stats["auc"])}


def run_binding(params: dict[str, Any], dataset: str, method: str) -> dict[str, Any]:
    """What a run folder belongs to: the dataset and the run identity (which holds the validation
    settings that select BEST)."""
    return {"dataset": dataset, "identity": run_identity(params, method)}


def _differences(recorded: Any, current: Any, prefix: str = "") -> list[str]:
    """`key.path: recorded -> current` for every leaf that differs (values shortened)."""
    if isinstance(recorded, dict) and isinstance(current, dict):
        return [line for key in sorted(set(recorded) | set(current), key=str)
                for line in _differences(recorded.get(key), current.get(key), f"{prefix}{key}.")]
    if json.dumps(recorded, sort_keys=True, default=str) == json.dumps(current, sort_keys=True, default=str):
        return []

    def short(value: Any) -> str:
        text = json.dumps(value, sort_keys=True, default=str)
        return text if len(text) <= 40 else text[:37] + "..."

    return [f"{prefix.rstrip('.')}: {short(recorded)} -> {short(current)}"]


def _refuse(out: Path, why: str) -> NoReturn:
    raise RuntimeError(f"run folder {out} {why}; refusing to resume or reuse it. Train into another "
                       f"folder (--out DIR) or delete {out} to train it again")


def _check_binding(out: Path, binding: dict[str, Any], latest: dict[str, Any] | None, world: int,
                   epochs: int) -> None:
    """Refuse a run folder made under another parameter set (other dataset, profile sections,
    hyperparameters, training code or validation settings), as recorded in its run.json (a
    finished run, or one whose checkpoints were deleted) and in its `latest` checkpoint (an
    unfinished one); and refuse to resume an unfinished run on another number of processes."""
    records = []
    if (out / "run.json").is_file():
        try:
            records.append(("run.json", json.loads((out / "run.json").read_text())))
        except ValueError as error:
            _refuse(out, f"has an unreadable run.json ({error})")
    if latest is not None:
        records.append(("latest.pt", latest))
    for source, record in records:
        changed = _differences({k: record.get(k) for k in binding}, binding)
        if changed:
            _refuse(out, f"was made under another run identity ({source} differs in: {'; '.join(changed)})")
    if latest is not None and latest["epoch"] < epochs and latest.get("world_size") != world:
        _refuse(out, f"holds an unfinished run of {latest.get('world_size')} process(es) and this one has "
                     f"{world}: in-batch negatives differ, resuming would mix two trainings")


def data_coverage(params: dict[str, Any], dataset: str, train_cache, skipped_train: SkipLog | None,
                  val_index: pd.DataFrame, skipped_val: SkipLog | None) -> dict[str, Any]:
    """What the run trains and validates on, for run.json: the training list, how many of its
    clips were listed and used, the ids left out, a digest of the ids used; the same counts for the
    validation set."""
    train_list = locate(params, dataset).train_list
    used = [video for video, _ in train_cache.pairs]
    listed = len(read_id_list(train_list))
    val_listed = int(val_index.attrs.get("listed", len(val_index)))
    return {
        "train": {"list": str(train_list), "listed": listed, "used": len(used), "left_out": listed - len(used),
                  "left_out_ids": sorted(skipped_train.ids) if skipped_train is not None else [],
                  "used_sha256": hashlib.sha256("\n".join(used).encode()).hexdigest()},
        "validation": {"listed": val_listed, "used": len(val_index), "left_out": val_listed - len(val_index),
                       "left_out_ids": sorted(skipped_val.ids) if skipped_val is not None else []},
    }


def _write_coverage_files(out: Path, coverage: dict[str, Any], train_cache, skipped: dict[str, SkipLog | None]) -> None:
    """For an incomplete run: the ids used (`train_list_used.txt`) and the skip logs, named in
    `coverage` (which goes to run.json)."""
    if coverage["train"]["left_out"]:
        atomic_write_text(out / "train_list_used.txt", "".join(f"{video}\n" for video, _ in train_cache.pairs))
        coverage["train"]["used_list"] = "train_list_used.txt"
    for split, log in skipped.items():
        if log is not None and len(log):
            log.write_csv(out / f"skipped_{split}.csv")
            coverage[split]["skip_log"] = f"skipped_{split}.csv"


def _repair_best(out: Path, latest: dict[str, Any]) -> None:
    """Make best.pt hold the epoch `latest` records as best. A kill between writing latest.pt and
    best.pt leaves best.pt one best epoch behind; that epoch is then the latest one, whose weights
    latest.pt holds. Any other mismatch (best.pt deleted, replaced) cannot be mended: refused."""
    epoch = latest["best"]["epoch"]
    found = load_weights_file(out / "best.pt").get("epoch") if (out / "best.pt").is_file() else None
    if found == epoch:
        return
    if epoch != latest["epoch"]:
        _refuse(out, f"records epoch {epoch} as BEST but best.pt "
                     + ("is missing" if found is None else f"holds epoch {found}"))
    atomic_torch_save({"model": latest["model"], "epoch": epoch}, out / "best.pt")


def train_run(params: dict[str, Any], dataset: str, method: str, out: str | Path, *,
              device: str | None = None, progress: bool = True) -> Path:
    """Train `method` on `dataset` with profile `params` into `out`; resume when `out/latest.pt` exists.

    Returns:
        The run folder, holding best.pt, latest.pt, history.csv and run.json.
    """
    cls = method_class(method)
    if cls.run_method() != method:
        raise ValueError(f"{method!r} is not trained on its own"
                         + (f" (it reuses the {cls.trains_as!r} run)" if cls.trains_as else " (training-free)"))
    out = Path(out)
    with cpu_threads(params["train"].get("cpu_threads")):  # the run's numbers depend on it (seeding.cpu_threads)
        if int(os.environ.get("RANK", "0")) == 0:  # one training per folder at a time (rank 0 speaks for its job)
            with exclusive(out / ".lock", f"training {out}"):
                return _train_run(params, dataset, cls, out, device=device, progress=progress)
        return _train_run(params, dataset, cls, out, device=device, progress=progress)


def _train_run(params: dict[str, Any], dataset: str, cls: type, out: Path, *,
               device: str | None, progress: bool) -> Path:
    """`train_run`'s work, under the folder's lock."""
    method = cls.name
    binding = run_binding(params, dataset, method)
    latest = load_weights_file(out / "latest.pt") if (out / "latest.pt").is_file() else None
    # Checked before any process group starts, so that a refusal ends every process of the job.
    _check_binding(out, binding, latest, int(os.environ.get("WORLD_SIZE", "1")), params["train"]["epochs"])
    if latest is not None and int(os.environ.get("RANK", "0")) == 0:
        _repair_best(out, latest)
    rank, world = _distributed()
    dev = _device(device, rank)
    cfg, seed = params["train"], int(params["seed"])
    if cfg["batch_size"] % world:
        raise ValueError(f"train.batch_size {cfg['batch_size']} is not divisible by {world} processes")
    seed_everything(seed)

    allow_incomplete = bool(cfg.get("allow_incomplete", False))
    skipped = {"train": SkipLog() if allow_incomplete else None,
               "validation": SkipLog() if allow_incomplete else None}
    if rank == 0:  # rank 0 decodes the caches once; the others wait and open them
        out.mkdir(parents=True, exist_ok=True)
        try:
            train_cache = train_split(params, dataset, skip=skipped["train"], progress=progress)
            val_index, val_cache = validation_split(params, dataset, skip=skipped["validation"], progress=progress)
        except IncompleteDataError as error:
            raise error.with_hint("to train on the clips that exist and record the list used in run.json, "
                                  "pass --allow-incomplete (or set train.allow_incomplete: true in the "
                                  "profile)") from None
        coverage = data_coverage(params, dataset, train_cache, skipped["train"], val_index, skipped["validation"])
        used_before = latest.get("train_used_sha256") if latest is not None else None
        if used_before is not None and used_before != coverage["train"]["used_sha256"]:
            _refuse(out, f"was trained on another list of clips than the {coverage['train']['used']} of "
                         f"{coverage['train']['listed']} found now (media added or removed since)")
    if world > 1:
        dist.barrier()
    if rank != 0:
        train_cache = train_split(params, dataset, skip=SkipLog() if allow_incomplete else None)
    model = training_model(params, method).to(dev)
    if dev.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    history: list[dict[str, Any]] = []
    best = {"epoch": -1, "val_locacc": -1.0}
    start = 0
    if latest is not None:  # resume
        model.load_state_dict(latest["model"])
        optimizer.load_state_dict(latest["optimizer"])
        history, best, start = latest["history"], latest["best"], latest["epoch"]
    wrapped = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    data = CachedPairs(train_cache, size=params["input"]["image_size"], train=True, seed=seed)
    between_epochs = TrainingData(train_cache, params["input"]["image_size"], params["evaluate"]["batch_size"], dev,
                                  workers=cfg["num_workers"])
    per_rank = cfg["batch_size"] // world
    amp = bool(cfg.get("amp"))  # bf16 autocast, opt-in (the official code trains in fp32)
    delay = float(os.environ.get("VSLREPRO_BATCH_DELAY", "0"))  # testing aid: slow batches down

    for epoch in range(start, cfg["epochs"]):
        tic = time.perf_counter()
        data.set_epoch(epoch)
        model.begin_epoch(epoch, between_epochs)
        torch.manual_seed(derive_seed(seed, epoch, purpose="model"))  # dropout and any other in-model draw
        order = epoch_order(len(data), seed, epoch, cfg["batch_size"], rank, world).tolist()
        loader = DataLoader(data, batch_size=per_rank, sampler=order, num_workers=cfg["num_workers"],
                            pin_memory=dev.type == "cuda", persistent_workers=False)
        if progress and rank == 0:
            loader = tqdm(loader, desc=f"{method}/{dataset} epoch {epoch + 1}/{cfg['epochs']}", leave=False)
        model.train()
        losses = []
        for images, specs, _ in loader:
            images = normalize_images(images.to(dev, non_blocking=True))
            if dev.type == "cuda":
                images = images.contiguous(memory_format=torch.channels_last)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                loss = wrapped(images, specs.to(dev, non_blocking=True))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
            if delay:
                time.sleep(delay)
        if not losses:
            raise ValueError(f"{dataset}: {len(data)} training pairs give no full batch of {cfg['batch_size']}")
        mean_loss = torch.stack(losses).float().mean()
        if world > 1:
            dist.all_reduce(mean_loss)
            mean_loss /= world
        if rank == 0:
            scores = validate(model, val_index, val_cache, params, dev)
            history.append({"epoch": epoch + 1, "loss": float(mean_loss), **scores,
                            "seconds": time.perf_counter() - tic})
            improved = scores["val_locacc"] >= best["val_locacc"]  # ties: the later epoch (official >=)
            if improved:
                best = {"epoch": epoch + 1, "val_locacc": scores["val_locacc"]}
            # latest.pt first: a kill before best.pt is written is mended from it on resume (_repair_best)
            atomic_torch_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                               "epoch": epoch + 1, "history": history, "best": best, **binding,
                               "world_size": world, "train_used_sha256": coverage["train"]["used_sha256"]},
                              out / "latest.pt")
            if improved:
                atomic_torch_save({"model": model.state_dict(), "epoch": epoch + 1}, out / "best.pt")
            atomic_write_text(out / "history.csv",
                              pd.DataFrame(history).to_csv(index=False, float_format="%.6g"))
        if world > 1:
            dist.barrier()
    # A finished run found again keeps its run.json: it records the parameters it was trained with.
    if rank == 0 and (start < cfg["epochs"] or not (out / "run.json").is_file()):
        _write_coverage_files(out, coverage, train_cache, skipped)
        atomic_write_text(out / "run.json", json.dumps({
            "method": method, **binding, "params": params, "best": best,
            "validation": val_index.attrs.get("files", {}), "data": coverage,
            "resampled_audio": train_cache.resampled + val_cache.resampled,  # input.resample_audio
            "world_size": latest["world_size"] if start == cfg["epochs"] else world,
            "device": str(dev), "environment": environment()}, indent=2, default=str) + "\n")
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return out
