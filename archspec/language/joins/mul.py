"""`mul { a } { b } ...`: parallel branches on one input, multiplied element-wise with torch's broadcasting,
so that a [B, C, 1, 1] gate scales a [B, C, H, W] map: squeeze-and-excitation is
`mul {} { gap | conv 8 k1 | relu | conv 32 k1 | sigmoid }`."""
from __future__ import annotations

from archspec.language import codes
from archspec.language.joins.base import Branch, Emit, JoinKind
from archspec.language.ops.base import Shape, fmt_shape
from archspec.language.sizemap import Constraints, Num, Size, as_expr


def _axes(rank: int) -> str:
    return "CHW" if rank == 3 else "F" if rank == 1 else "?" * rank


class Mul(JoinKind):
    word = "mul"
    summary = "Runs branches on one input and multiplies them element-wise, broadcasting sizes of 1 as torch does (a [B, C, 1, 1] gate scales [B, C, H, W])."
    usage = "mul { a } { b } ..."
    hint = "multiplies branches element-wise, broadcasting sizes of 1 (`mul {} { gap | ... | sigmoid }` is squeeze-and-excitation)"
    runtime_class = "Mul"
    runtime_needs = ("Concat",)  # runtime.Mul is a Concat that multiplies

    def combine(self, x: Shape | None, outs: list[Shape], emit: Emit) -> Shape | None:
        if emit.sizes is not None and all(len(o) == 3 for o in outs):
            return _symbolic_product(outs, emit.sizes)
        y = outs[0]
        for i, o in enumerate(outs[1:], 1):
            joined = _broadcast(y, o)
            if isinstance(joined, str):
                so_far = f"branch 1's {fmt_shape(y)}" if i == 1 else f"the product of branches 1-{i}, {fmt_shape(y)}"
                emit(codes.BROADCAST_MISMATCH,
                     f"`mul` cannot broadcast branch {i + 1}'s {fmt_shape(o)} with {so_far}: {joined}",
                     notes=[f"input is {fmt_shape(x)}"] + [f"branch {j + 1} gives {fmt_shape(s)}" for j, s in enumerate(outs)],
                     help="torch multiplies sizes that are equal or 1: make the gate's other sizes 1 (`gap` gives [B, C, 1, 1]) "
                     "or equal to the other branch's")
                return None
            y = joined
        return y

    def jump_from(self, node: Branch) -> list[int] | None:
        """Each pixel sees the widest view (a gate's whole image), one pixel apart as in the full-size branches:
        a broadcast gate's jump is not the output's."""
        y = node.out_shape
        full = [i for i, o in enumerate(node.join.operands) if o is not None and y is not None and o[1:] == y[1:]]
        return full or None

    def operands_text(self, node: Branch) -> str:
        return " * ".join(f"branch{i + 1}" for i in range(len(node.branches)))

    def explain_after(self, node: Branch) -> list[str]:
        outs, y = node.join.operands, node.out_shape  # type: ignore[union-attr]
        return [f"mul: {' * '.join(fmt_shape(o) for o in outs)} -> {fmt_shape(y)} "
                "(element-wise product: each size equal, or 1 and repeated to match, as torch broadcasts)"]


def _broadcast(a: Shape, b: Shape) -> Shape | str:
    """torch's broadcasting of two shapes (the batch dimension of both is B): the result, or why not."""
    if len(a) != len(b):
        return f"ranks {len(a) + 1} and {len(b) + 1} differ (torch would align B with another dimension)"
    out = []
    for name, m, n in zip(_axes(len(a)), a, b):
        if m != n and 1 not in (m, n):
            return f"{name} is {m} and {n} (sizes must be equal, or one of them 1)"
        out.append(n if m == 1 else m)
    return tuple(out)


def _symbolic_product(outs: list[Shape], sizes: Constraints) -> Shape | None:
    """The product's shape on `input 3xHxW`: channels broadcast as numbers; each of H and W is equal in every
    branch or 1, a condition for the solver where a size depends on the input."""
    channels = {o[0] for o in outs} - {1}
    if len(channels) > 1:
        return None  # different channels at every size: the check at numbers reports it
    return (channels.pop() if channels else 1,) + tuple(_broadcast_size([o[i + 1] for o in outs], i, sizes) for i in (0, 1))  # type: ignore[misc]


def _broadcast_size(operands: list[Size], axis: int, sizes: Constraints) -> Size:
    one = Num(1)
    y = as_expr(operands[0])
    for o in map(as_expr, operands[1:]):
        if o == one or o == y:
            continue
        if y == one:
            y = o
        elif isinstance(y, Num) or isinstance(o, Num):
            fixed, other = (y, o) if isinstance(y, Num) else (o, y)
            sizes.equal_to(axis, (other, fixed), (other, one))  # equal, or 1 and broadcast (never, for two numbers)
            y = fixed
        else:  # two sizes that both depend on the input: which one is 1 depends on the size itself
            sizes.inexact("`mul` broadcasts two sizes that both depend on the input size")
    return y
