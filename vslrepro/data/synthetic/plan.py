"""What each synthetic clip holds: sizes, split plans, ids, annotations, and the clip itself.

Pure functions of (seed, dataset, split, index) — no file I/O; `vslrepro.data.synthetic.writer`
writes the results in each dataset's own layout. See that module's docstring for the benchmark's
design. What makes a dataset's counterpart (its size mix, annotation style and ids) is the
dataset module's `synthetic` style (`vslrepro.data.datasets.base.SyntheticStyle`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vslrepro.data.datasets import Dataset
from vslrepro.data.formats.boxes import size_bucket
from vslrepro.data.synthetic import scene

GENERATOR_VERSION = "1.0"
BUCKET_AREAS = ((16**2, 32**2), (32**2, 96**2), (96**2, 144**2), (144**2, 224**2))  # sampled areas (224² px)
BUCKET_NAMES = ("small", "medium", "large", "huge")
SPLIT_CODES = {"train": 1, "val": 2, "test": 3, "negative": 4, "objects": 5}


@dataclass(frozen=True)
class Scale:
    """Sizes of one generated benchmark (per dataset unless said otherwise)."""

    n_classes: int  # K sounding classes
    train: int  # training pairs
    val: int  # annotated validation positives
    test: int  # test positives (at most the real set's size, `SyntheticStyle.max_test`)
    objects: int  # labelled single-object images (shared)
    frame_size: int = 64  # square JPEG side (px)
    jpeg_quality: int = 90
    sample_rate: int = 8000  # Hz, mono 16-bit WAV
    seconds: float = 1.5  # clip length; models take a centred 1-s crop


SCALES = {
    "smoke": Scale(n_classes=4, train=384, val=64, test=96, objects=256),
    "quick": Scale(n_classes=8, train=3000, val=300, test=600, objects=2000),
}
# The loader benchmark's training pairs (`python -m vslrepro bench loader`, `synth.write_train_split`):
# 320-px frames, so the 246-px train resize is a real downscale (x 0.77; a 360p frame is x 0.68),
# and 4-s clips of 16 kHz audio, so the paper's centred 3-s window is a real crop. Only its `train`
# split is ever written; the other sizes are unused.
BENCH_SCALE = Scale(n_classes=8, train=5000, val=0, test=0, objects=0, frame_size=320,
                    sample_rate=16000, seconds=4.0)


@dataclass
class Clip:
    """One generated clip: media, label, annotation, and the scene it was drawn from."""

    id: str
    label: str  # class name of its sound
    frame: np.ndarray  # (S, S, 3) uint8
    audio: np.ndarray  # (N,) int16
    boxes: list = field(default_factory=list)  # in the dataset's annotation units (`SyntheticStyle.box_units`)
    objects: list = field(default_factory=list)  # scene.Placed in drawing order; the sounding one last
    area: float = 0.0  # Σ of the ground-truth map (224² px), 0 for negatives


PURPOSES = ("plan", "clip", "tail", "extended")  # what a random stream is for


def _stream(seed: int, dataset: int, split: int, purpose: str, *index: int) -> np.random.SeedSequence:
    """The random stream of (seed, dataset, split, purpose[, index]): independent of order and processes.

    Every key has a distinct purpose field (SeedSequence pads short keys with zeros, so keys of
    different lengths must not share a prefix).
    """
    return np.random.SeedSequence([seed, dataset, split, PURPOSES.index(purpose), *index])


def apportion(weights, n: int) -> np.ndarray:
    """Split n into integer counts proportional to weights (largest remainder, ties to the first)."""
    weights = np.asarray(weights, dtype=np.float64)
    exact = n * weights / weights.sum()
    counts = np.floor(exact).astype(int)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: n - counts.sum()]] += 1
    return counts


def plan_split(dataset: type[Dataset], split: str, n: int, *, seed: int, n_classes: int) -> list[tuple[int, int]]:
    """(class index, size bucket) of each clip of a split.

    Validation, test and negative splits are balanced over classes and apportioned over the buckets
    exactly (Table 1 proportions); training draws both i.i.d. A real negative's bucket sizes its
    distractors.

    Args:
        dataset: the dataset whose counterpart is drawn (its style's Table 1 size counts).
        split: "train", "val", "test" or "negative".
        n: number of clips.
        seed: the benchmark's seed.
        n_classes: K.

    Returns:
        n (class index in [0, K), bucket index in [0, 4)) pairs, bucket 0 = small … 3 = huge.
    """
    style = dataset.synthetic
    rng = np.random.default_rng(_stream(seed, style.code, SPLIT_CODES[split], "plan"))
    weights = np.asarray(style.sizes, dtype=np.float64)
    if split == "train":
        classes = rng.integers(n_classes, size=n)
        buckets = rng.choice(4, size=n, p=weights / weights.sum())
    else:
        classes = rng.permutation(np.arange(n) % n_classes)
        buckets = rng.permutation(np.repeat(np.arange(4), apportion(weights, n)))
    return [(int(c), int(b)) for c, b in zip(classes, buckets)]


def clip_id(dataset: type[Dataset], split: str, index: int, rng: np.random.Generator) -> str:
    """A number like Flickr's (`id_style` "number"), or `<11 YouTube-like chars>_<6-digit second>`."""
    if dataset.synthetic.id_style == "number":
        return f"9{SPLIT_CODES[split]}{index:08d}"
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    chars = letters + "0123456789-_"
    head = letters[rng.integers(len(letters))] + "".join(chars[i] for i in rng.integers(len(chars), size=10))
    return f"{head}_{int(rng.integers(0, 600)):06d}"


def _annotate(rng: np.random.Generator, dataset: type[Dataset], visible: tuple) -> list:
    """Annotation boxes of a visible box in the dataset's units: one normalized box (1/320 grid), or
    one jittered 256-grid box per annotator."""
    style = dataset.synthetic
    if style.box_units == "normalized":
        return [[round(v * 320 / scene.GRID) / 320 for v in visible]]
    boxes = []
    for _ in range(style.annotators):
        sigma = 0.04 * 256 / scene.GRID * np.array([visible[2] - visible[0], visible[3] - visible[1]] * 2)
        box = np.round(np.asarray(visible) * 256 / scene.GRID + rng.normal(0, 1, 4) * sigma)
        x0, y0, x1, y1 = np.clip(box, 0, 256).astype(int)
        boxes.append([int(x0), int(y0), max(int(x1), int(x0) + 2), max(int(y1), int(y0) + 2)])
    return boxes


def _comparable(rng: np.random.Generator, area: float, count: int) -> list[float]:
    """Areas of `count` distractors comparable to `area` (x0.5 to x1.5), at most half the frame."""
    return [float(np.clip(area * np.exp(rng.uniform(np.log(0.5), np.log(1.5))), 16**2, 0.5 * 224**2))
            for _ in range(count)]


def _distractors(rng, specs, exclude: int, areas: list[float], taken: list[tuple]) -> list:
    """Silent objects: of another class than `exclude` or neutral, placed to overlap `taken` little."""
    objects = []
    for area in areas:
        full, visible = scene.place_apart(rng, area, taken)
        others = [c for c in range(len(specs)) if c != exclude]
        spec = specs[others[rng.integers(len(others))]] if rng.uniform() < 0.5 else None
        objects.append(scene.make_object(rng, spec, full, visible))
        taken.append(visible)
    return objects


def make_clip(dataset: type[Dataset], split: str, index: int, plan: tuple[int, int], *, seed: int,
              scale: Scale) -> Clip:
    """Generate one clip (no I/O): a positive (train/val/test) or a real negative ("negative").

    Args:
        dataset: the dataset whose counterpart is drawn (its `synthetic` style).
        split: "train", "val", "test" or "negative".
        index: position in the split.
        plan: (class index of its sound, size bucket) from `plan_split`.
        seed: the benchmark's seed.
        scale: sizes.

    Returns:
        The Clip; its frame, audio, boxes and area depend only on (seed, dataset, split, index, plan).
    """
    rng = np.random.default_rng(_stream(seed, dataset.synthetic.code, SPLIT_CODES[split], "clip", index))
    specs = scene.class_specs(scale.n_classes)
    cls, bucket = plan
    clip_name = clip_id(dataset, split, index, rng)
    if split == "negative":  # only distractors, sized like positives' objects; the source is off-screen
        area = rng.uniform(*BUCKET_AREAS[bucket])
        count = int(rng.choice(3, p=[0.2, 0.4, 0.4]))
        objects = _distractors(rng, specs, cls, _comparable(rng, area, count), [])
        boxes, area = [], 0.0
    else:
        for _ in range(100):  # re-draw a placement whose annotation leaves the bucket or is a sliver
            area = rng.uniform(*BUCKET_AREAS[bucket])
            full, visible = scene.place_object(rng, area)
            boxes = _annotate(rng, dataset, visible)
            gt_area = float(dataset.gt_map(dataset.map_boxes(boxes)).sum())
            w, h = visible[2] - visible[0], visible[3] - visible[1]
            if size_bucket(gt_area) == BUCKET_NAMES[bucket] and gt_area >= 128 and 0.25 <= w / h <= 4:
                break
        else:
            raise RuntimeError(f"{dataset.name} {split} clip {index}: no placement in size bucket {bucket}")
        target = scene.make_object(rng, specs[cls], full, visible)
        count = int(rng.integers(0, 3))
        objects = _distractors(rng, specs, cls, _comparable(rng, area, count), [visible]) + [target]
        area = gt_area
    frame = scene.render_frame(rng, scale.frame_size, objects)
    audio = scene.synth_audio(rng, specs[cls], scale.sample_rate, scale.seconds)
    return Clip(clip_name, specs[cls].name, frame, audio, boxes, objects, area)


def make_object_image(index: int, label: int, *, seed: int, scale: Scale) -> np.ndarray:
    """One image of the object set: a single object of class `label` (K = neutral), any size/place."""
    rng = np.random.default_rng(_stream(seed, 0, SPLIT_CODES["objects"], "clip", index))
    specs = scene.class_specs(scale.n_classes)
    full, visible = scene.place_object(rng, float(np.exp(rng.uniform(np.log(24**2), np.log(200**2)))))
    spec = specs[label] if label < len(specs) else None
    return scene.render_frame(rng, scale.frame_size, [scene.make_object(rng, spec, full, visible)])
