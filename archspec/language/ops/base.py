"""What every op is: `LayerSpec`, the base class, and the arithmetic ops share.

An op is a pydantic model (its arguments and defaults) with class-level syntax (positional
arguments, `k5`-style keys, flags), its one-line doc and usage, and methods for its shape rule,
parameter count, MACs, receptive-field step, explain lines and the torch module it compiles to.
Defining a subclass with an `op` literal registers it (see `REGISTRY`); the files beside this one
hold the ops by family. Nothing else in archspec dispatches on op names.

Shapes exclude the batch dimension: (C, H, W) for images, (F,) after `flatten`. A dimension
is None when an earlier error left it unknown; rules then do what they can (best effort). On a
symbolic input (`input 3xHxW`) H and W are expressions (sizemap.Expr) and F after `flatten` is a
sizemap.Features: each op's one shape rule computes them with sizemap's size functions, and where
it compares sizes it records the condition in `emit.sizes` instead of reporting (see `spatial`).
"""
# No `from __future__ import annotations` here or in the family files: pydantic evaluates an op class's
# annotations (LayerSpec's again for every op) when the class is defined, and real objects cost it
# nothing to evaluate where strings cost an eval each (about 30% of the time to define the classes).

import math
from fractions import Fraction
from typing import Annotated, Any, ClassVar, Literal, Protocol, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict

from archspec.language import codes
from archspec.language.diagnostics import Span
from archspec.language.sizemap import Constraints, Expr, Features, Size, window, window_size

# A dimension: a number, an expression in H or W (`input 3xHxW`), C*h*w after flattening one, or None (unknown).
Dim = Union[int, Expr, Features, None]
Shape = tuple[Dim, ...]


class Emit(Protocol):
    """emit(code, message, notes=[...], help="...") reports a problem at the current layer.

    `sizes` collects the conditions on a symbolic input size (`input 3xHxW`); None when sizes are numbers."""

    sizes: Constraints | None

    def __call__(self, code: str, message: str, notes: list[str] | None = None, help: str | None = None,
                 span: Span | None = None) -> None: ...


# Receptive-field step per axis (H, W): (effective kernel, stride). A stride may be a fraction
# (upsampling halves the jump), so strides are Fractions where they are not whole.
Step = Union[int, Fraction]
RFStep = tuple[tuple[int, int], tuple[Step, Step]]
# The cumulative (receptive field, jump) per axis after a node: ints, or Fractions after an upsampling.
Pair = tuple[Any, Any]
RF = tuple[Pair, Pair]
# Every op class, by op name, in definition order: filled in as op classes are defined.
REGISTRY: dict[str, type["LayerSpec"]] = {}


def _to_pair(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return (value, value)
    if isinstance(value, (tuple, list)) and len(value) == 1:
        return (value[0], value[0])
    return value


Pair = Annotated[tuple[int, int], BeforeValidator(_to_pair)]


def fmt_shape(shape: Shape | None) -> str:
    """`[B, 16, 5, 5]`, with `?` for unknown dimensions."""
    if shape is None:
        return "[B, ?]"
    return "[" + ", ".join(["B"] + ["?" if d is None else str(d) for d in shape]) + "]"


def pair_text(p: tuple[Any, Any]) -> str:
    """`3` for a square pair, `3x5` otherwise: how the language writes kernels, strides, sizes."""
    return str(p[0]) if p[0] == p[1] else f"{p[0]}x{p[1]}"


def value_text(value: Any) -> str:
    """A bound value as the language writes it: `3x32x32` for a tuple, else str()."""
    return "x".join(map(str, value)) if isinstance(value, tuple) else str(value)


def number_text(x: float) -> str:
    """A quotient as a person writes it: 6.5, 13.33, 28."""
    return f"{round(x, 2):g}"


class TorchCall(BaseModel):
    """An `nn.<cls>(*args, **kwargs)` call as data: pytorch/build.py instantiates it, codegen prints it."""

    model_config = ConfigDict(defer_build=True)  # built on first use, not at import (start-up time)

    cls: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = {}
    # Where `cls` lives: torch.nn, torchvision.ops, or archspec/pytorch/layers.py (ops torch has no class for,
    # whose source codegen copies into the generated file).
    home: Literal["nn", "torchvision.ops", "layers"] = "nn"

    def source(self) -> str:
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{'nn.' if self.home == 'nn' else ''}{self.cls}({', '.join(parts)})"


class LayerSpec(BaseModel):
    """Base of every op: where it was written and which block calls led to it."""

    # defer_build: a model's validator is built the first time it validates, not when the class is
    # defined, so start-up pays only for the ops a file uses (building them all took ~100 ms).
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True, defer_build=True,
                              protected_namespaces=())  # no field starts with model_: skip that check per class

    span: Span | None = None
    trace: tuple[tuple[str, Span], ...] = ()
    name: str = ""  # module name, unique in its container (conv1, fc2, ...)

    # Syntax: positional field names in order, `k5`-style keys, bare-word flags.
    positional: ClassVar[tuple[str, ...]] = ()
    keys: ClassVar[dict[str, str]] = {}
    flags: ClassVar[dict[str, tuple[str, Any]]] = {}
    name_prefix: ClassVar[str] = ""  # module names are prefix + counter; empty: the op name
    is_activation: ClassVar[bool] = False
    summary: ClassVar[str] = ""
    usage: ClassVar[str] = ""
    # How generated PyTorch source writes a parameter-free op inline in forward(), e.g. "F.relu({x})".
    functional: ClassVar[str | None] = None
    # PyTorch's positional arguments in its order, as this language writes them: "in" is taken from
    # the previous layer (dropped), "" is the op's own positional, a key is written glued (`k5`).
    torch_order: ClassVar[tuple[str, ...]] = ()
    torch_note: ClassVar[str] = ""  # why PyTorch's argument list is written differently here
    # True when the op's check on features [B, F] depends on F (groupnorm: G must divide F). After a
    # `flatten` F is C*h(H)*w(W), a condition on both axes at once: symbolic sizes are then checked size by size.
    checks_features: ClassVar[bool] = False
    # Set when the op's weights need a data-dependent initialiser the runner applies (`init whiten`).
    init_hint: ClassVar[str | None] = None

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        op_field = cls.model_fields.get("op")
        if op_field is not None and isinstance(op_field.default, str):
            REGISTRY[op_field.default] = cls

    @classmethod
    def doc(cls) -> str:
        """The op's one-line doc (for `archspec ops`, hover and the README table)."""
        return cls.summary

    @property
    def op_name(self) -> str:
        return self.op  # type: ignore[attr-defined]

    def infer(self, x: Shape | None, emit: Emit) -> Shape | None:
        return x

    def params(self, x: Shape | None) -> int:
        return 0

    def macs(self, x: Shape | None, y: Shape | None) -> int:
        return 0

    def torch_call(self, x: Shape | None) -> TorchCall:
        raise NotImplementedError(f"{self.op_name} has no torch module")

    def describe(self) -> str:
        """Key arguments in the language's own spelling (for tables and graphs)."""
        return ""

    def rf(self, x: Shape | None) -> RFStep | None:
        """Receptive-field step per axis (H, W): (effective kernel, stride), or None when
        it depends on an x that is unknown.

        Pointwise ops are ((1, 1), (1, 1)). A summary chains them: rf += (k - 1) * jump; jump *= stride.
        """
        return (1, 1), (1, 1)

    def init_mode(self) -> str | None:
        """The data-dependent initialiser this layer asks for (`whiten`), or None."""
        return None

    def explain_failure(self, x: Shape | None, y: Shape | None) -> list[str]:
        """A layer with an error, or after one: its shapes (ops with a window add the failing arithmetic)."""
        return [f"{fmt_shape(x)} -> {fmt_shape(y)}"]

    def explain(self, x: Shape | None, y: Shape | None, params: int, macs: int) -> list[str]:
        """The arithmetic from x to y, for `archspec explain` (and hover in the editor)."""
        same = "the shape does not change. " if x == y else ""
        lines = [f"{fmt_shape(x)} -> {fmt_shape(y)}: {same}{self.summary}"]
        if params:
            lines.append(f"params: {params:,}")
        return lines


# --------------------------------------------------------------------------- helpers

def need_rank(op: str, x: Shape | None, rank: int, emit: Emit) -> bool:
    """True when x has the rank the op needs; otherwise reports E103 (unknown passes)."""
    if x is None or len(x) == rank:
        return True
    if rank == 3:
        emit(
            codes.WRONG_RANK,
            f"`{op}` needs a 4-D tensor [B, C, H, W], got {fmt_shape(x)}",
            help="move this layer before `flatten` (convs and pools work on images)",
        )
    else:
        emit(
            codes.WRONG_RANK,
            f"`{op}` needs a 2-D tensor [B, F], got {fmt_shape(x)}",
            help="add `flatten` (or `gap | flatten`) before it",
        )
    return False


def window_out(
    axis: str,
    size: Dim,
    k: int,
    s: int,
    p: int,
    d: int = 1,
    ceil_mode: bool = False,
) -> tuple[Dim, str, int]:
    """PyTorch's output size for a sliding window, the formula with its numbers, rows dropped."""
    if size is None:
        return None, "", 0
    span = size + 2 * p - d * (k - 1) - 1
    out = window_size(size, k, s, p, d, ceil_mode)  # type: ignore[assignment]
    if ceil_mode:
        formula = f"{axis}_out = ceil(({size} + 2*{p} - {d}*({k}-1) - 1)/{s}) + 1 = {out}"
        dropped = 0
    else:
        formula = f"{axis}_out = floor(({size} + 2*{p} - {d}*({k}-1) - 1)/{s} + 1) = {out}"
        # Uncovered trailing positions, less the bottom/right padding among them: real rows lost.
        # A window narrower than its stride skips rows by design (a strided 1x1 conv): no warning.
        eff = d * (k - 1) + 1
        dropped = max(0, span % s - p) if span >= 0 and eff >= s else 0
    return out, formula, dropped


def _padding_to_fit(x: Shape, eff: tuple[int, int], p: tuple[int, int], bad_axes: list[str]) -> str:
    """The padding, as written after `p`, that lets a window of size eff fit on the axes that are too small.

    An axis that already fits keeps its padding; `p1x0` when only H needs more, `p2` when both need the same.
    """
    need = []
    for i, axis in enumerate("HW"):
        size = x[i + 1] or 0
        need.append(max(p[i], -(-(eff[i] - size) // 2)) if axis in bad_axes else p[i])
    return pair_text((need[0], need[1]))


def spatial(
    op: str,
    x: Shape,
    k: tuple[int, int],
    s: tuple[int, int],
    p: tuple[int, int],
    d: tuple[int, int],
    emit: Emit,
    too_small_code: str,
    ceil_mode: bool = False,
) -> tuple[Dim, Dim]:
    """Output H and W; reports a window too large for the input, and rows the floor drops (on a
    symbolic input: records that each output is at least 1, and where floors may drop rows)."""
    if emit.sizes is not None:
        return tuple(symbolic_window(emit.sizes, i, x[i + 1], k[i], s[i], p[i], d[i], ceil_mode) for i in (0, 1))  # type: ignore[return-value]
    h, fh, dh = window_out("H", x[1], k[0], s[0], p[0], d[0], ceil_mode)
    w, fw, dw = window_out("W", x[2], k[1], s[1], p[1], d[1], ceil_mode)
    bad = [(axis, f) for axis, v, f in (("H", h, fh), ("W", w, fw)) if v is not None and v < 1]
    if bad:
        eff = (d[0] * (k[0] - 1) + 1, d[1] * (k[1] - 1) + 1)
        padded = tuple(None if v is None else v + 2 * pp for v, pp in zip(x[1:], p))
        what = "kernel" if too_small_code == codes.KERNEL_TOO_LARGE else "window"
        emit(
            too_small_code,
            f"{what} {pair_text(eff)} is larger than the padded input "
            f"{'x'.join('?' if v is None else str(v) for v in padded)}; output size would be below 1",
            notes=[f"input is {fmt_shape(x)}"] + [f for _, f in bad],
            help=f"pad the input (e.g. `p{_padding_to_fit(x, eff, p, [axis for axis, _ in bad])}`), use a smaller {what}, "
            f"or downsample less before this layer",
        )
        return (None if h is None or h < 1 else h), (None if w is None or w < 1 else w)
    if (dh or dw) and not ceil_mode:
        lost = []
        if dh:
            lost.append(f"{dh} row{'s' if dh > 1 else ''}")
        if dw:
            lost.append(f"{dw} column{'s' if dw > 1 else ''}")
        emit(
            codes.FLOOR_DROPS_PIXELS,
            f"`{op}` on {x[1]}x{x[2]} drops the last {' and '.join(lost)}: no window covers them",
            notes=[f"input is {fmt_shape(x)}", fh, fw],
            help="pad the input so the windows tile it exactly"
            + (", or add `ceil` to keep a partial window" if too_small_code == codes.OUTPUT_TOO_SMALL else ""),
        )
    return h, w


def symbolic_window(sizes: Constraints, axis: int, n: Size | None, k: int, s: int, p: int, d: int, ceil: bool) -> Size | None:
    """A window's output size on a symbolic size, with its conditions: at least 1, and where the floor drops rows."""
    if n is None:
        return None
    y = window_size(n, k, s, p, d, ceil)
    sizes.at_least_one(axis, y)
    sizes.window(axis, n, window(k, s, p, d, ceil))
    return y


def fits(emit: Emit, axis: int, size: Size | None) -> bool:
    """Whether an output size is at least 1: for a number, the answer; on a symbolic input, a condition (recorded) and True."""
    if emit.sizes is None:
        return size is None or size >= 1  # type: ignore[operator]
    if size is not None:
        emit.sizes.at_least_one(axis, size)
    return True


def window_line(axis: str, size: int, k: int, s: int, p: int, d: int, out: Any, ceil_mode: bool = False) -> str:
    """`H: (32 + 2*0 - 1*(3-1) - 1)/1 + 1 = 30`, with floor()/ceil() written out when the division is not exact."""
    num = size + 2 * p - d * (k - 1) - 1
    expr = f"({size} + 2*{p} - {d}*({k}-1) - 1)/{s}"
    if num >= 0 and num % s == 0:
        return f"{axis}: {expr} + 1 = {out}"
    fn = "ceil" if ceil_mode else "floor"
    rounded = (math.ceil if ceil_mode else math.floor)(num / s) + 1
    text = f"{axis}: {fn}({expr}) + 1 = {fn}({number_text(num / s)}) + 1 = {rounded}"
    if rounded != out:  # ceil mode: PyTorch drops a last window that would start in the padding
        text += f" - 1 = {out} (the last window would start in the right padding, so PyTorch drops it)"
    elif not ceil_mode and window_out(axis, size, k, s, p, d)[2]:
        # Input rows the floor loses, by the checker's own rule (what W201 reports).
        lost = window_out(axis, size, k, s, p, d)[2]
        noun = ("row" if axis == "H" else "column") + ("s" if lost > 1 else "")
        text += f" (the floor drops the last {lost} {noun}: no window covers {'them' if lost > 1 else 'it'})"
    return text


def whole_image_step(x: Shape | None) -> RFStep | None:
    """One window over the whole H x W (global pooling, flatten): every output sees every input."""
    if x is None or len(x) != 3:
        return ((1, 1), (1, 1)) if x is not None else None
    if x[1] is None or x[2] is None:
        return None
    return (x[1], x[2]), (x[1], x[2])


def positive_pair(v: tuple[int, int] | None) -> tuple[int, int] | None:
    """Validator body: kernels, strides, dilations and sizes are at least 1."""
    if v is not None and min(v) < 1:
        raise ValueError(f"must be at least 1, got {pair_text(v)}")
    return v


def nonnegative_pair(v: Any) -> Any:
    """Validator body: padding is never negative."""
    if isinstance(v, tuple) and min(v) < 0:
        raise ValueError(f"padding cannot be negative, got {pair_text(v)}")
    return v


def window_failure_lines(x: Shape | None, y: Shape | None, k: tuple[int, int], s: tuple[int, int], p: tuple[int, int],
                         d: tuple[int, int], ceil_mode: bool = False) -> list[str]:
    """A window op with an error: its shapes, and the arithmetic that gives a size below 1."""
    lines = [f"{fmt_shape(x)} -> {fmt_shape(y)}"]
    if x is None or None in x or len(x) != 3:
        return lines
    for i, axis in enumerate("HW"):
        out = window_out(axis, x[i + 1], k[i], s[i], p[i], d[i], ceil_mode)[0]
        line = window_line(axis, x[i + 1], k[i], s[i], p[i], d[i], out, ceil_mode)  # type: ignore[arg-type]
        if out is not None and out < 1:
            eff = d[i] * (k[i] - 1) + 1
            line += f": below 1, the {eff}-wide window does not fit in {x[i + 1]} + 2*{p[i]} = {x[i + 1] + 2 * p[i]}"  # type: ignore[operator]
        lines.append(line)
    return lines
