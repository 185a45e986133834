"""Writing the embedded synthetic benchmark: a counterpart of every dataset whose module declares a
`synthetic` style (Flickr-like, VGG-SS-like) + an object set (docs/synthetic.md).

Written in exactly the community's on-disk layout (docs/data.md), each dataset's annotation files by
its own module (`Dataset.write_synthetic`), so every reader, builder and metric runs on it unchanged:

    OUT/flickr/{frames,audio,Annotations}/, metadata/flickr_{train.txt,val.csv,test.csv,
        real_negatives.txt,test_plus_silent.csv}, metadata/classes.csv
    OUT/vggss/{frames,audio}/, metadata/vggss_{train.txt,val.json,test.csv,real_negatives.txt,
        test_plus_silent.csv}, metadata/vggss.json, metadata/classes.csv
    OUT/objects/images/<id>.jpg, objects/labels.csv     (the "object prior" set)
    OUT/manifest.json                                    (written last: marks a complete output)

A positive clip's frame shows the sounding object of its audio's class plus 0-2 silent distractors
(objects of other classes or neutral shapes, of comparable size); a real negative's frame shows only
distractors (or nothing). Ground-truth sizes follow the real test sets' Table 1 proportions: the
test and validation splits get the exact apportioned counts per size bucket, the training split
draws buckets i.i.d. from the same proportions. Within a bucket the area is uniform (the "small"
bucket starts at 16² px rather than 1 px, so that an object stays visible in a 64-px frame).
Each clip is a pure function of (seed, dataset, split, index): parallelism and order never matter.
"""

from __future__ import annotations

import csv
import json
import shutil
import wave
from dataclasses import asdict
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from vslrepro.atomic import exclusive
from vslrepro.data.builder import build_extended_testset, write_extended_csv
from vslrepro.data.datasets import Dataset, dataset_class, synthetic_datasets
from vslrepro.data.formats.boxes import size_bucket
from vslrepro.data.formats.lists import write_lines
from vslrepro.data.synthetic import scene
from vslrepro.data.synthetic.plan import (
    BUCKET_NAMES,
    GENERATOR_VERSION,
    SCALES,
    SPLIT_CODES,
    Scale,
    _stream,
    make_clip,
    make_object_image,
    plan_split,
)


def _save_image(path: Path, image: np.ndarray, quality: int) -> None:
    Image.fromarray(image).save(path, format="JPEG", quality=quality)


def write_wav(path: Path, samples: np.ndarray, sample_rate: int) -> None:
    """Write mono 16-bit PCM WAV (the standard library's writer: byte-stable, 10x faster than libsndfile here)."""
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(sample_rate)
        handle.writeframes(samples.astype("<i2").tobytes())


def _clip_job(job: tuple) -> tuple:
    """Worker: generate one clip, write its frame and audio, return its metadata (picklable)."""
    root, name, split, index, plan, seed, scale = job
    clip = make_clip(dataset_class(name), split, index, plan, seed=seed, scale=scale)
    _save_image(Path(root) / "frames" / f"{clip.id}.jpg", clip.frame, scale.jpeg_quality)
    write_wav(Path(root) / "audio" / f"{clip.id}.wav", clip.audio, scale.sample_rate)
    return clip.id, clip.label, clip.boxes, clip.area


def _object_job(job: tuple) -> None:
    """Worker: generate and write one image of the object set."""
    path, index, label, seed, scale = job
    _save_image(Path(path), make_object_image(index, label, seed=seed, scale=scale), scale.jpeg_quality)


def _write_dataset(root: Path, dataset: type[Dataset], scale: Scale, seed: int, pool) -> dict:
    """Generate the counterpart of one dataset under root; returns its counts for the manifest."""
    style = dataset.synthetic
    for sub in ("frames", "audio", "metadata"):
        (root / sub).mkdir(parents=True)
    n_test = min(scale.test, style.max_test) if style.max_test else scale.test
    sizes = {"train": scale.train, "val": scale.val, "test": n_test,
             "negative": int(round(style.real_fraction * n_test))}
    meta, classes = {}, []
    for split, n in sizes.items():
        plans = plan_split(dataset, split, n, seed=seed, n_classes=scale.n_classes)
        jobs = [(str(root), dataset.name, split, i, plan, seed, scale) for i, plan in enumerate(plans)]
        meta[split] = list(pool.imap(_clip_job, jobs, chunksize=32) if pool else map(_clip_job, jobs))
        classes += [(clip, label) for clip, label, _, _ in meta[split]]
    ids = [clip for clip, _ in classes]
    if len(set(ids)) != len(ids):
        raise RuntimeError(f"{dataset.name}: duplicate generated ids for seed {seed}; try another seed")
    m, name = root / "metadata", dataset.name
    n_listed = len(meta["val"]) + len(meta["test"])
    tail = np.random.default_rng(_stream(seed, style.code, 0, "tail")).integers(0, 900, size=n_listed)  # unused ints
    write_lines(m / f"{name}_train.txt", [c for c, *_ in meta["train"]])
    write_lines(m / f"{name}_real_negatives.txt", [c for c, *_ in meta["negative"]])
    dataset.write_synthetic(root, [(c, label, boxes) for c, label, boxes, _ in meta["val"]],
                            [(c, label, boxes) for c, label, boxes, _ in meta["test"]], tail)
    with (m / "classes.csv").open("w", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows([("id", "class"), *classes])
    positives = pd.DataFrame([(c, label) for c, label, *_ in meta["test"]], columns=["id", "class"])
    negatives = [c for c, *_ in meta["negative"]]
    builder_seed = int(_stream(seed, style.code, SPLIT_CODES["test"], "extended").generate_state(1)[0])
    extended = build_extended_testset(positives, negatives, seed=builder_seed)
    write_extended_csv(extended, dataset.extended_csv(root))
    label_of = dict(classes)
    automated = extended[extended["video"] != extended["audio"]]
    hard = int(sum(label_of[v] == label_of[a] for v, a in zip(automated["video"], automated["audio"])))
    by_size = {b: 0 for b in BUCKET_NAMES}
    for *_, area in meta["test"]:
        by_size[size_bucket(area)] += 1
    return {"train": sizes["train"], "val": sizes["val"], "test_positives": n_test,
            "test_by_size": by_size, "real_negatives": sizes["negative"],
            "automated_easy": len(automated) - hard, "automated_hard": hard}


def _write_objects(root: Path, scale: Scale, seed: int, pool) -> int:
    """Write the object set (images/<id>.jpg, labels.csv), balanced over the K classes + neutral."""
    (root / "images").mkdir(parents=True)
    names = [s.name for s in scene.class_specs(scale.n_classes)] + [scene.NEUTRAL]
    labels = np.random.default_rng(_stream(seed, 0, SPLIT_CODES["objects"], "plan")).permutation(
        np.arange(scale.objects) % len(names))
    ids = [f"obj{i:06d}" for i in range(scale.objects)]
    jobs = [(str(root / "images" / f"{i}.jpg"), k, int(label), seed, scale) for k, (i, label) in
            enumerate(zip(ids, labels))]
    list(pool.imap(_object_job, jobs, chunksize=64) if pool else map(_object_job, jobs))
    with (root / "labels.csv").open("w", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows([("id", "class"), *zip(ids, (names[k] for k in labels))])
    return scale.objects


def _matching_manifest(out: Path, scale: str, seed: int) -> dict | None:
    """The manifest of a complete benchmark in `out` by this generator, scale and seed, else None."""
    try:
        manifest = json.loads((out / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    wanted = {"generator": "vslrepro.data.synth", "version": GENERATOR_VERSION, "scale": scale, "seed": seed,
              "sizes": json.loads(json.dumps(asdict(SCALES[scale])))}  # as read back from JSON
    same = isinstance(manifest, dict) and all(manifest.get(k) == v for k, v in wanted.items())
    return manifest if same else None


def generate(out: str | Path, *, scale: str = "quick", seed: int = 0, workers: int = 1) -> dict:
    """Generate the synthetic benchmark under `out` (docs/synthetic.md), atomically and once.

    The tree is built in `<out>.partial` and moved to `out` when complete. An `out` already holding
    this generator's benchmark of the same scale and seed is kept as it is (generating it again would
    give the same bytes); one holding another benchmark (it has a manifest.json) is replaced, any
    other non-empty `out` is refused. Processes generating the same `out` at once take turns on the
    lock `<out>.lock`: the first generates, the others wait and then find its benchmark.

    Args:
        out: the folder to write (see the module docstring for the layout).
        scale: a key of SCALES ("smoke", "quick").
        seed: non-negative seed; the same seed gives byte-identical files.
        workers: processes generating clips (1: in this process); the output does not depend on it.

    Returns:
        The manifest (also written as out/manifest.json): generator version, scale, seed, sizes,
        classes and counts per dataset and split.

    Raises:
        ValueError: unknown scale, negative seed or workers < 1.
        FileExistsError: `out` is a non-empty folder without a manifest.json.
    """
    if scale not in SCALES:
        raise ValueError(f"unknown synthetic scale {scale!r}; expected one of {sorted(SCALES)}")
    if seed < 0 or workers < 1:
        raise ValueError(f"seed must be ≥ 0 and workers ≥ 1, got seed={seed}, workers={workers}")
    out = Path(out).resolve()
    with exclusive(out.with_name(out.name + ".lock"), f"generating the synthetic benchmark {out}"):
        found = _matching_manifest(out, scale, seed)
        return found if found is not None else _generate(out, scale, seed, workers)


def _generate(out: Path, scale: str, seed: int, workers: int) -> dict:
    """`generate`'s work, under its lock: build `<out>.partial`, then move it to `out`."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "manifest.json").is_file():
        raise FileExistsError(f"{out} is not empty and holds no synthetic benchmark (no manifest.json)")
    sizes = SCALES[scale]
    partial = out.with_name(out.name + ".partial")
    if partial.exists():  # left by a killed generation (the lock says no other process is writing it)
        shutil.rmtree(partial)
    pool = Pool(workers) if workers > 1 else None
    try:
        counts = {dataset.name: _write_dataset(partial / dataset.name, dataset, sizes, seed, pool)
                  for dataset in synthetic_datasets()}
        counts["objects"] = _write_objects(partial / "objects", sizes, seed, pool)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    manifest = {"generator": "vslrepro.data.synth", "version": GENERATOR_VERSION, "scale": scale, "seed": seed,
                "sizes": asdict(sizes), "sample_rate": sizes.sample_rate,
                "classes": [s.name for s in scene.class_specs(sizes.n_classes)],
                "object_classes": [s.name for s in scene.class_specs(sizes.n_classes)] + [scene.NEUTRAL],
                "counts": counts}
    (partial / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    if out.exists():
        shutil.rmtree(out)
    partial.rename(out)
    return manifest


def write_train_split(out: str | Path, scale: Scale, *, dataset: str, seed: int = 0, workers: int = 1) -> Path:
    """Write only the training pairs of one dataset's synthetic counterpart: `out/{frames,audio}/`, the id list
    `out/metadata/train.txt` and `out/manifest.json` (written last); reuse `out` when its manifest
    matches (the same files would be written again). Used by the loader benchmark, which needs
    many large training pairs and nothing else.

    Returns:
        The id list's path.
    """
    out = Path(out).resolve()
    listing = out / "metadata" / "train.txt"
    wanted = {"generator": "vslrepro.data.synth.write_train_split", "version": GENERATOR_VERSION,
              "style": dataset, "seed": seed, "sizes": json.loads(json.dumps(asdict(scale)))}
    with exclusive(out.with_name(out.name + ".lock"), f"generating synthetic training pairs {out}"):
        try:
            if json.loads((out / "manifest.json").read_text()) == wanted:
                return listing
        except (OSError, ValueError):
            pass
        if out.exists():
            shutil.rmtree(out)
        for sub in ("frames", "audio", "metadata"):
            (out / sub).mkdir(parents=True)
        plans = plan_split(dataset_class(dataset), "train", scale.train, seed=seed, n_classes=scale.n_classes)
        jobs = [(str(out), dataset, "train", i, plan, seed, scale) for i, plan in enumerate(plans)]
        if workers > 1:
            with Pool(workers) as pool:
                meta = list(pool.imap(_clip_job, jobs, chunksize=32))
        else:
            meta = list(map(_clip_job, jobs))
        write_lines(listing, [clip for clip, *_ in meta])
        (out / "manifest.json").write_text(json.dumps(wanted))
    return listing

