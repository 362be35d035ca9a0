"""From images to features, and fully connected layers."""

import math
from typing import ClassVar, Literal

from pydantic import Field

from archspec.language import codes
from archspec.language.ops.base import Emit, LayerSpec, RFStep, Shape, TorchCall, fmt_shape, whole_image_step
from archspec.language.sizemap import Features, as_expr


class Flatten(LayerSpec):
    op: Literal["flatten"] = "flatten"
    name_prefix: ClassVar = "flatten"
    summary: ClassVar = "[B, C, H, W] -> [B, C*H*W] (nn.Flatten)."
    usage: ClassVar = "flatten"
    functional: ClassVar = "torch.flatten({x}, 1)"

    def infer(self, x: Shape | None, emit: Emit) -> Shape | None:
        if x is None or None in x:
            return (None,)
        if len(x) == 3 and emit.sizes is not None:  # a symbolic image: C*h*w, a number only at a given size
            return (Features(x[0], as_expr(x[1]), as_expr(x[2])),)  # type: ignore[arg-type]
        return x if len(x) == 1 else (math.prod(x),)  # type: ignore[arg-type]

    def torch_call(self, x: Shape | None) -> TorchCall:
        return TorchCall(cls="Flatten")

    def rf(self, x: Shape | None) -> RFStep | None:
        return whole_image_step(x)

    def explain(self, x: Shape | None, y: Shape | None, params: int, macs: int) -> list[str]:
        if x is not None and len(x) == 3:
            return [f"{fmt_shape(x)} -> {fmt_shape(y)}: {x[0]} * {x[1]} * {x[2]} = {y[0] if y else '?'}"]
        return [f"{fmt_shape(x)} -> {fmt_shape(y)}: already flat"]


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
                codes.WRONG_RANK,
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

    def explain(self, x: Shape | None, y: Shape | None, params: int, macs: int) -> list[str]:
        if x is None or y is None or len(x) != 1:
            return super().explain(x, y, params, macs)
        f_in, f_out = x[0], y[0]
        bias = f" + {f_out}" if self.bias else ""
        return [
            f"{fmt_shape(x)} -> {fmt_shape(y)}: every output is a weighted sum of all {f_in} inputs",
            f"params: {f_in}*{f_out}{bias} = {params:,}" + (" (weights + biases)" if self.bias else " (weights, no bias)"),
            f"MACs: {f_in}*{f_out} = {macs:,}",
        ]


class PointwiseLinear(Linear):
    """`linear`'s arguments, over the channels of an image."""

    op: Literal["pwlinear"] = "pwlinear"  # type: ignore[assignment]
    name_prefix: ClassVar = "pwfc"
    torch_note: ClassVar = "in-channels come from the previous layer"
    summary: ClassVar = ("A linear layer over the channels at each pixel of [B, C, H, W]: N output channels, "
                         "weight [N, C] laid out as nn.Linear's (ConvNeXt's Linear after a permute).")
    usage: ClassVar = "pwlinear 384 [nobias]"

    def infer(self, x: Shape | None, emit: Emit) -> Shape | None:
        if x is not None and len(x) != 3:
            emit(codes.WRONG_RANK, f"`pwlinear` needs a 4-D tensor [B, C, H, W], got {fmt_shape(x)}",
                 notes=["`pwlinear` maps the channels at each pixel; on features that is `linear`"],
                 help=f"write `linear {self.out_features}` on [B, F]")
            return None
        return None if x is None else (self.out_features, x[1], x[2])

    def params(self, x: Shape | None) -> int:
        if not x or len(x) != 3 or x[0] is None:
            return 0
        return x[0] * self.out_features + (self.out_features if self.bias else 0)

    def macs(self, x: Shape | None, y: Shape | None) -> int:
        if not x or len(x) != 3 or None in x:
            return 0
        return x[0] * x[1] * x[2] * self.out_features  # type: ignore[operator]

    def torch_call(self, x: Shape | None) -> TorchCall:
        return TorchCall(cls="PointwiseLinear", args=(x[0], self.out_features),  # type: ignore[index]
                         kwargs={} if self.bias else {"bias": False}, home="layers")

    def describe(self) -> str:
        return str(self.out_features) + ("" if self.bias else " nobias")

    def explain(self, x: Shape | None, y: Shape | None, params: int, macs: int) -> list[str]:
        if x is None or y is None or len(x) != 3 or None in x:
            return super().explain(x, y, params, macs)
        bias = f" + {self.out_features}" if self.bias else ""
        return [f"{fmt_shape(x)} -> {fmt_shape(y)}: at each of the {x[1]} x {x[2]} pixels, every output channel is a "
                f"weighted sum of the {x[0]} input channels (a 1x1 conv, its weight laid out [out, in] as nn.Linear's)",
                f"params: {x[0]}*{self.out_features}{bias} = {params:,}",
                f"MACs: {x[0]}*{self.out_features}*{x[1]}*{x[2]} = {macs:,}"]
