"""Spatial sizes that are numbers or expressions in a symbolic input size (H or W), and their arithmetic.

A size is an int (`input 3x32x32`) or an `Expr` in H or W (`input 3xHxW`). Every op's one shape rule
(`infer`) computes its sizes with the functions at the end of this file, which give an int for ints and
an expression for expressions (an `Expr` also takes `+`, `-`, and `*` and `//` by whole numbers, as an
int does). The spatial ops map a size by one of a few rules:

- a window:  out = floor((x + offset) / stride) + 1 (convs and pools; `ceil` folds into the offset),
- a scale:   out = factor * x + offset (upsampling, transposed convs),
- a fixed size (adaptive pooling), or the same size (everything pointwise).

Each is monotone (non-decreasing) and has a shift: g(x + P) = g(x) + q (a window: P = stride,
q = 1; a scale: P = 1, q = factor; fixed: q = 0). Expressions compose these with simplification
(nested floors merge: floor((floor((x+a)/s1) + b)/s2) = floor((x + a + b*s1)/(s1*s2))), and keep
their shift, which is what makes the derived size sets exact rather than sampled.

Where a rule compares sizes (an output of at least 1, equal sizes at a join), an expression cannot say
yes or no: the rule records the condition in the check's `Constraints` instead, and the solver
(symbolic.py) turns them into the sizes each axis accepts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Union


class Expr:
    """An integer size as a function of one symbolic input size."""

    def at(self, x: int) -> int:
        raise NotImplementedError

    def shift(self) -> tuple[int, int]:
        """(P, q) with self(x + P) = self(x) + q for every integer x."""
        raise NotImplementedError

    def least(self, v: int) -> int | None:
        """The least integer x with self(x) >= v (the expression is non-decreasing); None: no such x.

        A constant at least v holds everywhere: returned as a very small number (below any size)."""
        raise NotImplementedError

    # A shape rule's arithmetic on a size works on an expression as on an int (`(n + 2*p - k) // s + 1`,
    # `n * f`): whole numbers only, and only what keeps the expression non-decreasing.
    def __add__(self, other: int) -> "Expr":
        return lin(self, 1, _whole(other, "+"))

    __radd__ = __add__

    def __sub__(self, other: int) -> "Expr":
        return lin(self, 1, -_whole(other, "-"))

    def __mul__(self, other: int) -> "Expr":
        if _whole(other, "*") < 0:
            raise TypeError("a size in H or W times a negative number is not a size")
        return lin(self, other, 0)

    __rmul__ = __mul__

    def __floordiv__(self, other: int) -> "Expr":
        if _whole(other, "//") < 1:
            raise TypeError("a size in H or W divides by a whole number >= 1 only")
        return floor_div(self, other)

    def __lt__(self, other: object) -> bool:
        raise TypeError("a size in H or W has no answer to a comparison: record it as a condition "
                        "(ops.base.fits, emit.sizes.at_least_one / .same)")

    __le__ = __gt__ = __ge__ = __lt__


def _whole(n: object, op: str) -> int:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"a size in H or W {op} {type(n).__name__}: only whole numbers")
    return n


EVERYWHERE = -(1 << 62)


@dataclass(frozen=True)
class Sym(Expr):
    name: str

    def at(self, x: int) -> int:
        return x

    def shift(self) -> tuple[int, int]:
        return 1, 1

    def least(self, v: int) -> int | None:
        return v

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Num(Expr):
    value: int

    def at(self, x: int) -> int:
        return self.value

    def shift(self) -> tuple[int, int]:
        return 1, 0

    def least(self, v: int) -> int | None:
        return EVERYWHERE if self.value >= v else None

    def __str__(self) -> str:
        return str(self.value)


@dataclass(frozen=True)
class Lin(Expr):
    """factor * inner + offset (factor >= 1)."""

    inner: Expr
    factor: int
    offset: int

    def at(self, x: int) -> int:
        return self.factor * self.inner.at(x) + self.offset

    def shift(self) -> tuple[int, int]:
        p, q = self.inner.shift()
        return p, q * self.factor

    def least(self, v: int) -> int | None:
        return self.inner.least(-((self.offset - v) // self.factor))  # inner >= ceil((v - offset) / factor)

    def __str__(self) -> str:
        inner = str(self.inner) if self.factor == 1 else f"{self.factor}*{self.inner}"
        if self.offset == 0:
            return inner
        return f"{inner} {'+' if self.offset > 0 else '-'} {abs(self.offset)}"


@dataclass(frozen=True)
class Floor(Expr):
    """floor(inner / divisor) (divisor >= 2)."""

    inner: Expr
    divisor: int

    def at(self, x: int) -> int:
        return self.inner.at(x) // self.divisor

    def shift(self) -> tuple[int, int]:
        p, q = self.inner.shift()
        k = self.divisor // math.gcd(q, self.divisor)  # inner moves by q*k, a whole number of divisors
        return p * k, q * k // self.divisor

    def least(self, v: int) -> int | None:
        return self.inner.least(v * self.divisor)

    def __str__(self) -> str:
        s = self.divisor
        if isinstance(self.inner, Lin) and self.inner.factor == 1 and self.inner.offset == s - 1:
            return f"ceil({self.inner.inner}/{s})"  # floor((u + s - 1)/s)
        inner = str(self.inner)
        return f"floor({inner}/{s})" if isinstance(self.inner, Sym) else f"floor(({inner})/{s})"


def lin(e: Expr, factor: int, offset: int) -> Expr:
    """factor * e + offset, simplified (factor >= 0)."""
    if factor == 0:
        return Num(offset)
    if isinstance(e, Num):
        return Num(factor * e.value + offset)
    if isinstance(e, Lin):
        return lin(e.inner, e.factor * factor, e.offset * factor + offset)
    if factor == 1 and offset == 0:
        return e
    return Lin(e, factor, offset)


def floor_div(e: Expr, s: int) -> Expr:
    """floor(e / s), simplified: exact divisions cancel, nested floors merge, offsets kept in [0, s)."""
    if s == 1:
        return e
    if isinstance(e, Num):
        return Num(e.value // s)
    if isinstance(e, Floor):
        return floor_div(e.inner, e.divisor * s)
    if isinstance(e, Lin):
        g = math.gcd(e.factor, s)
        if g > 1:  # floor((g*m*u + a)/(g*s')) = floor((m*u + floor(a/g))/s')
            return floor_div(lin(e.inner, e.factor // g, e.offset // g), s // g)
        whole, rest = divmod(e.offset, s)
        if isinstance(e.inner, Floor) and e.factor == 1:  # floor((floor(u/s1) + b)/s) = floor((u + b*s1)/(s1*s))
            return floor_div(lin(e.inner.inner, 1, e.offset * e.inner.divisor), e.inner.divisor * s)
        if whole:  # floor((u + a)/s) = floor((u + a mod s)/s) + a div s
            return lin(floor_div(lin(e.inner, e.factor, rest), s), 1, whole)
    return Floor(e, s)


# --------------------------------------------------------------------------- windows

@dataclass(frozen=True)
class Window:
    """A sliding window on one axis: out = floor((x + offset)/stride) + 1, valid when out >= 1.

    padding, eff (the dilated kernel) and ceil say where the floor drops input pixels (W201), by
    the checker's rule: never in ceil mode or when the window is narrower than its stride."""

    offset: int
    stride: int
    padding: int
    eff: int
    ceil: bool = False

    def apply(self, e: Expr) -> Expr:
        return lin(floor_div(lin(e, 1, self.offset), self.stride), 1, 1)

    def drops(self, n: int) -> bool:
        span = n + 2 * self.padding - self.eff
        return not self.ceil and self.eff >= self.stride and span >= 0 and span % self.stride > self.padding


def window(k: int, s: int, p: int, d: int = 1, ceil: bool = False) -> Window:
    """PyTorch's window size rule as a `Window`. In ceil mode, ceil((n - eff + 2p)/s) + 1 less one when
    the last window would start in the right padding is floor((n + 2p - eff + min(eff - p, s) - 1)/s) + 1."""
    eff = d * (k - 1) + 1
    offset = 2 * p - eff + (min(eff - p, s) - 1 if ceil else 0)
    return Window(offset, s, p, eff, ceil)


# --------------------------------------------------------------------------- sizes: numbers or expressions

Size = Union[int, Expr]


def as_expr(n: Size) -> Expr:
    return Num(n) if isinstance(n, int) else n


def window_size(n: Size, k: int, s: int, p: int, d: int = 1, ceil: bool = False) -> Size:
    """PyTorch's output size of a sliding window over n (may be below 1: the caller checks)."""
    if isinstance(n, Expr):
        return window(k, s, p, d, ceil).apply(n)
    span = n + 2 * p - d * (k - 1) - 1
    if not ceil:
        return span // s + 1
    out = -(-span // s) + 1
    return out - 1 if (out - 1) * s >= n + p else out  # PyTorch: the last window starts inside the input or left padding


def scaled_size(n: Size, factor: int, offset: int = 0) -> Size:
    """factor * n + offset (upsampling; a transposed conv's affine rule)."""
    return lin(n, factor, offset) if isinstance(n, Expr) else factor * n + offset


@dataclass(frozen=True)
class Features:
    """C*h*w: the features `flatten` gives on a symbolic image (a `linear` after it takes this many)."""

    channels: int
    h: Expr
    w: Expr

    def at(self, h: int, w: int) -> int:
        return self.channels * self.h.at(h) * self.w.at(w)

    @property
    def constant(self) -> bool:
        return isinstance(self.h, Num) and isinstance(self.w, Num)

    def __str__(self) -> str:
        """`16*(floor(H/4) - 3)*(floor(W/4) - 3)`, or its number when both sizes are constants."""
        number = self.channels * math.prod(e.value for e in (self.h, self.w) if isinstance(e, Num))
        sizes = [f"({e})" if isinstance(e, Lin) and e.offset else str(e) for e in (self.h, self.w) if not isinstance(e, Num)]
        return "*".join(([str(number)] if number != 1 or not sizes else []) + sizes)


# --------------------------------------------------------------------------- what a symbolic check collects

@dataclass
class Constraints:
    """The conditions on a symbolic input size that a check of `input 3xHxW` collects, per axis (0: H, 1: W).

    Every expression in `need` must be >= 1; the pairs of each entry of `equal` are alternatives, one of
    which must be equal; `windows` are where floors may drop pixels (W201). `why` is set when a rule
    compares sizes no exact rule covers: the sizes are then checked one by one."""

    need: tuple[list[Expr], list[Expr]] = field(default_factory=lambda: ([], []))
    windows: tuple[list[tuple[Expr, Window]], list[tuple[Expr, Window]]] = field(default_factory=lambda: ([], []))
    equal: tuple[list[list[tuple[Expr, Expr]]], list[list[tuple[Expr, Expr]]]] = field(default_factory=lambda: ([], []))
    why: str = ""
    quiet: int = 0  # > 0 while checking layers nobody wrote (a residual's projection): their floors are not W201's

    def at_least_one(self, axis: int, e: Size) -> None:
        self.need[axis].append(as_expr(e))

    def window(self, axis: int, e: Size, w: Window) -> None:
        if not self.quiet:
            self.windows[axis].append((as_expr(e), w))

    def equal_to(self, axis: int, *alternatives: tuple[Size, Size]) -> None:
        """One of the pairs must be equal (a join's sizes)."""
        self.equal[axis].append([(as_expr(a), as_expr(b)) for a, b in alternatives])

    def same(self, axis: int, a: Size, b: Size) -> bool:
        """Whether two sizes are equal: for numbers, the answer; with an expression, a condition (recorded) and True."""
        if isinstance(a, int) and isinstance(b, int):
            return a == b
        if a != b:
            self.equal_to(axis, (a, b))
        return True

    def inexact(self, why: str) -> None:
        self.why = self.why or why
