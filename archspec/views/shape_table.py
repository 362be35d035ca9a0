"""The compact table `archspec check` prints on success: line, module, layer, output shape, params."""
from __future__ import annotations

from archspec.language.check import CheckReport
from archspec.language.ops import fmt_shape, value_text
from archspec.language.tree import Call, CheckedNode, Layer, Visitor
from archspec.views.table import Column, TableData

Row = tuple[str, str, str, str, str]


def shape_table(report: CheckReport, title: str | None = None, full: bool = False) -> TableData:
    """Each block call is one row (a `block(...) * N` statement is one row for its N calls) with its
    output shape and params, so a 600-layer network prints a screen; `full` lists every layer.
    """
    table = TableData([Column("line", "right", "dim"), Column("module", style="dim"), Column("layer"), Column("output shape"),
                       Column("params", "right")],
                      title=title)
    made = _Rows()
    rows = [row for layer in report.rows for row in made.visit_layer(layer, [layer])] if full else made.seq(report.body)
    for row in rows:
        table.add_row(*row)
    return table


class _Rows(Visitor[list[Row]]):
    """A row per layer and per run of block calls; a residual or a branch (outside a block) gives its
    children's rows, the block calls in it folded."""

    def seq(self, nodes: list[CheckedNode]) -> list[Row]:
        return [row for run in _runs(nodes) for row in self.visit(run[0], run)]

    def visit_layer(self, node: Layer, run: list[CheckedNode]) -> list[Row]:
        layer = node.layer
        desc = layer.describe() if hasattr(layer, "describe") else ""
        return [(_line(node), node.path, f"{'  ' * node.depth}{node.op} {desc}".rstrip(), _shape(node), _params(node.params))]

    def visit_call(self, node: Call, run: list[CheckedNode]) -> list[Row]:
        args = ", ".join(f"{k}={value_text(v)}" for k, v in node.args.items())
        times = f" * {len(run)}" if len(run) > 1 else ""
        path = node.path if len(run) == 1 else f"{node.path}..{run[-1].path}"
        return [(_line(node), path, f"{'  ' * node.depth}{node.block}({args}){times}", _shape(run[-1]),
                 _params(sum(c.params for c in run)))]

    def generic_visit(self, node: CheckedNode, run: list[CheckedNode]) -> list[Row]:
        return self.seq(node.children())


def _runs(nodes: list[CheckedNode]) -> list[list[CheckedNode]]:
    """The nodes in runs: the calls a `block(...) * N` statement makes together, every other node alone."""
    runs: list[list[CheckedNode]] = []
    for node in nodes:
        last = runs[-1][-1] if runs else None
        if (isinstance(node, Call) and isinstance(last, Call) and node.block == last.block and node.args == last.args
                and node.span == last.span):
            runs[-1].append(node)
        else:
            runs.append([node])
    return runs


def _shape(node: CheckedNode) -> str:
    return fmt_shape(node.symbolic_shape or node.out_shape)  # `input 3xHxW`: in H and W


def _line(node: CheckedNode) -> str:
    return str(node.span.line) if node.span else ""


def _params(n: int) -> str:
    return f"{n:,}" if n else "--"
