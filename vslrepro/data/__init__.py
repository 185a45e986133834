"""Data for the benchmark, in the community's on-disk layout (docs/data.md §1).

The readers: `audio` (WAV → log-spectrogram), `images` (frames, transforms), `annotations` (boxes,
ground-truth maps, size buckets), `lists` (metadata lists), `testsets` (the extended test-set
index); ARCHITECTURE.md maps the other modules. Only the light, torch-free entry points are
re-exported here, so `import vslrepro.data` does not import torch.
"""

from vslrepro.data.errors import DataError, SkipLog
from vslrepro.data.testsets import extended_testset, gt_maps, positives_index

__all__ = ["DataError", "SkipLog", "extended_testset", "gt_maps", "positives_index"]
