"""Tensor caches: a split's frames and spectrograms decoded once, stored on disk, checked on open.

`build` (keys, building and opening a cache folder, its projected size), `decoded` and `compressed`
(the two kinds of storage), `decode` (how one pair becomes tensors), `integrity` (the manifest's
checksums) and `pairs` (a cache as a deterministically augmented torch Dataset).
"""

from vslrepro.data.caches.build import (
                                        CACHE_VERSION,
                                        STORAGES,
                                        build_cache,
                                        cache_key,
                                        free_bytes,
                                        load_cache,
                                        projected_bytes,
)
from vslrepro.data.caches.compressed import CompressedCache
from vslrepro.data.caches.decode import AudioParams, window_spectrogram
from vslrepro.data.caches.decoded import TensorCache
from vslrepro.data.caches.integrity import verify_cache
from vslrepro.data.caches.pairs import CachedPairs

__all__ = ["CACHE_VERSION", "STORAGES", "AudioParams", "CachedPairs", "CompressedCache", "TensorCache", "build_cache",
           "cache_key", "free_bytes", "load_cache", "projected_bytes", "verify_cache", "window_spectrogram"]
