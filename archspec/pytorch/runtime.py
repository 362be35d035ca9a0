"""The torch modules that joins compile to. Written once: `build` instantiates them, and `codegen`
copies their source text into generated files (reading this file, without importing torch)."""
from __future__ import annotations

import torch
from torch import nn


class Residual(nn.Module):
    """body(x) + shortcut(x); the shortcut is the identity when not given."""

    def __init__(self, body: nn.Module, shortcut: nn.Module | None = None) -> None:
        super().__init__()
        self.body = body
        self.shortcut = shortcut if shortcut is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


class Concat(nn.Module):
    """Parallel branches on one input, concatenated on the channel dimension."""

    def __init__(self, *branches: nn.Module) -> None:
        super().__init__()
        for i, branch in enumerate(branches):
            self.add_module(f"branch{i + 1}", branch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.children()], dim=1)


class Add(Concat):
    """Parallel branches on one input, summed elementwise."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = iter(self.children())
        out = next(branches)(x)
        for branch in branches:
            out = out + branch(x)
        return out


class Mul(Concat):
    """Parallel branches on one input, multiplied elementwise with broadcasting (a [B, C, 1, 1] gate scales [B, C, H, W])."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = iter(self.children())
        out = next(branches)(x)
        for branch in branches:
            out = out * branch(x)
        return out


class Split(Concat):
    """ShuffleNetV2's channel split: the input's channels cut into equal parts, one per branch, concatenated back."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = list(self.children())
        parts = x.chunk(len(branches), dim=1)
        return torch.cat([branch(part) for branch, part in zip(branches, parts)], dim=1)


class Resize(nn.Module):
    """body(x) resized bilinearly back to x's height and width (torchvision's segmentation heads and models)."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.interpolate(self.body(x), size=x.shape[-2:], mode="bilinear", align_corners=False)


class Crop(Concat):
    """Parallel branches on one input, each center-cropped to the last one's height and width, then concatenated."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [branch(x) for branch in self.children()]
        h, w = outs[-1].shape[-2:]
        cropped = []
        for out in outs:  # top = (H - h) // 2, left = (W - w) // 2
            top, left = (out.shape[-2] - h) // 2, (out.shape[-1] - w) // 2
            cropped.append(out[..., top:top + h, left:left + w])
        return torch.cat(cropped, dim=1)
