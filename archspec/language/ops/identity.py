"""The identity: a named no-op (a placeholder in a block, a layer a variant removes)."""

from typing import ClassVar, Literal

from archspec.language.ops.base import LayerSpec, Shape, TorchCall, fmt_shape


class Identity(LayerSpec):
    op: Literal["identity"] = "identity"
    name_prefix: ClassVar = "identity"
    summary: ClassVar = "Passes its input through unchanged (nn.Identity), on any shape."
    usage: ClassVar = "identity"

    def torch_call(self, x: Shape | None) -> TorchCall:
        return TorchCall(cls="Identity")

    def explain(self, x: Shape | None, y: Shape | None, params: int, macs: int) -> list[str]:
        return [f"{fmt_shape(x)} -> {fmt_shape(y)}: the input, unchanged (nn.Identity)"]
