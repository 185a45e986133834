"""The embedded synthetic benchmark (docs/synthetic.md): a counterpart of Flickr-SoundNet and VGG-SS in
their own layouts, and a labelled object set, generated from a seed with nothing to download.

`plan` (what each clip holds: pure functions of seed, dataset, split and index), `scene` (drawing
objects and synthesizing their sounds) and `writer` (the files: `generate`, `write_train_split`).
"""

from vslrepro.data.synthetic.plan import BENCH_SCALE, GENERATOR_VERSION, SCALES, Scale, apportion, make_clip, plan_split
from vslrepro.data.synthetic.writer import generate, write_train_split, write_wav

__all__ = ["BENCH_SCALE", "GENERATOR_VERSION", "SCALES", "Scale", "apportion", "generate", "make_clip", "plan_split",
           "write_train_split", "write_wav"]
