"""`archspec graph`: a graphviz diagram of a checked model, without torch.

The python `graphviz` package builds the DOT text (no binary needed); only rendering to SVG,
PNG or PDF runs graphviz's `dot`. One node per layer (name, op and key arguments, output
shape, params); block calls, residuals and branches are clusters; a residual draws its skip
path (dashed) into an `add` node, a branch fans out from its input into a `concat` / `add` node.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from archspec.language.check import CheckReport
from archspec.language.pipeline import CheckOptions, checked
from archspec.language.errors import ArchspecError, UsageError
from archspec.language.named import KeepTensor
from archspec.language.nodes import Model
from archspec.language.ops import Input, fmt_shape, value_text
from archspec.language.tree import Branch, Call, CheckedNode, Layer, TensorRead, Visitor
from archspec.views.display import DotGraph, RenderedGraph

if TYPE_CHECKING:
    import graphviz

# Output formats by file extension: DOT text needs no binary, the others run `dot`.
TEXT_FORMATS = {".dot": "dot", ".gv": "dot"}
RENDER_FORMATS = {".svg": "svg", ".png": "png", ".pdf": "pdf"}
INSTALL_HELP = ("install graphviz's `dot`: `apt-get install graphviz` (Debian/Ubuntu), `brew install graphviz` (macOS), "
                "`conda install graphviz`; or write DOT text with `-o model.dot` and render it elsewhere")

_READ = "|from|"  # in a tail: the named point's node id, then the name (`from NAME` draws no box of its own)
_FILL = {"input": "#e2f0d9", "learnable": "#dbe9f6", "activation": "#fdeada", "other": "#f2f2f2"}


def escape(text: str) -> str:
    """Text safe inside a quoted DOT string: backslashes doubled, so `\\l`, `\\N`, `\\"` stay literal.

    The graphviz package then escapes the double quotes, and the label is marked as not HTML
    (see `_label`), so `<...>`, braces and quotes in a path or name cannot break the DOT.
    """
    return text.replace("\\", "\\\\").replace("\r", " ").replace("\n", " ")


def _label(*lines: str) -> str:
    import graphviz

    # `\n` between lines is DOT's line break; inside each line every backslash is literal.
    return graphviz.nohtml("\\n".join(escape(line) for line in lines if line))


class _Builder(Visitor["str | None"]):
    """Adds nodes into nested clusters and collects edges, which go at the top level at the end.

    Edges wait because the graphviz package writes a cluster into its parent only when the
    cluster is closed: an edge written earlier would declare its nodes outside the cluster.
    """

    def __init__(self, report: CheckReport) -> None:
        import graphviz

        self.report = report
        self.next_id = 0
        self.edges: list[tuple[str, str, dict[str, str]]] = []
        self.named: dict[str, str | None] = {}  # each `as NAME` (by its key): the graph node that gives its tensor
        title = f"{report.path}: {fmt_shape(report.input_shape)} -> {fmt_shape(report.output_shape)}, {report.params:,} params"
        self.dot = graphviz.Digraph(
            "archspec",
            # ordering=out: a node's out-edges stay in the order written, so branches are drawn in source order
            graph_attr={"rankdir": "TB", "label": _label(title), "labelloc": "t", "fontname": "Helvetica",
                        "fontsize": "12", "nodesep": "0.3", "ranksep": "0.3", "ordering": "out"},
            node_attr={"shape": "box", "style": "rounded,filled", "fontname": "Helvetica", "fontsize": "10"},
            edge_attr={"arrowsize": "0.6", "fontname": "Helvetica", "fontsize": "9"},
        )

    def new_id(self) -> str:
        self.next_id += 1
        return f"n{self.next_id - 1}"

    def edge(self, tail: str | None, head: str, **attrs: str) -> None:
        if tail is not None and _READ in tail:  # the first edge after `from NAME`: from the named point, labelled
            tail, name = tail.split(_READ)
            attrs = {**attrs, "label": f"from {name}", "color": "#3465a4", "fontcolor": "#3465a4"}
        if tail is not None:
            self.edges.append((tail, head, attrs))

    def seq(self, g: "graphviz.Digraph", nodes: list[CheckedNode], tail: str | None, dashed: bool = False,
            owner: str = "") -> str | None:
        """Draw the nodes one after another; `owner`: the prefix of the names of the layers written right here."""
        for node in nodes:
            tail = self.visit(node, g, tail, dashed, owner)
        return tail

    def visit_call(self, node: Call, g: "graphviz.Digraph", tail: str | None, dashed: bool, owner: str) -> str | None:
        args = ", ".join(f"{k}={value_text(v)}" for k, v in node.args.items())
        with g.subgraph(name=f"cluster_{self.new_id()}") as c:
            c.attr(label=_label(f"{node.path}: {node.block}({args})"), style="rounded,filled", fillcolor="#fafafa",
                   color="#999999", fontname="Helvetica", fontsize="10")
            return self.seq(c, node.body, tail, dashed)

    def visit_layer(self, node: Layer, g: "graphviz.Digraph", tail: str | None, dashed: bool, owner: str) -> str | None:
        layer = node.layer
        if isinstance(layer, KeepTensor):  # no box: the name goes on the edges of the `from`s that read it
            self.named[layer.key] = tail.split(_READ)[0] if tail is not None else None
            return tail
        if isinstance(node, TensorRead):  # the sequence goes on from the named point
            source = self.named.get(node.source.layer.key) if node.source is not None else None  # type: ignore[union-attr]
            return f"{source}{_READ}{layer.describe()}" if source is not None else None  # type: ignore[union-attr]
        kind = ("input" if isinstance(layer, Input) else "learnable" if node.params else
                "activation" if layer.is_activation else "other")  # type: ignore[union-attr]
        nid = self.new_id()
        g.node(nid, _label(f"{owner}{node.name}: {node.op} {layer.describe()}".rstrip(),  # type: ignore[union-attr]
                           fmt_shape(node.out_shape), f"{node.params:,} params" if node.params else ""),
               fillcolor=_FILL[kind], **({"style": "rounded,filled,dashed"} if dashed else {}))
        self.edge(tail, nid, **({"style": "dashed"} if dashed else {}))
        return nid

    def join_node(self, g: "graphviz.Digraph", node: CheckedNode, op: str) -> str:
        nid = self.new_id()
        g.node(nid, _label(op, fmt_shape(node.out_shape)), shape="ellipse", style="filled", fillcolor="#fff2cc", ordering="in")
        return nid

    def side_head(self, g: "graphviz.Digraph", node: Branch, tail: str | None) -> str | None:
        """`aux`: the head branches off, dashed, into an extra output node; the main path goes on from its input."""
        with g.subgraph(name=f"cluster_{self.new_id()}") as c:
            c.attr(label=_label(f"{node.path}: {node.rule.graph_title(node)}"), style="dashed", color="#666666", fontname="Helvetica", fontsize="10")
            end = self.seq(c, node.branches[0], tail, dashed=True)
            out = self.new_id()
            c.node(out, _label("training output", fmt_shape(node.join.operands[0])),  # type: ignore[union-attr]
                   shape="ellipse", style="filled", fillcolor="#fff2cc")
            self.edge(end, out, style="dashed")
        return tail

    def visit_branch(self, node: Branch, g: "graphviz.Digraph", tail: str | None, dashed: bool, owner: str) -> str:
        rule = node.rule
        if not rule.output_sees_bodies:
            return self.side_head(g, node, tail)
        with g.subgraph(name=f"cluster_{self.new_id()}") as c:
            c.attr(label=_label(f"{node.path}: {rule.graph_title(node)}"), style="dashed", color="#666666", fontname="Helvetica", fontsize="10")
            join = self.join_node(c, node, rule.operator or rule.word)
            firsts, ends = [], []
            for i, b in enumerate(node.branches):  # each branch's edge into the join right after it: an empty one keeps its place
                fed = rule.feeds(node, i)
                if fed is not None:  # `select`'s attention: on the sum of the branches, its weights into the join
                    total = self.join_node(c, node, "add")
                    for j in fed:
                        self.edge(ends[j], total)
                    self.edge(self.seq(c, b, total, dashed=True, owner="attention."), join, style="dashed")
                    continue
                if rule.dashed(node, i):  # a residual's shortcut: dashed, its projection named as the shortcut's
                    # (a projection's conv1/bn1 would read as the body's own)
                    self.edge(self.seq(c, b, tail, dashed=True, owner="shortcut."), join, style="dashed")
                    continue
                if b and isinstance(b[0], Layer) and not isinstance(b[0], TensorRead):
                    firsts.append(f"n{self.next_id}")
                ends.append(self.seq(c, b, tail))
                self.edge(ends[-1], join)
            if node.identity:  # the skip edge straight from the input
                self.edge(tail, join, style="dashed", label="identity")
            self.keep_order(c, firsts)
        return join

    def keep_order(self, g: "graphviz.Digraph", ids: list[str]) -> None:
        """Branches left to right in source order: their first layers on one rank, chained by invisible edges
        (dot's `ordering` alone is not kept inside clusters)."""
        if len(ids) < 2:
            return
        with g.subgraph() as same:
            same.attr(rank="same")
            for a, b in zip(ids, ids[1:]):
                same.edge(a, b, style="invis")

    def build(self) -> str:
        self.seq(self.dot, self.report.body, None)
        for tail, head, attrs in self.edges:
            self.dot.edge(tail, head, **attrs)
        return self.dot.source


def to_dot(source: "CheckReport | Model | str | Path", classes: int | None = 10) -> str:
    """DOT text for a model that checks (ArchError if it does not). Needs no graphviz binary."""
    return _Builder(checked(source, CheckOptions(classes=classes)).raise_for_errors()).build()


def output_format(path: str | Path) -> str:
    """`dot`, `svg`, `png` or `pdf` from a file name; UsageError for anything else."""
    suffix = Path(path).suffix.lower()
    fmt = TEXT_FORMATS.get(suffix) or RENDER_FORMATS.get(suffix)
    if fmt is None:
        known = ", ".join(sorted(TEXT_FORMATS) + sorted(RENDER_FORMATS))
        raise UsageError(f"cannot tell the graph format from `{path}`", f"end the output file name with one of: {known}")
    return fmt


def chosen_format(output: str | Path | None, format: str | None) -> str:
    """The format to write: `format` when given, else the one the output name implies, else DOT.

    A name that implies another format than `format` is refused: `-o out.png --format dot` wrote DOT
    text into a .png. A name without a known extension takes `format` as given."""
    if output is None or str(output) == "-":
        return format or "dot"
    if format is None:
        return output_format(output)
    suffix = Path(output).suffix.lower()
    implied = TEXT_FORMATS.get(suffix) or RENDER_FORMATS.get(suffix)
    if implied is not None and implied != format:
        raise UsageError(f"{output} is named as a {implied.upper()} file, but the format asked for is {format.upper()}",
                         f"leave the format out (it follows the file name), or name the file {Path(output).with_suffix('.' + format)}")
    return format


def render(dot: str, fmt: str) -> bytes:
    """Run graphviz's `dot` on DOT text; a clear ArchspecError when it is not installed."""
    import graphviz

    if fmt not in RENDER_FORMATS.values():
        raise UsageError(f"cannot render to `{fmt}`", f"use one of: {', '.join(RENDER_FORMATS.values())}")
    try:
        return graphviz.Source(dot).pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        raise ArchspecError(f"rendering {fmt.upper()} needs graphviz's `dot` program, which is not installed",
                            INSTALL_HELP) from None
    except graphviz.CalledProcessError as exc:
        err = (exc.stderr or b"").decode(errors="replace").strip().splitlines()
        raise ArchspecError(f"graphviz's `dot` failed: {err[-1] if err else exc}",
                            "write DOT text with `-o model.dot` to see what was sent") from None


def graph(source: "CheckReport | Model | str | Path", output: str | Path | None = None, format: str | None = None,
          classes: int | None = 10) -> str | bytes:
    """DOT text (format `dot`, the default) or rendered bytes (`svg`, `png`, `pdf`).

    With `output`, the format comes from its extension unless given, and the file is written.
    """
    fmt = chosen_format(output, format)
    report = checked(source, CheckOptions(classes=classes)).raise_for_errors()
    dot = to_dot(report)
    result: str | bytes = DotGraph(dot, report) if fmt == "dot" else RenderedGraph(render(dot, fmt), fmt)
    if output is not None:
        target = Path(output)
        try:
            if isinstance(result, str):
                target.write_text(result, encoding="utf-8")
            else:
                target.write_bytes(result)
        except OSError as exc:
            raise UsageError(f"{target}: cannot write ({exc.strerror})", "check that the folder exists and is writable") from None
    return result
