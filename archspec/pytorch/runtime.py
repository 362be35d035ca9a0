"""The torch modules that joins compile to. Written once: `build` instantiates them, and `codegen`
copies their source text into generated files (reading this file, without importing torch)."""
from __future__ import annotations

from collections import namedtuple
from typing import Any

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


class Select(nn.Module):
    """Selective kernel / split attention: the attention body on the branches' sum gives P*C weights (read as
    [groups, P, C/groups]), a softmax across the P branches, and the weighted sum of the branches."""

    def __init__(self, *parts: Any) -> None:
        super().__init__()
        *branches, attention, groups = parts  # the bodies, then the attention body, then `gN`'s N
        for i, branch in enumerate(branches):
            self.add_module(f"branch{i + 1}", branch)
        self.attention = attention
        self.paths, self.groups = len(branches), groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [getattr(self, f"branch{i + 1}")(x) for i in range(self.paths)]
        a = self.attention(torch.stack(outs).sum(0))
        b, _, h, w = a.shape
        a = a.reshape(b, self.groups, self.paths, -1, h, w).transpose(1, 2).reshape(b, self.paths, -1, h, w)
        a = torch.softmax(a, dim=1)
        return (torch.stack(outs, dim=1) * a).sum(1)


class Resize(nn.Module):
    """body(x) resized back to x's height and width: bilinearly (torchvision's segmentation heads and models) or
    with mode "nearest" by torch's nearest neighbour (GhostNetV2's attention gate)."""

    def __init__(self, body: nn.Module, mode: str = "bilinear") -> None:
        super().__init__()
        self.body = body
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "nearest":
            return nn.functional.interpolate(self.body(x), size=x.shape[-2:], mode="nearest")
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


class Aux(nn.Module):
    """An auxiliary head: the identity on the main path. In training it also runs head(x) and keeps the result
    until `Aux.outputs` hands it to the network's output; in eval the head does not run."""

    def __init__(self, head: nn.Module, loss_weight: float) -> None:
        super().__init__()
        self.head = head
        self.loss_weight = loss_weight  # the head's loss is added times this (`aux 0.3 { ... }`)
        self.output: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.output = self.head(x) if self.training else None
        return x

    @staticmethod
    def weights(net: nn.Module) -> tuple[float, ...]:
        """The heads' loss weights in the order `outputs` gives their outputs (the last head first)."""
        return tuple(m.loss_weight for m in net.modules() if isinstance(m, Aux))[::-1]

    @staticmethod
    def outputs(net: nn.Module, logits: torch.Tensor) -> Any:
        """In training, torchvision's structure: (logits, aux_logits) with one head, (logits, aux_logits2,
        aux_logits1) with two (GoogLeNetOutputs: the last head first); in eval, or without heads, the logits."""
        heads = [m for m in net.modules() if isinstance(m, Aux)]
        if not net.training or not heads:
            return logits
        names = ["aux_logits"] if len(heads) == 1 else [f"aux_logits{i}" for i in range(len(heads), 0, -1)]
        outs = []
        for head in reversed(heads):
            outs.append(head.output)
            head.output = None  # not kept alive (with its graph) past this step
        return namedtuple("NetOutputs", ["logits", *names])(logits, *outs)
