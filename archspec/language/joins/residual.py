"""`residual [project] { body } [shortcut { ... }]`: body(x) + shortcut(x), the shortcut the identity unless written
(or, with `project`, torchvision ResNet's 1x1 conv + bn that the checker sizes when the body changes the shape)."""
from __future__ import annotations

from typing import Any

from archspec.language import codes
from archspec.language.joins.base import AxisWalk, Branch, Checker, JoinKind, JoinSpec, known, output_of
from archspec.language.ops.base import LayerSpec, Shape, fmt_shape
from archspec.language.sizemap import Expr, Same, Window, window


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
        if spec.shortcut is not None:
            shortcut = checker.seq(spec.shortcut, x, path + ".shortcut.", depth + 1)
        elif spec.option == "project" and known(x) and known(y) and x != y:
            projection = self.projection(spec, checker.stride_of(body), x, y)  # type: ignore[arg-type]
            if projection is not None:
                # Checked silently: the user did not write these layers and cannot act on their warnings.
                diagnostics, checker.report.diagnostics = checker.report.diagnostics, []
                shortcut = checker.seq(projection, x, path + ".shortcut.", depth + 1)
                checker.report.diagnostics = diagnostics
                projected = True
        s = output_of(shortcut, x) if shortcut is not None else x
        if known(y) and known(s) and y != s:
            what = "shortcut" if shortcut is not None else "input"
            checker.emitter(spec)(
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
        from archspec.language.ops import BatchNorm, Conv

        if len(x) != 3 or len(y) != 3 or stride is None:
            return None
        if any(not isinstance(s, int) or (n - 1) // s + 1 != m for n, s, m in zip(x[1:], stride, y[1:])):
            return None
        common = {"span": spec.span, "trace": spec.trace}
        return [
            Conv(out_channels=y[0], kernel=(1, 1), stride=stride, bias=False, name="conv1", **common),
            BatchNorm(name="bn1", **common),
        ]

    def axis(self, walk: AxisWalk, node: Branch, e: Expr | None, silent: bool) -> Expr | None:
        body = node.branches[0]
        y = walk.seq(body, e, silent)
        if not node.identity and not node.projected:
            s = walk.seq(node.branches[1], e, silent)
            if y is not None and s is not None:
                walk.equal.append([(y, s)])
            return y
        if y is None or e is None:
            return y
        if node.option != "project":
            walk.equal.append([(y, e)])
            return y
        # torchvision's projection (a 1x1 conv with the body's total stride), used when the shapes differ:
        # the check adds it silently, so its windows drop nothing anyone wrote.
        stride = walk.stride_of(body)
        valid = [n for n in walk.layers(body) if n.valid]
        steps = [n for n in valid if not isinstance(n.layer.axis_map(walk.axis), (Same, Window)) or  # type: ignore[union-attr]
                 n.op in ("gap", "adaptiveavgpool")] if stride is not None else []
        if stride is None or steps or not isinstance(stride[walk.axis], int):
            walk.exact = False  # the body's stride depends on the size (adaptive pooling, upsampling)
            walk.why = "a projected residual's stride depends on the size"
            return y
        projected = window(1, stride[walk.axis], 0).apply(e)
        for layer in walk.layers(node.branches[1] if node.projected else []):  # the projection at the probe's size: conv 1x1 + bn
            walk.sizes[layer.path] = projected
        same_channels = node.in_shape is not None and node.out_shape is not None and node.in_shape[0] == node.out_shape[0]
        walk.equal.append([(y, projected)] + ([(y, e)] if same_channels else []))
        return y

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
