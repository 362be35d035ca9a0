"""The op table: each op is defined once, here.

An op is a pydantic model (its arguments and defaults) with class-level syntax (positional
arguments, `k5`-style keys, flags) and methods for its shape rule, parameter count, MACs and
the torch module it compiles to. Nothing else in archspec dispatches on op names.

Shapes exclude the batch dimension: (C, H, W) for images, (F,) after `flatten`. A dimension
is None when an earlier error left it unknown; rules then do what they can (best effort).
"""
from __future__ import annotations

import math
from typing import Annotated, Any, Callable, ClassVar, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, field_validator

from archspec.diagnostics import Span

Dim = Union[int, None]
Shape = tuple[Dim, ...]
# emit(code, message, notes=[...], help="...") reports a problem at the current layer.
Emit = Callable[..., None]


def _to_pair(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return (value, value)
    if isinstance(value, (tuple, list)) and len(value) == 1:
        return (value[0], value[0])
    return value


Pair = Annotated[tuple[int, int], BeforeValidator(_to_pair)]


def fmt_shape(shape: Shape | None) -> str:
    """`[B, 16, 5, 5]`, with `?` for unknown dimensions."""
    if shape is None:
        return "[B, ?]"
    return "[" + ", ".join(["B"] + ["?" if d is None else str(d) for d in shape]) + "]"


def _pair_text(p: tuple[int, int]) -> str:
    return str(p[0]) if p[0] == p[1] else f"{p[0]}x{p[1]}"


class TorchCall(BaseModel):
    """An `nn.<cls>(*args, **kwargs)` call: the compiler instantiates it, codegen prints it."""

    cls: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = {}

    def source(self) -> str:
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"nn.{self.cls}({', '.join(parts)})"

    def build(self) -> Any:
        from torch import nn

        return getattr(nn, self.cls)(*self.args, **self.kwargs)


class LayerSpec(BaseModel):
    """Base of every op: where it was written and which block calls led to it."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    span: Span | None = None
    trace: tuple[tuple[str, Span], ...] = ()
    name: str = ""  # module name, unique in its container (conv1, fc2, ...)

    # Syntax: positional field names in order, `k5`-style keys, bare-word flags.
    positional: ClassVar[tuple[str, ...]] = ()
    keys: ClassVar[dict[str, str]] = {}
    flags: ClassVar[dict[str, tuple[str, Any]]] = {}
    name_prefix: ClassVar[str] = ""  # module names are prefix + counter; empty: the op name
    is_activation: ClassVar[bool] = False
    summary: ClassVar[str] = ""
    usage: ClassVar[str] = ""
    # How generated PyTorch source writes a parameter-free op inline in forward(), e.g. "F.relu({x})".
    functional: ClassVar[str | None] = None
    # PyTorch's positional arguments in its order, as this language writes them: "in" is taken from
    # the previous layer (dropped), "" is the op's own positional, a key is written glued (`k5`).
    torch_order: ClassVar[tuple[str, ...]] = ()
    torch_note: ClassVar[str] = ""  # why PyTorch's argument list is written differently here

    @property
    def op_name(self) -> str:
        return self.op  # type: ignore[attr-defined]

    def infer(self, x: Shape | None, emit: Emit) -> Shape | None:
        return x

    def params(self, x: Shape | None) -> int:
        return 0

    def macs(self, x: Shape | None, y: Shape | None) -> int:
        return 0

    def torch_call(self, x: Shape | None) -> TorchCall:
        raise NotImplementedError(f"{self.op_name} has no torch module")

    def describe(self) -> str:
        """Key arguments in the language's own spelling (for tables and graphs)."""
        return ""

    def rf(self, x: Shape | None) -> tuple[tuple[int, int], tuple[int, int]] | None:
        """Receptive-field step per axis (H, W): (effective kernel, stride), or None when
        it depends on an x that is unknown.

        Pointwise ops are ((1, 1), (1, 1)). A summary chains them: rf += (k - 1) * jump; jump *= stride.
        """
        return (1, 1), (1, 1)


# --------------------------------------------------------------------------- helpers

def _need_rank(op: str, x: Shape | None, rank: int, emit: Emit) -> bool:
    """True when x has the rank the op needs; otherwise reports E103 (unknown passes)."""
    if x is None or len(x) == rank:
        return True
    if rank == 3:
        emit(
            "E103",
            f"`{op}` needs a 4-D tensor [B, C, H, W], got {fmt_shape(x)}",
            help="move this layer before `flatten` (convs and pools work on images)",
        )
    else:
        emit(
            "E103",
            f"`{op}` needs a 2-D tensor [B, F], got {fmt_shape(x)}",
            help="add `flatten` (or `gap | flatten`) before it",
        )
    return False


def window_out(
    axis: str,
    size: Dim,
    k: int,
    s: int,
    p: int,
    d: int = 1,
    ceil_mode: bool = False,
) -> tuple[Dim, str, int]:
    """PyTorch's output size for a sliding window, the formula with its numbers, rows dropped."""
    if size is None:
        return None, "", 0
    span = size + 2 * p - d * (k - 1) - 1
    if ceil_mode:
        out = -(-span // s) + 1
        # PyTorch: the last window must start inside the input or left padding.
        if (out - 1) * s >= size + p:
            out -= 1
        formula = f"{axis}_out = ceil(({size} + 2*{p} - {d}*({k}-1) - 1)/{s}) + 1 = {out}"
        dropped = 0
    else:
        out = math.floor(span / s + 1)
        formula = f"{axis}_out = floor(({size} + 2*{p} - {d}*({k}-1) - 1)/{s} + 1) = {out}"
        # Uncovered trailing positions, less the bottom/right padding among them: real rows lost.
        # A window narrower than its stride skips rows by design (a strided 1x1 conv): no warning.
        eff = d * (k - 1) + 1
        dropped = max(0, span % s - p) if span >= 0 and eff >= s else 0
    return out, formula, dropped


def _padding_to_fit(x: Shape, eff: tuple[int, int], p: tuple[int, int], bad_axes: list[str]) -> str:
    """The padding, as written after `p`, that lets a window of size eff fit on the axes that are too small.

    An axis that already fits keeps its padding; `p1x0` when only H needs more, `p2` when both need the same.
    """
    need = []
    for i, axis in enumerate("HW"):
        size = x[i + 1] or 0
        need.append(max(p[i], -(-(eff[i] - size) // 2)) if axis in bad_axes else p[i])
    return _pair_text((need[0], need[1]))


def _spatial(
    op: str,
    x: Shape,
    k: tuple[int, int],
    s: tuple[int, int],
    p: tuple[int, int],
    d: tuple[int, int],
    emit: Emit,
    too_small_code: str,
    ceil_mode: bool = False,
) -> tuple[Dim, Dim]:
    """Output H and W; reports a window too large for the input, and rows the floor drops."""
    h, fh, dh = window_out("H", x[1], k[0], s[0], p[0], d[0], ceil_mode)
    w, fw, dw = window_out("W", x[2], k[1], s[1], p[1], d[1], ceil_mode)
    bad = [(axis, f) for axis, v, f in (("H", h, fh), ("W", w, fw)) if v is not None and v < 1]
    if bad:
        eff = (d[0] * (k[0] - 1) + 1, d[1] * (k[1] - 1) + 1)
        padded = tuple(None if v is None else v + 2 * pp for v, pp in zip(x[1:], p))
        what = "kernel" if too_small_code == "E101" else "window"
        emit(
            too_small_code,
            f"{what} {_pair_text(eff)} is larger than the padded input "
            f"{'x'.join('?' if v is None else str(v) for v in padded)}; output size would be below 1",
            notes=[f"input is {fmt_shape(x)}"] + [f for _, f in bad],
            help=f"pad the input (e.g. `p{_padding_to_fit(x, eff, p, [axis for axis, _ in bad])}`), use a smaller {what}, "
            f"or downsample less before this layer",
        )
        return (None if h is None or h < 1 else h), (None if w is None or w < 1 else w)
    if (dh or dw) and not ceil_mode:
        lost = []
        if dh:
            lost.append(f"{dh} row{'s' if dh > 1 else ''}")
        if dw:
            lost.append(f"{dw} column{'s' if dw > 1 else ''}")
        emit(
            "W201",
            f"`{op}` on {x[1]}x{x[2]} drops the last {' and '.join(lost)}: no window covers them",
            notes=[f"input is {fmt_shape(x)}", fh, fw],
            help="pad the input so the windows tile it exactly"
            + (", or add `ceil` to keep a partial window" if too_small_code == "E102" else ""),
        )
    return h, w


# --------------------------------------------------------------------------- ops

class Input(LayerSpec):
    op: Literal["input"] = "input"
    dims: tuple[int, ...]
    positional: ClassVar = ("dims",)
    summary: ClassVar = "The input tensor without the batch: CxHxW for images, or F for features."
    usage: ClassVar = "input 3x32x32"

    @field_validator("dims", mode="before")
    @classmethod
    def _dims(cls, v: Any) -> Any:
        v = (v,) if isinstance(v, int) else v
        if isinstance(v, tuple) and len(v) not in (1, 3):
            raise ValueError(f"input must be CxHxW (3 numbers) or F (1 number), got {'x'.join(map(str, v))}")
        if isinstance(v, tuple) and any(isinstance(d, int) and d < 1 for d in v):
            raise ValueError("input dimensions must be at least 1")
        return v

    def infer(self, x: Shape | None, emit: Emit) -> Shape | None:
        return self.dims

    def describe(self) -> str:
        return "x".join(map(str, self.dims))


class Conv(LayerSpec):
    op: Literal["conv"] = "conv"
    out_channels: int = Field(ge=1)
    kernel: Pair
    stride: Pair = (1, 1)
    padding: Union[Pair, Literal["same", "valid"]] = (0, 0)
    dilation: Pair = (1, 1)
    groups: int = Field(default=1, ge=1)
    bias: bool = True
    init: Literal["default", "whiten"] = "default"

    positional: ClassVar = ("out_channels",)
    keys: ClassVar = {"k": "kernel", "s": "stride", "p": "padding", "d": "dilation", "g": "groups", "init": "init"}
    flags: ClassVar = {"nobias": ("bias", False), "bias": ("bias", True)}
    name_prefix: ClassVar = "conv"
    torch_order: ClassVar = ("in", "", "k", "s", "p", "d", "g")
    torch_note: ClassVar = "in-channels come from the previous layer; kernel, stride and padding are written `k5`, `s2`, `p1`"
    summary: ClassVar = "2-D convolution (nn.Conv2d): OUT channels, kernel kK, stride sS, padding pP|same|valid, dilation dD, groups gG."
    usage: ClassVar = "conv 64 k3 s1 p1 [d1] [g1] [nobias] [init whiten]"

    @field_validator("kernel", "stride", "dilation")
    @classmethod
    def _positive(cls, v: tuple[int, int]) -> tuple[int, int]:
        if min(v) < 1:
            raise ValueError(f"must be at least 1, got {_pair_text(v)}")
        return v

    @field_validator("padding")
    @classmethod
    def _padding(cls, v: Any) -> Any:
        if isinstance(v, tuple) and min(v) < 0:
            raise ValueError(f"padding cannot be negative, got {_pair_text(v)}")
        return v

    def resolved_padding(self) -> tuple[int, int]:
        """Symmetric padding equivalent for shapes; `same` keeps the size (stride 1)."""
        if self.padding == "valid":
            return (0, 0)
        if self.padding == "same":
            # Total padding d*(k-1); torch puts the extra one on the right/bottom.
            tot = (self.dilation[0] * (self.kernel[0] - 1), self.dilation[1] * (self.kernel[1] - 1))
            return (tot[0] // 2, tot[1] // 2)
        return self.padding

    def infer(self, x: Shape | None, emit: Emit) -> Shape | None:
        if not _need_rank("conv", x, 3, emit):
            return None  # unknown: no cascade of errors from a layer already reported
        c = x[0] if x is not None else None
        if c is not None and (c % self.groups or self.out_channels % self.groups):
            emit(
                "E104",
                f"groups g{self.groups} must divide both input channels ({c}) and output channels ({self.out_channels})",
                notes=[f"input is {fmt_shape(x)}"],
                help=f"use groups that divide {c} and {self.out_channels}, e.g. g{math.gcd(c, self.out_channels)}",
            )
        if self.padding == "same" and max(self.stride) > 1:
            emit(
                "E106",
                f"`p same` needs stride 1, got s{_pair_text(self.stride)} (PyTorch refuses it)",
                help=f"use explicit padding, e.g. `p{self.dilation[0] * (self.kernel[0] - 1) // 2}`",
            )
            return (self.out_channels, None, None)
        if x is None:
            return (self.out_channels, None, None)
        if self.padding == "same":
            return (self.out_channels, x[1], x[2])
        h, w = _spatial("conv", x, self.kernel, self.stride, self.resolved_padding(), self.dilation, emit, "E101")
        return (self.out_channels, h, w)

    def rf(self, x: Shape | None) -> tuple[tuple[int, int], tuple[int, int]] | None:
        eff = (self.dilation[0] * (self.kernel[0] - 1) + 1, self.dilation[1] * (self.kernel[1] - 1) + 1)
        return eff, self.stride

    def params(self, x: Shape | None) -> int:
        c = x[0] if x else None
        if c is None:
            return 0
        return self.out_channels * (c // self.groups) * self.kernel[0] * self.kernel[1] + (self.out_channels if self.bias else 0)

    def macs(self, x: Shape | None, y: Shape | None) -> int:
        if not x or not y or None in x or None in y:
            return 0
        return y[0] * y[1] * y[2] * (x[0] // self.groups) * self.kernel[0] * self.kernel[1]

    def torch_call(self, x: Shape | None) -> TorchCall:
        kw: dict[str, Any] = {"kernel_size": self.kernel[0] if self.kernel[0] == self.kernel[1] else self.kernel}
        for key, value, default in (("stride", self.stride, (1, 1)), ("padding", self.padding, (0, 0)), ("dilation", self.dilation, (1, 1))):
            if value != default:
                kw[key] = value if isinstance(value, str) or value[0] != value[1] else value[0]
        if self.groups != 1:
            kw["groups"] = self.groups
        if not self.bias:
            kw["bias"] = False
        return TorchCall(cls="Conv2d", args=(x[0], self.out_channels), kwargs=kw)  # type: ignore[index]

    def describe(self) -> str:
        parts = [str(self.out_channels), f"k{_pair_text(self.kernel)}"]
        if self.stride != (1, 1):
            parts.append(f"s{_pair_text(self.stride)}")
        if self.padding != (0, 0):
            parts.append(f"p {self.padding}" if isinstance(self.padding, str) else f"p{_pair_text(self.padding)}")
        if self.dilation != (1, 1):
            parts.append(f"d{_pair_text(self.dilation)}")
        if self.groups != 1:
            parts.append(f"g{self.groups}")
        if not self.bias:
            parts.append("nobias")
        if self.init != "default":
            parts.append(f"init {self.init}")
        return " ".join(parts)


class _Pool(LayerSpec):
    kernel: Pair
    stride: Pair | None = None  # default: the kernel
    padding: Pair = (0, 0)
    ceil_mode: bool = False

    positional: ClassVar = ("kernel",)
    keys: ClassVar = {"k": "kernel", "s": "stride", "p": "padding"}
    flags: ClassVar = {"ceil": ("ceil_mode", True)}
    name_prefix: ClassVar = "pool"
    torch_cls: ClassVar[str] = ""
    torch_order: ClassVar = ("", "s", "p")
    torch_note: ClassVar = "stride and padding are written `s2`, `p1`"

    @field_validator("kernel", "stride")
    @classmethod
    def _positive(cls, v: tuple[int, int] | None) -> tuple[int, int] | None:
        if v is not None and min(v) < 1:
            raise ValueError(f"must be at least 1, got {_pair_text(v)}")
        return v

    @field_validator("padding")
    @classmethod
    def _padding(cls, v: tuple[int, int]) -> tuple[int, int]:
        if min(v) < 0:
            raise ValueError(f"padding cannot be negative, got {_pair_text(v)}")
        return v

    @property
    def eff_stride(self) -> tuple[int, int]:
        return self.stride or self.kernel

    def rf(self, x: Shape | None) -> tuple[tuple[int, int], tuple[int, int]] | None:
        return self.kernel, self.eff_stride

    def infer(self, x: Shape | None, emit: Emit) -> Shape | None:
        op = self.op_name
        if not _need_rank(op, x, 3, emit):
            return None
        if self.padding[0] > self.kernel[0] // 2 or self.padding[1] > self.kernel[1] // 2:
            emit(
                "E105",
                f"`{op}` padding p{_pair_text(self.padding)} is more than half the kernel k{_pair_text(self.kernel)} (PyTorch refuses it)",
                help=f"use at most p{self.kernel[0] // 2}",
            )
            return (x[0], None, None) if x else None
        if x is None:
            return None
        h, w = _spatial(op, x, self.kernel, self.eff_stride, self.padding, (1, 1), emit, "E102", self.ceil_mode)
        return (x[0], h, w)

    def torch_call(self, x: Shape | None) -> TorchCall:
        kw: dict[str, Any] = {}
        if self.stride is not None and self.stride != self.kernel:
            kw["stride"] = self.stride[0] if self.stride[0] == self.stride[1] else self.stride
        if self.padding != (0, 0):
            kw["padding"] = self.padding[0] if self.padding[0] == self.padding[1] else self.padding
        if self.ceil_mode:
            kw["ceil_mode"] = True
        k = self.kernel[0] if self.kernel[0] == self.kernel[1] else self.kernel
        return TorchCall(cls=self.torch_cls, args=(k,), kwargs=kw)

    def describe(self) -> str:
        parts = [_pair_text(self.kernel)]
        if self.stride is not None and self.stride != self.kernel:
            parts.append(f"s{_pair_text(self.stride)}")
        if self.padding != (0, 0):
            parts.append(f"p{_pair_text(self.padding)}")
        if self.ceil_mode:
            parts.append("ceil")
        return " ".join(parts)


class MaxPool(_Pool):
    op: Literal["maxpool"] = "maxpool"
    torch_cls: ClassVar = "MaxPool2d"
    summary: ClassVar = "Max pooling (nn.MaxPool2d): kernel K, stride sS (default K), padding pP (at most K/2), `ceil`."
    usage: ClassVar = "maxpool 2 [s2] [p0] [ceil]"


class AvgPool(_Pool):
    op: Literal["avgpool"] = "avgpool"
    torch_cls: ClassVar = "AvgPool2d"
    summary: ClassVar = "Average pooling (nn.AvgPool2d): kernel K, stride sS (default K), padding pP (at most K/2), `ceil`."
    usage: ClassVar = "avgpool 2 [s2] [p0] [ceil]"


class AdaptiveAvgPool(LayerSpec):
    op: Literal["adaptiveavgpool"] = "adaptiveavgpool"
    size: Pair
    positional: ClassVar = ("size",)
    name_prefix: ClassVar = "pool"
    summary: ClassVar = "Adaptive average pooling to a fixed HxW (nn.AdaptiveAvgPool2d)."
    usage: ClassVar = "adaptiveavgpool 7x7"

    @field_validator("size")
    @classmethod
    def _positive(cls, v: tuple[int, int]) -> tuple[int, int]:
        if min(v) < 1:
            raise ValueError(f"must be at least 1, got {_pair_text(v)}")
        return v

    def infer(self, x: Shape | None, emit: Emit) -> Shape | None:
        if not _need_rank(self.op, x, 3, emit):
            return None
        return (x[0] if x else None, self.size[0], self.size[1])

    def torch_call(self, x: Shape | None) -> TorchCall:
        return TorchCall(cls="AdaptiveAvgPool2d", args=(self.size[0] if self.size[0] == self.size[1] else self.size,))

    def rf(self, x: Shape | None) -> tuple[tuple[int, int], tuple[int, int]] | None:
        # Window i spans [floor(i*n/o), ceil((i+1)*n/o)): the widest one, and the step n // o
        # (exact when o divides n, which is the usual case).
        if x is None or len(x) != 3 or x[1] is None or x[2] is None:
            return None
        k = tuple(max(-(-(i + 1) * n // o) - i * n // o for i in range(o)) for n, o in zip(x[1:], self.size))
        return k, tuple(max(1, n // o) for n, o in zip(x[1:], self.size))  # type: ignore[return-value]

    def describe(self) -> str:
        return f"{self.size[0]}x{self.size[1]}"


class GlobalAvgPool(LayerSpec):
    op: Literal["gap"] = "gap"
    name_prefix: ClassVar = "gap"
    summary: ClassVar = "Global average pooling to 1x1 (nn.AdaptiveAvgPool2d(1))."
    usage: ClassVar = "gap"

    def infer(self, x: Shape | None, emit: Emit) -> Shape | None:
        if not _need_rank(self.op, x, 3, emit):
            return None
        return (x[0] if x else None, 1, 1)

    def torch_call(self, x: Shape | None) -> TorchCall:
        return TorchCall(cls="AdaptiveAvgPool2d", args=(1,))

    def rf(self, x: Shape | None) -> tuple[tuple[int, int], tuple[int, int]] | None:
        # One window over the whole H x W: every output sees every input position.
        if x is None or len(x) != 3:
            return ((1, 1), (1, 1)) if x is not None else None
        if x[1] is None or x[2] is None:
            return None
        return (x[1], x[2]), (x[1], x[2])


class _Activation(LayerSpec):
    is_activation: ClassVar = True
    torch_cls: ClassVar[str] = ""

    def torch_call(self, x: Shape | None) -> TorchCall:
        return TorchCall(cls=self.torch_cls)


class ReLU(_Activation):
    op: Literal["relu"] = "relu"
    torch_cls: ClassVar = "ReLU"
    functional: ClassVar = "F.relu({x})"
    summary: ClassVar = "max(0, x) (nn.ReLU)."
    usage: ClassVar = "relu"


class ReLU6(_Activation):
    op: Literal["relu6"] = "relu6"
    torch_cls: ClassVar = "ReLU6"
    functional: ClassVar = "F.relu6({x})"
    summary: ClassVar = "min(max(0, x), 6) (nn.ReLU6), as in MobileNet."
    usage: ClassVar = "relu6"


class GELU(_Activation):
    op: Literal["gelu"] = "gelu"
    torch_cls: ClassVar = "GELU"
    functional: ClassVar = "F.gelu({x})"
    summary: ClassVar = "Gaussian error linear unit (nn.GELU)."
    usage: ClassVar = "gelu"


class SiLU(_Activation):
    op: Literal["silu"] = "silu"
    torch_cls: ClassVar = "SiLU"
    functional: ClassVar = "F.silu({x})"
    summary: ClassVar = "x * sigmoid(x) (nn.SiLU, a.k.a. swish)."
    usage: ClassVar = "silu"


class Sigmoid(_Activation):
    op: Literal["sigmoid"] = "sigmoid"
    torch_cls: ClassVar = "Sigmoid"
    functional: ClassVar = "torch.sigmoid({x})"
    summary: ClassVar = "1 / (1 + exp(-x)) (nn.Sigmoid)."
    usage: ClassVar = "sigmoid"


class Tanh(_Activation):
    op: Literal["tanh"] = "tanh"
    torch_cls: ClassVar = "Tanh"
    functional: ClassVar = "torch.tanh({x})"
    summary: ClassVar = "Hyperbolic tangent (nn.Tanh)."
    usage: ClassVar = "tanh"


class Hardswish(_Activation):
    op: Literal["hardswish"] = "hardswish"
    torch_cls: ClassVar = "Hardswish"
    functional: ClassVar = "F.hardswish({x})"
    summary: ClassVar = "x * relu6(x + 3) / 6 (nn.Hardswish), as in MobileNetV3."
    usage: ClassVar = "hardswish"


class LeakyReLU(_Activation):
    op: Literal["leakyrelu"] = "leakyrelu"
    slope: float = Field(default=0.01, ge=0)
    positional: ClassVar = ("slope",)
    summary: ClassVar = "max(0, x) + slope * min(0, x) (nn.LeakyReLU), slope default 0.01."
    usage: ClassVar = "leakyrelu [0.01]"

    def torch_call(self, x: Shape | None) -> TorchCall:
        return TorchCall(cls="LeakyReLU", args=(self.slope,) if self.slope != 0.01 else ())

    @property
    def functional(self) -> str:  # type: ignore[override]
        return "F.leaky_relu({x}" + (f", {self.slope!r})" if self.slope != 0.01 else ")")

    def describe(self) -> str:
        return "" if self.slope == 0.01 else str(self.slope)


class Softmax(LayerSpec):
    op: Literal["softmax"] = "softmax"
    name_prefix: ClassVar = "softmax"
    summary: ClassVar = "Softmax over the channel/feature dimension (nn.Softmax(dim=1)). Leave it out when training with cross-entropy."
    usage: ClassVar = "softmax"
    functional: ClassVar = "F.softmax({x}, dim=1)"

    def torch_call(self, x: Shape | None) -> TorchCall:
        return TorchCall(cls="Softmax", kwargs={"dim": 1})


class BatchNorm(LayerSpec):
    op: Literal["bn"] = "bn"
    name_prefix: ClassVar = "bn"
    summary: ClassVar = "Batch normalisation: nn.BatchNorm2d on [B, C, H, W], nn.BatchNorm1d on [B, F]."
    usage: ClassVar = "bn"

    def params(self, x: Shape | None) -> int:
        return 2 * x[0] if x and x[0] is not None else 0

    def torch_call(self, x: Shape | None) -> TorchCall:
        return TorchCall(cls="BatchNorm2d" if len(x) == 3 else "BatchNorm1d", args=(x[0],))  # type: ignore[arg-type]


class Dropout(LayerSpec):
    op: Literal["dropout"] = "dropout"
    p: float = 0.5
    positional: ClassVar = ("p",)
    name_prefix: ClassVar = "dropout"
    summary: ClassVar = "Zero each element with probability P during training (nn.Dropout), P in [0, 1)."
    usage: ClassVar = "dropout 0.5"

    @field_validator("p")
    @classmethod
    def _prob(cls, v: float) -> float:
        if not 0 <= v < 1:
            raise ValueError(f"dropout probability must be in [0, 1), got {v}")
        return v

    def torch_call(self, x: Shape | None) -> TorchCall:
        return TorchCall(cls="Dropout", args=(self.p,))

    def describe(self) -> str:
        return str(self.p)


class Flatten(LayerSpec):
    op: Literal["flatten"] = "flatten"
    name_prefix: ClassVar = "flatten"
    summary: ClassVar = "[B, C, H, W] -> [B, C*H*W] (nn.Flatten)."
    usage: ClassVar = "flatten"
    functional: ClassVar = "torch.flatten({x}, 1)"

    def infer(self, x: Shape | None, emit: Emit) -> Shape | None:
        if x is None or None in x:
            return (None,)
        return (math.prod(x),)  # type: ignore[arg-type]

    def torch_call(self, x: Shape | None) -> TorchCall:
        return TorchCall(cls="Flatten")

    def rf(self, x: Shape | None) -> tuple[tuple[int, int], tuple[int, int]] | None:
        # One window over the whole H x W: every output sees every input position.
        if x is None or len(x) != 3:
            return ((1, 1), (1, 1)) if x is not None else None
        if x[1] is None or x[2] is None:
            return None
        return (x[1], x[2]), (x[1], x[2])


class Linear(LayerSpec):
    op: Literal["linear"] = "linear"
    out_features: int = Field(ge=1)
    bias: bool = True
    positional: ClassVar = ("out_features",)
    flags: ClassVar = {"nobias": ("bias", False), "bias": ("bias", True)}
    name_prefix: ClassVar = "fc"
    torch_order: ClassVar = ("in", "")
    torch_note: ClassVar = "in-features come from the previous layer"
    summary: ClassVar = "Fully connected layer (nn.Linear) on [B, F]: N output features."
    usage: ClassVar = "linear 10 [nobias]"

    def infer(self, x: Shape | None, emit: Emit) -> Shape | None:
        if x is not None and len(x) != 1:
            emit(
                "E103",
                f"`linear` needs a 2-D tensor [B, F], got {fmt_shape(x)}",
                notes=["on a 4-D tensor nn.Linear would act on the last dimension (W) only, which is almost never meant"],
                help="add `flatten` (or `gap | flatten`) before it",
            )
            return (self.out_features,)
        return (self.out_features,)

    def params(self, x: Shape | None) -> int:
        if not x or len(x) != 1 or x[0] is None:
            return 0
        return x[0] * self.out_features + (self.out_features if self.bias else 0)

    def macs(self, x: Shape | None, y: Shape | None) -> int:
        return self.params(x) - (self.out_features if self.bias else 0) if x and len(x) == 1 and x[0] else 0

    def torch_call(self, x: Shape | None) -> TorchCall:
        return TorchCall(cls="Linear", args=(x[0], self.out_features), kwargs={} if self.bias else {"bias": False})  # type: ignore[index]

    def describe(self) -> str:
        return str(self.out_features) + ("" if self.bias else " nobias")


Layer = Annotated[
    Union[
        Input, Conv, MaxPool, AvgPool, AdaptiveAvgPool, GlobalAvgPool, ReLU, ReLU6, GELU, SiLU, Sigmoid,
        Tanh, Hardswish, LeakyReLU, Softmax, BatchNorm, Dropout, Flatten, Linear,
    ],
    Field(discriminator="op"),
]
LAYER_ADAPTER: TypeAdapter[Layer] = TypeAdapter(Layer)
OPS: dict[str, type[LayerSpec]] = {
    cls.model_fields["op"].default: cls
    for cls in (
        Input, Conv, MaxPool, AvgPool, AdaptiveAvgPool, GlobalAvgPool, ReLU, ReLU6, GELU, SiLU, Sigmoid,
        Tanh, Hardswish, LeakyReLU, Softmax, BatchNorm, Dropout, Flatten, Linear,
    )
}

# What course students type from PyTorch and Keras, lower-cased without `_`, to this language's op.
OP_ALIASES: dict[str, str] = {
    "conv2d": "conv", "convolution2d": "conv",
    "fc": "linear", "dense": "linear",
    "batchnorm": "bn", "batchnorm1d": "bn", "batchnorm2d": "bn", "batchnormalization": "bn",
    "view": "flatten", "reshape": "flatten",
    "maxpool2d": "maxpool", "maxpooling2d": "maxpool", "avgpool2d": "avgpool", "averagepooling2d": "avgpool",
    "adaptiveavgpool2d": "adaptiveavgpool", "globalaveragepooling2d": "gap", "globalavgpool": "gap",
    "swish": "silu", "logsoftmax": "softmax",
}
_TORCH_PREFIXES = ("torch.nn.functional.", "torch.nn.", "nn.functional.", "nn.", "f.", "layers.", "keras.layers.")


def resolve_op_name(word: str) -> str | None:
    """The op a PyTorch or Keras spelling means (`ReLU`, `nn.Conv2d`, `Dense`, `view`), or None."""
    key = word.lower()
    for prefix in _TORCH_PREFIXES:
        key = key.removeprefix(prefix)
    key = key.replace("_", "")
    if key in OPS:
        return key
    return OP_ALIASES.get(key)
