"""`crop { a } { b }`: the U-Net paper's "copy and crop". The bodies run on one input; every output but the last is
center-cropped to the last one's height and width, and all are concatenated on channels. The original, unpadded
U-Net's level is `crop {} { maxpool 2 | ... | convtranspose 64 k2 s2 }`: the skip (`{}`) is cropped to the
upsampled map's size."""
from __future__ import annotations

from archspec.language import codes
from archspec.language.joins.base import Branch, Emit
from archspec.language.joins.concat import Concat
from archspec.language.ops.base import Shape, fmt_shape
from archspec.language.sizemap import Constraints, Num, as_expr, lin


class Crop(Concat):
    word = "crop"
    summary = "Runs branches on one input, center-crops each output to the last branch's height and width, and concatenates them on channels (U-Net's copy and crop)."
    usage = "crop { a } { b } ..."
    hint = "center-crops each branch to the last branch's size, then concatenates (the unpadded U-Net's skip)"
    runtime_class = "Crop"
    runtime_needs = ("Concat",)  # runtime.Crop is a Concat that crops first

    def combine(self, x: Shape | None, outs: list[Shape], emit: Emit) -> Shape | None:
        target = outs[-1]
        for i, o in enumerate(outs):
            if len(o) != 3 or len(target) != 3:
                self.mismatch(x, outs, i if len(o) != 3 else len(outs) - 1, 0, "images [B, C, H, W] to crop", emit)
                return None
            if emit.sizes is not None:
                _at_least(o, target, emit.sizes)
            elif o[1] < target[1] or o[2] < target[2]:
                emit(codes.CROP_TOO_LARGE,
                     f"`crop` cannot center-crop branch {i + 1}'s {fmt_shape(o)} to {target[1]}x{target[2]} "
                     f"(the last branch's size): the crop is larger than its input",
                     notes=[f"input is {fmt_shape(x)}"] + [f"branch {j + 1} gives {fmt_shape(s)}" for j, s in enumerate(outs)],
                     help="the last branch sets the size: put the largest map (the skip, `{}`) first and the smaller, "
                     "upsampled path last, or crop less in the last branch")
                return None
        return (sum(o[0] for o in outs),) + tuple(target[1:])  # type: ignore[misc]

    def explain_lines(self, node: Branch) -> list[str]:
        return [f"each branch gets the same input {fmt_shape(node.in_shape)}; every output but the last is then "
                "center-cropped to the last one's height and width"]

    def explain_after(self, node: Branch) -> list[str]:
        outs, y = node.join.operands, node.out_shape  # type: ignore[union-attr]
        lines = []
        for i, o in enumerate(outs[:-1]):
            if o and y and o[1:] != y[1:]:
                top, left = (o[1] - y[1]) // 2, (o[2] - y[2]) // 2
                lines.append(f"crop branch {i + 1}: {fmt_shape(o)} -> rows {top}..{top + y[1] - 1}, "
                             f"columns {left}..{left + y[2] - 1} (top = (H - h) // 2, left = (W - w) // 2)")
        return lines + super().explain_after(node)


def _at_least(o: Shape, target: Shape, sizes: Constraints) -> None:
    """On `input 3xHxW`: each of o's H and W at least the target's, a condition for the solver."""
    for i in (0, 1):
        a, t = as_expr(o[i + 1]), as_expr(target[i + 1])  # type: ignore[arg-type]
        if a == t:
            continue
        if isinstance(t, Num):
            sizes.at_least_one(i, lin(a, 1, 1 - t.value))  # a >= t
        else:  # t <= a with both depending on the size (or a fixed a): checked size by size
            sizes.inexact("`crop` compares two sizes that both depend on the input size")
