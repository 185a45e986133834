"""Data for the benchmark, in the community's on-disk layout (docs/data.md §1).

Four parts, each its own sub-package or module:
- `formats/`: readers of file formats — audio (WAV → log-spectrogram), images (frames and their
  train/test geometry), boxes (ground-truth maps, size buckets), lists (metadata lists), ids
  (clip-id spellings), media (where a split root keeps frames and sounds);
- `datasets/`: one module per dataset (Flickr-SoundNet, VGG-SS, IS3), the registry, and where each
  lives under a profile; `testsets` builds a test set's index from them, `builder` the extended
  test sets' negatives;
- `caches/`: decoded frames and spectrograms cached once per split as tensors; `splits` turns a
  profile's splits into them;
- `synthetic/`: the embedded synthetic benchmark, written in the datasets' own layouts.

Only the light, torch-free entry points are re-exported here, so `import vslrepro.data` does not
import torch.
"""

from vslrepro.data.errors import DataError, SkipLog
from vslrepro.data.testsets import extended_testset, gt_maps, positives_index

__all__ = ["DataError", "SkipLog", "extended_testset", "gt_maps", "positives_index"]
