"""`archspec explain`: each layer's shape written out, formula and numbers, for teaching.

    conv1 (line 3): conv 6 k5
      [B, 3, 32, 32] -> [B, 6, 28, 28]
      H: (32 + 2*0 - 1*(5-1) - 1)/1 + 1 = 28

The result of every formula is the checker's shape (the single source of truth); this module
only writes out the arithmetic that leads to it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archspec.diagnostics import Diagnostic
from archspec.errors import UsageError
from archspec.ops import (AdaptiveAvgPool, BatchNorm, Conv, Dropout, Flatten, GlobalAvgPool, Input, LayerSpec, Linear,
                          Shape, _Pool, fmt_shape, window_out)
from archspec.shapes import CheckReport, Row
from archspec.specs import BlockCall, Branch, Invalid, Model, Node, Residual, Seq
from archspec.summary import checked

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


def _n(x: float) -> str:
    """A quotient as a person writes it: 6.5, 13.33, 28."""
    return f"{round(x, 2):g}"


def window_line(axis: str, size: int, k: int, s: int, p: int, d: int, out: Any, ceil_mode: bool = False) -> str:
    """`H: (32 + 2*0 - 1*(3-1) - 1)/1 + 1 = 30`, with floor()/ceil() written out when the division is not exact."""
    num = size + 2 * p - d * (k - 1) - 1
    expr = f"({size} + 2*{p} - {d}*({k}-1) - 1)/{s}"
    if num >= 0 and num % s == 0:
        return f"{axis}: {expr} + 1 = {out}"
    fn = "ceil" if ceil_mode else "floor"
    rounded = (math.ceil if ceil_mode else math.floor)(num / s) + 1
    text = f"{axis}: {fn}({expr}) + 1 = {fn}({_n(num / s)}) + 1 = {rounded}"
    if rounded != out:  # ceil mode: PyTorch drops a last window that would start in the padding
        text += f" - 1 = {out} (the last window would start in the right padding, so PyTorch drops it)"
    elif not ceil_mode and window_out(axis, size, k, s, p, d)[2]:
        # Input rows the floor loses, by the checker's own rule (what W201 reports).
        lost = window_out(axis, size, k, s, p, d)[2]
        noun = ("row" if axis == "H" else "column") + ("s" if lost > 1 else "")
        text += f" (the floor drops the last {lost} {noun}: no window covers {'them' if lost > 1 else 'it'})"
    return text


def _pair(p: tuple[int, int]) -> str:
    return str(p[0]) if p[0] == p[1] else f"{p[0]}x{p[1]}"


class _Explainer:
    def __init__(self, report: CheckReport) -> None:
        self.report = report
        self.by_layer: dict[int, Row] = {id(r.layer): r for r in report.rows}
        self.errors = report.errors
        self.failed: list[Diagnostic] = []  # the errors of the node the explanation stopped at

    def seq(self, seq: Seq, parent: str) -> list[Entry]:
        entries = []
        for n in seq.items:
            if self.failed:
                break
            entries.append(self.node(n, parent))
            self.failed = self.errors_of(n)
        return entries

    def errors_of(self, node: Node) -> list[Diagnostic]:
        """The errors reported at this node itself (not inside a block it calls)."""
        span = node.span
        if span is None:
            return []
        return [d for d in self.errors if d.span is not None and d.trace == node.trace and d.span.path == span.path
                and span.start <= d.span.start and d.span.end <= span.end]

    def where(self, node: Any) -> str:
        span = node.span
        if span is None:
            return ""
        if span.path == self.report.path:
            return f" (line {span.line})"
        return f" ({Path(span.path).name} line {span.line})"

    def node(self, node: Node, parent: str) -> Entry:
        if isinstance(node, LayerSpec):
            return self.layer(node)
        if isinstance(node, Invalid):
            return Entry(node, node.name, f"{node.name}{self.where(node)}: {node.op}",
                         ["cannot be explained: the layer is not written correctly (see the error below)"])
        path = f"{parent}.{node.name}" if parent else node.name
        x, y = self.report.shapes_of(node)
        if isinstance(node, BlockCall):
            args = ", ".join(f"{k}={'x'.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in node.args.items())
            e = Entry(node, path, f"{path}{self.where(node)}: block {node.block}({args})",
                      [f"{fmt_shape(x)} -> {fmt_shape(y)}: the block's body, with its parameters filled in"])
            e.children = self.seq(node.body, path)
            return e
        if isinstance(node, Residual):
            return self.residual(node, path, x, y)
        if isinstance(node, Branch):
            return self.branch(node, path, x, y)
        raise AssertionError(f"a checked model has no {type(node).__name__} nodes")

    def residual(self, node: Residual, path: str, x: Shape | None, y: Shape | None) -> Entry:
        projection = self.report.projections.get(id(node))
        e = Entry(node, path, f"{path}{self.where(node)}: residual{' project' if node.project else ''}")
        if node.shortcut is not None:
            e.lines.append("out = body(x) + shortcut(x): both paths start from the same x and are added")
        elif projection is not None:
            e.lines.append("out = body(x) + projection(x): the body changes the shape, so x goes through "
                           "a 1x1 conv (stride fitted to the body's) and bn to match it")
        else:
            e.lines.append("out = body(x) + x: the body must keep the shape, so its output can be added to x")
        e.children = self.seq(node.body, f"{path}.body")
        shortcut = node.shortcut if node.shortcut is not None else projection
        if shortcut is not None:
            e.children += self.seq(shortcut, f"{path}.shortcut")
        if self.failed:
            return e
        body_out = self.report.shapes_of(node.body.items[-1])[1] if node.body.items else x
        skip_out = self.report.shapes_of(shortcut.items[-1])[1] if shortcut is not None and shortcut.items else x
        e.after.append(f"add: {fmt_shape(body_out)} + {fmt_shape(skip_out)} -> {fmt_shape(y)} "
                       "(element-wise sum: the two shapes must be equal)")
        return e

    def branch(self, node: Branch, path: str, x: Shape | None, y: Shape | None) -> Entry:
        n = len(node.branches)
        e = Entry(node, path, f"{path}{self.where(node)}: {node.mode} of {n} branches",
                  [f"each branch gets the same input {fmt_shape(x)}"])
        for i, b in enumerate(node.branches):
            e.children += self.seq(b, f"{path}.branch{i + 1}")
        if self.failed:
            return e
        outs = [self.report.shapes_of(b.items[-1])[1] if b.items else x for b in node.branches]
        if node.mode == "concat":
            channels = " + ".join(str(o[0]) for o in outs if o)
            rest = "x".join(str(d) for d in (y or ())[1:])
            e.after.append(f"concat on channels: C: {channels} = {y[0] if y else '?'}; "
                           f"{'H and W must match: ' + rest if rest else 'the other dimensions must match'} "
                           f"-> {fmt_shape(y)}")
        else:
            e.after.append(f"add: {' + '.join(fmt_shape(o) for o in outs)} -> {fmt_shape(y)} "
                           "(element-wise sum: every branch must give the same shape)")
        return e

    # ---- layers

    def layer(self, node: LayerSpec) -> Entry:
        row = self.by_layer[id(node)]
        heading = f"{row.path}{self.where(node)}: {row.op} {node.describe()}".rstrip()
        x, y = row.in_shape, row.out_shape
        e = Entry(node, row.path, heading)
        if self.errors_of(node) or (not isinstance(node, Input) and not (_known(x) and _known(y))):
            e.lines = self.failing_lines(node, x, y)
        elif isinstance(node, Input):
            e.lines = self.input_lines(y)
        elif isinstance(node, Conv):
            e.lines = [f"{fmt_shape(x)} -> {fmt_shape(y)}"] + self.conv_lines(node, row)
        elif isinstance(node, _Pool):
            e.lines = [f"{fmt_shape(x)} -> {fmt_shape(y)}"] + self.pool_lines(node, x, y)
        elif isinstance(node, AdaptiveAvgPool):
            e.lines = [f"{fmt_shape(x)} -> {fmt_shape(y)}"] + self.adaptive_lines(node, x, y)
        elif isinstance(node, GlobalAvgPool):
            e.lines = [f"{fmt_shape(x)} -> {fmt_shape(y)}: the mean of each channel's {x[1]}x{x[2]} = "  # type: ignore[index]
                       f"{x[1] * x[2]:,} values"]  # type: ignore[index,operator]
        elif isinstance(node, Flatten):
            e.lines = self.flatten_lines(x, y)
        elif isinstance(node, Linear):
            e.lines = self.linear_lines(node, row)
        elif isinstance(node, BatchNorm):
            e.lines = [f"{fmt_shape(x)} -> {fmt_shape(y)}: normalises each of the {x[0]} channels over the batch"  # type: ignore[index]
                       + (" and H, W" if x and len(x) == 3 else "") + ", then scales and shifts it",
                       f"params: 2*{x[0]} = {row.params:,} (a scale and a shift per channel; "  # type: ignore[index]
                       "the running mean and variance are buffers, not params)"]
        elif isinstance(node, Dropout):
            keep = 1 - node.p
            e.lines = [f"{fmt_shape(x)} -> {fmt_shape(y)}: while training, zeroes each element with probability "
                       f"{node.p:g} and scales the rest by 1/{_n(keep)}; does nothing at evaluation"]
        else:  # activations, softmax, and any op without its own arithmetic here
            same = "the shape does not change. " if x == y else ""
            e.lines = [f"{fmt_shape(x)} -> {fmt_shape(y)}: {same}{type(node).summary}"]
            if row.params:
                e.lines.append(f"params: {row.params:,}")
        return e

    @staticmethod
    def failing_lines(node: LayerSpec, x: Shape | None, y: Shape | None) -> list[str]:
        """A layer with an error, or after one: its shapes, and for a window that does not fit, the
        arithmetic that gives a size below 1."""
        lines = [f"{fmt_shape(x)} -> {fmt_shape(y)}"]
        if not _known(x) or len(x) != 3 or not isinstance(node, (Conv, _Pool)) or node.padding == "same":  # type: ignore[arg-type]
            return lines
        if isinstance(node, Conv):
            k, s, p, d, ceil_mode = node.kernel, node.stride, node.resolved_padding(), node.dilation, False
        else:
            k, s, p, d, ceil_mode = node.kernel, node.eff_stride, node.padding, (1, 1), node.ceil_mode
        for i, axis in enumerate("HW"):
            out = window_out(axis, x[i + 1], k[i], s[i], p[i], d[i], ceil_mode)[0]
            line = window_line(axis, x[i + 1], k[i], s[i], p[i], d[i], out, ceil_mode)  # type: ignore[arg-type]
            if out is not None and out < 1:
                eff = d[i] * (k[i] - 1) + 1
                line += f": below 1, the {eff}-wide window does not fit in {x[i + 1]} + 2*{p[i]} = {x[i + 1] + 2 * p[i]}"  # type: ignore[operator]
            lines.append(line)
        return lines

    @staticmethod
    def input_lines(y: Shape | None) -> list[str]:
        if y is not None and len(y) == 3:
            return [f"{fmt_shape(y)}: a batch of B images, {y[0]} channel{'s' if y[0] != 1 else ''} of {y[1]}x{y[2]} pixels"]
        return [f"{fmt_shape(y)}: a batch of B vectors of {y[0] if y else '?'} features"]

    @staticmethod
    def conv_lines(node: Conv, row: Row) -> list[str]:
        x, y = row.in_shape, row.out_shape
        assert x is not None and y is not None
        g = node.groups
        per = x[0] // g  # type: ignore[operator]
        kh, kw = node.kernel
        lines = [f"C: {x[0]} -> {y[0]}: {y[0]} filters, each {per}x{kh}x{kw}"
                 + (f" (g{g}: each filter sees {x[0]}/{g} = {per} input channel{'s' if per > 1 else ''})" if g > 1 else "")]
        if node.padding == "same":
            for i, axis in enumerate("HW"):
                tot = node.dilation[i] * (node.kernel[i] - 1)
                lines.append(f"{axis}: p same keeps the size: {y[i + 1]} (total padding {node.dilation[i]}*({node.kernel[i]}-1)"
                             f" = {tot}: {tot // 2} before, {tot - tot // 2} after)")
        else:
            p = node.resolved_padding()
            for i, axis in enumerate("HW"):
                lines.append(window_line(axis, x[i + 1], node.kernel[i], node.stride[i], p[i], node.dilation[i], y[i + 1]))  # type: ignore[arg-type]
        bias = f" + {y[0]}" if node.bias else ""
        lines.append(f"params: {y[0]}*{per}*{kh}*{kw}{bias} = {row.params:,}"
                     + (" (weights + one bias per filter)" if node.bias else " (weights, no bias)"))
        lines.append(f"MACs: {y[0]}*{y[1]}*{y[2]} outputs * {per}*{kh}*{kw} each = {row.macs:,}")
        return lines

    @staticmethod
    def pool_lines(node: _Pool, x: Shape | None, y: Shape | None) -> list[str]:
        assert x is not None and y is not None
        kind = "the maximum" if node.op_name == "maxpool" else "the mean"
        k, s = node.kernel, node.eff_stride
        lines = [f"C: {x[0]}: {kind} of each {k[0]}x{k[1]} window, on each channel on its own"
                 + ("" if node.stride is not None else f"; the stride defaults to the kernel, {_pair(k)}")]
        for i, axis in enumerate("HW"):
            lines.append(window_line(axis, x[i + 1], k[i], s[i], node.padding[i], 1, y[i + 1], node.ceil_mode))  # type: ignore[arg-type]
        return lines

    @staticmethod
    def adaptive_lines(node: AdaptiveAvgPool, x: Shape | None, y: Shape | None) -> list[str]:
        assert x is not None and y is not None
        lines = []
        for i, axis in enumerate("HW"):
            n, o = x[i + 1], y[i + 1]
            if n % o == 0:  # type: ignore[operator]
                lines.append(f"{axis}: {n} -> {o}: windows of {n}/{o} = {n // o} (stride {n // o})")  # type: ignore[operator]
            else:
                lines.append(f"{axis}: {n} -> {o}: window i covers [floor(i*{n}/{o}), ceil((i+1)*{n}/{o})), "
                             "so the windows overlap")
        return lines

    @staticmethod
    def flatten_lines(x: Shape | None, y: Shape | None) -> list[str]:
        if x is not None and len(x) == 3:
            return [f"{fmt_shape(x)} -> {fmt_shape(y)}: {x[0]} * {x[1]} * {x[2]} = {y[0] if y else '?'}"]
        return [f"{fmt_shape(x)} -> {fmt_shape(y)}: already flat"]

    @staticmethod
    def linear_lines(node: Linear, row: Row) -> list[str]:
        x, y = row.in_shape, row.out_shape
        assert x is not None and y is not None
        f_in, f_out = x[0], y[0]
        bias = f" + {f_out}" if node.bias else ""
        return [
            f"{fmt_shape(x)} -> {fmt_shape(y)}: every output is a weighted sum of all {f_in} inputs",
            f"params: {f_in}*{f_out}{bias} = {row.params:,}" + (" (weights + biases)" if node.bias else " (weights, no bias)"),
            f"MACs: {f_in}*{f_out} = {row.macs:,}",
        ]


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


def explain(source: "CheckReport | Model | str | Path", layer: int | str | None = None, classes: int | None = 10) -> str:
    """The explanation as text. `layer`: a source line number (every layer written on that line,
    or a block call's whole body), or a module name / dotted path like `conv2` or `basic1.res1`."""
    report = checked(source, classes)
    explainer = _Explainer(report)
    entries = explainer.seq(report.model.body, "")
    header = [f"{report.path}: {fmt_shape(report.input_shape)} -> {fmt_shape(report.output_shape)}, "
              f"{report.params:,} params",
              f"Sizes follow PyTorch: {FORMULA}", ""]
    if layer is not None:
        entries = _select(entries, layer, report)
        if not entries:
            raise UsageError(f"no layer {'on line ' if isinstance(layer, int) else 'named '}{layer} in {report.path}",
                             _layer_help(report))
    out: list[str] = []
    _render(entries, 0, out)
    return "\n".join(header + out).rstrip("\n") + "\n"


def explain_failure(report: CheckReport) -> tuple[str, list[Diagnostic]]:
    """For a report with errors: every layer explained up to and including the first that fails
    (with the arithmetic that fails), and the errors to show after it (all of them when no layer
    carries one, e.g. a syntax error)."""
    explainer = _Explainer(report)
    entries = explainer.seq(report.model.body, "")
    failed = explainer.failed or report.errors
    where = f" at line {failed[0].span.line}" if failed and failed[0].span else ""
    header = [f"{report.path}: {fmt_shape(report.input_shape)} -> stops with an error{where}",
              f"Sizes follow PyTorch: {FORMULA}", ""]
    out: list[str] = []
    _render(entries, 0, out)
    return "\n".join(header + out).rstrip("\n") + "\n", failed


def _known(shape: Shape | None) -> bool:
    return shape is not None and None not in shape


def _layer_help(report: CheckReport) -> str:
    lines = sorted({r.layer.span.line for r in report.rows if r.layer.span and r.layer.span.path == report.path})
    names = [r.path for r in report.rows[:6]]
    return (f"give a line number that has a layer ({', '.join(map(str, lines[:12]))}{', ...' if len(lines) > 12 else ''}) "
            f"or a module name like {', '.join(names)}")


def parse_layer(text: str) -> int | str:
    """`--layer` value: digits are a line number, anything else a module name or dotted path."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    if not text:
        raise UsageError("--layer needs a line number or a module name", "e.g. --layer 3 or --layer conv2")
    return text
