"""The training and test pairs of a cache as a torch Dataset, augmented deterministically."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from vslrepro.data.caches.compressed import CompressedCache
from vslrepro.data.caches.decoded import TensorCache
from vslrepro.data.formats.images import centre_crop, random_crop_flip
from vslrepro.seeding import torch_generator


class CachedPairs(Dataset):
    """(uint8 image (3, size, size), spectrogram (1, F, T), index) from a TensorCache or a
    CompressedCache (whose frames and spectrograms are computed here, in the DataLoader worker).

    In `train` mode each item is randomly cropped to `size` anywhere in its frame and flipped
    (`vslrepro.data.images.random_crop_flip`) with a generator seeded by (seed, epoch, index): the
    same epoch gives the same batch content whatever the workers. Otherwise the frame's central
    size x size crop is returned (the frame itself for test caches; a deterministic view of a
    training frame for a method's pass over its training set, `vslrepro.train.TrainingData`).
    """

    def __init__(self, cache: TensorCache | CompressedCache, *, size: int, train: bool, seed: int = 0) -> None:
        self.cache, self.size, self.train, self.seed = cache, size, train, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.cache)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        frame = self.cache.image(index)  # (3, h, w) uint8 (memory-mapped, or decoded now when compressed)
        spec = self.cache.spec(index)    # (1, F, T) float32
        if self.train:
            image = random_crop_flip(frame, self.size, torch_generator(self.seed, self.epoch, index))
        else:
            image = torch.from_numpy(np.array(centre_crop(frame, self.size)))
        return image, spec, index
