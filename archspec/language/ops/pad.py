"""Explicit padding: a different number of rows and columns on each side (TensorFlow's `SAME` with a stride)."""

from typing import ClassVar, Literal

from pydantic import Field

from archspec.language.ops.base import Emit, LayerSpec, Shape, TorchCall, fmt_shape, need_rank


class Pad(LayerSpec):
    op: Literal["pad"] = "pad"
    left: int = Field(ge=0)
    right: int = Field(ge=0)
    top: int = Field(ge=0)
    bottom: int = Field(ge=0)
    value: float = 0.0

    positional: ClassVar = ("left", "right", "top", "bottom")
    name_prefix: ClassVar = "pad"
    summary: ClassVar = ("Pad LEFT RIGHT TOP BOTTOM columns and rows with a constant (nn.ZeroPad2d, or nn.ConstantPad2d "
                         "with value=V), in F.pad's order: the asymmetric padding of TensorFlow-ported convs.")
    usage: ClassVar = "pad 0 1 0 1 [value=0]"

    def _sides(self) -> tuple[int, int, int, int]:
        return (self.left, self.right, self.top, self.bottom)

    def infer(self, x: Shape | None, emit: Emit) -> Shape | None:
        if not need_rank("pad", x, 3, emit):
            return None
        if x is None:
            return None
        h, w = x[1], x[2]  # numbers, or sizes in H and W (`input 3xHxW`): the same sums
        return (x[0], None if h is None else h + self.top + self.bottom, None if w is None else w + self.left + self.right)

    def torch_call(self, x: Shape | None) -> TorchCall:
        if self.value == 0:
            return TorchCall(cls="ZeroPad2d", args=(self._sides(),))
        return TorchCall(cls="ConstantPad2d", args=(self._sides(), self.value))

    def describe(self) -> str:
        return " ".join(map(str, self._sides())) + ("" if self.value == 0 else f" value={self.value:g}")

    def explain(self, x: Shape | None, y: Shape | None, params: int, macs: int) -> list[str]:
        if x is None or y is None or None in x:
            return super().explain(x, y, params, macs)
        return [f"{fmt_shape(x)} -> {fmt_shape(y)}: {self.left} column(s) of {self.value:g} on the left, {self.right} on the "
                f"right, {self.top} row(s) on top, {self.bottom} at the bottom",
                f"H: {x[1]} + {self.top} + {self.bottom} = {y[1]}", f"W: {x[2]} + {self.left} + {self.right} = {y[2]}",
                "no params, no MACs"]
