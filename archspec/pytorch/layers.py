"""The torch modules of ops that torch.nn has no class for. Written once: `build` instantiates them, and
`codegen` copies their source text into generated files (reading this file, without importing torch),
so each class uses only `torch` and `nn`.

Their parameters have the layout of the torch code they stand for (torchvision's ConvNeXt), so its
tensors load as they are.
"""
from __future__ import annotations

import torch
from torch import nn


class LayerNorm2d(nn.LayerNorm):
    """nn.LayerNorm over the channels of [B, C, H, W], at each pixel (ConvNeXt's; as torchvision's LayerNorm2d)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = nn.functional.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class LayerScale(nn.Module):
    """A learnable scale per channel, [C, 1, 1] on images ([F] on features), starting at `init` (ConvNeXt's layer_scale)."""

    def __init__(self, shape: tuple[int, ...], init: float) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.full(shape, float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class PointwiseLinear(nn.Linear):
    """nn.Linear over the channels of [B, C, H, W] at each pixel: weight [out, in] (a 1x1 conv's, laid out as Linear's)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x.permute(0, 2, 3, 1), self.weight, self.bias).permute(0, 3, 1, 2)
