"""Pooling: windows (max, average), adaptive and global average, blur pooling (a fixed binomial filter)."""

import math
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from archspec.language import codes
from archspec.language.ops.base import (Emit, LayerSpec, Pair, RFStep, Shape, TorchCall, fmt_shape, need_rank,
                                        nonnegative_pair, pair_text, positive_pair, spatial, whole_image_step,
                                        window_failure_lines, window_line)


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
    reduces_with: ClassVar[str] = ""  # "the maximum" / "the mean", for explain

    _positive = field_validator("kernel", "stride")(positive_pair)
    _padding = field_validator("padding")(nonnegative_pair)

    @property
    def eff_stride(self) -> tuple[int, int]:
        return self.stride or self.kernel

    @property
    def window_dilation(self) -> tuple[int, int]:
        """Only max pooling has a dilation (`d2`); PyTorch's average pooling has none."""
        return getattr(self, "dilation", (1, 1))

    @property
    def eff_kernel(self) -> tuple[int, int]:
        d = self.window_dilation
        return d[0] * (self.kernel[0] - 1) + 1, d[1] * (self.kernel[1] - 1) + 1

    def rf(self, x: Shape | None) -> RFStep | None:
        return self.eff_kernel, self.eff_stride

    def infer(self, x: Shape | None, emit: Emit) -> Shape | None:
        op = self.op_name
        if not need_rank(op, x, 3, emit):
            return None
        # PyTorch's limit is half the kernel, dilated or not (max_pool2d: "pad should be at most half of kernel size").
        if self.padding[0] > self.kernel[0] // 2 or self.padding[1] > self.kernel[1] // 2:
            emit(
                codes.POOL_PADDING,
                f"`{op}` padding p{pair_text(self.padding)} is more than half the kernel k{pair_text(self.kernel)} (PyTorch refuses it)",
                help=f"use at most p{self.kernel[0] // 2}",
            )
            return (x[0], None, None) if x else None
        if x is None:
            return None
        h, w = spatial(op, x, self.kernel, self.eff_stride, self.padding, self.window_dilation, emit, codes.OUTPUT_TOO_SMALL,
                       self.ceil_mode)
        return (x[0], h, w)

    def torch_call(self, x: Shape | None) -> TorchCall:
        kw: dict[str, Any] = {}
        if self.stride is not None and self.stride != self.kernel:
            kw["stride"] = self.stride[0] if self.stride[0] == self.stride[1] else self.stride
        if self.padding != (0, 0):
            kw["padding"] = self.padding[0] if self.padding[0] == self.padding[1] else self.padding
        if self.window_dilation != (1, 1):
            d = self.window_dilation
            kw["dilation"] = d[0] if d[0] == d[1] else d
        if self.ceil_mode:
            kw["ceil_mode"] = True
        if not getattr(self, "count_include_pad", True):
            kw["count_include_pad"] = False
        k = self.kernel[0] if self.kernel[0] == self.kernel[1] else self.kernel
        return TorchCall(cls=self.torch_cls, args=(k,), kwargs=kw)

    def describe(self) -> str:
        parts = [pair_text(self.kernel)]
        if self.stride is not None and self.stride != self.kernel:
            parts.append(f"s{pair_text(self.stride)}")
        if self.padding != (0, 0):
            parts.append(f"p{pair_text(self.padding)}")
        if self.window_dilation != (1, 1):
            parts.append(f"d{pair_text(self.window_dilation)}")
        if self.ceil_mode:
            parts.append("ceil")
        if not getattr(self, "count_include_pad", True):
            parts.append("noinclude")
        return " ".join(parts)

    def explain_failure(self, x: Shape | None, y: Shape | None) -> list[str]:
        return window_failure_lines(x, y, self.kernel, self.eff_stride, self.padding, self.window_dilation, self.ceil_mode)

    def explain(self, x: Shape | None, y: Shape | None, params: int, macs: int) -> list[str]:
        if x is None or y is None:
            return super().explain(x, y, params, macs)
        k, s = self.kernel, self.eff_stride
        lines = [f"{fmt_shape(x)} -> {fmt_shape(y)}",
                 f"C: {x[0]}: {self.reduces_with} of each {k[0]}x{k[1]} window, on each channel on its own"
                 + ("" if self.stride is not None else f"; the stride defaults to the kernel, {pair_text(k)}")]
        for i, axis in enumerate("HW"):
            lines.append(window_line(axis, x[i + 1], k[i], s[i], self.padding[i], self.window_dilation[i], y[i + 1],
                                     self.ceil_mode))  # type: ignore[arg-type]
        return lines


class MaxPool(_Pool):
    op: Literal["maxpool"] = "maxpool"
    dilation: Pair = (1, 1)
    keys: ClassVar = {**_Pool.keys, "d": "dilation"}
    torch_cls: ClassVar = "MaxPool2d"
    reduces_with: ClassVar = "the maximum"
    summary: ClassVar = ("Max pooling (nn.MaxPool2d): kernel K, stride sS (default K), padding pP (at most K/2), "
                         "dilation dD, `ceil`.")
    usage: ClassVar = "maxpool 2 [s2] [p0] [d1] [ceil]"

    _positive_dilation = field_validator("dilation")(positive_pair)


class AvgPool(_Pool):
    op: Literal["avgpool"] = "avgpool"
    count_include_pad: bool = True
    flags: ClassVar = {**_Pool.flags, "noinclude": ("count_include_pad", False)}
    torch_cls: ClassVar = "AvgPool2d"
    reduces_with: ClassVar = "the mean"
    summary: ClassVar = ("Average pooling (nn.AvgPool2d): kernel K, stride sS (default K), padding pP (at most K/2), `ceil`, "
                         "`noinclude` (padding left out of the mean: count_include_pad=False).")
    usage: ClassVar = "avgpool 2 [s2] [p0] [ceil] [noinclude]"


def widest_adaptive_window(n: int, o: int) -> int:
    """max over i < o of ceil((i+1)*n/o) - floor(i*n/o), in constant time (a loop over o hangs on
    `adaptiveavgpool 99999999x99999999`). With n = q*o + r, window i is q + ceil(f + r/o) where
    f = (i*r mod o)/o takes the multiples of gcd(r, o) below o: q, q + 1 or q + 2."""
    import math

    q, r = divmod(n, o)
    if r == 0:
        return q
    return q + 2 if math.gcd(r, o) < r else q + 1


class AdaptiveAvgPool(LayerSpec):
    op: Literal["adaptiveavgpool"] = "adaptiveavgpool"
    size: Pair
    positional: ClassVar = ("size",)
    name_prefix: ClassVar = "pool"
    summary: ClassVar = "Adaptive average pooling to a fixed HxW (nn.AdaptiveAvgPool2d)."
    usage: ClassVar = "adaptiveavgpool 7x7"

    _positive = field_validator("size")(positive_pair)

    def infer(self, x: Shape | None, emit: Emit) -> Shape | None:
        if not need_rank(self.op, x, 3, emit):
            return None
        return (x[0] if x else None, self.size[0], self.size[1])

    def torch_call(self, x: Shape | None) -> TorchCall:
        return TorchCall(cls="AdaptiveAvgPool2d", args=(self.size[0] if self.size[0] == self.size[1] else self.size,))

    def rf(self, x: Shape | None) -> RFStep | None:
        # Window i spans [floor(i*n/o), ceil((i+1)*n/o)): the widest one, and the step n // o
        # (exact when o divides n, which is the usual case).
        if x is None or len(x) != 3 or x[1] is None or x[2] is None:
            return None
        k = tuple(widest_adaptive_window(n, o) for n, o in zip(x[1:], self.size))
        return k, tuple(max(1, n // o) for n, o in zip(x[1:], self.size))  # type: ignore[return-value]

    def describe(self) -> str:
        return f"{self.size[0]}x{self.size[1]}"

    def explain(self, x: Shape | None, y: Shape | None, params: int, macs: int) -> list[str]:
        if x is None or y is None:
            return super().explain(x, y, params, macs)
        lines = [f"{fmt_shape(x)} -> {fmt_shape(y)}"]
        for i, axis in enumerate("HW"):
            n, o = x[i + 1], y[i + 1]
            if n % o == 0:  # type: ignore[operator]
                lines.append(f"{axis}: {n} -> {o}: windows of {n}/{o} = {n // o} (stride {n // o})")  # type: ignore[operator]
            else:
                lines.append(f"{axis}: {n} -> {o}: window i covers [floor(i*{n}/{o}), ceil((i+1)*{n}/{o})), "
                             "so the windows overlap")
        return lines


class GlobalAvgPool(LayerSpec):
    op: Literal["gap"] = "gap"
    name_prefix: ClassVar = "gap"
    summary: ClassVar = "Global average pooling to 1x1 (nn.AdaptiveAvgPool2d(1))."
    usage: ClassVar = "gap"

    def infer(self, x: Shape | None, emit: Emit) -> Shape | None:
        if not need_rank(self.op, x, 3, emit):
            return None
        return (x[0] if x else None, 1, 1)

    def torch_call(self, x: Shape | None) -> TorchCall:
        return TorchCall(cls="AdaptiveAvgPool2d", args=(1,))

    def rf(self, x: Shape | None) -> RFStep | None:
        return whole_image_step(x)

    def explain(self, x: Shape | None, y: Shape | None, params: int, macs: int) -> list[str]:
        if x is None or len(x) != 3 or None in x:
            return super().explain(x, y, params, macs)
        return [f"{fmt_shape(x)} -> {fmt_shape(y)}: the mean of each channel's {x[1]}x{x[2]} = "
                f"{x[1] * x[2]:,} values"]  # type: ignore[operator]


class BlurPool(LayerSpec):
    """timm's BlurPool2d (Zhang, "Making Convolutional Networks Shift-Invariant Again"): anti-aliased downsampling."""

    op: Literal["blurpool"] = "blurpool"
    kernel: int = Field(default=3, ge=2, le=32)
    stride: int = Field(default=2, ge=1)
    reflect: bool = True

    keys: ClassVar = {"k": "kernel", "s": "stride"}
    flags: ClassVar = {"zeros": ("reflect", False)}
    name_prefix: ClassVar = "blur"
    summary: ClassVar = ("Blur pooling (timm's BlurPool2d): reflect padding of ((s-1) + (k-1)) // 2 on each side, then a fixed "
                         "k x k binomial filter on each channel with stride s (k3: [1 2 1]/4 on each axis); `zeros` pads with "
                         "zeros instead.")
    usage: ClassVar = "blurpool [k3] [s2] [zeros]"

    @property
    def padding(self) -> int:
        return ((self.stride - 1) + (self.kernel - 1)) // 2  # timm's get_padding(k, s)

    def infer(self, x: Shape | None, emit: Emit) -> Shape | None:
        if not need_rank(self.op, x, 3, emit):
            return None
        if x is None:
            return None
        if self.reflect and not self._reflects(x, emit):
            return (x[0], None, None)
        k, s, p = (self.kernel,) * 2, (self.stride,) * 2, (self.padding,) * 2
        h, w = spatial(self.op, x, k, s, p, (1, 1), emit, codes.OUTPUT_TOO_SMALL)
        return (x[0], h, w)

    def _reflects(self, x: Shape, emit: Emit) -> bool:
        """Whether reflect padding fits: torch needs it smaller than H and W (on `input 3xHxW`, a condition recorded)."""
        p = self.padding
        if emit.sizes is not None:
            for i in (0, 1):
                if x[i + 1] is not None:
                    emit.sizes.at_least_one(i, x[i + 1] - p)  # type: ignore[operator]
            return True
        if all(n is None or n > p for n in x[1:]):
            return True
        emit(codes.REFLECT_TOO_SMALL,
             f"`blurpool` pads by reflection {p} on each side, which needs a height and width above {p}, but its input is "
             f"{x[1]}x{x[2]}",
             notes=[f"input is {fmt_shape(x)}", f"padding = ((s-1) + (k-1)) // 2 = (({self.stride}-1) + ({self.kernel}-1)) // 2 = {p}"],
             help="blur-pool a larger map (downsample less before it), or pad with zeros: `blurpool zeros`")
        return False

    def macs(self, x: Shape | None, y: Shape | None) -> int:
        if y is None or len(y) != 3 or None in y:
            return 0
        return y[0] * y[1] * y[2] * self.kernel * self.kernel  # type: ignore[operator]  # a depthwise conv with a fixed filter

    def rf(self, x: Shape | None) -> RFStep | None:
        return (self.kernel, self.kernel), (self.stride, self.stride)

    def torch_call(self, x: Shape | None) -> TorchCall:
        kwargs = {} if self.reflect else {"padding_mode": "zeros"}
        return TorchCall(cls="BlurPool", args=(x[0] if x else None, self.kernel, self.stride), kwargs=kwargs, home="layers")

    def describe(self) -> str:
        parts = [f"k{self.kernel}"] if self.kernel != 3 else []
        parts += [f"s{self.stride}"] if self.stride != 2 else []
        return " ".join(parts + ([] if self.reflect else ["zeros"]))

    def taps(self) -> list[int]:
        """The binomial filter's row, C(k-1, i) (divided by 2^(k-1))."""
        return [math.comb(self.kernel - 1, i) for i in range(self.kernel)]

    def explain_failure(self, x: Shape | None, y: Shape | None) -> list[str]:
        k, s, p = (self.kernel,) * 2, (self.stride,) * 2, (self.padding,) * 2
        return window_failure_lines(x, y, k, s, p, (1, 1))

    def explain(self, x: Shape | None, y: Shape | None, params: int, macs: int) -> list[str]:
        if x is None or y is None or None in x or None in y:
            return super().explain(x, y, params, macs)
        k, s, p = self.kernel, self.stride, self.padding
        taps = " ".join(map(str, self.taps()))
        lines = [f"{fmt_shape(x)} -> {fmt_shape(y)}",
                 f"C: {x[0]}: each channel on its own, {'reflect' if self.reflect else 'zero'}-padded by {p} on each side, then "
                 f"filtered by the fixed {k}x{k} binomial filter [{taps}]/{2 ** (k - 1)} on each axis with stride {s}"]
        for i, axis in enumerate("HW"):
            lines.append(window_line(axis, x[i + 1], k, s, p, 1, y[i + 1]))  # type: ignore[arg-type]
        return lines + [f"no params; MACs: {y[0]}*{y[1]}*{y[2]} outputs * {k}*{k} each = {macs:,}"]
