"""The spec tree: what parsing, block expansion and binding give the checker.

Layers are op specs (pydantic models from the op registry); structures are the dataclasses
below. Nothing here knows shapes: the checker turns this tree into the checked tree.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Union

from archspec.language.diagnostics import Diagnostic, Span
from archspec.language.ops import Input, LayerSpec

if TYPE_CHECKING:
    from archspec.language.joins import JoinKind
    from archspec.language.limits import Limit

Value = Union[int, float, str, tuple]
Trace = tuple[tuple[str, Span], ...]


@dataclass
class Seq:
    """Layers applied one after the other."""

    items: list["Node"] = field(default_factory=list)


@dataclass
class Join:
    """A join word and its bodies (`concat { a } { b }`, `residual project { ... } shortcut { ... }`): each
    body runs on the same input and `kind` (a registered join, archspec/language/joins/) combines them."""

    kind: "JoinKind"
    bodies: list[Seq]
    span: Span
    trace: Trace = ()
    name: str = ""
    option: str | None = None  # the word after the join word (`project`)
    shortcut: Seq | None = None  # `shortcut { ... }`, for the joins that take one

    @property
    def mode(self) -> str:
        return self.kind.word


@dataclass
class BlockCall:
    """One instantiation of a named block: its body, expanded with the call's arguments."""

    block: str
    args: dict[str, Value]
    body: Seq
    span: Span
    def_span: Span
    trace: Trace = ()
    name: str = ""


@dataclass
class Invalid:
    """A layer that could not be bound (its diagnostic is already reported): shape unknown after it."""

    op: str
    span: Span
    trace: Trace = ()
    name: str = ""


@dataclass
class Deferred:
    """A layer whose arguments read the incoming shape (`conv {in.c // 2} k1`): bound by the checker,
    which knows that shape. `reads` maps each `in.*` name used to where it is written; `resolve`
    takes their values and gives the bound layer (or Invalid) and the diagnostics of binding it."""

    op: str
    span: Span
    reads: dict[str, Span]
    resolve: Callable[[dict[str, int]], tuple["Node", list[Diagnostic]]]
    trace: Trace = ()
    name: str = ""


Node = Union[LayerSpec, Join, BlockCall, Invalid, Deferred]


@dataclass(frozen=True)
class SweepParam:
    """A `param NAME = VALUE` statement: a top-level value `archspec sweep` may vary.

    `value` is the default (what the file checks and trains with); `value_span` is where it is written,
    so a sweep can write a variant's value in its place."""

    name: str
    value: int | float
    span: Span
    value_span: Span


@dataclass
class Model:
    """A parsed .arch file: its expanded body, every source it read, and parse/bind diagnostics."""

    path: str
    body: Seq
    sources: dict[str, str]
    diagnostics: list[Diagnostic]
    blocks: list[str] = field(default_factory=list)
    budgets: list["Limit"] = field(default_factory=list)  # from `budget` statements; `archspec check` enforces them
    sweep_params: dict[str, SweepParam] = field(default_factory=dict)  # `param` statements, in file order

    @property
    def input(self) -> Input | None:
        first = self.body.items[0] if self.body.items else None
        return first if isinstance(first, Input) else None

    @property
    def text(self) -> str:
        return self.sources.get(self.path, "")


