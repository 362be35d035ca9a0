"""Sizes as expressions in a symbolic input size (H or W), and the per-op maps that build them.

Every spatial op maps one axis's size by one of a few rules (each op says which, in `axis_map`,
next to its shape rule):

- `Window`: out = floor((x + offset) / stride) + 1 (convs and pools; `ceil` folds into the offset),
- `Scale`:  out = factor * x + offset (upsampling, transposed convs),
- `Fixed`:  out = n (adaptive pooling),
- `SAME`:   out = x (everything pointwise).

Each is monotone (non-decreasing) and has a shift: g(x + P) = g(x) + q (a window: P = stride,
q = 1; a scale: P = 1, q = factor; fixed: q = 0). Expressions compose these with simplification
(nested floors merge: floor((floor((x+a)/s1) + b)/s2) = floor((x + a + b*s1)/(s1*s2))), and keep
their shift, which is what makes the derived size sets exact rather than sampled.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
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


# --------------------------------------------------------------------------- per-op maps

@dataclass(frozen=True)
class Same:
    """The size does not change (pointwise ops)."""

    def apply(self, e: Expr) -> Expr:
        return e


SAME = Same()


@dataclass(frozen=True)
class Window:
    """A sliding window: out = floor((x + offset)/stride) + 1, valid when out >= 1.

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


@dataclass(frozen=True)
class Scale:
    """out = factor * x + offset, valid when out >= 1."""

    factor: int
    offset: int

    def apply(self, e: Expr) -> Expr:
        return lin(e, self.factor, self.offset)


@dataclass(frozen=True)
class Fixed:
    """out = size, whatever the input (adaptive pooling)."""

    size: int

    def apply(self, e: Expr) -> Expr:
        return Num(self.size)


SizeMap = Union[Same, Window, Scale, Fixed]
