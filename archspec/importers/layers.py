"""One torch layer -> one .arch layer (the op tables of docs/guide/language.md, read backwards).

Each function returns the layer's text, or raises Inexpressible with what the language lacks.
"""
from __future__ import annotations

import math
import struct
from collections.abc import Callable
from typing import Any

from torch import nn


class Inexpressible(Exception):
    """The layer has a setting the language cannot write; the message says which."""


class Unreadable(nn.Module):
    """A stand-in for an ONNX node the language cannot write: it records why, and gives a tensor of
    the node's shape (zeros) so that the rest of the graph is read too and every refusal is found."""

    def __init__(self, why: str, shape: list[int]) -> None:
        super().__init__()
        self.why, self.shape = why, list(shape)

    def forward(self, *inputs: Any) -> Any:
        import torch

        return torch.zeros([inputs[0].shape[0] if inputs else self.shape[0], *self.shape[1:]])


def _pair(value: Any) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _size(prefix: str, value: Any, default: int | None = None) -> str:
    """`k3`, `k1x7`; '' when both sides equal the default."""
    a, b = _pair(value)
    if default is not None and a == b == default:
        return ""
    return f" {prefix}{a}" if a == b else f" {prefix}{a}x{b}"


def number(x: float) -> str:
    # 0.5, 0.001, 1e-6; 12 digits, so that 0.07500000000000001 (a schedule's sum) reads 0.075
    return repr(float(f"{x:.12g}")).replace("e-0", "e-")


def conv(m: nn.Conv2d) -> str:
    if m.padding_mode != "zeros":
        raise Inexpressible(f"padding_mode={m.padding_mode!r} (the language pads with zeros)")
    # Every argument written, defaults too, so that repeated blocks line up; render drops the defaults last.
    padding = f" p {m.padding}" if isinstance(m.padding, str) else _size("p", m.padding)
    return (f"conv {m.out_channels}{_size('k', m.kernel_size)}{_size('s', m.stride)}{padding}"
            f"{_size('d', m.dilation)} g{m.groups}{'' if m.bias is not None else ' nobias'}")


def std_conv(m: nn.Conv2d) -> str:
    """timm's StdConv2d (BiT) and ScaledStdConv2d (NF-Nets, a `gain` per filter): `stdconv`, the conv's arguments, eps
    and gamma (timm keeps gamma / sqrt(fan-in) as `scale`)."""
    eps = "" if m.eps == 1e-6 else f" eps={number(m.eps)}"
    gain = getattr(m, "gain", None)
    if gain is None:
        return f"std{conv(m)}{eps}"
    if tuple(gain.shape) != (m.out_channels, 1, 1, 1):
        raise Inexpressible(f"a gain of shape {list(gain.shape)} (the language's is one per filter)")
    gamma = _gamma(m.scale, m.weight[0].numel())
    return f"std{conv(m)}{eps} scaled" + ("" if gamma == 1.0 else f" gamma={_short(gamma)}")


def _gamma(scale: float, fan_in: int) -> float:
    """timm keeps gamma / sqrt(fan-in) (`scale`): the gamma whose quotient is that `scale` to the last bit (the built
    conv computes the original's exactly), the shortest in 12 digits, else a float32 value (timm's gammas are: the same
    one then for every conv), else in more digits; gamma to 12 digits where none is."""
    gamma = scale * fan_in ** 0.5
    near = (gamma, math.nextafter(gamma, -math.inf), math.nextafter(gamma, math.inf))
    texts = [f"{g:.12g}" for g in near] + [repr(_float32(g)) for g in near]
    texts += [f"{g:.{digits}g}" for digits in (15, 16, 17) for g in near]
    return next((float(t) for t in texts if float(t) * fan_in ** -0.5 == scale), float(number(gamma)))


def _float32(x: float) -> float:
    return struct.unpack("f", struct.pack("f", x))[0]


def _short(x: float) -> str:
    """A float in its shortest exact text, without a trailing `.0`: 2, 1.7, 1.7881293296813965."""
    return repr(x).removesuffix(".0")


def conv_transpose(m: nn.ConvTranspose2d) -> str:
    if m.padding_mode != "zeros":
        raise Inexpressible(f"padding_mode={m.padding_mode!r} (the language pads with zeros)")
    return (f"convtranspose {m.out_channels}{_size('k', m.kernel_size)}{_size('s', m.stride, 1)}{_size('p', m.padding, 0)}"
            f"{_size('op', m.output_padding, 0)}{_size('d', m.dilation, 1)}{f' g{m.groups}' if m.groups != 1 else ''}"
            f"{'' if m.bias is not None else ' nobias'}")


def batchnorm(m: nn.BatchNorm2d) -> str:
    if not m.track_running_stats:
        raise Inexpressible("track_running_stats=False (the language's bn keeps running statistics)")
    if m.momentum is None:
        raise Inexpressible("momentum=None (a cumulative average)")
    eps = "" if m.eps == 1e-5 else f" eps={number(m.eps)}"
    momentum = "" if math.isclose(m.momentum, 0.1) else f" momentum={number(m.momentum)}"
    return f"bn{eps}{momentum}{'' if m.affine else ' noaffine'}"


def groupnorm(m: nn.GroupNorm) -> str:
    if m.eps != 1e-5 or not m.affine:
        raise Inexpressible("a GroupNorm with another eps or without affine")
    return f"groupnorm {m.num_groups}"


def _pool_size(m: Any) -> str:
    k, s = _pair(m.kernel_size), _pair(m.stride if m.stride is not None else m.kernel_size)
    if k[0] != k[1]:
        raise Inexpressible(f"a {k[0]}x{k[1]} pooling window (the language's pools are square)")
    return f"{k[0]}{'' if s == k else _size('s', s)}{_size('p', m.padding, 0)}"


def maxpool(m: nn.MaxPool2d) -> str:
    if m.return_indices:
        raise Inexpressible("return_indices=True")
    return f"maxpool {_pool_size(m)}{_size('d', m.dilation, 1)}{' ceil' if m.ceil_mode else ''}"


def avgpool(m: nn.AvgPool2d) -> str:
    if m.divisor_override is not None:
        raise Inexpressible("divisor_override")
    return f"avgpool {_pool_size(m)}{' ceil' if m.ceil_mode else ''}{'' if m.count_include_pad else ' noinclude'}"


def adaptive_avgpool(m: nn.AdaptiveAvgPool2d) -> str:
    return adaptive_size(m.output_size)


def adaptive_size(size: Any) -> str:
    h, w = _pair(size)
    return "gap" if h == w == 1 else f"adaptiveavgpool {h}x{w}"


def linear(m: nn.Linear) -> str:
    return f"linear {m.out_features}{'' if m.bias is not None else ' nobias'}"


def flatten(m: nn.Flatten) -> str:
    if m.start_dim != 1 or m.end_dim != -1:
        raise Inexpressible(f"Flatten(start_dim={m.start_dim}, end_dim={m.end_dim}) (the language flattens from dim 1 on)")
    return "flatten"


def dropout(m: nn.Dropout) -> str:
    return f"{'dropout2d' if isinstance(m, nn.Dropout2d) else 'dropout'} {number(m.p)}"


def gelu(m: nn.GELU) -> str:
    """`gelu`, or `gelu tanh` for torch's tanh approximation (nn.GELU(approximate='tanh'), F.gelu(x, approximate='tanh'))."""
    if m.approximate not in ("none", "tanh"):
        raise Inexpressible(f"GELU(approximate={m.approximate!r})")
    return "gelu" if m.approximate == "none" else "gelu tanh"


def leaky_relu(m: nn.LeakyReLU) -> str:
    return "leakyrelu" if m.negative_slope == 0.01 else f"leakyrelu {number(m.negative_slope)}"


def softmax(m: nn.Softmax) -> str:
    if m.dim not in (1, -3):
        raise Inexpressible(f"Softmax(dim={m.dim}) (the language's softmax is over the channels, dim 1)")
    return "softmax"


def upsample(m: nn.Upsample) -> str:
    factor = m.scale_factor
    if m.size is not None or factor is None or (isinstance(factor, tuple) and len(set(factor)) != 1):
        raise Inexpressible("an Upsample to a fixed size or by different factors per side")
    factor = factor[0] if isinstance(factor, tuple) else factor
    if factor != int(factor) or m.mode not in ("nearest", "bilinear") or m.align_corners:
        raise Inexpressible(f"Upsample(scale_factor={factor}, mode={m.mode!r}, align_corners={m.align_corners})")
    return f"upsample {int(factor)}" + ("" if m.mode == "nearest" else " bilinear")


def layernorm(m: nn.LayerNorm) -> str:
    """The layer itself; whether it normalises channels or features is read from its input (trace.py)."""
    if len(m.normalized_shape) != 1 or not m.elementwise_affine or m.bias is None:
        raise Inexpressible(f"LayerNorm({list(m.normalized_shape)}, elementwise_affine={m.elementwise_affine}) "
                            "(the language's layernorm is over one dimension, with weight and bias)")
    return "layernorm" if m.eps == 1e-5 else f"layernorm eps={number(m.eps)}"


def grn(m: nn.Module) -> str:
    """timm's GlobalResponseNorm; whether its layout (channels_last) is its input's is checked where the input is known (trace.py)."""
    return "grn" if m.eps == 1e-6 else f"grn eps={number(m.eps)}"


def grn_channels_last(m: nn.Module) -> bool:
    """Whether a timm GlobalResponseNorm takes [B, H, W, C] (its channels on the last dimension), not [B, C, H, W]."""
    return qualified(type(m)) == "timm.layers.grn.GlobalResponseNorm" and m.channel_dim == -1


def rmsnorm(m: nn.Module) -> str:
    """timm's RmsNorm and RmsNorm2d; whether it normalises channels or features is read from its input (trace.py)."""
    if len(m.normalized_shape) != 1 or m.weight is None:
        raise Inexpressible(f"{type(m).__name__}({list(m.normalized_shape)}) without a weight or over more than one dimension "
                            "(the language's rmsnorm is over one dimension, with a weight)")
    return "rmsnorm" if m.eps == 1e-6 else f"rmsnorm eps={number(m.eps)}"


def stochastic_depth(m: nn.Module) -> str:
    """torchvision.ops.StochasticDepth(p, mode)."""
    return f"stochasticdepth {number(m.p)}{' batch' if m.mode == 'batch' else ''}"


def conv1d(m: nn.Conv1d) -> str:
    """A Conv1d the tracer did not read as ECA's (trace.py reads that one as `chanconv`): refused, saying which it reads."""
    raise Inexpressible("a 1-D convolution; the language's `chanconv kK` is ECA's: nn.Conv1d(1, 1, K, padding=(K-1)//2, "
                        "bias=False) on the channels of a [B, C, 1, 1] tensor or of x.mean((2, 3)), reshaped to [B, 1, C]")


def blurpool(m: nn.Module) -> str:
    """timm's BlurPool2d: its padding ((s-1) + (k-1)) // 2 by reflection (or zeros: 'blurpc'), its binomial filter."""
    if m.pad_mode not in ("reflect", "constant"):
        raise Inexpressible(f"BlurPool2d(pad_mode={m.pad_mode!r}) (the language's blurpool pads by reflection or with zeros)")
    k, s = int(m.filt_size), int(m.stride)
    return f"blurpool{'' if k == 3 else f' k{k}'}{'' if s == 2 else f' s{s}'}{' zeros' if m.pad_mode == 'constant' else ''}"


def constant_pad(m: nn.ConstantPad2d) -> str:
    """nn.ConstantPad2d and nn.ZeroPad2d (BiT's stem pads before its max pool): `pad L R T B [value=V]`."""
    if any(side < 0 for side in m.padding):  # NASNet's ZeroPad2d((-1, 1, -1, 1)) crops the top-left
        raise Inexpressible(f"a negative padding {tuple(m.padding)}, which crops (the language's `pad` adds rows and columns)")
    return _pad_text(tuple(m.padding), m.value).removesuffix(" | ") or "identity"


def _plain(word: str) -> Callable[[nn.Module], str]:
    return lambda m: word


LAYERS: dict[type, Callable[[Any], str]] = {
    nn.Conv2d: conv, nn.ConvTranspose2d: conv_transpose, nn.BatchNorm2d: batchnorm, nn.BatchNorm1d: batchnorm,
    nn.GroupNorm: groupnorm, nn.MaxPool2d: maxpool, nn.AvgPool2d: avgpool, nn.AdaptiveAvgPool2d: adaptive_avgpool,
    nn.Linear: linear, nn.Flatten: flatten, nn.Dropout: dropout, nn.Dropout2d: dropout, nn.GELU: gelu,
    nn.LeakyReLU: leaky_relu, nn.Softmax: softmax, nn.Upsample: upsample,
    nn.ReLU: _plain("relu"), nn.ReLU6: _plain("relu6"), nn.SiLU: _plain("silu"), nn.Sigmoid: _plain("sigmoid"),
    nn.Tanh: _plain("tanh"), nn.Hardswish: _plain("hardswish"), nn.Identity: _plain("identity"),
    nn.Hardsigmoid: _plain("hardsigmoid"), nn.LayerNorm: layernorm,
    nn.ChannelShuffle: lambda m: f"channelshuffle {m.groups}", nn.Conv1d: conv1d,
    nn.ConstantPad2d: constant_pad, nn.ZeroPad2d: constant_pad,
}


def _then(*modules: nn.Module) -> str:
    """` | act` for the layers a fused module runs after its own (nn.Identity: nothing)."""
    texts = [layer_text(m) for m in modules]
    return "".join(f" | {t}" for t in texts if t != "identity")


def norm_act(norm: Callable[[Any], str]) -> Callable[[Any], str]:
    """timm's BatchNormAct2d and its kind: the norm, its dropout and its activation, fused in one module."""
    return lambda m: norm(m) + _then(m.drop, m.act)


def same_sides(size: tuple[int, int], kernel: Any, stride: Any, dilation: Any) -> tuple[int, int, int, int]:
    """TensorFlow's SAME padding of an H x W input (timm's pad_same): (left, right, top, bottom), the odd one after."""
    k, s, d = _pair(kernel), _pair(stride), _pair(dilation)
    total = [max((-(-n // s[i]) - 1) * s[i] + (k[i] - 1) * d[i] + 1 - n, 0) for i, n in enumerate(size)]
    return total[1] // 2, total[1] - total[1] // 2, total[0] // 2, total[0] - total[0] // 2


def _pad_text(sides: tuple[int, int, int, int], value: float = 0.0) -> str:
    if not any(sides):
        return ""
    return f"pad {' '.join(map(str, sides))}{'' if value == 0 else f' value={number(value)}'} | "


def conv_same(m: nn.Conv2d, shape: tuple[int, ...]) -> str:
    """timm's Conv2dSame: TensorFlow's SAME padding for the traced input size, then the conv without padding."""
    return _pad_text(same_sides(shape[1:3], m.kernel_size, m.stride, m.dilation)) + conv(m)


def std_conv_same(m: nn.Conv2d, shape: tuple[int, ...]) -> str:
    """timm's StdConv2dSame and ScaledStdConv2dSame: TensorFlow's SAME padding for the traced size where the stride
    needs it (same_pad), the static padding otherwise."""
    if not m.same_pad:
        return std_conv(m)
    return _pad_text(same_sides(shape[1:3], m.kernel_size, m.stride, m.dilation)) + std_conv(m)


def avgpool_same(m: nn.Module, shape: tuple[int, ...]) -> str:
    """timm's AvgPool2dSame: zeros padded as TensorFlow's SAME, counted in the average (count_include_pad)."""
    return _pad_text(same_sides(shape[1:3], m.kernel_size, m.stride, 1)) + avgpool(m)


# torchvision's and timm's layers, named so that neither is a dependency: the tracer keeps them whole (leaves).
LEAVES: dict[str, Callable[[Any], str]] = {
    "torchvision.models.convnext.LayerNorm2d": layernorm,
    "torchvision.ops.stochastic_depth.StochasticDepth": stochastic_depth,
    "timm.layers.norm_act.BatchNormAct2d": norm_act(batchnorm),
    "timm.layers.norm_act.GroupNormAct": norm_act(groupnorm),
    "timm.layers.norm.GroupNorm": groupnorm,  # nn.GroupNorm whose forward calls F.group_norm
    "timm.layers.norm_act.LayerNormAct2d": norm_act(layernorm),
    "timm.layers.norm.LayerNorm2d": layernorm,
    "timm.layers.norm.LayerNorm": layernorm,
    "timm.layers.linear.Linear": linear,
    "timm.layers.blur_pool.BlurPool2d": blurpool,
    "timm.layers.grn.GlobalResponseNorm": grn,
    "timm.layers.norm.RmsNorm2d": rmsnorm,
    "timm.layers.norm.RmsNorm": rmsnorm,
    "timm.layers.std_conv.StdConv2d": std_conv,
    "timm.layers.std_conv.ScaledStdConv2d": std_conv,
    # timm's own activation classes (get_act_layer gives them for 'sigmoid', 'tanh', ...): the same functions
    **{f"timm.layers.activations.{cls}": _plain(word) for cls, word in (
        ("Sigmoid", "sigmoid"), ("Tanh", "tanh"), ("Swish", "silu"), ("HardSwish", "hardswish"),
        ("HardSigmoid", "hardsigmoid"), ("GELU", "gelu"), ("GELUTanh", "gelu tanh"))},
}
# The norms over the channels of a [B, C, H, W] tensor as it is (the others normalise the last dimension).
CHANNELS_FIRST_NORMS = {"torchvision.models.convnext.LayerNorm2d", "timm.layers.norm.LayerNorm2d",
                        "timm.layers.norm_act.LayerNormAct2d", "timm.layers.norm.RmsNorm2d"}
# Leaves whose text depends on the size of their input (C, H, W): padding computed from it at run time.
SIZED: dict[str, Callable[[Any, tuple[int, ...]], str]] = {
    "timm.layers.conv2d_same.Conv2dSame": conv_same,
    "timm.layers.pool2d_same.AvgPool2dSame": avgpool_same,
    "timm.layers.std_conv.StdConv2dSame": std_conv_same,
    "timm.layers.std_conv.ScaledStdConv2dSame": std_conv_same,
}


# timm's attention modules read as a `select` join (importers/attention.py), their layers inside it.
ATTENTION_LEAVES = {"timm.layers.selective_kernel.SelectiveKernel", "timm.layers.split_attn.SplitAttn"}


def qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def last_dim_norm(m: nn.Module) -> bool:
    """A norm over the last dimension of what it gets (the channels after a permute, or a vector's features):
    nn.LayerNorm, timm's LayerNorm and RmsNorm, not the channels-first ones (LayerNorm2d, RmsNorm2d)."""
    name = qualified(type(m))
    return (isinstance(m, nn.LayerNorm) or name == "timm.layers.norm.RmsNorm") and name not in CHANNELS_FIRST_NORMS


def is_leaf(cls: type) -> bool:
    return qualified(cls) in LEAVES or qualified(cls) in SIZED or qualified(cls) in ATTENTION_LEAVES


def layer_text(module: nn.Module, shape: tuple[int, ...] | None = None) -> str:
    """The .arch layer for a torch layer module (on an input of `shape`, C, H, W); Inexpressible when the
    language has no such layer."""
    if isinstance(module, Unreadable):
        raise Inexpressible(module.why)
    sized = SIZED.get(qualified(type(module)))
    if sized is not None and shape is not None and len(shape) == 3:
        return sized(module, shape)
    writer = LAYERS.get(type(module)) or LEAVES.get(qualified(type(module)))
    if writer is None:
        raise Inexpressible("")
    return writer(module)
