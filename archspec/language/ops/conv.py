"""Convolutions."""

import math
from fractions import Fraction
from typing import Any, ClassVar, Literal, Union

from pydantic import Field, field_validator

from archspec.language import codes
from archspec.language.sizemap import Size, scaled_size
from archspec.language.ops.base import (Emit, LayerSpec, Pair, RFStep, Shape, TorchCall, fits, fmt_shape, need_rank,
                                        nonnegative_pair, pair_text, positive_pair, spatial, window_failure_lines,
                                        window_line)


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

    _positive = field_validator("kernel", "stride", "dilation")(positive_pair)
    _padding = field_validator("padding")(nonnegative_pair)

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
        if not need_rank(self.op_name, x, 3, emit):
            return None  # unknown: no cascade of errors from a layer already reported
        c = x[0] if x is not None else None
        if c is not None and (c % self.groups or self.out_channels % self.groups):
            emit(
                codes.GROUPS_MISMATCH,
                f"groups g{self.groups} must divide both input channels ({c}) and output channels ({self.out_channels})",
                notes=[f"input is {fmt_shape(x)}"],
                help=f"use groups that divide {c} and {self.out_channels}, e.g. g{math.gcd(c, self.out_channels)}",
            )
        if self.padding == "same" and max(self.stride) > 1:
            emit(
                codes.SAME_WITH_STRIDE,
                f"`p same` needs stride 1, got s{pair_text(self.stride)} (PyTorch refuses it)",
                help=f"use explicit padding, e.g. `p{self.dilation[0] * (self.kernel[0] - 1) // 2}`",
            )
            return (self.out_channels, None, None)
        if x is None:
            return (self.out_channels, None, None)
        if self.padding == "same":
            return (self.out_channels, x[1], x[2])
        h, w = spatial(self.op_name, x, self.kernel, self.stride, self.resolved_padding(), self.dilation, emit, codes.KERNEL_TOO_LARGE)
        return (self.out_channels, h, w)

    def rf(self, x: Shape | None) -> RFStep | None:
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

    def init_mode(self) -> str | None:
        return None if self.init == "default" else self.init

    def torch_call(self, x: Shape | None) -> TorchCall:
        return _conv_call("Conv2d", self, x, (("stride", self.stride, (1, 1)), ("padding", self.padding, (0, 0)),
                                              ("dilation", self.dilation, (1, 1))))

    def describe(self) -> str:
        parts = [str(self.out_channels), f"k{pair_text(self.kernel)}"]
        if self.stride != (1, 1):
            parts.append(f"s{pair_text(self.stride)}")
        if self.padding != (0, 0):
            parts.append(f"p {self.padding}" if isinstance(self.padding, str) else f"p{pair_text(self.padding)}")
        if self.dilation != (1, 1):
            parts.append(f"d{pair_text(self.dilation)}")
        if self.groups != 1:
            parts.append(f"g{self.groups}")
        if not self.bias:
            parts.append("nobias")
        if self.init != "default":
            parts.append(f"init {self.init}")
        return " ".join(parts)

    def explain_failure(self, x: Shape | None, y: Shape | None) -> list[str]:
        if self.padding == "same":
            return super().explain_failure(x, y)
        return window_failure_lines(x, y, self.kernel, self.stride, self.resolved_padding(), self.dilation)

    def explain(self, x: Shape | None, y: Shape | None, params: int, macs: int) -> list[str]:
        if x is None or y is None:
            return super().explain(x, y, params, macs)
        g = self.groups
        per = x[0] // g  # type: ignore[operator]
        kh, kw = self.kernel
        lines = [f"{fmt_shape(x)} -> {fmt_shape(y)}",
                 f"C: {x[0]} -> {y[0]}: {y[0]} filters, each {per}x{kh}x{kw}"
                 + (f" (g{g}: each filter sees {x[0]}/{g} = {per} input channel{'s' if per > 1 else ''})" if g > 1 else "")]
        if self.padding == "same":
            for i, axis in enumerate("HW"):
                tot = self.dilation[i] * (self.kernel[i] - 1)
                lines.append(f"{axis}: p same keeps the size: {y[i + 1]} (total padding {self.dilation[i]}*({self.kernel[i]}-1)"
                             f" = {tot}: {tot // 2} before, {tot - tot // 2} after)")
        else:
            p = self.resolved_padding()
            for i, axis in enumerate("HW"):
                lines.append(window_line(axis, x[i + 1], self.kernel[i], self.stride[i], p[i], self.dilation[i], y[i + 1]))  # type: ignore[arg-type]
        bias = f" + {y[0]}" if self.bias else ""
        lines.append(f"params: {y[0]}*{per}*{kh}*{kw}{bias} = {params:,}"
                     + (" (weights + one bias per filter)" if self.bias else " (weights, no bias)"))
        lines.append(f"MACs: {y[0]}*{y[1]}*{y[2]} outputs * {per}*{kh}*{kw} each = {macs:,}")
        return lines


class StdConv(Conv):
    """A conv whose filters are standardised at every forward (BiT's StdConv2d); `scaled`: NF-Nets' ScaledStdConv2d."""

    op: Literal["stdconv"] = "stdconv"  # type: ignore[assignment]
    init: Literal["default"] = "default"  # type: ignore[assignment]  # standardising undoes a data-dependent init
    eps: float = Field(default=1e-6, gt=0, allow_inf_nan=False)
    scaled: bool = False
    gamma: float = Field(default=1.0, allow_inf_nan=False)

    keys: ClassVar = {"k": "kernel", "s": "stride", "p": "padding", "d": "dilation", "g": "groups", "eps": "eps",
                      "gamma": "gamma"}
    flags: ClassVar = {**Conv.flags, "scaled": ("scaled", True)}
    name_prefix: ClassVar = "conv"
    summary: ClassVar = ("Weight-standardised 2-D convolution (timm's StdConv2d): a conv whose filters are each brought to "
                         "mean 0 and variance 1 (eps=E, default 1e-6) at every forward; `scaled` (ScaledStdConv2d) also "
                         "multiplies them by a learnable gain per filter and gamma=G / sqrt(fan-in).")
    usage: ClassVar = "stdconv 64 k3 s1 p1 [d1] [g1] [nobias] [eps=1e-6] [scaled [gamma=1]]"

    @field_validator("gamma")
    @classmethod
    def _gamma_needs_scaled(cls, v: float, info: Any) -> float:
        if v != 1.0 and not info.data.get("scaled"):
            raise ValueError(f"only a `scaled` stdconv has a gamma, got gamma={v:g} without `scaled`")
        return v

    def infer(self, x: Shape | None, emit: Emit) -> Shape | None:
        y = super().infer(x, emit)
        c = x[0] if x is not None and len(x) == 3 else None
        per = c // self.groups if isinstance(c, int) and c % self.groups == 0 else None
        if per == 1 and self.kernel == (1, 1):
            # each filter minus its mean is 0: torch's batch_norm refuses a variance of one value
            emit(codes.ONE_WEIGHT_FILTER,
                 f"each filter of `stdconv` has one weight ({c} input channel{'s' if c > 1 else ''} / g{self.groups}, "  # type: ignore[operator]
                 "kernel 1x1): standardised, it is 0",
                 notes=[f"input is {fmt_shape(x)}"],
                 help="give each filter more weights (a larger kernel, fewer groups), or use `conv`")
        return y

    def params(self, x: Shape | None) -> int:
        gains = self.out_channels if self.scaled and x and x[0] is not None else 0
        return super().params(x) + gains

    def torch_call(self, x: Shape | None) -> TorchCall:
        call = super().torch_call(x)
        kw = dict(call.kwargs)
        if self.eps != 1e-6:
            kw["eps"] = self.eps
        if self.scaled:
            kw["gamma"] = self.gamma
        return TorchCall(cls="StdConv2d", args=call.args, kwargs=kw, home="layers")

    def describe(self) -> str:
        parts = [super().describe()] + ([f"eps={_compact(self.eps)}"] if self.eps != 1e-6 else [])
        if self.scaled:
            parts += ["scaled"] + ([f"gamma={_compact(self.gamma)}"] if self.gamma != 1.0 else [])
        return " ".join(parts)

    def explain(self, x: Shape | None, y: Shape | None, params: int, macs: int) -> list[str]:
        lines = super().explain(x, y, params, macs)
        if x is None or y is None or x[0] is None:
            return lines
        fan_in = x[0] // self.groups * self.kernel[0] * self.kernel[1]  # type: ignore[operator]
        what = (f"each filter's {fan_in} weights are standardised at every forward: minus their mean, "
                f"divided by sqrt(variance + {_compact(self.eps)})")
        if self.scaled:
            what += f", times the filter's learnable gain and {_compact(self.gamma)}/sqrt({fan_in})"
        lines.insert(2, what)
        if self.scaled:
            last = next(i for i, line in enumerate(lines) if line.startswith("params:"))
            lines[last] = f"params: {params - y[0]:,} (the conv's) + {y[0]} gains = {params:,}"  # type: ignore[operator]
        return lines


class ConvTranspose(LayerSpec):
    op: Literal["convtranspose"] = "convtranspose"
    out_channels: int = Field(ge=1)
    kernel: Pair
    stride: Pair = (1, 1)
    padding: Pair = (0, 0)
    output_padding: Pair = (0, 0)
    dilation: Pair = (1, 1)
    groups: int = Field(default=1, ge=1)
    bias: bool = True

    positional: ClassVar = ("out_channels",)
    keys: ClassVar = {"k": "kernel", "s": "stride", "p": "padding", "op": "output_padding", "d": "dilation", "g": "groups"}
    flags: ClassVar = {"nobias": ("bias", False), "bias": ("bias", True)}
    name_prefix: ClassVar = "convt"
    torch_order: ClassVar = ("in", "", "k", "s", "p", "op", "g")
    torch_note: ClassVar = "in-channels come from the previous layer; output padding is written `op1`"
    summary: ClassVar = ("Transposed 2-D convolution (nn.ConvTranspose2d): OUT channels, kernel kK, stride sS, padding pP, "
                         "output padding opN, dilation dD, groups gG.")
    usage: ClassVar = "convtranspose 64 k4 s2 p1 [op0] [d1] [g1] [nobias]"

    _positive = field_validator("kernel", "stride", "dilation")(positive_pair)
    _padding = field_validator("padding", "output_padding")(nonnegative_pair)

    def axis_out(self, i: int, n: Size) -> Size:
        """PyTorch: H_out = (H-1)*s - 2p + d*(k-1) + op + 1, i.e. s*H + (the size at H = 0)."""
        at_zero = -self.stride[i] - 2 * self.padding[i] + self.dilation[i] * (self.kernel[i] - 1) + self.output_padding[i] + 1
        return scaled_size(n, self.stride[i], at_zero)

    def formula(self, i: int, n: int) -> str:
        return (f"({n}-1)*{self.stride[i]} - 2*{self.padding[i]} + {self.dilation[i]}*({self.kernel[i]}-1) "
                f"+ {self.output_padding[i]} + 1 = {self.axis_out(i, n)}")

    def infer(self, x: Shape | None, emit: Emit) -> Shape | None:
        if not need_rank("convtranspose", x, 3, emit):
            return None
        c = x[0] if x is not None else None
        if c is not None and (c % self.groups or self.out_channels % self.groups):
            emit(codes.GROUPS_MISMATCH,
                 f"groups g{self.groups} must divide both input channels ({c}) and output channels ({self.out_channels})",
                 notes=[f"input is {fmt_shape(x)}"],
                 help=f"use groups that divide {c} and {self.out_channels}, e.g. g{math.gcd(c, self.out_channels)}")
        bad = [i for i in (0, 1) if self.output_padding[i] >= max(self.stride[i], self.dilation[i])]
        if bad:
            emit(codes.OUTPUT_PADDING,
                 f"output padding op{pair_text(self.output_padding)} must be smaller than the stride s{pair_text(self.stride)} "
                 f"or the dilation d{pair_text(self.dilation)} (PyTorch refuses it)",
                 help=f"use at most op{max(max(self.stride), max(self.dilation)) - 1}: output padding only picks "
                      "among the sizes a stride can round to")
            return (self.out_channels, None, None)
        if x is None:
            return (self.out_channels, None, None)
        dims = [None if n is None else self.axis_out(i, n) for i, n in enumerate(x[1:])]
        small = [i for i, v in enumerate(dims) if not fits(emit, i, v)]
        if small:
            emit(codes.TRANSPOSE_TOO_SMALL,
                 f"padding p{pair_text(self.padding)} leaves an output size below 1",
                 notes=[f"input is {fmt_shape(x)}"] + [f"{'HW'[i]}_out = {self.formula(i, x[i + 1])}" for i in small],  # type: ignore[arg-type]
                 help="pad less, or use a larger kernel or stride")
            return (self.out_channels, *(None if v is None or v < 1 else v for v in dims))
        return (self.out_channels, *dims)

    def rf(self, x: Shape | None) -> RFStep | None:
        # A transposed conv is an upsampling by s (stride 1/s) then a conv of the effective kernel at
        # the new resolution: in one step of the recurrence, k' = 1 + (k_eff - 1)/s and stride 1/s.
        eff = [self.dilation[i] * (self.kernel[i] - 1) + 1 for i in (0, 1)]
        k = tuple(1 + Fraction(eff[i] - 1, self.stride[i]) for i in (0, 1))
        s = tuple(Fraction(1, self.stride[i]) for i in (0, 1))
        return tuple(int(v) if v.denominator == 1 else v for v in k), s  # type: ignore[return-value]

    def params(self, x: Shape | None) -> int:
        c = x[0] if x else None
        if c is None:
            return 0
        return c * (self.out_channels // self.groups) * self.kernel[0] * self.kernel[1] + (self.out_channels if self.bias else 0)

    def macs(self, x: Shape | None, y: Shape | None) -> int:
        # As FlopCounterMode counts a transposed conv: every input value times its (OUT/g)*kH*kW weights.
        if not x or not y or None in x or None in y:
            return 0
        return x[0] * x[1] * x[2] * (self.out_channels // self.groups) * self.kernel[0] * self.kernel[1]  # type: ignore[operator]

    def torch_call(self, x: Shape | None) -> TorchCall:
        return _conv_call("ConvTranspose2d", self, x, (("stride", self.stride, (1, 1)), ("padding", self.padding, (0, 0)),
                                                       ("output_padding", self.output_padding, (0, 0)),
                                                       ("dilation", self.dilation, (1, 1))))

    def describe(self) -> str:
        parts = [str(self.out_channels), f"k{pair_text(self.kernel)}"]
        for key, value, default in (("s", self.stride, (1, 1)), ("p", self.padding, (0, 0)), ("op", self.output_padding, (0, 0)),
                                    ("d", self.dilation, (1, 1))):
            if value != default:
                parts.append(f"{key}{pair_text(value)}")
        if self.groups != 1:
            parts.append(f"g{self.groups}")
        if not self.bias:
            parts.append("nobias")
        return " ".join(parts)

    def explain(self, x: Shape | None, y: Shape | None, params: int, macs: int) -> list[str]:
        if x is None or y is None or None in x or None in y:
            return super().explain(x, y, params, macs)
        per = y[0] // self.groups  # type: ignore[operator]
        kh, kw = self.kernel
        lines = [f"{fmt_shape(x)} -> {fmt_shape(y)}",
                 f"C: {x[0]} -> {y[0]}: each input pixel spreads, through {x[0]} weight sets of {per}x{kh}x{kw}, "
                 f"over a {kh}x{kw} window of the output, {self.stride[0]}x{self.stride[1]} apart"]
        lines += [f"{'HW'[i]}: {self.formula(i, x[i + 1])}" for i in (0, 1)]  # type: ignore[arg-type]
        bias = f" + {y[0]}" if self.bias else ""
        lines.append(f"params: {x[0]}*{per}*{kh}*{kw}{bias} = {params:,}")
        lines.append(f"MACs: {x[0]}*{x[1]}*{x[2]} inputs * {per}*{kh}*{kw} each = {macs:,}")
        return lines


class ChannelConv(LayerSpec):
    """ECA's gate (Wang et al., 2020): one 1-D kernel slid across the channels, the same at every pixel."""

    op: Literal["chanconv"] = "chanconv"
    kernel: int = Field(ge=1)

    positional: ClassVar = ("kernel",)  # `chanconv 5` as `maxpool 3`: the one number is the kernel
    keys: ClassVar = {"k": "kernel"}
    name_prefix: ClassVar = "chanconv"
    summary: ClassVar = ("1-D convolution across the channels at each pixel (ECA's gate): one odd kernel kK of K weights, "
                         "zero-padded by (K-1)/2 at both ends so the channels stay C; no bias.")
    usage: ClassVar = "chanconv k3"

    @field_validator("kernel")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError(f"must be odd, so that (k-1)/2 channels of zeros at each end keep the channels, got {v}")
        return v

    def infer(self, x: Shape | None, emit: Emit) -> Shape | None:
        return x if need_rank("chanconv", x, 3, emit) else None

    def params(self, x: Shape | None) -> int:
        return self.kernel

    def macs(self, x: Shape | None, y: Shape | None) -> int:
        if not y or None in y:
            return 0
        return y[0] * y[1] * y[2] * self.kernel  # type: ignore[operator]

    def torch_call(self, x: Shape | None) -> TorchCall:
        return TorchCall(cls="ChannelConv", args=(self.kernel,), home="layers")

    def describe(self) -> str:
        return f"k{self.kernel}"

    def explain(self, x: Shape | None, y: Shape | None, params: int, macs: int) -> list[str]:
        if x is None or y is None or None in x:
            return super().explain(x, y, params, macs)
        half = (self.kernel - 1) // 2
        return [(f"{fmt_shape(x)} -> {fmt_shape(y)}: output channel c is the weighted sum of input channels "
                 f"c-{half}..c+{half} at the same pixel, with one kernel of {self.kernel} weights for every channel "
                 f"({half} channel{'s' if half != 1 else ''} of zeros past each end)"),
                f"params: {self.kernel} (the kernel, no bias)",
                f"MACs: {y[0]}*{y[1]}*{y[2]} outputs * {self.kernel} each = {macs:,}"]


def _conv_call(cls: str, spec: Any, x: Shape | None, pairs: tuple[tuple[str, Any, tuple[int, int]], ...]) -> TorchCall:
    """A Conv2d / ConvTranspose2d call: the kernel, each pair away from its default (one int when square,
    `padding="same"` as written), groups and bias only when not torch's defaults."""
    kw: dict[str, Any] = {"kernel_size": _square(spec.kernel)}
    for key, value, default in pairs:
        if value != default:
            kw[key] = value if isinstance(value, str) else _square(value)
    if spec.groups != 1:
        kw["groups"] = spec.groups
    if not spec.bias:
        kw["bias"] = False
    return TorchCall(cls=cls, args=(x[0], spec.out_channels), kwargs=kw)  # type: ignore[index]


def _compact(x: float) -> str:
    """1e-8 as written (`:g` gives 1e-08), 1.78812932968 to 12 digits (`:g` keeps 6)."""
    return f"{x:.12g}".replace("e-0", "e-")


def _square(pair: tuple[int, int]) -> int | tuple[int, int]:
    return pair[0] if pair[0] == pair[1] else pair
