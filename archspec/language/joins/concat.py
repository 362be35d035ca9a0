"""`concat { a } { b } ...`: parallel branches on one input, concatenated on channels (`{}` is the identity)."""
from __future__ import annotations

from archspec.language.joins.base import Branch, Emit, JoinKind, same_size
from archspec.language.ops.base import Shape, fmt_shape


class Concat(JoinKind):
    word = "concat"
    summary = "Runs branches on one input and concatenates them on channels (torch.cat(dim=1)); `{ }` is the identity."
    usage = "concat { a } { b } ..."
    hint = "joins branches on channels (`{ }` is the identity)"
    runtime_class = "Concat"

    def combine(self, x: Shape | None, outs: list[Shape], emit: Emit) -> Shape | None:
        first = outs[0]
        for i, o in enumerate(outs[1:], 1):
            if not same_size(o, first, emit, channels=False):
                self.mismatch(x, outs, i, 0, "the same rank and spatial size (only channels may differ)", emit)
                return None
        return (sum(o[0] for o in outs),) + tuple(first[1:])  # type: ignore[misc]

    def operands_text(self, node: Branch) -> str:
        return " + ".join(str(c[0]) if c else "?" for c in node.join.operands) + " channels"  # type: ignore[union-attr]

    def explain_after(self, node: Branch) -> list[str]:
        outs, y = node.join.operands, node.out_shape  # type: ignore[union-attr]
        channels = " + ".join(str(o[0]) for o in outs if o)
        rest = "x".join(str(d) for d in (y or ())[1:])
        return [f"concat on channels: C: {channels} = {y[0] if y else '?'}; "
                f"{'H and W must match: ' + rest if rest else 'the other dimensions must match'} "
                f"-> {fmt_shape(y)}"]
