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


class Scale(nn.Module):
    """Every value times a constant factor (`scale F`): no parameters."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = float(factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor

    def extra_repr(self) -> str:
        return f"factor={self.factor!r}"


class PointwiseLinear(nn.Linear):
    """nn.Linear over the channels of [B, C, H, W] at each pixel: weight [out, in] (a 1x1 conv's, laid out as Linear's)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x.permute(0, 2, 3, 1), self.weight, self.bias).permute(0, 3, 1, 2)


class Keep(nn.Module):
    """`as NAME`: the identity, keeping the running tensor under `key` for the `from NAME` layers after it (`Read`).
    At the start of each forward the network gives all its Keep and Read layers one dict (`Keep.share`: done per
    forward, as torch.export swaps module attributes for copies), and empties it at the end (`Keep.release`), so no
    tensor outlives the forward that made it."""

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key
        self.tensors: dict[str, torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.tensors[self.key] = x
        return x

    @staticmethod
    def share(net: nn.Module) -> None:
        """One dict of kept tensors for the whole network."""
        tensors: dict[str, torch.Tensor] = {}
        for module in net.modules():
            if isinstance(module, Keep):
                module.tensors = tensors

    @staticmethod
    def release(net: nn.Module) -> None:
        """Forget the tensors kept during a forward (they would hold their memory until the next one)."""
        for module in net.modules():
            if isinstance(module, Keep):
                module.tensors.clear()
                return


class Read(Keep):
    """`from NAME`: the tensor `as NAME` kept (under `key`), in place of its input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tensors[self.key]


class ChannelSlice(nn.Module):
    """Channels start to stop-1 of the input, x[:, start:stop] (DPN's and GhostNet's cuts)."""

    def __init__(self, start: int, stop: int) -> None:
        super().__init__()
        self.start, self.stop = start, stop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.start:self.stop]


class ChannelConv(nn.Conv1d):
    """One 1-D kernel across the channels of [B, C, H, W], at each pixel, zero-padded to keep C (ECA's gate). Its weight is
    nn.Conv1d(1, 1, k)'s [1, 1, k], as timm's EcaModule holds it; run as a [k, 1] 2-D conv over [B, 1, C, H*W] (the ONNX
    exporter gives a 3-D conv without bias a bias that onnxruntime refuses)."""

    def __init__(self, kernel: int) -> None:
        super().__init__(1, 1, kernel, padding=(kernel - 1) // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = nn.functional.conv2d(x.flatten(2).unsqueeze(1), self.weight.unsqueeze(-1), None, 1, (self.padding[0], 0))
        return y.reshape(x.shape)


class BlurPool(nn.Module):
    """timm's BlurPool2d: padded by ((stride-1) + (kernel-1)) // 2 on each side, by reflection (or with zeros), then
    each channel filtered by the fixed kernel x kernel binomial filter with that stride (a buffer, not a parameter)."""

    def __init__(self, channels: int, kernel: int = 3, stride: int = 2, padding_mode: str = "reflect") -> None:
        super().__init__()
        self.channels, self.stride = channels, stride
        self.padding = ((stride - 1) + (kernel - 1)) // 2
        self.mode = "reflect" if padding_mode == "reflect" else "constant"
        row = [1.0]
        for _ in range(kernel - 1):  # Pascal's triangle: row kernel-1 holds the binomial coefficients
            row = [a + b for a, b in zip([0.0, *row], [*row, 0.0])]
        taps = torch.tensor(row) / 2 ** (kernel - 1)
        filt = (taps[:, None] * taps[None, :]).expand(channels, 1, kernel, kernel).clone()
        self.register_buffer("filt", filt, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.pad(x, [self.padding] * 4, mode=self.mode)
        return nn.functional.conv2d(x, self.filt, stride=self.stride, groups=self.channels)


class GlobalResponseNorm(nn.Module):
    """ConvNeXt-V2's global response normalisation on [B, C, H, W] (timm's GlobalResponseNorm, channels first): G, each
    channel's L2 norm over H and W; N = G / (mean of G over the channels + eps); x + weight * (x * N) + bias."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.zeros(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = x.norm(p=2, dim=(2, 3), keepdim=True)
        n = g / (g.mean(dim=1, keepdim=True) + self.eps)
        return x + torch.addcmul(self.bias.view(1, -1, 1, 1), self.weight.view(1, -1, 1, 1), x * n)


class RmsNorm(nn.Module):
    """x / sqrt(mean of x^2 over dim 1 + eps) * weight: over the channels at each pixel of [B, C, H, W], over the features
    of [B, F] (timm's RmsNorm2d and RmsNorm, nn.RMSNorm)."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + self.eps)
        return x * self.weight.view(1, -1, *[1] * (x.dim() - 2))


class StdConv2d(nn.Conv2d):
    """nn.Conv2d whose filters are standardised at every forward (mean 0, variance 1 over each filter's weights, with
    eps), as timm's StdConv2d (BiT). With `gamma` (timm's ScaledStdConv2d, NF-Nets) they are also multiplied by a
    learnable gain per filter ([out, 1, 1, 1], named `gain` as timm's) and gamma / sqrt(fan-in)."""

    def __init__(self, *args: object, eps: float = 1e-6, gamma: float | None = None, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.eps = eps
        self.scale = None if gamma is None else gamma * self.weight[0].numel() ** -0.5
        gain = None if gamma is None else nn.Parameter(torch.ones(self.out_channels, 1, 1, 1))
        self.register_parameter("gain", gain)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", eps={self.eps}" + ("" if self.scale is None else f", scale={self.scale}")

    def standardized_weight(self) -> torch.Tensor:
        # timm's arithmetic, batch_norm over the filters as one batch of out_channels: the same float results
        gain = None if self.gain is None else (self.gain * self.scale).view(-1)
        return nn.functional.batch_norm(self.weight.reshape(1, self.out_channels, -1), None, None, weight=gain,
                                        training=True, momentum=0.0, eps=self.eps).reshape_as(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.standardized_weight(), self.bias)
