"""The shape checker: walks the specs through the op table, one row per layer, every diagnostic.

It never imports torch. It keeps going after an error with best-effort shapes (unknown
dimensions become None), so one run reports every mistake in a file. It is the single source
of truth for shapes: the compiler, summary, graph and runner ask it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from archspec.diagnostics import Diagnostic, Span
from archspec.ops import BatchNorm, Conv, Input, LayerSpec, Shape, fmt_shape
from archspec.specs import BlockCall, Branch, Invalid, Model, Node, Residual, Seq, dedupe, parse


@dataclass
class Row:
    """One layer as checked: where it sits, what came in and out, its cost."""

    path: str  # dotted module path, e.g. "basic1.res1.body.conv1"
    layer: LayerSpec | Invalid
    in_shape: Shape | None
    out_shape: Shape | None
    params: int
    macs: int
    depth: int

    @property
    def op(self) -> str:
        return self.layer.op if isinstance(self.layer, Invalid) else self.layer.op_name

    def to_dict(self) -> dict[str, Any]:
        span = self.layer.span
        return {
            "name": self.path,
            "op": self.op,
            "line": span.line if span else None,
            "column": span.column if span else None,
            "output_shape": _json_shape(self.out_shape),
            "params": self.params,
        }


def _json_shape(shape: Shape | None) -> list[int] | None:
    return None if shape is None or None in shape else list(shape)  # type: ignore[arg-type]


def _known(shape: Shape | None) -> bool:
    return shape is not None and None not in shape


@dataclass
class CheckReport:
    model: Model
    classes: int | None
    rows: list[Row] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    # Per structure node (by id): (input shape, output shape); and the projection a
    # `residual project` needs, sized here so the compiler never recomputes it.
    node_shapes: dict[int, tuple[Shape | None, Shape | None]] = field(default_factory=dict)
    projections: dict[int, Seq] = field(default_factory=dict)
    output_shape: Shape | None = None

    @property
    def path(self) -> str:
        return self.model.path

    @property
    def ok(self) -> bool:
        return not any(d.severity == "error" for d in self.diagnostics)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]

    @property
    def input_shape(self) -> Shape | None:
        inp = self.model.input
        return inp.dims if inp else None

    @property
    def params(self) -> int:
        return sum(r.params for r in self.rows)

    def shapes_of(self, node: Node) -> tuple[Shape | None, Shape | None]:
        """(input, output) shape of any node: what the compiler sizes modules from."""
        return self.node_shapes[id(node)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "ok": self.ok,
            "input_shape": _json_shape(self.input_shape),
            "output_shape": _json_shape(self.output_shape),
            "params": self.params,
            "layers": [r.to_dict() for r in self.rows],
            "diagnostics": [d.to_dict() for d in self.diagnostics],
        }


class _Checker:
    def __init__(self, report: CheckReport) -> None:
        self.report = report

    def emitter(self, node: Any):
        def emit(code: str, message: str, notes: list[str] | None = None, help: str | None = None, span: Span | None = None) -> None:
            self.report.diagnostics.append(
                Diagnostic(code, message, span or node.span, help=help, notes=list(notes or []), trace=node.trace)
            )

        return emit

    def seq(self, seq: Seq, x: Shape | None, prefix: str, depth: int) -> Shape | None:
        previous: Node | None = None
        for node in seq.items:
            if isinstance(node, LayerSpec) and node.is_activation and isinstance(previous, LayerSpec) and previous.is_activation:
                self.emitter(node)(
                    "W203",
                    f"`{node.op_name}` right after `{previous.op_name}`: two activations in a row",
                    help=f"remove one of them",
                )
            x = self.node(node, x, prefix, depth)
            previous = node
        return x

    def node(self, node: Node, x: Shape | None, prefix: str, depth: int) -> Shape | None:
        path = prefix + node.name
        if isinstance(node, Invalid):
            self.report.rows.append(Row(path, node, x, None, 0, 0, depth))
            y = None
        elif isinstance(node, LayerSpec):
            if isinstance(node, Input) and self.report.rows:
                self.emitter(node)("E006", "`input` must be the first layer, and only one", help="remove this line, or move it to the top of the file")
            y = node.infer(x, self.emitter(node))
            self.report.rows.append(Row(path, node, x, y, node.params(x), node.macs(x, y), depth))
        elif isinstance(node, BlockCall):
            y = self.seq(node.body, x, path + ".", depth + 1)
        elif isinstance(node, Residual):
            y = self.residual(node, x, path, depth)
        elif isinstance(node, Branch):
            y = self.branch(node, x, path, depth)
        else:  # pragma: no cover - Node is closed
            raise AssertionError(type(node))
        self.report.node_shapes[id(node)] = (x, y)
        return y

    def residual(self, node: Residual, x: Shape | None, path: str, depth: int) -> Shape | None:
        y = self.seq(node.body, x, path + ".body.", depth + 1)
        if node.shortcut is not None:
            s = self.seq(node.shortcut, x, path + ".shortcut.", depth + 1)
        elif node.project and _known(x) and _known(y) and x != y:
            projection = self.projection(node, x, y)  # type: ignore[arg-type]
            if projection is None:
                s = x
            else:
                self.report.projections[id(node)] = projection
                # Checked silently: the user did not write these layers and cannot act on their warnings.
                diagnostics = self.report.diagnostics
                self.report.diagnostics = []
                s = self.seq(projection, x, path + ".shortcut.", depth + 1)
                self.report.diagnostics = diagnostics
        else:
            s = x
        if _known(y) and _known(s) and y != s:
            what = "shortcut" if node.shortcut is not None or id(node) in self.report.projections else "input"
            emit = self.emitter(node)
            emit(
                "E107",
                f"residual cannot add its body's output {fmt_shape(y)} to its {what} {fmt_shape(s)}",
                notes=[f"residual input is {fmt_shape(x)}"],
                help="keep the body's shape (stride 1, same channels), or write `residual project { ... }` for a 1x1 conv + bn "
                "shortcut, or give an explicit `shortcut { ... }`" if what == "input" else "make the shortcut produce the body's shape",
            )
        return y

    def projection(self, node: Residual, x: tuple[int, ...], y: tuple[int, ...]) -> Seq | None:
        """torchvision ResNet's downsample: a 1x1 conv with the body's total stride (no bias) + bn.

        None when that cannot produce the body's output shape (then the add is reported, E107).
        """
        stride = self.stride_of(node.body)
        if len(x) != 3 or len(y) != 3 or stride is None:
            return None
        if any((n - 1) // s + 1 != m for n, s, m in zip(x[1:], stride, y[1:])):
            return None
        common = {"span": node.span, "trace": node.trace}
        return Seq([
            Conv(out_channels=y[0], kernel=(1, 1), stride=stride, bias=False, name="conv1", **common),
            BatchNorm(name="bn1", **common),
        ])

    def stride_of(self, seq: Seq) -> tuple[int, int] | None:
        """Product of the strides along a checked sequence (the first branch of a branch)."""
        sh = sw = 1
        for node in seq.items:
            if isinstance(node, LayerSpec):
                step = node.rf(self.report.node_shapes[id(node)][0])
                if step is None:
                    return None
                sh, sw = sh * step[1][0], sw * step[1][1]
                continue
            inner = node.body if isinstance(node, (BlockCall, Residual)) else node.branches[0] if isinstance(node, Branch) else None
            sub = self.stride_of(inner) if inner is not None else None
            if sub is None:
                return None
            sh, sw = sh * sub[0], sw * sub[1]
        return sh, sw

    def branch(self, node: Branch, x: Shape | None, path: str, depth: int) -> Shape | None:
        outs = [self.seq(b, x, f"{path}.branch{i + 1}.", depth + 1) for i, b in enumerate(node.branches)]
        known = [(i, o) for i, o in enumerate(outs) if _known(o)]
        if len(known) < len(outs):
            return None
        emit = self.emitter(node)
        first_i, first = known[0]
        for i, o in known[1:]:
            if node.mode == "add":
                bad = o != first
            else:
                bad = len(o) != len(first) or o[1:] != first[1:]  # type: ignore[index]
            if bad:
                listing = [f"branch {j + 1} gives {fmt_shape(s)}" for j, s in known]
                need = "the same shape" if node.mode == "add" else "the same rank and spatial size (only channels may differ)"
                emit(
                    "E108",
                    f"branch {i + 1} gives {fmt_shape(o)} but branch {first_i + 1} gives {fmt_shape(first)}: `{node.mode}` needs {need}",
                    notes=[f"input is {fmt_shape(x)}"] + listing,
                    help="change the strides, padding or channels of the branch that differs",
                )
                return None
        if node.mode == "add":
            return first
        return (sum(o[0] for _, o in known),) + tuple(first[1:])  # type: ignore[index,misc]

    def finish(self, body: Seq, classes: int | None) -> None:
        rows = self.report.rows
        conv_rows = [i for i, r in enumerate(rows) if r.op == "conv"]
        if conv_rows:
            last_conv = conv_rows[-1]
            for r in rows[:last_conv]:
                if r.out_shape is not None and len(r.out_shape) == 3 and r.out_shape[1:] == (1, 1) and r.op != "input":
                    later = rows[last_conv].layer.span
                    self.emitter(r.layer)(
                        "W202",
                        f"spatial size is 1x1 after `{r.op}`, but a conv comes later (line {later.line if later else '?'})",
                        notes=[f"output is {fmt_shape(r.out_shape)}"],
                        help="downsample less before the last conv; a conv on 1x1 only mixes channels",
                    )
                    break
        y = self.report.output_shape
        last = rows[-1] if rows else None
        if last is not None and last.op == "softmax":
            self.emitter(last.layer)(
                "W205",
                "the network ends with `softmax`, but cross-entropy applies log-softmax itself",
                notes=["softmax before the loss squashes the scores twice: gradients vanish and training stays near chance"],
                help="remove it: train on the raw scores (logits) and apply softmax at inference",
            )
        if classes is None or last is None or y is None or not self.report.ok:
            return
        if len(y) == 1 and y[0] is not None and y[0] != classes:
            self.emitter(last.layer)(
                "W204",
                f"the network ends with {y[0]} features but there are {classes} classes",
                help=f"make the last layer `linear {classes}` (or pass `--classes {y[0]}`)",
            )
        elif len(y) == 3:
            self.emitter(last.layer)(
                "W204",
                f"the network ends with a 4-D tensor {fmt_shape(y)}, not {classes} class scores",
                help=f"end with `gap | flatten | linear {classes}` (or `flatten | linear {classes}`)",
            )


def _invalid_input(model: Model) -> bool:
    """The first layer is an `input` whose arguments were already reported as wrong."""
    first = model.body.items[0] if model.body.items else None
    return isinstance(first, Invalid) and first.op == "input"


def _looks_channels_last(dims: Shape | None) -> bool:
    """`input 32x32x3`: the first dimension looks like a size and the last like channels."""
    return dims is not None and len(dims) == 3 and dims[2] in (1, 3, 4) and (dims[0] or 0) > 4


def _hint_channels_first(report: CheckReport) -> None:
    """A window too large for a channels-last input: the order of the dims is the mistake, not the padding."""
    dims = report.input_shape
    if not _looks_channels_last(dims):
        return
    c, h, w = dims  # type: ignore[misc]
    for d in report.diagnostics:
        if d.code in ("E101", "E102"):
            d.notes.append(f"`input {c}x{h}x{w}` means {c} channels of {h}x{w} pixels: inputs are C x H x W")
            d.help = f"write the channels first: `input {w}x{c}x{h}`"


def check(source: "Model | str", classes: int | None = 10) -> CheckReport:
    """Check a parsed model (or .arch text): every diagnostic, and each layer's shapes and params."""
    model = parse(source) if isinstance(source, str) else source
    report = CheckReport(model=model, classes=classes)
    report.diagnostics.extend(model.diagnostics)
    checker = _Checker(report)
    if model.sources.get(model.path) is not None and not any(d.code == "E001" for d in model.diagnostics):
        if model.input is None and (model.body.items or not model.blocks) and not _invalid_input(model):
            # (a file of blocks only is a library; an `input` line that does not bind has its own E004)
            first = model.body.items[0] if model.body.items else None
            span = getattr(first, "span", None) or Span(model.path, 0, 0, 1, 1, 1, 1)
            report.diagnostics.append(
                Diagnostic("E006", "the network has no `input` layer first", span,
                           help="start the file with the input shape, e.g. `input 3x32x32` (channels x height x width)")
            )
        report.output_shape = checker.seq(model.body, None, "", 0)
        checker.finish(model.body, classes)
        _hint_channels_first(report)
    report.diagnostics = dedupe(report.diagnostics)
    report.diagnostics.sort(key=lambda d: (d.span.path != model.path, d.span.path, d.span.start) if d.span else (True, "", 0))
    return report
