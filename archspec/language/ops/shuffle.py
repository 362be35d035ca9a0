"""Channel shuffle: interleaving the channels of groups (ShuffleNet's units)."""

from typing import ClassVar, Literal

from pydantic import Field

from archspec.language import codes
from archspec.language.ops.base import Emit, LayerSpec, Shape, TorchCall, fmt_shape, need_rank


class ChannelShuffle(LayerSpec):
    op: Literal["channelshuffle"] = "channelshuffle"
    groups: int = Field(ge=1)
    positional: ClassVar = ("groups",)
    name_prefix: ClassVar = "shuffle"
    summary: ClassVar = ("Split the channels into G groups and interleave them (nn.ChannelShuffle(G)), as ShuffleNet "
                         "mixes its branches; G divides the channels.")
    usage: ClassVar = "channelshuffle 2"

    def infer(self, x: Shape | None, emit: Emit) -> Shape | None:
        if not need_rank("channelshuffle", x, 3, emit):
            return None
        c = x[0] if x else None
        if c is not None and c % self.groups:
            fits = [g for g in range(2, self.groups) if c % g == 0]
            emit(codes.GROUPS_MISMATCH,
                 f"`channelshuffle {self.groups}` needs {self.groups} to divide the {c} channels",
                 notes=[f"input is {fmt_shape(x)}", f"{c} channels do not split into {self.groups} equal groups"],
                 help=f"use a number of groups that divides {c}" + (f", e.g. {fits[-1]}" if fits else "")
                 + f", or give the layer before it a multiple of {self.groups} channels")
        return x

    def torch_call(self, x: Shape | None) -> TorchCall:
        return TorchCall(cls="ChannelShuffle", args=(self.groups,))

    def describe(self) -> str:
        return str(self.groups)

    def explain(self, x: Shape | None, y: Shape | None, params: int, macs: int) -> list[str]:
        if x is None or x[0] is None or x[0] % self.groups:
            return super().explain(x, y, params, macs)
        per = x[0] // self.groups
        return [f"{fmt_shape(x)} -> {fmt_shape(y)}: views the {x[0]} channels as {self.groups} groups of {per} and "
                f"transposes them, so output channel i*{self.groups} + g is channel g*{per} + i of the input; "
                "no params, no MACs"]
