"""Regularisation that only acts while training."""

from typing import ClassVar, Literal

from pydantic import field_validator

from archspec.language.ops.base import Emit, LayerSpec, Shape, TorchCall, fmt_shape, need_rank, number_text


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

    def explain(self, x: Shape | None, y: Shape | None, params: int, macs: int) -> list[str]:
        return [f"{fmt_shape(x)} -> {fmt_shape(y)}: while training, zeroes each element with probability "
                f"{self.p:g} and scales the rest by 1/{number_text(1 - self.p)}; does nothing at evaluation"]


class Dropout2d(Dropout):
    op: Literal["dropout2d"] = "dropout2d"  # type: ignore[assignment]
    summary: ClassVar = "Zero whole channels with probability P during training (nn.Dropout2d), on [B, C, H, W]."
    usage: ClassVar = "dropout2d 0.1"

    def infer(self, x: Shape | None, emit: Emit) -> Shape | None:
        # torch only warns on [B, F] (and would drop single features), so the checker refuses it as E103.
        need_rank("dropout2d", x, 3, emit)
        return x

    def torch_call(self, x: Shape | None) -> TorchCall:
        return TorchCall(cls="Dropout2d", args=(self.p,))

    def explain(self, x: Shape | None, y: Shape | None, params: int, macs: int) -> list[str]:
        return [f"{fmt_shape(x)} -> {fmt_shape(y)}: while training, zeroes each whole channel (all of its H x W) with "
                f"probability {self.p:g} and scales the rest by 1/{number_text(1 - self.p)}; does nothing at evaluation"]


class StochasticDepth(LayerSpec):
    op: Literal["stochasticdepth"] = "stochasticdepth"
    p: float = 0.1
    mode: Literal["row", "batch"] = "row"
    positional: ClassVar = ("p",)
    flags: ClassVar = {"row": ("mode", "row"), "batch": ("mode", "batch")}
    name_prefix: ClassVar = "droppath"
    summary: ClassVar = ("Drop the whole tensor of each sample (`row`, default) or of the batch (`batch`) with probability P "
                         "during training, inside a residual body (torchvision.ops.StochasticDepth).")
    usage: ClassVar = "stochasticdepth 0.1 [row|batch]"

    @field_validator("p")
    @classmethod
    def _prob(cls, v: float) -> float:
        if not 0 <= v <= 1:
            raise ValueError(f"stochastic depth probability must be in [0, 1], got {v}")
        return v

    def torch_call(self, x: Shape | None) -> TorchCall:
        return TorchCall(cls="StochasticDepth", args=(self.p, self.mode), home="torchvision.ops")

    def describe(self) -> str:
        return f"{self.p:g}" + ("" if self.mode == "row" else " batch")

    def explain(self, x: Shape | None, y: Shape | None, params: int, macs: int) -> list[str]:
        what = "each sample's whole tensor" if self.mode == "row" else "the whole batch"
        rest = f" and scales the rest by 1/{number_text(1 - self.p)}" if self.p < 1 else ""
        return [f"{fmt_shape(x)} -> {fmt_shape(y)}: while training, zeroes {what} with probability {self.p:g}"
                f"{rest}; does nothing at evaluation (put it last in a residual body)"]
