"""What the per-method test files share: a small random batch, and a short optimisation on it."""

from __future__ import annotations

from typing import Callable

import torch


def small_batch(b: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(images (b, 3, 56, 56), specs (b, 1, 65, 64)): random inputs of the smoke profile's sizes."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 3, 56, 56, generator=g), torch.randn(b, 1, 65, 64, generator=g)


def randomize_batchnorm_(model: torch.nn.Module, mean: float = 0.2) -> torch.nn.Module:
    """Give every BatchNorm2d non-trivial running statistics (means in ±`mean`, variances in
    [0.5, 1.5], from torch's global RNG), so that eval-mode outputs depend on them and a checkpoint
    that lost them would show. Returns the same model."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-mean, mean)
            module.running_var.uniform_(0.5, 1.5)
    return model


def optimise(model: torch.nn.Module, loss_of: Callable[[], torch.Tensor], *, steps: int = 30,
             lr: float = 1e-3) -> list[float]:
    """`steps` Adam steps on `loss_of()` over `model`'s parameters; the loss before each step."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss = loss_of()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def batch_organize(audio, posi_img, nega_img):
    """The DMC/DSOL training scripts' `batch_organize` (location_dmc_stage_one.py, training_stage_*.py):
    (audio i, own frame, 1) and (audio i, other frame, 0), interleaved."""
    b = audio.shape[0]
    audio2 = torch.zeros(2 * b, *audio.shape[1:])
    image2 = torch.zeros(2 * b, *posi_img.shape[1:])
    labels = torch.zeros(2 * b)
    for i in range(b):
        audio2[2 * i], audio2[2 * i + 1] = audio[i], audio[i]
        image2[2 * i], image2[2 * i + 1] = posi_img[i], nega_img[i]
        labels[2 * i] = 1
    return audio2, image2, labels
