"""`archspec explain`: each layer's shape written out, formula and numbers, for teaching.

    conv1 (line 3): conv 6 k5
      [B, 3, 32, 32] -> [B, 6, 28, 28]
      H: (32 + 2*0 - 1*(5-1) - 1)/1 + 1 = 28

The result of every formula is the checker's shape (the single source of truth); this module
only writes out the arithmetic that leads to it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archspec.language import codes
from archspec.language.check import CheckReport
from archspec.language.pipeline import CheckOptions, checked
from archspec.language.diagnostics import Diagnostic
from archspec.language.errors import UsageError
from archspec.language.nodes import Model
from archspec.language.ops import Input, Shape, fmt_shape, value_text
from archspec.language.tree import Branch, Call, CheckedNode, Layer, Visitor
from archspec.views.display import Text

FORMULA = "out = floor((in + 2*padding - dilation*(kernel-1) - 1)/stride) + 1"


@dataclass
class Entry:
    """One explained node: its heading, the lines under it, and the entries nested in it."""

    node: Any
    path: str  # dotted module path, as in the check report
    heading: str
    lines: list[str] = field(default_factory=list)
    children: list["Entry"] = field(default_factory=list)
    after: list[str] = field(default_factory=list)  # a join's arithmetic, once its paths are shown


class _Explainer(Visitor[Entry]):
    """One entry per node of the checked tree; each layer's arithmetic comes from its op."""

    def __init__(self, report: CheckReport) -> None:
        self.report = report
        # a budget (E3xx) is on the totals: every layer still has its arithmetic to show
        self.errors = [d for d in report.errors if not codes.is_budget(d.code)]
        self.failed: list[Diagnostic] = []  # the errors of the node the explanation stopped at

    def seq(self, nodes: list[CheckedNode]) -> list[Entry]:
        entries = []
        for n in nodes:
            if self.failed:
                break
            entries.append(self.visit(n))
            self.failed = self.errors_of(n)
        return entries

    def errors_of(self, node: CheckedNode) -> list[Diagnostic]:
        """The errors reported at this node itself (not inside a block it calls)."""
        span = node.span
        if span is None:
            return []
        return [d for d in self.errors if d.span is not None and d.trace == node.trace and d.span.path == span.path
                and span.start <= d.span.start and d.span.end <= span.end]

    def where(self, node: CheckedNode) -> str:
        span = node.span
        if span is None:
            return ""
        if span.path == self.report.path:
            return f" (line {span.line})"
        return f" ({Path(span.path).name} line {span.line})"

    def visit_layer(self, node: Layer) -> Entry:
        layer = node.layer
        if not node.valid:
            return Entry(node, node.path, f"{node.path}{self.where(node)}: {node.op}",
                         ["cannot be explained: the layer is not written correctly (see the error below)"])
        heading = f"{node.path}{self.where(node)}: {node.op} {layer.describe()}".rstrip()  # type: ignore[union-attr]
        x, y = node.in_shape, node.out_shape
        if self.errors_of(node) or (not isinstance(layer, Input) and not (_known(x) and _known(y))):
            return Entry(node, node.path, heading, layer.explain_failure(x, y))  # type: ignore[union-attr]
        return Entry(node, node.path, heading, layer.explain(x, y, node.params, node.macs) + self.in_h_and_w(node))  # type: ignore[union-attr]

    def in_h_and_w(self, node: Layer) -> list[str]:
        """For `input 3xHxW`: the layer's output at every size, beside the arithmetic at one size."""
        if node.symbolic_shape is None or isinstance(node.layer, Input):
            return []
        return [f"at every size: {fmt_shape(node.symbolic_shape)}"]

    def visit_call(self, node: Call) -> Entry:
        args = ", ".join(f"{k}={value_text(v)}" for k, v in node.args.items())
        e = Entry(node, node.path, f"{node.path}{self.where(node)}: block {node.block}({args})",
                  [f"{fmt_shape(node.in_shape)} -> {fmt_shape(node.out_shape)}: the block's body, with its parameters filled in"])
        e.children = self.seq(node.body)
        return e

    def visit_branch(self, node: Branch) -> Entry:
        e = Entry(node, node.path, f"{node.path}{self.where(node)}: {node.rule.title(node)}", node.rule.explain_lines(node))
        for b in node.branches:
            e.children += self.seq(b)
        if not self.failed:
            e.after += node.rule.explain_after(node)
        return e


def _render(entries: list[Entry], depth: int, out: list[str]) -> None:
    pad = "  " * depth
    for e in entries:
        out.append(pad + e.heading)
        out.extend(f"{pad}  {line}" for line in e.lines)
        out.append("")
        if e.children:
            _render(e.children, depth + 1, out)
        if e.after:
            out.extend(f"{pad}  {line}" for line in e.after)
            out.append("")


def _matches(entry: Entry, layer: int | str, report: CheckReport) -> bool:
    if isinstance(layer, int):
        span = entry.node.span
        return span is not None and span.path == report.path and span.line == layer
    return entry.path == layer or entry.path.startswith(layer + ".")


def _select(entries: list[Entry], layer: int | str, report: CheckReport) -> list[Entry]:
    """Entries matching the selector, whole (with everything nested in them), in source order."""
    chosen: list[Entry] = []
    for e in entries:
        chosen += [e] if _matches(e, layer, report) else _select(e.children, layer, report)
    return chosen


def explain(source: "CheckReport | Model | str | Path", layer: int | str | None = None, classes: int | None = 10) -> Text:
    """The explanation as text. `layer`: a source line number (every layer written on that line,
    or a block call's whole body), or a module name / dotted path like `conv2` or `basic1.res1`."""
    report = checked(source, CheckOptions(classes=classes)).raise_for_errors(symbolic=True)
    entries = _Explainer(report).seq(report.body)
    header = [f"{report.path}: {fmt_shape(report.input_shape)} -> {fmt_shape(report.output_shape)}, "
              f"{report.params:,} params", *_symbolic_note(report),
              f"Sizes follow PyTorch: {FORMULA}", ""]
    if layer is not None:
        everything, entries = entries, _select(entries, layer, report)
        if not entries:
            raise UsageError(f"no layer {'on line ' if isinstance(layer, int) else 'named '}{layer} in {report.path}",
                             _layer_help(report, everything))
    out: list[str] = []
    _render(entries, 0, out)
    return Text("\n".join(header + out).rstrip("\n") + "\n")


def _symbolic_note(report: CheckReport) -> list[str]:
    """For `input 3xHxW`: the arithmetic is shown at one accepted size (the checked tree's), said here."""
    derived = report.symbolic
    if derived is None:
        return []
    dims = "x".join(map(str, derived.dims))
    return [f"The input is `{dims}`: the arithmetic below is at {fmt_shape(report.input_shape)}, an accepted size; "
            f"`archspec check {report.path}` gives every layer's size in H and W and the sizes that work."]


def explain_failure(report: CheckReport) -> tuple[str, list[Diagnostic]]:
    """For a report with errors: every layer explained up to and including the first that fails
    (with the arithmetic that fails), and the errors to show after it (all of them when no layer
    carries one, e.g. a syntax error)."""
    explainer = _Explainer(report)
    entries = explainer.seq(report.body)
    failed = explainer.failed or report.errors
    where = f" at line {failed[0].span.line}" if failed and failed[0].span else ""
    verdict = (f"{fmt_shape(report.output_shape)}, over its budget" if not explainer.errors
               else f"stops with an error{where}")
    header = [f"{report.path}: {fmt_shape(report.input_shape)} -> {verdict}",
              f"Sizes follow PyTorch: {FORMULA}", ""]
    out: list[str] = []
    _render(entries, 0, out)
    return "\n".join(header + out).rstrip("\n") + "\n", failed


def _lines_of(entries: list[Entry], path: str) -> set[int]:
    """The lines of `path` that `--layer LINE` selects something on: layers, and block calls too."""
    lines: set[int] = set()
    for e in entries:
        span = e.node.span
        if span is not None and span.path == path:
            lines.add(span.line)
        lines |= _lines_of(e.children, path)
    return lines


def _known(shape: Shape | None) -> bool:
    return shape is not None and None not in shape


def _layer_help(report: CheckReport, entries: list[Entry]) -> str:
    lines = sorted(_lines_of(entries, report.path))
    names = [r.path for r in report.rows[:6]]
    return (f"give a line number that has a layer or a block call ({', '.join(map(str, lines[:12]))}{', ...' if len(lines) > 12 else ''}) "
            f"or a module name like {', '.join(names)}")


_MAX_LINE_DIGITS = 18  # a line number of a file of at most 1 MiB has 7 digits


def parse_layer(text: str) -> int | str:
    """`--layer` value: digits are a line number, anything else a module name or dotted path."""
    text = text.strip()
    if text.isascii() and text.isdigit():  # `²` is a digit to str.isdigit, not to int()
        if len(text) > _MAX_LINE_DIGITS:  # int() refuses past 4,300 digits; no file has such a line anyway
            raise UsageError(f"--layer {text[:12]}... ({len(text):,} digits) is no line number of a .arch file",
                             "give a line number that has a layer, e.g. --layer 3, or a module name, e.g. --layer conv2")
        return int(text)
    if not text:
        raise UsageError("--layer needs a line number or a module name", "e.g. --layer 3 or --layer conv2")
    return text
