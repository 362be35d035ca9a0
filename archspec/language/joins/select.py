"""`select [gN] { a } { b } ... attend { attention }`: selective kernel attention (SKNet) and split attention
(ResNeSt). Every branch runs on the input; the attention body runs on the sum of the branches and gives P*C
channels for P branches of C channels; a softmax across the branches turns them into one weight per branch
and channel, and the output is the weighted sum: out = sum_i softmax_i(attention(sum_j b_j(x))) * b_i(x).

The attention's channels are read as [P, C] (SKNet's `view(B, P, C, 1, 1)`); with `gN` as [N, P, C/N]
(ResNeSt's rSoftMax over cardinal groups: each group's weights for all branches side by side). ResNeSt's
branches are channel slices of one conv: `select { slice 0:64 } { slice 64:128 } attend { ... }`."""
from __future__ import annotations

import re
from typing import Any

from archspec.language import codes
from archspec.language.joins.base import (
    Branch,
    Checker,
    Emit,
    JoinKind,
    JoinSpec,
    known,
    output_of,
    same_size,
)
from archspec.language.ops.base import Shape, fmt_shape
from archspec.language.sizemap import Num, as_expr

_GROUPS = re.compile(r"g([1-9][0-9]*)")


class Select(JoinKind):
    word = "select"
    summary = ("Runs branches on one input, an attention body on their sum giving branches*C channels, a softmax across "
               "the branches, and the weighted sum of the branches (selective kernel / split attention).")
    usage = "select [gN] { a } { b } ... attend { attention }"
    hint = "weights its branches by a softmax across them, computed by `attend { ... }` on their sum (SKNet, ResNeSt)"
    option_help = "write `select g2 { ... } { ... } attend { ... }` for attention weights in 2 cardinal groups, or no option"
    takes_shortcut = True
    shortcut_word = "attend"
    runtime_class = "Select"
    operator = "softmax-weighted sum"

    def arity_problem(self, bodies: int, shortcut: bool) -> str | None:
        if bodies < 2:
            return f"`select` needs at least 2 branches, got {bodies}"
        if not shortcut:
            return "`select` needs its attention body after the branches: `attend { ... }`"
        return None

    def option_problem(self, option: str | None, number: bool) -> tuple[str, str, str] | None:
        if option is None or (not number and _GROUPS.fullmatch(option)):
            return None
        return codes.UNKNOWN_ARGUMENT, f"unknown select option `{option}`", self.option_help

    def runtime_args(self, node: Branch) -> tuple[Any, ...]:
        return (groups_of(node.option),)

    def check(self, checker: Checker, spec: JoinSpec, x: Shape | None, where: dict[str, Any]) -> Any:
        branches, outs = self.check_bodies(checker, spec, x, where)
        emit = checker.emitter(spec)
        y = self.combine(x, outs, emit) if all(known(o) for o in outs) else None  # type: ignore[arg-type]
        attention = checker.seq(spec.shortcut, y, f"{where['path']}.attention.", where["depth"] + 1)  # on the branches' sum
        a = output_of(attention, y)
        if known(y) and known(a) and not self.fits(y, a, len(outs), groups_of(spec.option), emit):  # type: ignore[arg-type]
            y = None
        return checker.joined(spec, x, where, y, outs + [a], branches=branches + [attention])

    def combine(self, x: Shape | None, outs: list[Shape], emit: Emit) -> Shape | None:
        for i, o in enumerate(outs[1:], 1):
            if not same_size(outs[0], o, emit):
                self.mismatch(x, outs, i, 0, "every branch the same shape", emit)
                return None
        if len(outs[0]) != 3:
            emit(codes.SELECT_ATTENTION, f"`select` weights images [B, C, H, W], but its branches give {fmt_shape(outs[0])}",
                 notes=[f"input is {fmt_shape(x)}"], help="use `select` before `flatten`")
            return None
        return outs[0]

    def fits(self, y: Shape, a: Shape, paths: int, groups: int, emit: Emit) -> bool:
        """Whether the attention's output `a` gives P*C weights for branches of shape `y` (E123 otherwise)."""
        c = y[0]
        want = f"[B, {paths * c}, 1, 1] or {fmt_shape((paths * c,) + tuple(y[1:]))} ({paths} branches x {c} channels)"
        notes = [f"each branch gives {fmt_shape(y)}", f"the attention gives {fmt_shape(a)}"]
        if c % groups:
            emit(codes.SELECT_ATTENTION, f"`select g{groups}` cannot cut the branches' {c} channels into {groups} groups",
                 notes=notes, help=f"give the branches a channel count divisible by {groups}, or write another `gN`")
            return False
        if len(a) != 3 or a[0] != paths * c or not all(_one_or_same(s, t, i, emit) for i, (s, t) in enumerate(zip(a[1:], y[1:]))):
            emit(codes.SELECT_ATTENTION, f"`select`'s attention gives {fmt_shape(a)} but its {paths} branches of {fmt_shape(y)} "
                 f"need {want}", notes=notes,
                 help=f"end the attention with `conv {paths * c} k1` after a `gap`: one weight per branch and channel")
            return False
        return True

    def jump_from(self, node: Branch) -> list[int] | None:
        return list(range(len(node.branches) - 1))  # the weights broadcast: the branches' jump is the output's

    # ---- views

    def feeds(self, node: Branch, i: int) -> list[int] | None:
        return list(range(len(node.branches) - 1)) if i == len(node.branches) - 1 else None

    def title(self, node: Branch) -> str:
        g = f" {node.option}" if node.option else ""
        return f"select{g} of {len(node.branches) - 1} branches"

    def header_args(self, node: Branch) -> str:
        return f"{len(node.branches) - 1} branches{f' {node.option}' if node.option else ''}"

    def operands_text(self, node: Branch) -> str:
        n = len(node.branches) - 1
        return f"sum_i softmax_i(attention) * branch_i, i = 1..{n}"

    def explain_lines(self, node: Branch) -> list[str]:
        lines = super().explain_lines(node)
        return lines + ["the attention body runs on the sum of the branches' outputs"]

    def explain_after(self, node: Branch) -> list[str]:
        *outs, a = node.join.operands  # type: ignore[union-attr]
        n, g = len(outs), groups_of(node.option)
        layout = f"[{n}, C]" if g == 1 else f"[{g}, {n}, C/{g}] (cardinal groups)"
        return [(f"select: attention {fmt_shape(a)} read as {layout} weights, softmax across the {n} branches, "
                f"weighted sum of {n} x {fmt_shape(outs[0])} -> {fmt_shape(node.out_shape)}")]

    def graph_title(self, node: Branch) -> str:
        return self.title(node)

    def hover(self, node: Branch) -> str:
        return f"{self.title(node)}, weighted by a softmax over the attention body's output"

    def view_parts(self, node: Branch, seqs: list[list[dict]]) -> dict[str, Any]:
        for item in seqs[-1]:
            item["name"] = f"attention.{item['name']}"
        return {"branches": seqs}


def groups_of(option: str | None) -> int:
    """N of `gN`: the cardinal groups of the attention's channels; 1 without it."""
    found = _GROUPS.fullmatch(option or "")
    return int(found.group(1)) if found else 1


def _one_or_same(size: Any, branch: Any, axis: int, emit: Emit) -> bool:
    """An attention size broadcasts when it is 1 or the branches' own (a condition for the solver on `input 3xHxW`)."""
    if as_expr(size) == Num(1) or size == 1:
        return True
    if emit.sizes is None:
        return size == branch
    if isinstance(size, int) and isinstance(branch, int):
        return size == branch
    emit.sizes.equal_to(axis, (size, branch), (size, Num(1)))  # the branches' size, or 1 and broadcast
    return True
