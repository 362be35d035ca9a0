"""The shape checker: walks the spec tree once and returns the checked tree with every diagnostic.

It never imports torch. It keeps going after an error with best-effort shapes (unknown
dimensions become None), so one run reports every mistake in a file. It is the single source
of truth: the compiler, codegen, summary, graph, explain, the runner and the editor read the
checked tree it returns (`CheckReport.body`). `pipeline.checked()` is the front door for any input
(it calls `check`, then budgets and `# noqa`), and `CheckReport.raise_for_errors()` the one rule for
"does not check".
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Iterator

from archspec.language import codes
from archspec.language.diagnostics import Diagnostic, Span, render_html
from archspec.language.errors import ArchError
from archspec.language.expand import dedupe, parse
from archspec.language.gcpause import without_gc_pauses
from archspec.language.lost_size import name_where_size_was_lost
from archspec.language.measure import set_receptive_fields
from archspec.language.named import KeepTensor, ReadTensor
from archspec.language.nodes import BlockCall, Deferred, Invalid, Model, Node, Seq
from archspec.language.nodes import Join as JoinSpec
from archspec.language.ops import Input, LayerSpec, RFStep, Shape, fmt_shape
from archspec.language.sizemap import Constraints, Features
from archspec.language.tree import (Branch, Call, CheckedNode, Join, Layer, TensorRead, json_shape, layers, seq_output, stride_of,
                                    walk)


_HTML_ROWS = 300  # a notebook shows this many layers, then a count


@dataclass(repr=False)
class CheckReport:
    """What the checker returns: the checked tree (`body`), every diagnostic, and the totals."""

    model: Model
    classes: int | None
    body: list[CheckedNode] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    output_shape: Shape | None = None
    # `input 3xHxW`: what every size gives (symbolic.Derivation); the rest of the report is at one accepted size.
    symbolic: Any = None
    # What `# noqa` and --select/--ignore took out of `diagnostics` (pipeline.checked); kept so that
    # a silenced shape error still stops a build, whose layers it would break.
    silenced: list[Diagnostic] = field(default_factory=list)

    @property
    def path(self) -> str:
        return self.model.path

    @property
    def sources(self) -> dict[str, str]:
        return self.model.sources

    @property
    def ok(self) -> bool:
        return not any(d.severity == "error" for d in self.diagnostics)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def silenced_errors(self) -> list[Diagnostic]:
        """Shape errors that `# noqa` or --ignore silenced: the report is ok, but the layers they
        broke cannot be built (a silenced budget, a choice about totals, is not one of them)."""
        return [d for d in self.silenced if d.severity == "error" and not codes.is_budget(d.code)]

    @property
    def buildable(self) -> bool:
        """No error, silenced or not, stands in the way of building the network."""
        return self.ok and not self.silenced_errors

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]

    @property
    def input_shape(self) -> Shape | None:
        inp = self.model.input
        return inp.dims if inp else None

    @cached_property
    def rows(self) -> list[Layer]:
        """Every layer in execution order (one row of `archspec check` each)."""
        return layers(self.body)

    @property
    def params(self) -> int:
        return sum(r.params for r in self.rows)

    @property
    def macs(self) -> int:
        return sum(r.macs for r in self.rows)

    def nodes(self) -> Iterator[CheckedNode]:
        """Every node of the checked tree, parents first, in execution order."""
        return walk(self.body)

    def raise_for_errors(self, symbolic: bool = False) -> "CheckReport":
        """The one rule for "does not check": any error (warnings never count). Returns self.

        `input 3xHxW` needs numbers too, unless the caller reads H and W (`symbolic=True`: summary)."""
        if not self.ok:
            raise ArchError(self.diagnostics, self.path, self.sources)
        if self.silenced_errors:
            raise ArchError(self.silenced_errors, self.path, self.sources)
        if self.symbolic is not None and not symbolic:
            from archspec.language.errors import ArchspecError

            dims = "x".join(map(str, self.symbolic.dims))
            at = "x".join(map(str, (self.symbolic.channels, *(self.symbolic.at or (32, 32)))))
            raise ArchspecError(f"{self.path}: `input {dims}` has a symbolic size; this needs numbers "
                                "(building, compiling, training, graph and diff: only `check`, `sizes`, `summary` and `explain` read H and W)",
                                f"write the numbers, e.g. `input {at}`, or check several sizes with "
                                f"`archspec check --input-sizes {at}`")
        return self

    def __repr__(self) -> str:
        verdict = "ok" if self.ok else f"{len(self.errors)} error(s)"
        totals = f", {fmt_shape(self.input_shape)} -> {fmt_shape(self.output_shape)}, {self.params:,} params" if self.ok else ""
        return f"<CheckReport {self.path}: {verdict}, {len(self.warnings)} warning(s){totals}>"  # a broken network's totals would be partial

    def _repr_html_(self) -> str:
        """A notebook's view: the verdict, the layers (when it checks) and the diagnostics with their carets."""
        from html import escape

        head = f"<b>{escape(self.path)}</b>: "
        if self.ok:  # a network that does not check has no totals: what an error leaves unknown is not counted
            head += f"{escape(fmt_shape(self.input_shape))} &rarr; {escape(fmt_shape(self.output_shape))}, {self.params:,} params, "
        head += "checks" if self.ok else f"<b>{len(self.errors)} error(s)</b>"
        head += f", {len(self.warnings)} warning(s)" if self.warnings else ""
        rows = "".join(
            f"<tr><td>{r.line or ''}</td><td style='text-align:left'>{'&nbsp;' * 2 * r.depth}{escape(r.path)}</td>"
            f"<td style='text-align:left'>{escape(r.op)} {escape(r.layer.describe() if r.valid else '')}</td>"  # type: ignore[union-attr]
            f"<td style='text-align:left'>{escape(fmt_shape(r.out_shape))}</td><td>{f'{r.params:,}' if r.params else '--'}</td></tr>"
            for r in self.rows[:_HTML_ROWS])
        more = f"<p>... {len(self.rows) - _HTML_ROWS:,} more layers</p>" if len(self.rows) > _HTML_ROWS else ""
        table = ("<table><tr><th>line</th><th style='text-align:left'>module</th><th style='text-align:left'>layer</th>"
                 "<th style='text-align:left'>output shape</th><th>params</th></tr>"
                 f"{rows}</table>{more}") if self.ok else ""
        return f"<div><p>{head}</p>{table}{render_html(self.diagnostics, self.sources)}</div>"

    def to_dict(self) -> dict[str, Any]:
        out = {
            "path": self.path,
            "ok": self.ok,
            "input_shape": json_shape(self.input_shape),
            "output_shape": json_shape(self.output_shape),
            "params": self.params,
            "layers": [r.to_dict() for r in self.rows],
            "diagnostics": [d.to_dict() for d in self.diagnostics],
        }
        if self.symbolic is not None:  # `input 3xHxW`: the rest is at `symbolic.at`
            out["symbolic"] = self.symbolic.to_dict() | {"at": list(self.symbolic.at) if self.symbolic.at else None}
        return out


class _Emit:
    """The `emit` every shape rule gets: reports at one node, and hands down the symbolic size conditions."""

    __slots__ = ("node", "report", "sizes")

    def __init__(self, report: CheckReport, node: Any, sizes: Constraints | None) -> None:
        self.report, self.node, self.sizes = report, node, sizes

    def __call__(self, code: str, message: str, notes: list[str] | None = None, help: str | None = None,
                 span: Span | None = None) -> None:
        self.report.diagnostics.append(
            Diagnostic(code, message, span or self.node.span, help=help, notes=list(notes or []), trace=self.node.trace))


class _Checker:
    """Walks the spec tree once, building the checked tree and reporting every diagnostic.

    With `sizes` (a symbolic input, `input 3xHxW`) H and W are expressions: the rules record the
    conditions on them there, and the totals (params, MACs, receptive fields) are left for a check at numbers."""

    def __init__(self, report: CheckReport, sizes: Constraints | None = None) -> None:
        self.report = report
        self.sizes = sizes
        self.layers_seen = 0  # `input` must come before every other layer, valid or not
        self.kept: dict[int, Layer] = {}  # each `as NAME` checked so far, by its number (`ref`)

    def emitter(self, node: Any) -> _Emit:
        return _Emit(self.report, node, self.sizes)

    def seq(self, seq: "Seq | list[Node]", x: Shape | None, prefix: str, depth: int) -> list[CheckedNode]:
        out: list[CheckedNode] = []
        previous: Node | None = None
        for node in seq.items if isinstance(seq, Seq) else seq:
            if isinstance(node, LayerSpec) and node.is_activation and isinstance(previous, LayerSpec) and previous.is_activation:
                self.emitter(node)(
                    codes.CONSECUTIVE_ACTIVATIONS,
                    f"`{node.op_name}` right after `{previous.op_name}`: two activations in a row",
                    help="remove one of them",
                )
            checked = self.node(node, x, prefix, depth)
            out.append(checked)
            x = checked.out_shape
            previous = node
        return out

    def node(self, node: Node, x: Shape | None, prefix: str, depth: int) -> CheckedNode:
        path = prefix + node.name
        where = dict(name=node.name, path=path, depth=depth, span=node.span, trace=node.trace, in_shape=x)
        if isinstance(node, Invalid):
            self.layers_seen += 1
            # An error at every size: on a symbolic input the sizes go on unchanged, so the conditions of the
            # layers after it still count (`archspec sizes` on a broken file), the channels unknown.
            kept = (None, *x[1:]) if self.sizes is not None and x is not None and len(x) == 3 else None
            return Layer(**where, out_shape=kept, layer=node)
        if isinstance(node, Deferred):
            return self.node(self.resolve(node, x), x, prefix, depth)
        if isinstance(node, (KeepTensor, ReadTensor)):
            return self.named_tensor(node, x, where, prefix)
        if isinstance(node, LayerSpec):
            if isinstance(node, Input) and self.layers_seen:
                self.emitter(node)(codes.INPUT_LAYER, "`input` must be the first layer, and only one", help="remove this line, or move it to the top of the file")
            self.layers_seen += 1
            if self.sizes is not None:  # the step where it does not depend on the size (a residual's projection reads its stride)
                return Layer(**where, out_shape=node.infer(self.features(node, x), self.emitter(node)), layer=node,
                             rf_step=node.rf(None))
            y = node.infer(x, self.emitter(node))
            return Layer(**where, out_shape=y, layer=node, own_params=node.params(x), own_macs=node.macs(x, y),
                         rf_step=node.rf(x))
        if isinstance(node, BlockCall):
            body = self.seq(node.body, x, path + ".", depth + 1)
            return Call(**where, out_shape=seq_output(body, x), block=node.block, args=dict(node.args),
                        def_span=node.def_span, body=body)
        if isinstance(node, JoinSpec):
            return node.kind.check(self, node, x, where)  # the join's shape rule (archspec/language/joins/)
        raise AssertionError(type(node))  # pragma: no cover - Node is closed

    def features(self, spec: LayerSpec, x: Shape | None) -> Shape | None:
        """What an op that checks the features count (groupnorm) reads after flattening a symbolic image:
        the number when it is one; otherwise a condition on C*h*w, both axes at once, which no per-axis rule covers."""
        if not spec.checks_features or x is None or len(x) != 1 or not isinstance(x[0], Features):
            return x
        if x[0].constant:
            return (x[0].at(0, 0),)
        self.sizes.inexact(f"`{spec.op_name}` after `flatten` needs a condition on C*H'*W', both axes at once")  # type: ignore[union-attr]
        return (None,)

    def named_tensor(self, node: "KeepTensor | ReadTensor", x: Shape | None, where: dict[str, Any], prefix: str) -> Layer:
        """`as NAME` keeps x (its key: the body's module path and the name, unique in the network); `from NAME`
        gives the shape kept there (expansion has matched each `from` with its `as`)."""
        self.layers_seen += 1
        if isinstance(node, KeepTensor):
            kept = Layer(**where, out_shape=x, layer=node.model_copy(update={"key": prefix + node.tensor}), rf_step=node.rf(x))
            self.kept[node.ref] = kept
            return kept
        source = self.kept.get(node.ref)
        key = source.layer.key if source is not None else node.tensor  # type: ignore[union-attr]
        return TensorRead(**where, out_shape=source.out_shape if source is not None else None,
                          layer=node.model_copy(update={"key": key}), source=source)

    def joined(self, spec: JoinSpec, x: Shape | None, where: dict[str, Any], y: Shape | None, operands: list[Shape | None],
               **fields: Any) -> Branch:
        """The checked node of a join (its rule gives the shape and the bodies), ending in its `Join` node."""
        join = Join(name=where["name"], path=where["path"], depth=where["depth"], span=spec.span, trace=spec.trace,
                    in_shape=x, out_shape=y, mode=spec.kind.operator or spec.kind.word, operands=operands)
        return Branch(**where, out_shape=y, rule=spec.kind, option=spec.option, join=join, **fields)

    def stride_of(self, nodes: list[CheckedNode]) -> RFStep | None:
        return stride_of(nodes)

    def layers(self, nodes: list[CheckedNode]) -> list[Layer]:
        return layers(nodes)

    def resolve(self, node: Deferred, x: Shape | None) -> Node:
        """Bind a layer that reads the incoming shape, now that it is known (E112/E113 when it is not usable)."""
        invalid = Invalid(node.op, node.span, node.trace, node.name)
        if x is None:
            name, where = next(iter(node.reads.items()))
            self.emitter(node)(codes.INPUT_SHAPE_UNKNOWN, f"`{name}` reads the incoming shape, which is unknown here",
                               help="fix the error before this layer (or write the number)", span=where)
            return invalid
        sizes = dict(zip(("in.c", "in.h", "in.w"), x)) if len(x) == 3 else {"in.f": x[0]} if len(x) == 1 else {}
        wrong = [(n, s) for n, s in node.reads.items() if n not in sizes]
        for n, s in wrong:
            kind = "an image [B, C, H, W]" if len(x) == 3 else "features [B, F]" if len(x) == 1 else fmt_shape(x)
            self.emitter(node)(codes.INPUT_SHAPE_KIND, f"`{n}` does not exist here: the incoming shape {fmt_shape(x)} is {kind}",
                               help=f"read {', '.join(f'`{k}`' for k in sizes) or 'no size'} here", span=s)
        if wrong:
            return invalid
        unknown = [(n, s) for n, s in node.reads.items() if sizes[n] is None]
        for n, s in unknown:  # e.g. H and W after a window that does not fit (its error is reported)
            self.emitter(node)(codes.INPUT_SHAPE_UNKNOWN, f"`{n}` reads the incoming shape {fmt_shape(x)}, where it is unknown",
                               help="fix the error before this layer (or write the number)", span=s)
        if unknown:
            return invalid
        bound, diagnostics = node.resolve(sizes)
        self.report.diagnostics.extend(diagnostics)
        return bound

    def finish(self, classes: int | None) -> None:
        rows = self.report.rows
        conv_rows = [i for i, r in enumerate(rows) if r.op in ("conv", "stdconv")]
        # A 1x1 inside a join whose output is not 1x1 (a `mul` gate, broadcast back) collapses nothing; nor is it
        # known to inside a join that does not join (its error says why).
        joins = [n for n in self.report.nodes() if isinstance(n, Branch)]
        wide = [n.path + "." for n in joins if n.out_shape is None or (len(n.out_shape) == 3 and n.out_shape[1:] != (1, 1))]
        for n in joins:
            n.rule.finish(n, self.report.output_shape, self.emitter(n))  # e.g. an auxiliary head's shape
        if conv_rows:
            last_conv = conv_rows[-1]
            for r in rows[:last_conv]:
                if any(r.path.startswith(p) for p in wide):
                    continue
                if r.out_shape is not None and len(r.out_shape) == 3 and r.out_shape[1:] == (1, 1) and r.op != "input":
                    later = rows[last_conv].layer.span
                    self.emitter(r.layer)(
                        codes.SPATIAL_COLLAPSED,
                        f"spatial size is 1x1 after `{r.op}`, but a conv comes later (line {later.line if later else '?'})",
                        notes=[f"output is {fmt_shape(r.out_shape)}"],
                        help="downsample less before the last conv; a conv on 1x1 only mixes channels",
                    )
                    break
        y = self.report.output_shape
        last = rows[-1] if rows else None
        if last is not None and last.op == "softmax":
            self.emitter(last.layer)(
                codes.SOFTMAX_BEFORE_LOSS,
                "the network ends with `softmax`, but cross-entropy applies log-softmax itself",
                notes=["softmax before the loss squashes the scores twice: gradients vanish and training stays near chance"],
                help="remove it: train on the raw scores (logits) and apply softmax at inference",
            )
        if classes is None or last is None or y is None or not self.report.ok:
            return
        if len(y) == 1 and y[0] is not None and y[0] != classes:
            self.emitter(last.layer)(
                codes.CLASSES_MISMATCH,
                f"the network ends with {y[0]} features but there are {classes} classes",
                help=f"make the last layer `linear {classes}` (or pass `--classes {y[0]}`)",
            )
        elif len(y) == 3 and self._dense(y):
            if y[0] != classes:  # per-pixel scores (segmentation): the channels are the classes
                self.emitter(last.layer)(
                    codes.CLASSES_MISMATCH,
                    f"the network ends with per-pixel scores for {y[0]} classes {fmt_shape(y)}, but there are {classes} classes",
                    help=f"make the last layer `conv {classes} k1` (or pass `--classes {y[0]}`)",
                )
        elif len(y) == 3:
            self.emitter(last.layer)(
                codes.CLASSES_MISMATCH,
                f"the network ends with a 4-D tensor {fmt_shape(y)}, not {classes} class scores",
                help=f"end with `gap | flatten | linear {classes}` (or `flatten | linear {classes}`)",
            )

    def _dense(self, y: Shape) -> bool:
        """The output is a map at the input's height and width: a score per pixel (segmentation), not per image."""
        x = self.report.input_shape
        return x is not None and len(x) == 3 and tuple(y[1:]) == tuple(x[1:])


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
        if d.code in (codes.KERNEL_TOO_LARGE, codes.OUTPUT_TOO_SMALL):
            d.notes.append(f"`input {c}x{h}x{w}` means {c} channels of {h}x{w} pixels: inputs are C x H x W")
            d.help = f"write the channels first: `input {w}x{c}x{h}`"


def _first_content(model: Model) -> Span:
    """Where E006 goes in a file without statements: its first line with more than `|` and blanks (a
    comment), which `fmt` makes line 1, so that a `# noqa` there means the same before and after fmt."""
    text, offset = model.sources.get(model.path, ""), 0
    for number, line in enumerate(text.split("\n"), 1):
        if line.replace("|", "").replace("\\", "").strip():  # `\\`-newlines are blanks to the grammar
            column = len(line) - len(line.lstrip()) + 1
            return Span(model.path, offset + column - 1, offset + column - 1, number, column, number, column)
        offset += len(line) + 1
    return Span(model.path, 0, 0, 1, 1, 1, 1)


@without_gc_pauses
def check(source: "Model | str", classes: int | None = 10, sizes: Constraints | None = None) -> CheckReport:
    """Check a parsed model (or .arch text): every diagnostic, and each layer's shapes and params.

    `input 3xHxW` is checked with `sizes`, which collects the conditions on H and W (symbolic.py solves
    them); the report's shapes are then expressions, and its totals and whole-network checks are left out."""
    model = parse(source) if isinstance(source, str) else source
    if model.input is not None and model.input.symbols and sizes is None:
        raise ValueError("check() takes an input in numbers; pipeline.checked() derives `input 3xHxW`")
    report = CheckReport(model=model, classes=classes)
    report.diagnostics.extend(model.diagnostics)
    checker = _Checker(report, sizes)
    # After syntax errors the statements that parse are still checked (the broken ones are left
    # out), without the whole-network checks that the missing statements would upset.
    syntax_errors = any(d.code == codes.SYNTAX_ERROR for d in model.diagnostics)
    if (model.sources.get(model.path) is not None and not any(d.code == codes.TOO_LARGE for d in model.diagnostics)
            and (model.body.items or not syntax_errors)):
        if model.input is None and (model.body.items or not model.blocks) and not _invalid_input(model) and not syntax_errors:
            # (a file of blocks only is a library; an `input` line that does not bind has its own E004)
            first = model.body.items[0] if model.body.items else None
            span = getattr(first, "span", None) or _first_content(model)
            report.diagnostics.append(
                Diagnostic(codes.INPUT_LAYER, "the network has no `input` layer first", span,
                           help="start the file with the input shape, e.g. `input 3x32x32` (channels x height x width)")
            )
        report.body = checker.seq(model.body, None, "", 0)
        report.output_shape = seq_output(report.body, None)
        if sizes is not None:  # the conditions on H and W are all it is for
            return report
        set_receptive_fields(report.body, report.input_shape)
        if not syntax_errors:
            checker.finish(classes)
            name_where_size_was_lost(report.rows, report.diagnostics, report.sources, report.path)
            _hint_channels_first(report)
    report.diagnostics = dedupe(report.diagnostics)
    report.diagnostics.sort(key=lambda d: (d.span.path != model.path, d.span.path, d.span.start) if d.span else (True, "", 0))
    return report
