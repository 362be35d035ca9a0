"""`resize [nearest] { body }`: runs the body, then resizes its output (bilinear, as torchvision's segmentation models
do, or with `nearest` torch's nearest-neighbour mode) back to the height and width of the body's input: the size is
read from the network, not written. DeepLabV3's image-pooling branch is `resize { gap | conv 256 k1 nobias | bn | relu }`
and its final upsampling to the input's size is a `resize { ... }` around the whole network, so the head checks at every
input size; GhostNetV2's attention gate, computed at half the size, is `resize nearest { avgpool 2 | ... | sigmoid }`."""
from __future__ import annotations

from typing import Any

from archspec.language import codes
from archspec.language.joins.base import Branch, Checker, JoinKind, JoinSpec, known, output_of
from archspec.language.ops.base import Shape, fmt_shape


class Resize(JoinKind):
    word = "resize"
    summary = ("Runs its body, then resizes the output back to the body's input height and width, bilinearly or with `nearest` "
               "by nearest neighbour (F.interpolate(body(x), size=x.shape[-2:], mode=...)).")
    usage = "resize [nearest] { body }"
    hint = "resizes the body's output back to the size its input had (DeepLabV3's pooling branch and final upsampling)"
    options = ("nearest",)
    option_help = ("write `resize nearest { ... }` for torch's nearest-neighbour mode, or `resize { ... }` to resize bilinearly "
                   "(align_corners=False)")
    min_bodies = 1
    max_bodies = 1
    runtime_class = "Resize"
    operator = "resize"

    def arity_problem(self, bodies: int, shortcut: bool) -> str | None:
        if bodies != 1 and not shortcut:
            return f"`resize` takes one body, got {bodies}; put the branches in a `concat` inside it"
        return super().arity_problem(bodies, shortcut)

    def label(self, i: int, projected: bool = False) -> str:
        return "body"

    def runtime_args(self, node: Branch) -> tuple[Any, ...]:
        return ("nearest",) if node.option == "nearest" else ()

    def check(self, checker: Checker, spec: JoinSpec, x: Shape | None, where: dict[str, Any]) -> Any:
        body = checker.seq(spec.bodies[0], x, where["path"] + ".body.", where["depth"] + 1)
        y = output_of(body, x)
        out = self.resized(x, y, checker, spec) if known(x) and known(y) else None  # type: ignore[arg-type]
        return checker.joined(spec, x, where, out, [y], branches=[body])

    def resized(self, x: Shape, y: Shape, checker: Checker, spec: JoinSpec) -> Shape | None:
        """The body's channels at the input's height and width; E103 unless both are images."""
        if len(x) == 3 and len(y) == 3:
            return (y[0],) + tuple(x[1:])
        which, shape = ("input", x) if len(x) != 3 else ("body's output", y)
        checker.emitter(spec)(
            codes.WRONG_RANK, f"`resize` needs images [B, C, H, W], but its {which} is {fmt_shape(shape)}",
            notes=[f"input is {fmt_shape(x)}", f"the body gives {fmt_shape(y)}"],
            help="resize image maps only: keep `flatten` and `linear` out of the body (a 1x1 map from `gap` is an image)")
        return None

    def jump_from(self, node: Branch) -> list[int] | None:
        return [len(node.branches)]  # the input's: the output pixels are the input's pixels

    # ---- views

    def title(self, node: Branch) -> str:
        return "resize nearest" if node.option == "nearest" else "resize"

    def header_args(self, node: Branch) -> str:
        return "nearest, to its input's size" if node.option == "nearest" else "to its input's size"

    def operands_text(self, node: Branch) -> str:
        x = node.in_shape
        return f"body -> {x[1]}x{x[2]}" if known(x) and len(x) == 3 else "body -> input size"  # type: ignore[index]

    def explain_lines(self, node: Branch) -> list[str]:
        how = ("by nearest neighbour (torch's 'nearest': output pixel i takes input pixel floor(i * in / out))"
               if node.option == "nearest" else "bilinearly (align_corners=False)")
        return [f"the body runs on {fmt_shape(node.in_shape)}; its output is then resized {how} to the height and width of that input"]

    def explain_after(self, node: Branch) -> list[str]:
        (y,), out = node.join.operands, node.out_shape  # type: ignore[union-attr]
        return [f"resize: {fmt_shape(y)} -> {fmt_shape(out)} (H and W read from the input {fmt_shape(node.in_shape)})"]

    def graph_title(self, node: Branch) -> str:
        return self.title(node)

    def hover(self, node: Branch) -> str:
        how = " by nearest neighbour" if node.option == "nearest" else ""
        return f"resize: the body's output, back to its input's height and width{how}"
