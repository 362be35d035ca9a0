"""`add { a } { b } ...`: parallel branches on one input, summed element-wise (every shape equal)."""
from __future__ import annotations

from archspec.language.joins.base import Branch, Emit, JoinKind, same_size
from archspec.language.ops.base import Shape, fmt_shape


class Add(JoinKind):
    word = "add"
    summary = "Runs branches on one input and sums them element-wise; every branch gives the same shape."
    usage = "add { a } { b } ..."
    hint = "sums branches element-wise"
    runtime_class = "Add"
    runtime_needs = ("Concat",)  # runtime.Add is a Concat that sums

    def combine(self, x: Shape | None, outs: list[Shape], emit: Emit) -> Shape | None:
        for i, o in enumerate(outs[1:], 1):
            if not same_size(o, outs[0], emit):
                self.mismatch(x, outs, i, 0, "the same shape", emit)
                return None
        return outs[0]

    def explain_after(self, node: Branch) -> list[str]:
        outs, y = node.join.operands, node.out_shape  # type: ignore[union-attr]
        return [f"add: {' + '.join(fmt_shape(o) for o in outs)} -> {fmt_shape(y)} "
                "(element-wise sum: every branch must give the same shape)"]
