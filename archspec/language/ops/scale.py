"""A constant factor: every value times a number (Inception-ResNet's residual scale, a mean of two heads)."""

from typing import ClassVar, Literal

from pydantic import Field

from archspec.language.ops.base import LayerSpec, Shape, TorchCall, fmt_shape


class Scale(LayerSpec):
    op: Literal["scale"] = "scale"
    factor: float = Field(allow_inf_nan=False)
    positional: ClassVar = ("factor",)
    summary: ClassVar = ("Every value times a constant FACTOR (x * FACTOR), on any shape; no parameters: "
                         "Inception-ResNet's residual scale, NF-Nets' alpha and beta.")
    usage: ClassVar = "scale 0.2"

    def torch_call(self, x: Shape | None) -> TorchCall:
        return TorchCall(cls="Scale", args=(self.factor,), home="layers")

    def describe(self) -> str:
        return f"{self.factor:.12g}"

    def explain(self, x: Shape | None, y: Shape | None, params: int, macs: int) -> list[str]:
        return [f"{fmt_shape(x)} -> {fmt_shape(y)}: multiplies every value by {self.factor:.12g} (a constant: no params, "
                "and no MACs, as torch counts elementwise products)"]
