"""Batch augmentation and test-time augmentation on tensors (never per image through PIL).

Every random choice comes from a generator seeded by (seed, epoch), so an epoch's batches are a
pure function of its number: a resumed run sees exactly the data an uninterrupted run would.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 [N, C, H, W] -> normalised float, channels_last (what the convolutions want on CPU and GPU)."""
    x = x.to(dtype).div_(255).sub_(mean.view(1, -1, 1, 1).to(x.device, dtype)).div_(std.view(1, -1, 1, 1).to(x.device, dtype))
    return x.contiguous(memory_format=torch.channels_last)


def flip_mask(n: int, seed: int, epoch: int, mode: str) -> torch.Tensor:
    """Which of n images to mirror this epoch.

    `alternate` (airbench's derandomised flip): each image starts flipped or not at random, then
    flips on exactly every other epoch, so two consecutive epochs always see both orientations.
    `random`: an independent coin per image and epoch. `none`: never.
    """
    if mode == "none":
        return torch.zeros(n, dtype=torch.bool)
    if mode == "alternate":
        start = torch.rand(n, generator=epoch_generator(seed, -1)) < 0.5  # fixed for the whole run
        return start ^ bool(epoch % 2)
    if mode == "random":
        return torch.rand(n, generator=epoch_generator(seed, epoch)) < 0.5
    raise ValueError(f"unknown flip mode {mode!r}")


def translate(x: torch.Tensor, pad: int, shifts: torch.Tensor) -> torch.Tensor:
    """Shift each image by (dy, dx) in [-pad, pad] with reflect padding; shifts is int [N, 2]."""
    if pad == 0:
        return x
    n, c, h, w = x.shape
    padded = F.pad(x, (pad,) * 4, mode="reflect")
    out = torch.empty_like(x)
    shifts = shifts.to(x.device)
    # One masked copy per distinct shift: (2*pad+1)^2 vectorised copies instead of N slices.
    for dy in range(-pad, pad + 1):
        row = shifts[:, 0] == dy
        for dx in range(-pad, pad + 1):
            mask = row & (shifts[:, 1] == dx)
            out[mask] = padded[mask, :, pad + dy : pad + dy + h, pad + dx : pad + dx + w]
    return out


def random_shifts(n: int, pad: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randint(-pad, pad + 1, (n, 2), generator=generator)


@torch.no_grad()
def tta_logits(model: nn.Module, x: torch.Tensor, level: int) -> torch.Tensor:
    """Multi-crop test-time augmentation (airbench's levels).

    0: the image; 1: mean of the image and its mirror; 2: half of level 1 plus half the mean of
    level 1 on the image translated one pixel up-left and one pixel down-right (6 views).
    """
    def mirror(v: torch.Tensor) -> torch.Tensor:
        return 0.5 * model(v).float() + 0.5 * model(v.flip(-1)).float()

    if level == 0:
        return model(x).float()
    if level == 1:
        return mirror(x)
    if level == 2:
        h, w = x.shape[-2:]
        padded = F.pad(x, (1,) * 4, mode="reflect")
        shifted = [padded[..., :h, :w], padded[..., 2 : h + 2, 2 : w + 2]]
        return 0.5 * mirror(x) + 0.25 * (mirror(shifted[0]) + mirror(shifted[1]))
    raise ValueError(f"tta level must be 0, 1 or 2, not {level}")
