"""Named tensors: `as NAME` names the running tensor, `from NAME` reads it later, so a branch can start from an
earlier stage (DLA's and HRNet's aggregation, SelecSLS's skips) where joins alone only nest.

    conv 32 k3 p1 | bn | relu | as stem
    conv 64 k3 s2 p1 | bn | relu
    concat {} { from stem | maxpool 2 }

Names are lexical: one is seen from its `as` to the end of the body that holds it, and in the bodies inside
that one (a join's branches); a block sees only the names its own body gives. `Scopes` resolves them during
expansion (each `from` gets the number of its `as`); the checker gives `from` the shape kept at that `as`.
Neither is a registered op: they are words of the language, like `repeat`, written in layer position.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from lark import Token, Tree

from archspec.language.diagnostics import Span
from archspec.language.ops.base import LayerSpec, RFStep, Shape, TorchCall, fmt_shape

KEEP_WORD = "as"
READ_WORD = "from"
WORDS = (KEEP_WORD, READ_WORD)


class _NamedTensor(LayerSpec):
    """`as NAME` or `from NAME`: `ref` numbers the name in the network; `key` (set by the checker: the module path
    of the body that names it, and the name) tells the network's kept tensors apart at run time."""

    tensor: str
    ref: int
    key: str = ""
    runtime_class: ClassVar[str] = ""

    def torch_call(self, x: Shape | None) -> TorchCall:
        return TorchCall(cls=self.runtime_class, args=(self.key,), home="layers")

    def describe(self) -> str:
        return self.tensor


class KeepTensor(_NamedTensor):
    """`as NAME`: the identity, keeping the running tensor under NAME."""

    op: Literal["as"]
    summary: ClassVar = "Names the running tensor (the identity), so that a later `from NAME` can read it."
    usage: ClassVar = "as NAME"
    runtime_class: ClassVar = "Keep"

    def explain(self, x: Shape | None, y: Shape | None, params: int, macs: int) -> list[str]:
        return [f"{fmt_shape(x)} -> {fmt_shape(y)}: keeps this tensor as `{self.tensor}` for a later `from {self.tensor}`; "
                "the shape does not change"]


class ReadTensor(_NamedTensor):
    """`from NAME`: gives the tensor `as NAME` kept, in place of the running one."""

    op: Literal["from"]
    summary: ClassVar = "Reads the tensor named earlier with `as NAME`, in place of the running tensor."
    usage: ClassVar = "from NAME"
    runtime_class: ClassVar = "Read"

    def rf(self, x: Shape | None) -> RFStep | None:
        return None  # not a step from the running tensor: the checked tree takes the receptive field at the `as`

    def explain(self, x: Shape | None, y: Shape | None, params: int, macs: int) -> list[str]:
        return [f"{fmt_shape(x)} -> {fmt_shape(y)}: the tensor named `{self.tensor}`, in place of the running {fmt_shape(x)}"]


@dataclass
class Name:
    """One `as NAME`: its number in the network and where it is written."""

    ref: int
    span: Span


@dataclass
class _Frame:
    names: dict[str, Name] = field(default_factory=dict)
    barrier: Tree | None = None  # a block's body or the file: names from outside stop here; the tree it reads


@dataclass
class Problem:
    """Why a `from NAME` or an `as NAME` is wrong: code, message, notes, help."""

    code: str
    message: str
    notes: list[str]
    help: str


class Scopes:
    """The names seen at each point of the expansion: one frame per body open right now."""

    def __init__(self, top: Tree) -> None:
        self.frames: list[_Frame] = [_Frame(barrier=top)]
        self.count = 0

    def open(self, barrier: Tree | None = None) -> None:
        """A new body: a join's branch (sees the names around it), or a block's body (`barrier`: sees only its own)."""
        self.frames.append(_Frame(barrier=barrier))

    def close(self) -> None:
        self.frames.pop()

    def visible(self, through_barrier: bool = False) -> dict[str, Name]:
        seen: dict[str, Name] = {}
        for frame in reversed(self.frames):
            seen = {**frame.names, **seen}
            if frame.barrier is not None and not through_barrier:
                break
        return seen

    def define(self, name: str, span: Span) -> tuple[Name | None, Problem | None]:
        from archspec.language import codes

        first = self.visible().get(name)
        if first is not None:
            again = first.span == span
            where = f"{first.span.path}:{first.span.line}:{first.span.column}"
            return None, Problem(
                codes.TENSOR_NAMED_TWICE, f"`{name}` already names a tensor here",
                ["every copy of a `repeat` body names it again" if again else f"first named at {where}"],
                "name it outside the `repeat` (or in a block, whose names are its own)" if again
                else f"give this tensor another name, e.g. `as {name}2`")
        self.count += 1
        made = Name(self.count, span)
        self.frames[-1].names[name] = made
        return made, None

    def read(self, name: str, span: Span) -> tuple[Name | None, Problem | None]:
        found = self.visible().get(name)
        if found is not None:
            return found, None
        return None, self._unseen(name, span)

    def _unseen(self, name: str, span: Span) -> Problem:
        from archspec.language import codes
        from archspec.language.diagnostics import suggest

        written = [t for t in _keeps(self._barrier_tree(), name) if t.line is not None]
        later = [t for t in written if (t.start_pos or 0) > span.start]
        if later:
            at = later[0]
            return Problem(codes.TENSOR_READ_EARLY, f"`{name}` is read before it is named",
                           [f"named at {span.path}:{at.line}:{at.column}, after this line"],
                           f"name the tensor before reading it: move `as {name}` above this line, or this `from` below it")
        notes = [f"`{name}` is named at {span.path}:{t.line}:{t.column}, inside a branch this line is not in: "
                 "a branch's names are seen only inside it" for t in written[:1]]
        outside = self.visible(through_barrier=True)
        if not written and name in outside:
            notes.append(f"`{name}` is named outside the block this line is in: a block sees only the names its own body gives")
        inside = [] if written or name in outside else _blocks_naming(self.frames[0].barrier, name)
        notes += [f"`{name}` is named inside block `{block}` (line {line}): a block's names stay inside it" for block, line in inside[:1]]
        hint = suggest(name, list(self.visible()))
        if hint:
            help = f"did you mean `{hint}`?"
        elif written:
            help = f"read it inside that branch, or name the tensor before the join (`... | as {name}`) so both see it"
        elif inside:
            help = f"name what the block gives where it is called: `{inside[0][0]}(...) | as {name}`"
        elif name in outside:
            help = "a block reads its input and its own names: write the join that reads it outside the block, or name it inside"
        else:
            help = f"name the tensor first with `as {name}` where it is computed (`... | as {name}`)"
        return Problem(codes.UNKNOWN_TENSOR, f"no tensor named `{name}` here", notes, help)

    def _barrier_tree(self) -> Tree | None:
        return next((f.barrier for f in reversed(self.frames) if f.barrier is not None), None)


def _blocks_naming(top: Tree | None, name: str) -> list[tuple[str, int]]:
    """(block, line) of each block defined in the file whose body gives `name` with `as`."""
    defs = [t for t in top.children if isinstance(t, Tree) and t.data == "block_def"] if top is not None else []
    found = []
    for block in defs:
        body = block.children[-1]
        tokens = _keeps(body, name) if isinstance(body, Tree) else []
        if tokens:
            found.append((str(block.children[0]), tokens[0].line or 0))
    return found


def _keeps(tree: Tree | None, name: str) -> list[Token]:
    """The name tokens of every `as NAME` in a body or file (outside the blocks it defines), in text order."""
    found: list[Token] = []
    stack = [tree] if tree is not None else []
    while stack:
        node = stack.pop()
        if node.data == "block_def":
            continue
        if node.data == "layer" and len(node.children) == 2 and str(node.children[0]) == KEEP_WORD:
            arg = node.children[1]
            if isinstance(arg, Tree) and arg.data == "word" and str(arg.children[0]) == name:
                found.append(arg.children[0])
        stack.extend(c for c in node.children if isinstance(c, Tree))
    return sorted(found, key=lambda t: t.start_pos or 0)
