"""What every join is: `JoinKind`, the base class of `residual`, `concat`, `add`, ...

A join is a word followed by bodies in braces (`concat { a } { b }`): each body runs on the same
input, and the join combines their outputs into one. A join class says how many bodies it takes
(and any option word or `shortcut { ... }`), its shape rule over the outputs (one rule, over numbers and,
for `input 3xHxW`, expressions: `same_size`), how its branches are named, its explain, summary, hover and graph text, and the
class of pytorch/runtime.py it compiles to. Defining a subclass with a `word` registers it (see
`JOINS`); the files beside this one hold one join each. Nothing else dispatches on join words.

Joins sit below the spec and the checked tree (syntax reads their words): they see the checked
node and the checker only through the protocols below, which those implement.
"""
from __future__ import annotations

from typing import Any, ClassVar, Protocol

from archspec.language import codes
from archspec.language.ops.base import Emit, RFStep, Shape, fmt_shape
from archspec.language.sizemap import Constraints

# Every join, by its word, in definition order: filled in as join classes are defined.
JOINS: dict[str, JoinKind] = {}


class JoinSpec(Protocol):
    """A written join (nodes.Join): its bodies, option word and shortcut, where it was written."""

    bodies: list[Any]
    shortcut: Any
    option: str | None
    span: Any
    trace: Any


class Branch(Protocol):
    """A checked join (tree.Branch): its bodies as checked sequences, and its `Join` node."""

    branches: list[list[Any]]
    identity: bool
    projected: bool
    option: str | None
    in_shape: Shape | None
    out_shape: Shape | None
    join: Any


class Checker(Protocol):
    """What a join asks of the checker (check._Checker)."""

    report: Any
    sizes: Constraints | None  # `input 3xHxW`: the conditions on H and W the rules record

    def seq(self, seq: Any, x: Shape | None, prefix: str, depth: int) -> list[Any]: ...
    def emitter(self, node: Any) -> Emit: ...
    def joined(self, spec: Any, x: Shape | None, where: dict[str, Any], y: Shape | None, operands: list[Shape | None],
               **fields: Any) -> Any: ...
    def stride_of(self, nodes: list[Any]) -> RFStep | None: ...
    def layers(self, nodes: list[Any]) -> list[Any]: ...


def known(shape: Shape | None) -> bool:
    return shape is not None and None not in shape


def same_size(a: Shape, b: Shape, emit: Emit, channels: bool = True) -> bool:
    """Whether two known shapes are equal (their channels too unless `channels` is False). On a symbolic input
    (`input 3xHxW`) H and W are conditions for the solver: recorded, and taken as equal here."""
    if len(a) != len(b):
        return False
    if emit.sizes is None or len(a) != 3:
        return a == b if channels else a[1:] == b[1:]
    sizes = [emit.sizes.same(i, a[i + 1], b[i + 1]) for i in (0, 1)]  # type: ignore[arg-type]  # both recorded
    return all(sizes) and (not channels or a[0] == b[0])


def output_of(nodes: list[Any], x: Shape | None) -> Shape | None:
    """What a checked sequence gives: its last node's output, or its input when it is empty (the identity)."""
    return nodes[-1].out_shape if nodes else x


class JoinKind:
    """Base of every join. One instance per join word lives in `JOINS`; spec and checked nodes point at it."""

    word: ClassVar[str] = ""
    summary: ClassVar[str] = ""  # one line, for `archspec ops`, hover and the README table
    usage: ClassVar[str] = ""
    hint: ClassVar[str] = ""  # what it does, after its usage in the editor's keyword completion
    options: ClassVar[tuple[str, ...]] = ()  # words allowed between the join word and its first body
    option_help: ClassVar[str] = ""  # the help for a wrong option word (default: the usage)
    takes_number: ClassVar[bool] = False  # a number between the word and its first body (`aux 0.3`)
    takes_shortcut: ClassVar[bool] = False  # `shortcut { ... }` after the bodies
    shortcut_word: ClassVar[str] = "shortcut"  # the word before that last body (`select`'s is `attend`)
    min_bodies: ClassVar[int] = 2
    max_bodies: ClassVar[int | None] = None
    name_prefix: ClassVar[str] = ""  # module names are prefix + counter; empty: the word
    operator: ClassVar[str] = ""  # what the join node does (graph, summary): empty: the word
    runtime_class: ClassVar[str] = ""  # its nn.Module class in pytorch/runtime.py
    runtime_needs: ClassVar[tuple[str, ...]] = ()  # runtime classes that class derives from
    view_kind: ClassVar[str] = "branch"  # how `archspec view` draws it
    output_sees_bodies: ClassVar[bool] = True  # False: the output is the input (`aux`), for the receptive field

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.word:
            JOINS[cls.word] = cls()

    def __repr__(self) -> str:
        return f"<join {self.word}>"

    @property
    def keyword_doc(self) -> str:
        return f"{self.usage}: {self.hint}"

    # ---- syntax

    def arity_problem(self, bodies: int, shortcut: bool) -> str | None:
        """Why this many bodies (and a shortcut or not) is wrong for the join, or None."""
        if shortcut and not self.takes_shortcut:
            return f"`{self.word}` takes no `shortcut {{ ... }}`"
        if bodies < self.min_bodies:
            return f"`{self.word}` needs at least {self.min_bodies} branches, got {bodies}"
        if self.max_bodies is not None and bodies > self.max_bodies:
            return f"`{self.word}` takes {self.max_bodies} body, got {bodies}"
        return None

    def option_problem(self, option: str | None, number: bool) -> tuple[str, str, str] | None:
        """(code, message, help) when the option written after the join word (a name, or a number when
        `number`) is wrong, or missing where the join needs one; None when it is fine."""
        if option is None or (not number and option in self.options):
            return None
        return codes.UNKNOWN_ARGUMENT, f"unknown {self.word} option `{option}`", self.option_help or f"usage: `{self.usage}`"

    def runtime_args(self, node: Branch) -> tuple[Any, ...]:
        """Arguments of its runtime class after the bodies (`aux`'s loss weight)."""
        return ()

    def finish(self, node: Branch, output: Shape | None, emit: Emit) -> None:
        """Whole-network checks once the network's output is known (an auxiliary head's shape)."""

    def label(self, i: int, projected: bool = False) -> str:
        """The module name of body i inside the join: branch1, branch2, ..."""
        return f"branch{i + 1}"

    # ---- shapes

    def check(self, checker: Checker, spec: JoinSpec, x: Shape | None, where: dict[str, Any]) -> Any:
        """The checked node: each body checked on x, then the outputs combined (`combine`)."""
        branches, outs = self.check_bodies(checker, spec, x, where)
        y = self.combine(x, outs, checker.emitter(spec)) if all(known(o) for o in outs) else None  # type: ignore[arg-type]
        return checker.joined(spec, x, where, y, outs, branches=branches)

    def check_bodies(self, checker: Checker, spec: JoinSpec, x: Shape | None, where: dict[str, Any]) -> tuple[list[Any], list[Any]]:
        """Each body checked on x: the checked sequences and their outputs."""
        path, depth = where["path"], where["depth"]
        branches = [checker.seq(b, x, f"{path}.{self.label(i)}.", depth + 1) for i, b in enumerate(spec.bodies)]
        return branches, [output_of(b, x) for b in branches]

    def combine(self, x: Shape | None, outs: list[Shape], emit: Emit) -> Shape | None:
        """The joined shape of the (known) outputs; reports E108 (or the join's own code) and gives None when they do not join."""
        raise NotImplementedError

    def mismatch(self, x: Shape | None, outs: list[Shape], i: int, first: int, need: str, emit: Emit) -> None:
        """E108: branch i does not join with branch `first`."""
        emit(
            codes.BRANCH_MISMATCH,
            f"branch {i + 1} gives {fmt_shape(outs[i])} but branch {first + 1} gives {fmt_shape(outs[first])}: `{self.word}` needs {need}",
            notes=[f"input is {fmt_shape(x)}"] + [f"branch {j + 1} gives {fmt_shape(s)}" for j, s in enumerate(outs)],
            help="change the strides, padding or channels of the branch that differs",
        )

    def feeds(self, node: Branch, i: int) -> list[int] | None:
        """The bodies whose summed outputs body i runs on (`select`'s attention); None: it runs on the input."""
        return None

    def jump_from(self, node: Branch) -> list[int] | None:
        """The operands (the bodies, then the input at index len(branches)) whose jump the output keeps
        (language/measure.py); None: all of them. The receptive field is always the widest of all."""
        return None

    # ---- views (text only: the views draw it)

    def title(self, node: Branch) -> str:
        """The header of the join (summary, explain, hover): `concat of 3 branches`."""
        return f"{self.word} of {len(node.branches)} branches"

    def header_args(self, node: Branch) -> str:
        """The summary's header row arguments."""
        return f"{len(node.branches)} branches"

    def operands_text(self, node: Branch) -> str:
        """The summary's join row: what is joined."""
        return " + ".join(f"branch{i + 1}" for i in range(len(node.branches)))

    def explain_lines(self, node: Branch) -> list[str]:
        reads = [f"branch {i + 1}" for i, b in enumerate(node.branches) if b and getattr(b[0], "op", "") == "from"]
        also = f" ({' and '.join(reads)} {'starts' if len(reads) == 1 else 'start'} from a named tensor instead)" if reads else ""
        return [f"each branch gets the same input {fmt_shape(node.in_shape)}{also}"]

    def explain_after(self, node: Branch) -> list[str]:
        """The join's arithmetic, after its branches (only when the network checks)."""
        return []

    def graph_title(self, node: Branch) -> str:
        return self.word

    def dashed(self, node: Branch, i: int) -> bool:
        """Whether body i is drawn dashed in `archspec graph` (a residual's shortcut)."""
        return False

    def view_order(self, node: Branch) -> list[int]:
        """The order `archspec view` numbers the bodies' nodes in."""
        return list(range(len(node.branches)))

    def view_parts(self, node: Branch, seqs: list[list[dict]]) -> dict[str, Any]:
        """The children of the join in `archspec view`'s JSON."""
        return {"branches": seqs}

    def hover(self, node: Branch) -> str:
        return self.title(node)
