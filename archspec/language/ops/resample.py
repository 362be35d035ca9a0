"""Resampling: upsampling an image by a whole factor."""

from fractions import Fraction
from typing import Any, ClassVar, Literal

from pydantic import Field

from archspec.language.sizemap import scaled_size
from archspec.language.ops.base import Emit, LayerSpec, RFStep, Shape, TorchCall, fmt_shape, need_rank


class Upsample(LayerSpec):
    op: Literal["upsample"] = "upsample"
    scale: int = Field(ge=1)
    mode: Literal["nearest", "bilinear"] = "nearest"

    positional: ClassVar = ("scale",)
    keys: ClassVar = {"mode": "mode"}
    flags: ClassVar = {"nearest": ("mode", "nearest"), "bilinear": ("mode", "bilinear")}
    name_prefix: ClassVar = "up"
    summary: ClassVar = "Upsample H and W by a whole factor F (nn.Upsample), `nearest` (default) or `bilinear`."
    usage: ClassVar = "upsample 2 [nearest|bilinear]"

    def infer(self, x: Shape | None, emit: Emit) -> Shape | None:
        if not need_rank("upsample", x, 3, emit):
            return None
        if x is None:
            return None
        return (x[0], *(None if n is None else scaled_size(n, self.scale) for n in x[1:]))

    def rf(self, x: Shape | None) -> RFStep | None:
        # Each output pixel reads one input pixel (nearest; bilinear blends neighbours, 2 at most), and
        # neighbouring outputs are 1/F input pixels apart: the jump shrinks by F.
        step = Fraction(1, self.scale)
        return ((1, 1) if self.mode == "nearest" else (2, 2)), (step, step)

    def torch_call(self, x: Shape | None) -> TorchCall:
        kw: dict[str, Any] = {"scale_factor": self.scale}
        if self.mode != "nearest":
            kw["mode"] = self.mode  # torch's default align_corners=False, as written here
        return TorchCall(cls="Upsample", kwargs=kw)

    def describe(self) -> str:
        return str(self.scale) + ("" if self.mode == "nearest" else f" {self.mode}")

    def explain(self, x: Shape | None, y: Shape | None, params: int, macs: int) -> list[str]:
        if x is None or y is None or None in x:
            return super().explain(x, y, params, macs)
        f = self.scale
        how = (f"copies each pixel into a {f}x{f} block" if self.mode == "nearest"
               else "interpolates each output pixel from its 2x2 nearest inputs (align_corners=False)")
        return [f"{fmt_shape(x)} -> {fmt_shape(y)}: {how}",
                f"H: {x[1]}*{self.scale} = {y[1]}", f"W: {x[2]}*{self.scale} = {y[2]}",
                "no params; MACs not counted (as FlopCounterMode: interpolation is not a multiply-accumulate)"]
