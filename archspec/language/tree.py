"""The checked tree: what the checker returns, and what every consumer reads.

Each node carries where it sits (module name, dotted path, depth), where it was written (span,
block-call trace), what came in and out (shapes), and its cost (params, MACs). Layers also carry
their receptive-field step. Structures hold their children as real nodes: a block call its body,
a join (`Branch`: residual, concat, add, ...) its bodies (a residual's shortcut includes the
projection `residual project` sizes), ending in a `Join` node (the add or concat).

Consumers subclass `Visitor` (jinja2's NodeVisitor): `visit_layer`, `visit_call`,
`visit_branch`, `visit_join`, and one generic walk for the rest; what differs between joins
they ask the node's `rule`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Iterator, TypeVar

from archspec.language.diagnostics import Span
from archspec.language.ops.base import LayerSpec

if TYPE_CHECKING:
    from archspec.language.joins import JoinKind
    from archspec.language.nodes import Invalid, Value
    from archspec.language.ops.base import RF, RFStep, Shape

Trace = tuple[tuple[str, Span], ...]
T = TypeVar("T")


@dataclass(eq=False)
class CheckedNode:
    """Common to every node of the checked tree."""

    kind: ClassVar[str] = ""
    name: str  # module name in its container (conv1, res2, branch1's layers, ...)
    path: str  # dotted module path from the root, e.g. "basic1.res1.body.conv1"
    depth: int
    span: Span | None
    trace: Trace
    in_shape: "Shape | None"
    out_shape: "Shape | None"
    # (receptive field, jump) per axis after this node (a residual or branch: after its join), set
    # by the checker through language/measure.py; None where unknown or on feature vectors.
    rf: "RF | None" = field(default=None, kw_only=True)
    # `input 3xHxW`: the output shape in H and W where the checker derived it ("16", "floor(H/4) - 3", ...),
    # set by the symbolic derivation; None otherwise.
    symbolic_shape: tuple[str, ...] | None = field(default=None, kw_only=True)

    def children(self) -> list["CheckedNode"]:
        return []

    @property
    def params(self) -> int:
        return sum(c.params for c in self.children())

    @property
    def macs(self) -> int:
        return sum(c.macs for c in self.children())

    @property
    def line(self) -> int | None:
        return self.span.line if self.span else None


@dataclass(eq=False)
class Layer(CheckedNode):
    """One op, or an `Invalid` placeholder for a layer that could not be bound."""

    kind: ClassVar[str] = "layer"
    layer: "LayerSpec | Invalid" = None  # type: ignore[assignment]
    own_params: int = 0
    own_macs: int = 0
    rf_step: "RFStep | None" = None  # (effective kernel, stride) per axis; None when unknown

    @property
    def params(self) -> int:
        return self.own_params

    @property
    def macs(self) -> int:
        return self.own_macs

    @property
    def op(self) -> str:
        return self.layer.op if hasattr(self.layer, "op") else ""

    @property
    def valid(self) -> bool:
        """False for a layer that could not be bound (its diagnostic is already reported)."""
        return isinstance(self.layer, LayerSpec)

    def to_dict(self) -> dict[str, Any]:
        span = self.span
        return {
            "name": self.path,
            "op": self.op,
            "line": span.line if span else None,
            "column": span.column if span else None,
            "output_shape": json_shape(self.out_shape),
            "params": self.params,
        }


@dataclass(eq=False)
class TensorRead(Layer):
    """`from NAME`: a layer whose output is the tensor kept at `source` (its `as NAME`), not a function of its input."""

    source: "Layer | None" = None


@dataclass(eq=False)
class Join(CheckedNode):
    """The end of a join (a residual's add, a concat): several inputs, one output."""

    kind: ClassVar[str] = "join"
    mode: str = "add"  # what it does: the join's word (`add` for a residual)
    operands: list["Shape | None"] = field(default_factory=list)


@dataclass(eq=False)
class Call(CheckedNode):
    """One instantiation of a named block."""

    kind: ClassVar[str] = "call"
    block: str = ""
    args: dict[str, "Value"] = field(default_factory=dict)
    def_span: Span | None = None
    body: list[CheckedNode] = field(default_factory=list)

    def children(self) -> list[CheckedNode]:
        return self.body


@dataclass(eq=False)
class Branch(CheckedNode):
    """A join and its bodies (`residual`, `concat`, `add`, ...): each body runs on the node's input and
    `rule` (the registered join, archspec/language/joins/) combines their outputs in `join`.

    `identity`: the input itself is one more operand (a residual with no written or sized shortcut);
    `projected`: the last body is the 1x1 conv + bn that `residual project` sized."""

    kind: ClassVar[str] = "branch"
    rule: "JoinKind" = None  # type: ignore[assignment]
    option: str | None = None
    branches: list[list[CheckedNode]] = field(default_factory=list)
    identity: bool = False
    projected: bool = False
    join: Join | None = None

    @property
    def mode(self) -> str:
        return self.rule.word

    def children(self) -> list[CheckedNode]:
        return [n for b in self.branches for n in b] + ([self.join] if self.join else [])


def json_shape(shape: "Shape | None") -> list[int] | None:
    return None if shape is None or None in shape else list(shape)  # type: ignore[arg-type]


def walk(nodes: list[CheckedNode], children_first: bool = False) -> Iterator[CheckedNode]:
    """Every node in execution order, parents before their children, or after them with `children_first`
    (the last node of a line is then the one whose output leaves it). Iterative: no depth limit."""
    stack: list[tuple[CheckedNode | None, Iterator[CheckedNode]]] = [(None, iter(nodes))]
    while stack:
        parent, kids = stack[-1]
        node = next(kids, None)
        if node is None:
            stack.pop()
            if children_first and parent is not None:
                yield parent
            continue
        if not children_first:
            yield node
        kids = node.children()
        if kids:
            stack.append((node, iter(kids)))
        elif children_first:  # a leaf (most nodes): nothing to wait for
            yield node


def layers(nodes: list[CheckedNode]) -> list[Layer]:
    """The layers in execution order: one per row of `archspec check`."""
    return [n for n in walk(nodes) if isinstance(n, Layer)]


def seq_output(nodes: list[CheckedNode], x: "Shape | None") -> "Shape | None":
    """What a sequence gives: its last node's output, or its input when it is empty (the identity)."""
    return nodes[-1].out_shape if nodes else x


class Visitor(Generic[T]):
    """Dispatch on a node's kind to `visit_<kind>`; `generic_visit` visits the children."""

    def visit(self, node: CheckedNode, *args: Any, **kwargs: Any) -> T:
        method = getattr(self, f"visit_{node.kind}", self.generic_visit)
        return method(node, *args, **kwargs)

    def visit_seq(self, nodes: list[CheckedNode], *args: Any, **kwargs: Any) -> list[T]:
        return [self.visit(n, *args, **kwargs) for n in nodes]

    def generic_visit(self, node: CheckedNode, *args: Any, **kwargs: Any) -> T:
        for child in node.children():
            self.visit(child, *args, **kwargs)
        return None  # type: ignore[return-value]


def stride_of(nodes: list[CheckedNode]) -> "RFStep | None":
    """Product of the strides along a checked sequence (a join counts its first body); None if unknown."""
    return _STRIDES.seq(nodes)


class _Strides(Visitor["RFStep | None"]):
    """The stride each node applies: a layer's own, a join's first body's, a block call's body's."""

    def seq(self, nodes: list[CheckedNode]) -> "RFStep | None":
        sh: Any = 1
        sw: Any = 1
        for node in nodes:
            step = self.visit(node)
            if step is None:
                return None
            sh, sw = sh * step[0], sw * step[1]
        # An upsampling's 1/F times a later stride F is a whole stride again: a plain int for the projection.
        return tuple(int(v) if v == int(v) else v for v in (sh, sw))  # type: ignore[return-value]

    def visit_layer(self, node: Layer) -> "RFStep | None":
        return node.rf_step[1] if node.rf_step is not None else None  # type: ignore[return-value]

    def visit_branch(self, node: Branch) -> "RFStep | None":
        return self.seq(node.branches[0])

    def generic_visit(self, node: CheckedNode) -> "RFStep | None":
        return self.seq(node.children())


_STRIDES = _Strides()
