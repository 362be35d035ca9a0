"""`archspec summary`: a torchinfo-style table of a checked model, without torch.

Every shape, parameter count and MAC count comes from the checked tree; this module only
visits it to add structure rows (blocks, residuals, branches and their
joins), receptive fields and memory estimates.

Receptive field (RF), jump and activation bytes come from `archspec.language.measure`, which
budgets (`archspec check --max-rf ...`) read too. An upsampling op has a fractional stride (1/F),
so RF and jump are exact Fractions where they are not whole: `1/2` in the table, 0.5 in JSON.

A symbolic input (`input 3xHxW`) shows the checker's shapes in H and W; every number (params of a
`linear` after `flatten`, MACs, RF, memory) is at one accepted size: the checker's representative
one, or `input_size` (`--input-size`), and the title and footer name it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from archspec.language.check import CheckReport
from archspec.language.pipeline import CheckOptions, checked
from archspec.language.errors import UsageError
from archspec.language.measure import BYTES_PER_VALUE, Pair, divide, human_bytes, shape_bytes
from archspec.language.nodes import Model
from archspec.language.ops import Shape, fmt_shape, pair_text, value_text
from archspec.language.tree import Branch, Call, CheckedNode, Layer, Visitor

if TYPE_CHECKING:
    from rich.table import Table

    from archspec.views.table import TableData
# Optimizer state kept per parameter, in copies of the weights: SGD with momentum keeps one
# buffer, Adam/AdamW two (first and second moments), plain SGD none.
OPTIMIZER_STATE = {"sgd": 1, "adam": 2, "none": 0}
_ALIGN = ("right", "left", "left", "left", "right", "right", "right", "right", "right")  # the table's columns

Kind = Literal["layer", "group", "join"]


@dataclass
class SummaryRow:
    """One table row: a layer, the header of a block/residual/branch, or the join that ends one."""

    name: str  # dotted module path, e.g. "basic1.res1.body.conv1"
    label: str  # the name relative to its parent, e.g. "body.conv1"
    op: str  # op name, or "block", "residual", "concat", "add"
    args: str  # key arguments as written: describe(), block arguments, the join's operands
    kind: Kind
    depth: int
    line: int | None
    output_shape: Shape | None
    params: int = 0
    macs: int = 0
    rf: Pair | None = None
    jump: Pair | None = None
    activation_bytes: int = 0
    shape_text: tuple[str, ...] | None = None  # `input 3xHxW`: the output shape in H and W, as `check` shows it

    def to_dict(self) -> dict[str, Any]:
        out = {
            "name": self.name,
            "op": self.op,
            "kind": self.kind,
            "args": self.args,
            "depth": self.depth,
            "line": self.line,
            "output_shape": None if self.output_shape is None or None in self.output_shape else list(self.output_shape),
            "params": self.params,
            "macs": self.macs,
            "receptive_field": _pair_json(self.rf),
            "jump": _pair_json(self.jump),
            "activation_bytes": self.activation_bytes,
        }
        if self.shape_text is not None:
            out["output_shape_symbolic"] = list(self.shape_text)
        return out


def _num_json(v: Any) -> int | float:
    """A whole number as an int, a fraction (after an upsampling) as a float."""
    return int(v) if v == int(v) else float(v)


def _pair_json(p: Pair | None) -> int | float | list[int | float] | None:
    """A square RF/jump as one number (the common case), a rectangular one as [H, W]."""
    if p is None:
        return None
    return _num_json(p[0]) if p[0] == p[1] else [_num_json(p[0]), _num_json(p[1])]


def rf_text(p: Pair | None) -> str:
    """An RF or jump cell: `--` when unknown, else the language's pair spelling."""
    return "--" if p is None else pair_text(p)


class _Walker(Visitor[Any]):
    """Visits the checked tree in execution order, adding structure rows and the receptive field.

    `base` is the path of the header row above a node, which its label is relative to; the RF and
    jump after each layer and join are the checked nodes' `rf` (language/measure.py sets them).
    """

    def __init__(self, report: CheckReport) -> None:
        self.report = report
        self.rows: list[SummaryRow] = []

    def seq(self, nodes: list[CheckedNode], base: str) -> None:
        for node in nodes:
            self.visit(node, base)

    def visit_layer(self, node: Layer, base: str) -> None:
        state = node.rf
        self.rows.append(SummaryRow(
            node.path, _relative(node.path, base), node.op, node.layer.describe(), "layer", node.depth,  # type: ignore[union-attr]
            self.line_of(node), node.out_shape, node.params, node.macs,
            state[0] if state else None, state[1] if state else None, shape_bytes(node.out_shape),
            self.shape_text(node),
        ))

    def shape_text(self, node: CheckedNode) -> tuple[str, ...] | None:
        """`input 3xHxW`: the node's shape in H and W (its numbers where none was derived); else None."""
        return symbolic_text(node) if self.report.symbolic is not None else None

    def header(self, node: CheckedNode, base: str, op: str, args: str) -> None:
        self.rows.append(SummaryRow(node.path, _relative(node.path, base), op, args, "group", node.depth,
                                    self.line_of(node), None))

    def visit_call(self, node: Call, base: str) -> None:
        args = ", ".join(f"{k}={value_text(v)}" for k, v in node.args.items())
        self.header(node, base, "block", f"{node.block}({args})")
        self.seq(node.body, node.path)

    def visit_branch(self, node: Branch, base: str) -> None:
        self.header(node, base, node.mode, node.rule.header_args(node))
        for b in node.branches:
            self.seq(b, node.path)
        self.join(node, base, node.mode, node.rule.operands_text(node))

    def join(self, node: CheckedNode, base: str, op: str, operands: str) -> None:
        state = node.rf
        self.rows.append(SummaryRow(
            node.path, _relative(node.path, base), op, operands, "join", node.depth, self.line_of(node),
            node.out_shape, 0, 0, state[0] if state else None, state[1] if state else None, shape_bytes(node.out_shape),
            self.shape_text(node),
        ))

    def line_of(self, node: CheckedNode) -> int | None:
        """Source line in the checked file (a layer from a `use`d file shows its call site)."""
        span = node.span
        if span is not None and span.path == self.report.path:
            return span.line
        for _, site in node.trace:
            if site.path == self.report.path:
                return site.line
        return None


def _relative(path: str, base: str) -> str:
    return path[len(base) + 1:] if base else path


@dataclass
class Summary:
    """The summary of one checked model: rows, totals and the training-memory estimate."""

    report: CheckReport
    rows: list[SummaryRow]
    batch_size: int = 1
    optimizer: str = "sgd"
    assumptions: list[str] = field(default_factory=list)

    @property
    def symbolic(self) -> Any:
        """`input 3xHxW`: the checker's derivation (symbolic.Derivation); None for a concrete input."""
        return self.report.symbolic

    @property
    def evaluated_at(self) -> str:
        """The concrete input size the numbers are at, e.g. `3x32x32`."""
        return "x".join(map(str, self.report.input_shape or ()))


    @property
    def accepted(self) -> dict[str, str]:
        """Per axis, the rule for the sizes the network accepts (`H >= 16`), or its fixed size (`W = 32`)."""
        return {a.name: a.accepted_rule() for a in self.symbolic.axes}

    @property
    def total_params(self) -> int:
        return sum(r.params for r in self.report.rows)

    @property
    def total_macs(self) -> int:
        return sum(r.macs for r in self.report.rows)

    @property
    def param_bytes(self) -> int:
        return self.total_params * BYTES_PER_VALUE

    @property
    def model_size_mb(self) -> float:
        return divide(self.param_bytes, 10**6)

    @property
    def activation_bytes_per_sample(self) -> int:
        return sum(r.activation_bytes for r in self.rows)

    @property
    def estimated_training_bytes(self) -> int:
        """weights + gradients + optimizer state + activations kept for backward, for one batch."""
        copies = 2 + OPTIMIZER_STATE[self.optimizer]
        return copies * self.param_bytes + self.batch_size * self.activation_bytes_per_sample

    def to_dict(self) -> dict[str, Any]:
        out = {
            "path": self.report.path,
            "input_shape": _list(self.report.input_shape),
            "output_shape": _list(self.report.output_shape),
            "layers": [r.to_dict() for r in self.rows if r.kind != "group"],
            "total_params": self.total_params,
            "total_macs": self.total_macs,
            "total_flops": 2 * self.total_macs,
            "model_size_mb": round(self.model_size_mb, 6),
            "activation_bytes_per_sample": self.activation_bytes_per_sample,
            "batch_size": self.batch_size,
            "optimizer": self.optimizer,
            "estimated_training_bytes": self.estimated_training_bytes,
            "assumptions": list(self.assumptions),
        }
        if self.symbolic is not None:  # `input 3xHxW`: the shapes in H and W; the numbers above at `evaluated_at`
            out |= {
                "input_shape_symbolic": [str(d) for d in self.symbolic.dims],
                "output_shape_symbolic": list(self._symbolic_output() or []) or None,
                "evaluated_at": list(self.report.input_shape or ()),
                "accepted": self.accepted,
            }
        return out

    def _symbolic_output(self) -> tuple[str, ...] | None:
        last = self.report.body[-1] if self.report.body else None
        return symbolic_text(last) if last is not None else None

    def title(self) -> str:
        """`file: [B, 3, 32, 32] -> [B, 10]`; for `input 3xHxW`, the shapes in H and W and the size the numbers are at."""
        if self.symbolic is None:
            return f"{self.report.path}: {fmt_shape(self.report.input_shape)} -> {fmt_shape(self.report.output_shape)}"
        # sizes checked one by one (a layer reads in.h) derive no expressions: the shapes are at that size too
        what = "params, MACs, RF and memory" if self.symbolic.exact else "shapes, params, MACs, RF and memory"
        return (f"{self.report.path}: {fmt_shape(self.symbolic.dims)} -> {fmt_shape(self._symbolic_output())}; "
                f"{what} at {self.evaluated_at}")

    def table_data(self) -> "TableData":
        """The table's columns and cells (rendered by rich, or plainly when long: see views/table.py)."""
        from archspec.views.table import Column, TableData

        table = TableData([Column(name, justify, "dim" if name == "line" else None)  # type: ignore[arg-type]
                           for name, justify in (("line", "right"), ("layer", "left"), ("op", "left"), ("output shape", "left"),
                                                 ("params", "right"), ("MACs", "right"), ("RF", "right"), ("jump", "right"),
                                                 ("act/sample", "right"))],
                          title=self.title())
        for r in self.rows:
            table.add_row(*self.cells(r), style="bold" if r.kind == "group" else None)
        return table

    @staticmethod
    def cells(r: SummaryRow) -> list[str]:
        """One row's cells as the table shows them (text and HTML alike)."""
        group = r.kind == "group"
        return [
            "" if r.line is None else str(r.line),
            "  " * r.depth + r.label,
            f"{r.op} {r.args}".rstrip() if r.kind != "join" else f"= {r.args}",
            "" if group else fmt_shape(r.shape_text or r.output_shape),
            "" if group else (f"{r.params:,}" if r.params else "--"),
            "" if group else (f"{r.macs:,}" if r.macs else "--"),
            "" if group else rf_text(r.rf),
            "" if group else rf_text(r.jump),
            "" if group else human_bytes(r.activation_bytes),
        ]

    def table(self) -> "Table":
        """The table as a rich Table."""
        return self.table_data().to_rich()

    def footer(self) -> list[str]:
        b = self.batch_size
        where = [] if self.symbolic is None else [
            f"At input {self.evaluated_at} (accepted: {', '.join(self.accepted.values())}; "
            "--input-size CxHxW for another size):"]
        return where + [
            f"Total params: {self.total_params:,}",
            f"Total MACs: {self.total_macs:,} per sample ({self.total_macs * 2:,} FLOPs)",
            f"Model size (fp32 params): {self.model_size_mb:.2f} MB",
            f"Activations per sample: {human_bytes(self.activation_bytes_per_sample)}",
            f"Estimated training memory at batch size {b} ({self.optimizer}): {human_bytes(self.estimated_training_bytes)}",
        ] + ["The estimate assumes:"] + [f"  - {a}" for a in self.assumptions]

    def render(self, color: bool = False, width: int | None = None, plain: bool | None = None) -> str:
        """The table and footer as text (ANSI colours only when asked).

        `plain` (default: without colour, or past PLAIN_AFTER_ROWS rows, when no width is given)
        uses the linear renderer, which lays out the same cells as rich; rich wraps to `width`.
        """
        from archspec.views.table import PLAIN_AFTER_ROWS

        table = self.table_data()
        if plain is None:
            plain = width is None and (not color or len(table.rows) > PLAIN_AFTER_ROWS)
        if plain:
            body = table.render_plain(color=color) + "\n" + "".join(line + "\n" for line in self.footer())
            return "\n".join(line.rstrip() for line in body.splitlines()) + "\n"
        from io import StringIO

        from rich.console import Console

        buf = StringIO()
        console = Console(file=buf, force_terminal=color, force_jupyter=False, no_color=not color, width=width or 10_000, highlight=False)
        console.print(table.to_rich())
        console.print()
        for line in self.footer():
            console.print(line, markup=False)
        return "\n".join(line.rstrip() for line in buf.getvalue().splitlines()) + "\n"

    def __str__(self) -> str:
        return self.render()

    def __repr__(self) -> str:
        return (f"<Summary {self.report.path}: {self.total_params:,} params, {self.total_macs:,} MACs, "
                f"{len(self.rows)} rows>")

    def _repr_html_(self) -> str:
        """The same table as text, in a notebook: one row per layer, structure rows in bold, then the footer."""
        from html import escape

        head = "".join(f"<th>{h}</th>" for h in ("line", "layer", "op", "output shape", "params", "MACs", "RF", "jump",
                                                   "act/sample"))
        bold = ' style="font-weight:bold"'
        body = "".join(
            f"<tr{bold if r.kind == 'group' else ''}>"
            + "".join(f'<td style="text-align:{a}">{escape(c)}</td>' for c, a in zip(self.cells(r), _ALIGN)) + "</tr>"
            for r in self.rows)
        footer = "<br>".join(escape(line) for line in self.footer())
        return f"<div><p><b>{escape(self.report.path)}</b></p><table><tr>{head}</tr>{body}</table><p>{footer}</p></div>"


def _list(shape: Shape | None) -> list[int] | None:
    return None if shape is None or None in shape else list(shape)  # type: ignore[arg-type]


def _assumptions(optimizer: str) -> list[str]:
    state = {"sgd": "SGD with momentum (1 buffer per weight)", "adam": "Adam/AdamW (2 buffers per weight)",
             "none": "plain SGD (no optimizer state)"}[optimizer]
    return [
        "fp32 (4 bytes) for weights, gradients, optimizer state and activations",
        f"weights + gradients + {state}",
        "every layer's output (and each residual/branch join, and the input) is kept for the backward pass",
        "nothing else: BatchNorm running statistics, backward temporaries, cuDNN workspaces, "
        "the CUDA context and allocator overhead are not counted (the real peak is higher)",
    ]


def parse_input_size(text: "str | tuple[int, ...]") -> tuple[int, int, int]:
    """`3x64x64` (or a tuple) as (C, H, W)."""
    parts = [str(d) for d in text] if isinstance(text, tuple) else str(text).strip().split("x")
    if len(parts) != 3 or not all(p.isdigit() and int(p) >= 1 for p in parts):
        raise UsageError(f"--input-size: `{text}` is not CxHxW", "e.g. --input-size 3x64x64")
    return int(parts[0]), int(parts[1]), int(parts[2])


def _at_size(report: CheckReport, size: tuple[int, int, int], classes: int | None) -> CheckReport:
    """The symbolic `report` checked again at `size` (UsageError, with the accepted rules, where it fails)."""
    d = report.symbolic
    text = "x".join(map(str, size))
    rules = ", ".join(a.accepted_rule() for a in d.axes)
    help = (f"`input {'x'.join(map(str, d.dims))}` accepts {rules} (channels {d.channels}), "
            f"e.g. --input-size {d.channels}x{d.at[0]}x{d.at[1]}; `archspec check {report.path}` prints the rules")
    if size[0] != d.channels:
        raise UsageError(f"--input-size {text}: the input has {d.channels} channels, not {size[0]}", help)
    for a, n in zip(d.axes, size[1:]):
        if (a.size is not None and n != a.size) or (a.size is None and d.exact and n not in a.valid):
            raise UsageError(f"--input-size {text}: {report.path} does not accept {a.name} = {n}", help)
    at = checked(report.model, CheckOptions(classes=report.classes, input_size=size))
    if not at.ok:  # sizes checked one by one (a layer reads in.h): the checker at this size decides
        raise UsageError(f"--input-size {text}: {report.path} does not check at this size ({at.errors[0].message})", help)
    first = at.body[0] if at.body else None
    if isinstance(first, Layer):
        first.layer = report.body[0].layer  # type: ignore[union-attr]  # the table shows `input 3xHxW` as written
    from archspec.language.symbolic import attach

    attach(at, d)
    return at


def summarize(source: "CheckReport | Model | str | Path", batch_size: int = 1, optimizer: str = "sgd",
              classes: int | None = 10, input_size: "str | tuple[int, ...] | None" = None) -> Summary:
    """Summarise a model that checks (ArchError if it does not). No torch needed.

    `input 3xHxW`: the shapes in H and W, the numbers at the checker's representative size, or at
    `input_size` (`3x64x64`), which the network must accept."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UsageError(f"batch size must be a whole number of at least 1, got {batch_size!r}", "e.g. --batch-size 128")
    if optimizer not in OPTIMIZER_STATE:
        raise UsageError(f"unknown optimizer {optimizer!r}", f"choose one of: {', '.join(OPTIMIZER_STATE)}")
    size = parse_input_size(input_size) if input_size is not None else None
    report = checked(source, CheckOptions(classes=classes)).raise_for_errors(symbolic=True)
    if size is not None and report.symbolic is None:
        raise UsageError(f"--input-size needs a symbolic input; {report.path} has `input {'x'.join(map(str, report.input_shape or ()))}`",
                         "write `input 3xHxW` in the file to summarise it at any accepted size, "
                         "or check other sizes with `archspec check --input-sizes 3x64x64`")
    if size is not None:
        report = _at_size(report, size, classes)
    walker = _Walker(report)
    walker.seq(report.body, "")
    summary = Summary(report, walker.rows, batch_size, optimizer, _assumptions(optimizer))
    return summary


def symbolic_text(node: CheckedNode) -> tuple[str, ...] | None:
    """A node's shape in H and W where the checker derived one, else its numbers as text."""
    if node.symbolic_shape is not None:
        return node.symbolic_shape
    shape = node.out_shape
    return None if shape is None else tuple("?" if d is None else str(d) for d in shape)
