"""`residual [project] { body } [shortcut { ... }]`: body(x) + shortcut(x), the shortcut the identity unless written
(or, with `project`, torchvision ResNet's 1x1 conv + bn that the checker sizes when the body changes the shape)."""
from __future__ import annotations

from typing import Any

from archspec.language import codes
from archspec.language.joins.base import Branch, Checker, JoinKind, JoinSpec, known, output_of, same_size
from archspec.language.ops.base import LayerSpec, Shape, fmt_shape


class Residual(JoinKind):
    word = "residual"
    summary = "Adds the block's input to the body's output (nn.Module Residual: body(x) + shortcut(x))."
    usage = "residual [project] { body } [shortcut { ... }]"
    hint = "adds the block's input to the body's output"
    options = ("project",)
    option_help = "write `residual project { ... }` for an automatic 1x1 projection, or `residual { ... }`"
    takes_shortcut = True
    min_bodies = 1
    max_bodies = 1
    name_prefix = "res"
    operator = "add"
    runtime_class = "Residual"
    view_kind = "residual"

    def arity_problem(self, bodies: int, shortcut: bool) -> str | None:
        if bodies != 1:
            return f"`residual` takes one body, got {bodies}" + ("" if shortcut else "; write the second as `shortcut { ... }`")
        return None

    def label(self, i: int, projected: bool = False) -> str:
        return "body" if i == 0 else "shortcut"

    def check(self, checker: Checker, spec: JoinSpec, x: Shape | None, where: dict[str, Any]) -> Any:
        path, depth = where["path"], where["depth"]
        body = checker.seq(spec.bodies[0], x, path + ".body.", depth + 1)
        y = output_of(body, x)
        shortcut: list[Any] | None = None
        projected = False
        emit = checker.emitter(spec)
        if spec.shortcut is not None:
            shortcut = checker.seq(spec.shortcut, x, path + ".shortcut.", depth + 1)
        elif spec.option == "project" and known(x) and known(y) and x != y and checker.sizes is not None:
            return self.symbolic_projection(checker, spec, x, where, body)  # type: ignore[arg-type]
        elif spec.option == "project" and known(x) and known(y) and x != y:
            projection = self.projection(spec, checker.stride_of(body), x, y)  # type: ignore[arg-type]
            if projection is not None:
                # Checked silently: the user did not write these layers and cannot act on their warnings.
                diagnostics, checker.report.diagnostics = checker.report.diagnostics, []
                shortcut = checker.seq(projection, x, path + ".shortcut.", depth + 1)
                checker.report.diagnostics = diagnostics
                projected = True
        s = output_of(shortcut, x) if shortcut is not None else x
        if known(y) and known(s) and not same_size(y, s, emit):  # type: ignore[arg-type]
            what = "shortcut" if shortcut is not None else "input"
            emit(
                codes.RESIDUAL_MISMATCH,
                f"residual cannot add its body's output {fmt_shape(y)} to its {what} {fmt_shape(s)}",
                notes=[f"residual input is {fmt_shape(x)}"],
                help="keep the body's shape (stride 1, same channels), or write `residual project { ... }` for a 1x1 conv + bn "
                "shortcut, or give an explicit `shortcut { ... }`" if what == "input" else "make the shortcut produce the body's shape",
            )
        return checker.joined(spec, x, where, y, [y, s], projected=projected, identity=shortcut is None,
                              branches=[body] + ([shortcut] if shortcut is not None else []))

    def projection(self, spec: JoinSpec, stride: Any, x: tuple[int, ...], y: tuple[int, ...]) -> list[LayerSpec] | None:
        """torchvision ResNet's downsample: a 1x1 conv with the body's total stride (no bias) + bn.

        None when that cannot produce the body's output shape (then the add is reported, E107).
        """
        if len(x) != 3 or len(y) != 3 or stride is None:
            return None
        if any(not isinstance(s, int) or (n - 1) // s + 1 != m for n, s, m in zip(x[1:], stride, y[1:])):
            return None
        return self.conv_bn(spec, y[0], stride)

    def conv_bn(self, spec: JoinSpec, channels: int, stride: Any) -> list[LayerSpec]:
        """The projection's layers: a 1x1 conv with that stride (no bias), then bn."""
        from archspec.language.ops import BatchNorm, Conv

        common = {"span": spec.span, "trace": spec.trace}
        return [
            Conv(out_channels=channels, kernel=(1, 1), stride=stride, bias=False, name="conv1", **common),
            BatchNorm(name="bn1", **common),
        ]

    def symbolic_projection(self, checker: Checker, spec: JoinSpec, x: tuple[Any, ...], where: dict[str, Any],
                            body: list[Any]) -> Any:
        """`residual project` on `input 3xHxW`: at each size either the body keeps the input's shape (same channels)
        or torchvision's projection, a 1x1 conv with the body's total stride, gives the body's size (both are
        conditions for the solver)."""
        sizes, path, depth = checker.sizes, where["path"], where["depth"]
        y = output_of(body, x)
        stride = checker.stride_of(body)  # along the body's main path, as the check at numbers takes it
        if stride is None:  # adaptive or global pooling on the main path: a stride that is the size itself
            sizes.inexact("a projected residual's stride depends on the size")  # type: ignore[union-attr]
            return checker.joined(spec, x, where, y, [y, x], projected=False, identity=True, branches=[body])
        if not all(isinstance(v, int) for v in stride):  # no 1x1 conv has it: the input is added as it is (E107 elsewhere)
            if not same_size(y, x, checker.emitter(spec)):  # type: ignore[arg-type]
                y = None
            return checker.joined(spec, x, where, y, [y, x], projected=False, identity=True, branches=[body])
        # Checked quietly: the user did not write these layers and cannot act on their warnings.
        diagnostics, checker.report.diagnostics = checker.report.diagnostics, []
        sizes.quiet += 1  # type: ignore[union-attr]
        shortcut = checker.seq(self.conv_bn(spec, y[0], stride), x, path + ".shortcut.", depth + 1)  # type: ignore[index,arg-type]
        sizes.quiet -= 1  # type: ignore[union-attr]
        checker.report.diagnostics = diagnostics
        s = output_of(shortcut, x)
        if known(y) and known(s) and len(y) == 3:  # type: ignore[arg-type]
            for i in (0, 1):
                kept = [(y[i + 1], x[i + 1])] if x[0] == y[0] else []  # type: ignore[index]
                sizes.equal_to(i, (y[i + 1], s[i + 1]), *kept)  # type: ignore[index,union-attr]
        return checker.joined(spec, x, where, y, [y, s], projected=True, identity=False, branches=[body, shortcut])

    # ---- views

    def shortcut_written(self, node: Branch) -> bool:
        return not node.identity

    def title(self, node: Branch) -> str:
        return "residual project" if node.option == "project" else "residual"

    def header_args(self, node: Branch) -> str:
        return "project" if node.option == "project" else ("shortcut" if not node.identity else "")

    def operands_text(self, node: Branch) -> str:
        return "body + shortcut" if not node.identity else "body + input"

    def explain_lines(self, node: Branch) -> list[str]:
        if not node.identity and not node.projected:
            return ["out = body(x) + shortcut(x): both paths start from the same x and are added"]
        if node.projected:
            return ["out = body(x) + projection(x): the body changes the shape, so x goes through "
                    "a 1x1 conv (stride fitted to the body's) and bn to match it"]
        return ["out = body(x) + x: the body must keep the shape, so its output can be added to x"]

    def explain_after(self, node: Branch) -> list[str]:
        body_out, skip_out = node.join.operands  # type: ignore[union-attr]
        return [f"add: {fmt_shape(body_out)} + {fmt_shape(skip_out)} -> {fmt_shape(node.out_shape)} "
                "(element-wise sum: the two shapes must be equal)"]

    def graph_title(self, node: Branch) -> str:
        return self.title(node)

    def dashed(self, node: Branch, i: int) -> bool:
        return i == 1

    def view_order(self, node: Branch) -> list[int]:
        return list(range(len(node.branches)))[::-1]  # the view numbers the shortcut's nodes first

    def view_parts(self, node: Branch, seqs: list[list[dict]]) -> dict[str, Any]:
        shortcut = seqs[1] if len(seqs) > 1 else None
        for item in shortcut or []:  # a projection's conv1/bn1 would read as the body's own
            item["name"] = f"shortcut.{item['name']}"
        return {"body": seqs[0], "shortcut": shortcut, "projected": node.projected}

    def hover(self, node: Branch) -> str:
        how = "projection (1x1 conv + bn)" if node.projected else ("explicit shortcut" if not node.identity else "identity")
        return f"residual with {how} shortcut"
