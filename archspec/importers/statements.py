"""What an imported network is made of before it becomes text: layers and joins, each with the
module path it came from (no torch here)."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Scope:
    """A module around a statement: its path in the original network and its class name."""

    path: str
    cls: str
    container: bool  # nn.Sequential, nn.ModuleList or nn.ModuleDict themselves: laid out inline, never a block


@dataclass
class Op:
    """One layer: its .arch text, the modules around it, and the original module holding its tensors."""

    text: str
    scopes: tuple[Scope, ...]
    weights: str | None = None

    @property
    def weighted(self) -> bool:
        return self.text.split()[0] in ("conv", "linear", "convtranspose")


@dataclass
class Join:
    """A join (`residual`, `residual project`, `concat`, `add`, `mul`) over its branches."""

    word: str
    branches: list[list[Statement]]
    scopes: tuple[Scope, ...]
    shortcut: list[Statement] | None = None


Statement = "Op | Join"


@dataclass
class Refusal:
    """Something the language cannot express: where it is and what torch call it is."""

    path: str
    construct: str
    why: str = ""

    def text(self) -> str:
        return f"`{self.path or '(top)'}` uses {self.construct}" + (f": {self.why}" if self.why else "")


@dataclass
class Imported:
    """The statements of a network, its input and output shapes, and its refusals."""

    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    statements: list = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    stopped: int | None = None  # index of the first top-level statement that could not be written
    notes: list[str] = field(default_factory=list)  # said in the text's header: how it was traced, where that matters


def weight_order(statements: list) -> list[str]:
    """The original module paths holding tensors, in the order the .arch network registers its layers."""
    order: list[str] = []
    for s in statements:
        if isinstance(s, Op):
            if s.weights is not None:
                order.append(s.weights)
        else:
            for branch in s.branches:
                order += weight_order(branch)
            if s.shortcut is not None:
                order += weight_order(s.shortcut)
    return order
