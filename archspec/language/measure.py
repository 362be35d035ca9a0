"""Receptive field, jump and activation memory of a checked tree: the one implementation that
`archspec summary` (its RF, jump and act/sample columns) and budgets (`archspec check --max-rf`,
`--max-stride`, `--max-activations`) both read, so their numbers cannot drift apart.

Receptive field (RF) and jump follow the classic recurrence per axis, from the input:
rf_out = rf_in + (k_eff - 1) * jump_in and jump_out = jump_in * stride, where each op gives its
(k_eff, stride) through `LayerSpec.rf` (the checked layer's `rf_step`). A residual or branch takes
the max over its paths (the identity skip, the shortcut, each branch).
"""
from __future__ import annotations

import math
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from archspec.language.ops import base
from archspec.language.tree import Branch, Call, CheckedNode, Layer, TensorRead, Visitor

if TYPE_CHECKING:
    from archspec.language.ops.base import Shape

BYTES_PER_VALUE = 4  # fp32 weights and activations

Pair = base.Pair  # per axis (H, W): ints, or Fractions after an upsampling
RF = base.RF  # (receptive field, jump) per axis (H, W)


def shape_bytes(shape: "Shape | None") -> int:
    if shape is None or None in shape:
        return 0
    return math.prod(shape) * BYTES_PER_VALUE  # type: ignore[arg-type]


def human_bytes(n: float) -> str:
    """Decimal units, as torchinfo: 1 MB = 10^6 bytes."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n = divide(n, 1000)
    raise AssertionError("unreachable")


def divide(n: float, d: int) -> float:
    """n / d, also for an int too large for a float (whole-number division then: exact enough)."""
    try:
        return n / d
    except OverflowError:
        return n // d  # type: ignore[return-value]


def has_stride(shape: "Shape | None") -> bool:
    """An output with a meaningful stride: a feature map bigger than 1x1 (after `gap`, `flatten` or
    `linear` every output sees the whole input, and the jump stops being a spacing of outputs)."""
    return shape is not None and len(shape) == 3 and None not in shape and shape[1] * shape[2] > 1  # type: ignore[operator]


def _whole(v: Any) -> Any:
    """A Fraction that became whole again (upsample 2, then stride 2) as a plain int."""
    if type(v) is int:  # almost always: no isinstance through Fraction's ABC, per layer and axis
        return v
    return int(v) if isinstance(v, Fraction) and v.denominator == 1 else v


def rf_step(state: RF | None, k: Pair, s: Pair) -> RF:
    assert state is not None
    rf, jump = state
    return (
        (_whole(rf[0] + (k[0] - 1) * jump[0]), _whole(rf[1] + (k[1] - 1) * jump[1])),
        (_whole(jump[0] * s[0]), _whole(jump[1] * s[1])),
    )


def max_rf(states: list[RF | None]) -> RF | None:
    """Paths that meet at a join: the output sees the union of their views (the widest one)."""
    if not states or any(s is None for s in states):
        return None
    known = [s for s in states if s is not None]
    return (
        (max(s[0][0] for s in known), max(s[0][1] for s in known)),
        (max(s[1][0] for s in known), max(s[1][1] for s in known)),
    )


class _ReceptiveFields(Visitor[Any]):
    """Threads the (RF, jump) state through the tree in execution order and stores it on each node:
    a layer after itself, a block call after its body, a residual or branch after its join."""

    def seq(self, nodes: list[CheckedNode], state: RF | None) -> RF | None:
        for node in nodes:
            state = self.visit(node, state)
        return state

    def visit_layer(self, node: Layer, state: RF | None) -> RF | None:
        if isinstance(node, TensorRead):  # `from NAME`: what the tensor saw where it was named
            node.rf = node.source.rf if node.source is not None else None
            return node.rf
        node.rf = None if state is None or node.rf_step is None else rf_step(state, *node.rf_step)
        return node.rf

    def visit_call(self, node: Call, state: RF | None) -> RF | None:
        node.rf = self.seq(node.body, state)
        return node.rf

    def visit_branch(self, node: Branch, state: RF | None) -> RF | None:
        # Every join sees what each of its operands saw: the widest of its bodies (and its input, when it is one).
        bodies: list[RF | None] = []
        for i, b in enumerate(node.branches):  # a body fed by others (`select`'s attention) sees what they saw
            fed = node.rule.feeds(node, i)
            bodies.append(self.seq(b, state if fed is None else max_rf([bodies[j] for j in fed])))
        if not node.rule.output_sees_bodies:  # `aux`: the main path goes on with its input; the head's view is its own
            node.rf = state
            return node.rf
        node.rf = max_rf(bodies + ([state] if node.identity else []))
        keep = node.rule.jump_from(node)  # a broadcast `mul` gate's jump is not the output's; `resize` keeps the input's
        if node.rf is not None and keep:
            operands = bodies + [state]  # index len(branches): the input
            node.rf = (node.rf[0], max_rf([operands[i] for i in keep])[1])  # type: ignore[index]
        return node.rf


def input_rf(input_shape: "Shape | None") -> RF | None:
    """The state at the input: each pixel sees itself, one pixel apart; None for feature vectors (`input 784`)."""
    return ((1, 1), (1, 1)) if input_shape is not None and len(input_shape) == 3 else None


def set_receptive_fields(body: list[CheckedNode], input_shape: "Shape | None") -> None:
    """Store (RF, jump) on every node of the checked tree (`node.rf`); the checker calls it once."""
    _ReceptiveFields().seq(body, input_rf(input_shape))


def output_rf(body: list[CheckedNode], input_shape: "Shape | None") -> RF | None:
    """(RF, jump) of the network's output, read off the checked tree: what the last row of `archspec summary` shows."""
    return body[-1].rf if body else input_rf(input_shape)
