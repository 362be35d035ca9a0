"""Channel slicing: a range of the input's channels (DPN's and GhostNet's cuts), as `x[:, A:B]`."""

from typing import ClassVar, Literal

from archspec.language import codes
from archspec.language.ops.base import Emit, LayerSpec, Shape, TorchCall, fmt_shape, need_rank
from archspec.language.sizemap import Features


class Slice(LayerSpec):
    op: Literal["slice"] = "slice"
    channels: tuple[int, int]
    positional: ClassVar = ("channels",)
    name_prefix: ClassVar = "slice"
    summary: ClassVar = ("Channels A to B-1 of the input (x[:, A:B]), as a Python slice: DPN's and GhostNet's cuts; "
                         "the range must lie within the channels.")
    usage: ClassVar = "slice 0:64"

    def infer(self, x: Shape | None, emit: Emit) -> Shape | None:
        if x is not None and len(x) not in (1, 3):
            need_rank("slice", x, 3, emit)
            return None
        a, b = self.channels
        c = x[0] if x else None
        if isinstance(c, Features):  # after `flatten` on `input 3xHxW`: C*h*w features
            if not c.constant and emit.sizes is not None:
                emit.sizes.inexact("a slice of the features `flatten` gives")  # the range is checked size by size
            c = c.at(1, 1) if c.constant else None
        problem = self.range_problem(c)
        if problem is not None:
            message, help = problem
            emit(codes.SLICE_RANGE, message, notes=[f"input is {fmt_shape(x)}"] if x is not None else [], help=help)
            return None
        return (b - a, *x[1:]) if x is not None else None

    def range_problem(self, c: int | None) -> tuple[str, str] | None:
        """(message, help) when A:B is not a range of the c channels (c unknown: when it is empty or negative)."""
        a, b = self.channels
        if a < 0:
            return (f"`slice {a}:{b}` starts below channel 0",
                    "channel numbers start at 0 (Python's negative indices count from the end; write the number)")
        if b <= a:
            return f"`slice {a}:{b}` takes no channels", "write A:B with A < B: channels A to B-1, as x[:, A:B]"
        if c is not None and b > c:
            return (f"`slice {a}:{b}` goes past the input's {c} channels",
                    f"take a range within 0:{c} (torch would silently give {max(0, c - a)} channels, not {b - a})")
        return None

    def torch_call(self, x: Shape | None) -> TorchCall:
        return TorchCall(cls="ChannelSlice", args=self.channels, home="layers")

    def describe(self) -> str:
        return f"{self.channels[0]}:{self.channels[1]}"

    def explain(self, x: Shape | None, y: Shape | None, params: int, macs: int) -> list[str]:
        a, b = self.channels
        return [f"{fmt_shape(x)} -> {fmt_shape(y)}: channels {a} to {b - 1} (x[:, {a}:{b}]), {b - a} of them; no params, no MACs"]
