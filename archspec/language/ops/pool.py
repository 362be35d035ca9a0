"""Pooling: windows (max, average), adaptive and global average."""
from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import field_validator

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
