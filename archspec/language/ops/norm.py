"""Normalisation layers."""
from __future__ import annotations

from typing import ClassVar, Literal

from archspec.language.ops.base import LayerSpec, Shape, TorchCall, fmt_shape


class BatchNorm(LayerSpec):
    op: Literal["bn"] = "bn"
    name_prefix: ClassVar = "bn"
    summary: ClassVar = "Batch normalisation: nn.BatchNorm2d on [B, C, H, W], nn.BatchNorm1d on [B, F]."
    usage: ClassVar = "bn"

    def params(self, x: Shape | None) -> int:
        return 2 * x[0] if x and x[0] is not None else 0

    def torch_call(self, x: Shape | None) -> TorchCall:
        return TorchCall(cls="BatchNorm2d" if len(x) == 3 else "BatchNorm1d", args=(x[0],))  # type: ignore[arg-type]

    def explain(self, x: Shape | None, y: Shape | None, params: int, macs: int) -> list[str]:
        if x is None:
            return super().explain(x, y, params, macs)
        return [f"{fmt_shape(x)} -> {fmt_shape(y)}: normalises each of the {x[0]} channels over the batch"
                + (" and H, W" if len(x) == 3 else "") + ", then scales and shifts it",
                f"params: 2*{x[0]} = {params:,} (a scale and a shift per channel; "
                "the running mean and variance are buffers, not params)"]
