"""`aux 0.3 { head }`: an auxiliary classifier (GoogLeNet's, Inception v3's). On the main path it is the
identity: the network goes on with the tensor it tapped. In training the head also runs on that tensor and
its scores become one more output of the network, whose cross-entropy the runner adds to the main loss times
the weight written after the word (torchvision's reference uses 0.3). In eval the head does not run: the
network returns its main output only, as torchvision's models do."""
from __future__ import annotations

import math
from typing import Any

from archspec.language import codes
from archspec.language.joins.base import Branch, Checker, Emit, JoinKind, JoinSpec, known, output_of
from archspec.language.ops.base import Shape, fmt_shape

_WEIGHT_HELP = "write the weight of its loss after the word: `aux 0.3 { ... }` (torchvision's reference uses 0.3)"


class Aux(JoinKind):
    word = "aux"
    summary = ("An auxiliary head: the identity on the main path; in training the head also runs on the tapped tensor and its "
               "scores are one more output, whose loss is added times the weight (`aux 0.3 { ... }`); in eval it does not run.")
    usage = "aux WEIGHT { head }"
    hint = "an auxiliary classifier on the running tensor, trained with its loss times WEIGHT (GoogLeNet, Inception v3)"
    min_bodies = 1
    max_bodies = 1
    runtime_class = "Aux"
    operator = "aux"
    output_sees_bodies = False
    takes_number = True

    def option_problem(self, option: str | None, number: bool) -> tuple[str, str, str] | None:
        if option is None:
            return codes.AUX_WEIGHT, "`aux` needs the weight of its head's loss", _WEIGHT_HELP
        if not number:
            return codes.AUX_WEIGHT, f"`aux` takes the weight of its head's loss, a number, not `{option}`", _WEIGHT_HELP
        weight = float(option)
        if not (math.isfinite(weight) and 0 < weight <= 1):
            return (codes.AUX_WEIGHT, f"`aux` weight {option} is outside (0, 1]",
                    "write a weight above 0 and at most 1, e.g. `aux 0.3 { ... }` (torchvision's reference): "
                    "0 leaves the head untrained, and above 1 it outweighs the network's own loss")
        return None

    def runtime_args(self, node: Branch) -> tuple[Any, ...]:
        return (float(node.option),)  # type: ignore[arg-type]

    def arity_problem(self, bodies: int, shortcut: bool) -> str | None:
        if bodies != 1 and not shortcut:
            return f"`aux` takes one body, its head, got {bodies}"
        return super().arity_problem(bodies, shortcut)

    def label(self, i: int, projected: bool = False) -> str:
        return "head"

    def check(self, checker: Checker, spec: JoinSpec, x: Shape | None, where: dict[str, Any]) -> Any:
        head = checker.seq(spec.bodies[0], x, where["path"] + ".head.", where["depth"] + 1)
        return checker.joined(spec, x, where, x, [output_of(head, x)], branches=[head])

    def finish(self, node: Branch, output: Shape | None, emit: Emit) -> None:
        head = node.join.operands[0]  # type: ignore[union-attr]
        if known(head) and known(output) and head != output:
            emit(codes.AUX_SHAPE,
                 f"the auxiliary head gives {fmt_shape(head)} but the network gives {fmt_shape(output)}",
                 notes=[f"the head taps {fmt_shape(node.in_shape)}",
                        "its loss compares its output with the same labels as the network's"],
                 help=_same_end(output))  # type: ignore[arg-type]

    # ---- views

    def title(self, node: Branch) -> str:
        return f"aux head (loss weight {node.option})"

    def header_args(self, node: Branch) -> str:
        return f"weight {node.option}, training only"

    def operands_text(self, node: Branch) -> str:
        return f"input (head: {fmt_shape(node.join.operands[0])}, training only)"  # type: ignore[union-attr]

    def explain_lines(self, node: Branch) -> list[str]:
        return [f"the head runs on {fmt_shape(node.in_shape)} in training only; the main path goes on with that input "
                f"unchanged, and the head's loss is added times {node.option}"]

    def explain_after(self, node: Branch) -> list[str]:
        (y,) = node.join.operands  # type: ignore[union-attr]
        return [f"aux: {fmt_shape(node.in_shape)} -> {fmt_shape(node.in_shape)} on the main path; "
                f"the head's {fmt_shape(y)} is an extra training output"]

    def graph_title(self, node: Branch) -> str:
        return f"aux ×{node.option}"

    def dashed(self, node: Branch, i: int) -> bool:
        return True  # training only

    def hover(self, node: Branch) -> str:
        return f"aux: an auxiliary head, loss weight {node.option}, run in training only"


def _same_end(output: Shape) -> str:
    if len(output) == 1:
        return f"end the head like the network, with `linear {output[0]}` (e.g. `gap | flatten | linear {output[0]}`)"
    return f"end the head with the network's output shape {fmt_shape(output)}"
