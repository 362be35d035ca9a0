"""What every join is: `JoinKind`, the base class of `residual`, `concat`, `add`, ...

A join is a word followed by bodies in braces (`concat { a } { b }`): each body runs on the same
input, and the join combines their outputs into one. A join class says how many bodies it takes
(and any option word or `shortcut { ... }`), its shape rule over the outputs, its symbolic rule
(`input 3xHxW`), how its branches are named, its explain, summary, hover and graph text, and the
class of pytorch/runtime.py it compiles to. Defining a subclass with a `word` registers it (see
`JOINS`); the files beside this one hold one join each. Nothing else dispatches on join words.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, ClassVar

from archspec.language import codes
from archspec.language.ops.base import Shape, fmt_shape

if TYPE_CHECKING:
    from archspec.language.nodes import Join as JoinSpec
    from archspec.language.sizemap import Expr
    from archspec.language.symbolic import AxisWalk
    from archspec.language.tree import Branch

# Every join, by its word, in definition order: filled in as join classes are defined.
JOINS: dict[str, "JoinKind"] = {}
Emit = Callable[..., None]


def known(shape: Shape | None) -> bool:
    return shape is not None and None not in shape


class JoinKind:
    """Base of every join. One instance per join word lives in `JOINS`; spec and checked nodes point at it."""

    word: ClassVar[str] = ""
    summary: ClassVar[str] = ""  # one line, for `archspec ops`, hover and the README table
    usage: ClassVar[str] = ""
    hint: ClassVar[str] = ""  # what it does, after its usage in the editor's keyword completion
    options: ClassVar[tuple[str, ...]] = ()  # words allowed between the join word and its first body
    option_help: ClassVar[str] = ""  # the help for a wrong option word (default: the usage)
    takes_shortcut: ClassVar[bool] = False  # `shortcut { ... }` after the bodies
    min_bodies: ClassVar[int] = 2
    max_bodies: ClassVar[int | None] = None
    name_prefix: ClassVar[str] = ""  # module names are prefix + counter; empty: the word
    operator: ClassVar[str] = ""  # what the join node does (graph, summary): empty: the word
    runtime_class: ClassVar[str] = ""  # its nn.Module class in pytorch/runtime.py
    runtime_needs: ClassVar[tuple[str, ...]] = ()  # runtime classes that class derives from
    view_kind: ClassVar[str] = "branch"  # how `archspec view` draws it

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

    def label(self, i: int, projected: bool = False) -> str:
        """The module name of body i inside the join: branch1, branch2, ..."""
        return f"branch{i + 1}"

    # ---- shapes

    def check(self, checker: Any, spec: "JoinSpec", x: Shape | None, where: dict[str, Any]) -> "Branch":
        """The checked node: each body checked on x, then the outputs combined (`combine`)."""
        from archspec.language.tree import Branch, Join, seq_output

        path, depth = where["path"], where["depth"]
        branches = [checker.seq(b, x, f"{path}.{self.label(i)}.", depth + 1) for i, b in enumerate(spec.bodies)]
        outs = [seq_output(b, x) for b in branches]
        y = self.combine(x, outs, checker.emitter(spec)) if all(known(o) for o in outs) else None
        join = Join(name=where["name"], path=path, depth=depth, span=spec.span, trace=spec.trace, in_shape=x,
                    out_shape=y, mode=self.word, operands=outs)
        return Branch(**where, out_shape=y, rule=self, option=spec.option, branches=branches, join=join)

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

    def axis(self, walk: "AxisWalk", node: "Branch", e: "Expr | None", silent: bool) -> "Expr | None":
        """Symbolic rule (`input 3xHxW`): the join's size on the walk's axis. By default every branch's
        size must be equal (a condition for the solver) and the join keeps it."""
        outs = [walk.seq(b, e, silent) for b in node.branches]
        if all(o is not None for o in outs):
            walk.equal.extend([(outs[0], o)] for o in outs[1:])  # type: ignore[misc]
        return outs[0]

    def receptive_field(self, node: "Branch", states: list[Any]) -> Any:
        """(RF, jump) after the join from each operand's (language/measure.py): the widest view of the inputs."""
        from archspec.language.measure import max_rf

        return max_rf(states)

    # ---- views (text only: the views draw it)

    def title(self, node: "Branch") -> str:
        """The header of the join (summary, explain, hover): `concat of 3 branches`."""
        return f"{self.word} of {len(node.branches)} branches"

    def header_args(self, node: "Branch") -> str:
        """The summary's header row arguments."""
        return f"{len(node.branches)} branches"

    def operands_text(self, node: "Branch") -> str:
        """The summary's join row: what is joined."""
        return " + ".join(f"branch{i + 1}" for i in range(len(node.branches)))

    def explain_lines(self, node: "Branch") -> list[str]:
        return [f"each branch gets the same input {fmt_shape(node.in_shape)}"]

    def explain_after(self, node: "Branch") -> list[str]:
        """The join's arithmetic, after its branches (only when the network checks)."""
        return []

    def graph_title(self, node: "Branch") -> str:
        return self.word

    def dashed(self, node: "Branch", i: int) -> bool:
        """Whether body i is drawn dashed in `archspec graph` (a residual's shortcut)."""
        return False

    def view_order(self, node: "Branch") -> list[int]:
        """The order `archspec view` numbers the bodies' nodes in."""
        return list(range(len(node.branches)))

    def view_parts(self, node: "Branch", seqs: list[list[dict]]) -> dict[str, Any]:
        """The children of the join in `archspec view`'s JSON."""
        return {"branches": seqs}

    def hover(self, node: "Branch") -> str:
        return self.title(node)
