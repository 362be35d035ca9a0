"""Symbolic input sizes: `input 3xHxW` checked for every H and W at once.

The checker checks the network once with H and W as expressions (sizemap.py): every op's shape rule
computes its sizes with them, and where a rule compares sizes it records the condition (sizemap.
Constraints). This module is the solver that turns those conditions into the sizes each axis accepts.
Each op maps a size by a monotone rule with a shift property, g(x + P) = g(x) + q, so composing them
gives every layer's size as an expression in H (or W) with a shift too, and the set of sizes is exact:

- every window and transposed conv needs its output >= 1: maps are non-decreasing, so together
  they hold exactly from a threshold T on (inverted exactly, `Expr.least`);
- every join (residual add, branch add/concat) needs two sizes equal: beyond T, with P the
  common period of all the maps, a difference d(x) has d(x + P) = d(x) + dq, so on each residue
  class it holds for every k (dq = 0, d = 0), for one k (a pin: a finite set), or never;
- W201 (a floor dropping pixels) depends on each window's input modulo its stride: periodic with
  the same P beyond T.

So the accepted sizes are a threshold, a periodic pattern and finitely many pinned points, read off
the conditions on [T, T + P). Both axes are independent (each condition is on one axis), so the
accepted inputs are a product set. A layer that reads `in.h`/`in.w` makes the network's structure
depend on the size itself; those networks are checked size by size instead (`exact` is False).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Iterable

from archspec.language import codes
from archspec.language.diagnostics import Diagnostic
from archspec.language.errors import ArchspecError, UsageError
from archspec.language.nodes import BlockCall, Deferred, Join, Model, Seq
from archspec.language.ops import Input
from archspec.language.sizemap import Constraints, Expr, Features, Num, as_expr
from archspec.language.tree import CheckedNode, Layer, walk

AXES = ("H", "W")
MAX_PERIOD = 1 << 16  # past this, residues are not enumerated: checked size by size instead


def with_input(model: Model, dims: tuple[Any, ...]) -> Model:
    """The same network on another input shape (only the `input` layer changes)."""
    first = model.input
    if first is None:  # a usage error: the caller (`archspec sizes`, `--input-sizes`) asked for an input size
        raise UsageError(f"{model.path} has no `input` layer", "start the file with `input CxHxW`")
    body = Seq([first.model_copy(update={"dims": tuple(dims)})] + model.body.items[1:])
    return dataclasses.replace(model, body=body, diagnostics=list(model.diagnostics))


def is_symbolic(model: Model) -> bool:
    inp = model.input
    return inp is not None and bool(inp.symbols)


# --------------------------------------------------------------------------- sets of sizes

@dataclass(frozen=True)
class SizeSet:
    """Sizes >= 1: finitely many `points`, and from `start` on those x with (x - start) % period in `residues`."""

    start: int = 1
    period: int = 1
    residues: frozenset[int] = frozenset()
    points: frozenset[int] = frozenset()

    def __contains__(self, x: int) -> bool:
        return x in self.points or (x >= self.start and (x - self.start) % self.period in self.residues)

    @property
    def empty(self) -> bool:
        return not self.residues and not self.points

    @property
    def finite(self) -> bool:
        return not self.residues

    def upto(self, limit: int) -> list[int]:
        return [x for x in range(1, limit + 1) if x in self]

    def first_from(self, n: int) -> int | None:
        """The least size >= n in the set, or None."""
        later = [x for x in self.points if x >= n]
        base = max(n, self.start)
        tail = [base + (r - (base - self.start)) % self.period for r in self.residues]
        found = later + tail
        return min(found) if found else None

    def last_below(self, n: int) -> int | None:
        found = [x for x in range(min(n, self.start + self.period + max(self.points, default=0)), 0, -1) if x in self]
        return found[0] if found else None

    def normalized(self) -> "SizeSet":
        """The same set with the smallest period and the earliest start that still describe it."""
        if not self.residues:
            return SizeSet(1, 1, frozenset(), frozenset(x for x in self.points if x >= 1))
        period, residues = self.period, set(self.residues)
        for d in sorted(d for d in range(1, period) if period % d == 0):
            if all(((r + d) % period in residues) == (r in residues) for r in range(period)):
                period, residues = d, {r % d for r in residues}
                break
        start, points = self.start, set(self.points)
        while start > 1:
            below = start - 1
            if (below in points) != ((below - self.start) % period in residues):
                break
            start = below
            points.discard(below)
        residues = {(r + self.start - start) % period for r in residues} if start != self.start else residues
        norm = SizeSet(start, period, frozenset(residues), frozenset())
        return dataclasses.replace(norm, points=frozenset(x for x in points if x >= 1 and x not in norm))

    def rule(self, name: str) -> str:
        """`H >= 16`, `H = 16 + 4k (k >= 0)`, `H % 32 == 0`, `H in {3-5, 9}`, or `none at any size`."""
        s = self.normalized()
        parts = [f"{name} in {{{ranges(sorted(s.points))}}}"] if s.points else []
        if s.residues:
            parts.append(_tail_rule(name, s))
        return " or ".join(parts) or "none at any size"

    def to_dict(self) -> dict[str, Any]:
        s = self.normalized()
        return {"rule": self.rule("x"), "from": s.start, "period": s.period,
                "residues": sorted(s.start + r for r in s.residues), "points": sorted(s.points)}


def _tail_rule(name: str, s: SizeSet) -> str:
    first = sorted(s.start + r for r in s.residues)
    if len(first) == s.period:
        return f"{name} >= {s.start}" if s.start > 1 else f"any {name}"
    if len(first) == 1:
        f, p = first[0], s.period
        if f % p == 0:
            return f"{name} % {p} == 0" + ("" if f == p else f" and {name} >= {f}")
        return f"{name} = {f} + {p}k (k >= 0)"
    mods = ", ".join(str(r) for r in sorted({f % s.period for f in first}))
    return (f"{name} >= {s.start} and " if s.start > 1 else "") + f"{name} % {s.period} in {{{mods}}}"


def ranges(sizes: list[int]) -> str:
    """[3, 4, 5, 9] -> `3-5, 9`."""
    parts, start = [], sizes[0]
    for prev, cur in zip(sizes, sizes[1:] + [None]):  # type: ignore[list-item]
        if cur != prev + 1:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
            start = cur
    return ", ".join(parts)


EMPTY = SizeSet()


# --------------------------------------------------------------------------- solving the conditions

def threshold(need: list[Expr]) -> int | None:
    """The least size from which every window fits (outputs >= 1), or None when none does."""
    start = 1
    for y in need:
        least = y.least(1)
        if least is None:
            return None
        start = max(start, least)
    return start


def solve(sizes: Constraints, axis: int) -> tuple[SizeSet, SizeSet]:
    """The exact sets of sizes with no error on one axis, and those of them where no floor drops pixels."""
    need, windows, equal = sizes.need[axis], sizes.windows[axis], sizes.equal[axis]
    start = threshold(need)
    if start is None:
        return EMPTY, EMPTY
    exprs = need + [e for e, _ in windows] + [x for alts in equal for pair in alts for x in pair]
    period = 1
    for e in exprs:
        period = math.lcm(period, e.shift()[0])
    if period > MAX_PERIOD:
        raise _Inexact(f"the strides' common period {period:,} is too long to enumerate")
    tail, points = set(), set()
    for r in range(start, start + period):
        ks = _ks(equal, r, period)
        if ks is None:
            tail.add(r - start)
        else:
            points.update(r + k * period for k in ks)
    valid = SizeSet(start, period, frozenset(tail), frozenset(points))
    drops = [lambda x, e=e, w=w: w.drops(e.at(x)) for e, w in windows]
    clean_tail = {r for r in tail if not any(d(start + r) for d in drops)}
    clean_points = {x for x in points if not any(d(x) for d in drops)}
    return valid.normalized(), SizeSet(start, period, frozenset(clean_tail), frozenset(clean_points)).normalized()


def _ks(equal: list[list[tuple[Expr, Expr]]], r: int, period: int) -> set[int] | None:
    """The k >= 0 for which every condition holds at r + k*period; None for every k."""
    allowed: set[int] | None = None
    for alternatives in equal:
        holds: set[int] | None = set()
        for a, b in alternatives:
            d, dq = a.at(r) - b.at(r), _step(a, period) - _step(b, period)
            if dq == 0:
                if d == 0:
                    holds = None
                    break
            elif -d % dq == 0 and -d // dq >= 0:
                holds.add(-d // dq)  # type: ignore[union-attr]
        if holds is None:
            continue
        allowed = holds if allowed is None else allowed & holds
    return allowed


def _step(e: Expr, period: int) -> int:
    p, q = e.shift()
    return q * (period // p)


class _Inexact(Exception):
    """The derivation cannot be exact for this network; it is checked size by size."""


# --------------------------------------------------------------------------- the derivation

@dataclass
class Axis:
    name: str
    valid: SizeSet
    drop_free: SizeSet
    size: int | None = None  # a concrete axis (`input 3xHx32`): its size
    fits_from: int | None = None  # the least size where every window fits (where to show the errors when none is accepted)

    def accepted_rule(self) -> str:
        """What the axis accepts: its rule (`H >= 16`), or its fixed size (`W = 32`)."""
        return self.valid.rule(self.name) if self.size is None else f"{self.name} = {self.size}"

    def to_dict(self) -> dict[str, Any]:
        return {"axis": self.name, "size": self.size, "valid": self.valid.to_dict() | {"rule": self.valid.rule(self.name)},
                "drop_free": self.drop_free.to_dict() | {"rule": self.drop_free.rule(self.name)}}


@dataclass
class Derivation:
    """What `input CxHxW` accepts: per axis; every layer's size in H and W is on the nodes of `tree`
    (`symbolic_shape`, and the sizes themselves in `out_shape`), the tree checked with H and W as expressions."""

    channels: int
    dims: tuple[Any, ...]  # as written: (3, "H", "W")
    axes: list[Axis]
    exact: bool
    tree: list[CheckedNode] = field(default_factory=list, repr=False)  # exact derivations: the checked tree in H and W
    limit: int = 128  # only for inexact derivations: the sizes checked
    at: tuple[int, int] | None = None  # a size the network checks at (for the table's params and MACs)
    why: str = ""  # when not exact: why the sizes were checked one by one

    @property
    def ok(self) -> bool:
        return all(not a.valid.empty for a in self.axes)

    def shown(self, size: Any) -> Any:
        """A size as the tables show it: an axis written as a number (`input 3xHx32`) at that number."""
        if isinstance(size, Features):
            return Features(size.channels, self.shown(size.h), self.shown(size.w))
        if not isinstance(size, (int, Expr)):
            return size
        e = as_expr(size)
        fixed = next((a.size for a in self.axes if a.name == _symbol(e) and a.size is not None), None)
        return Num(e.at(fixed)) if fixed is not None else e

    @property
    def exprs(self) -> dict[str, tuple[int, Expr, Expr]]:
        """(C, H's size, W's size) of every image node in the tree, by path (read from the nodes)."""
        return {n.path: (n.out_shape[0], *(self.shown(v) for v in n.out_shape[1:]))  # type: ignore[index,misc]
                for n in walk(self.tree) if _image(n) and not _is_input(n)}

    @property
    def shapes(self) -> dict[str, tuple[str, ...]]:
        """Every node's symbolic shape, by path (read from the nodes): images first, then feature vectors."""
        nodes = [n for n in walk(self.tree) if n.symbolic_shape is not None]
        ordered = [n for n in nodes if len(n.symbolic_shape) != 1] + [n for n in nodes if len(n.symbolic_shape) == 1]  # type: ignore[arg-type]
        return {n.path: n.symbolic_shape for n in ordered}  # type: ignore[misc]

    @cached_property  # read once per size shown (`archspec sizes`); the tree does not change
    def in_features(self) -> dict[str, Features]:
        """Each `linear` that reads a flattened image: C*h*w in H and W, by path (read from the nodes)."""
        return {n.path: self.shown(n.in_shape[0]) for n in walk(self.tree)  # type: ignore[index]
                if isinstance(n, Layer) and n.valid and n.op == "linear" and n.in_shape and isinstance(n.in_shape[0], Features)}

    def features_text(self, path: str) -> str:
        return str(self.in_features[path])

    def features_at(self, path: str, h: int, w: int) -> int:
        return self.in_features[path].at(h, w)

    def set_shapes(self) -> None:
        """Each node's shape in H and W as text (`symbolic_shape`): images, and the features after `flatten`."""
        for n in walk(self.tree):
            if _is_input(n):
                n.symbolic_shape = tuple(str(x) for x in self.dims)
            elif _image(n):
                n.symbolic_shape = (str(n.out_shape[0]), *(str(self.shown(v)) for v in n.out_shape[1:]))  # type: ignore[index]
            elif n.out_shape is not None and len(n.out_shape) == 1 and isinstance(n.out_shape[0], Features):
                n.symbolic_shape = (str(self.shown(n.out_shape[0])),)

    def lines(self) -> list[str]:
        """The readable constraints: per axis, valid and no-drop sizes; which sizes give which in_features."""
        held = f", each axis with the other at {self.at[0]}x{self.at[1]}" if self.at else ""
        how = "exact, every size" if self.exact else f"checked size by size in 1..{self.limit}{held}: {self.why}"
        out = [f"input sizes ({how}):"]
        for a in self.axes:
            if a.size is not None:
                ok = "accepted" if a.size in a.valid else f"not accepted: needs {a.valid.rule(a.name)}"
                out.append(f"  {a.name} = {a.size}: {ok}")
                continue
            out.append(f"  {a.name} accepted: {a.valid.rule(a.name)}")
            out.append(f"  {a.name} with no floor dropping pixels (W201): {a.drop_free.rule(a.name)}")
        for path in self.in_features:
            out.append(f"  {path}: in_features = {self.features_text(path)}" + self.feature_examples(path))
        return out

    def feature_examples(self, path: str) -> str:
        h_axis, w_axis = self.axes
        hs = [h_axis.size] if h_axis.size is not None else _some(h_axis.drop_free, 3) or _some(h_axis.valid, 3)
        ws = [w_axis.size] if w_axis.size is not None else _some(w_axis.drop_free, 3) or _some(w_axis.valid, 3)
        if not hs or not ws or self.in_features[path].constant:
            return " at every size"
        pairs = list(zip(hs, ws)) if len(hs) == len(ws) else [(h, w) for h in hs for w in ws][:3]
        values = {self.features_at(path, h, w) for h, w in pairs}
        if len(values) == 1 and h_axis.valid.finite and w_axis.valid.finite and len(pairs) == 1:
            return f" (only at {pairs[0][0]}x{pairs[0][1]})"
        shown = ", ".join(f"{self.features_at(path, h, w)} at {h}x{w}" for h, w in pairs)
        return f": {shown}, ... (a built nn.Linear pins the size)"

    def to_dict(self) -> dict[str, Any]:
        return {"input": "x".join(map(str, self.dims)), "exact": self.exact, "axes": [a.to_dict() for a in self.axes],
                "shapes": {p: list(s) for p, s in self.shapes.items()},
                "in_features": {p: self.features_text(p) for p in self.in_features}}


def _image(n: CheckedNode) -> bool:
    """A node whose output is an image with known channels and sizes."""
    y = n.out_shape
    return y is not None and len(y) == 3 and isinstance(y[0], int) and all(isinstance(v, (int, Expr)) for v in y[1:])


def _is_input(n: CheckedNode) -> bool:
    return isinstance(n, Layer) and n.op == "input"


def _symbol(e: Expr) -> str | None:
    """The symbol (H or W) an expression is in; None for a constant."""
    while not hasattr(e, "name"):
        inner = getattr(e, "inner", None)
        if inner is None:
            return None
        e = inner
    return e.name  # type: ignore[attr-defined]


def _some(s: SizeSet, n: int) -> list[int]:
    found: list[int] = []
    x = 1
    while len(found) < n:
        nxt = s.first_from(x)
        if nxt is None:
            break
        found.append(nxt)
        x = nxt + 1
    return found


def _shape_reads(items: Iterable[Any]) -> bool:
    """A layer anywhere that reads `in.h`, `in.w` or `in.f` (its arguments may then depend on the size)."""
    stack = list(items)
    while stack:
        node = stack.pop()
        if isinstance(node, Deferred) and any(r in ("in.h", "in.w", "in.f") for r in node.reads):
            return True
        if isinstance(node, BlockCall):
            stack.extend(node.body.items)
        elif isinstance(node, Join):
            stack.extend(item for b in node.bodies + ([node.shortcut] if node.shortcut is not None else []) for item in b.items)
    return False


def derive(model: Model, limit: int = 128) -> Derivation:
    """The sizes `model`'s input accepts: its symbolic axes (H, W), the concrete ones held at their size.

    A concrete `input 3x32x32` is read as `3xHxW` (what `archspec sizes` asks)."""
    inp = model.input
    if inp is None or len(inp.dims) != 3 or not isinstance(inp.dims[0], int):
        raise ArchspecError(f"{model.path}: input sizes need an image input `input CxHxW`",
                            "a feature input (`input 784`) has no H or W")
    c = inp.dims[0]
    concrete = [d if isinstance(d, int) else None for d in inp.dims[1:]]
    try:
        if _shape_reads(model.body.items):
            raise _Inexact("a layer reads in.h, in.w or in.f")
        derivation = _derive_exact(model, c, concrete)
        derivation.at = representative(derivation)
    except _Inexact as exc:
        derivation = _derive_by_checking(model, c, concrete, limit)
        derivation.why = str(exc)
    return derivation


def _derive_exact(model: Model, c: int, concrete: list[int | None]) -> Derivation:
    """One check with H and W as expressions (every axis symbolic, a concrete one then held at its size),
    and the solver on the conditions it collected."""
    from archspec.language.check import check

    sizes = Constraints()
    tree = check(with_input(model, (c, *AXES)), classes=None, sizes=sizes).body
    if sizes.why:
        raise _Inexact(sizes.why)
    axes = []
    for i, name in enumerate(AXES):
        valid, clean = solve(sizes, i)
        axes.append(Axis(name, valid, clean, concrete[i], threshold(sizes.need[i])))
    if any(a.size is not None and a.size not in a.valid for a in axes):  # a concrete size that fails fails every size
        axes = [a if a.size is not None else Axis(a.name, EMPTY, EMPTY, None, a.fits_from) for a in axes]
    d = Derivation(c, tuple(model.input.dims), axes, exact=True, tree=tree)  # type: ignore[union-attr]
    d.set_shapes()
    return d


def _derive_by_checking(model: Model, c: int, concrete: list[int | None], limit: int) -> Derivation:
    """Sizes found by running the checker at each size in 1..limit (the other axis held at a valid size)."""
    from archspec.language.check import check

    def verdict(h: int, w: int) -> Any:
        return check(with_input(model, (c, h, w)), classes=None)

    hold = list(concrete)
    for i in (0, 1):
        if hold[i] is None:
            hold[i] = next((n for n in range(1, limit + 1) if verdict(*(n if j == i or hold[j] is None else hold[j]
                                                                          for j in (0, 1))).ok), 1)
    axes = []
    for i, name in enumerate(AXES):
        valid, clean = [], []
        for n in ([concrete[i]] if concrete[i] is not None else range(1, limit + 1)):
            dims = (n, hold[1]) if i == 0 else (hold[0], n)
            report = verdict(*dims)
            if report.ok:
                valid.append(n)
                if not drops_on(report, i):
                    clean.append(n)
        axes.append(Axis(name, SizeSet(points=frozenset(valid)), SizeSet(points=frozenset(clean)), concrete[i]))
    # The size each axis was held at while the other was scanned: the lists are about that row and column.
    at = (hold[0], hold[1]) if verdict(hold[0], hold[1]).ok else None  # type: ignore[arg-type]
    return Derivation(c, tuple(model.input.dims), axes, exact=False, limit=limit, at=at)  # type: ignore[union-attr]


def drops_on(report: Any, axis: int) -> bool:
    """A W201 on this axis: its message says `drops the last N rows` (H) or `... columns` (W)."""
    import re

    word = re.compile(r"drops the last .*\b\d+ " + ("rows?" if axis == 0 else "columns?") + r"\b")
    return any(d.code == codes.FLOOR_DROPS_PIXELS and word.search(d.message) for d in report.diagnostics)


def representative(d: Derivation, near: int = 32) -> tuple[int, int] | None:
    """A size the network checks at, to show params and MACs: from `near` up where no floor drops pixels, if any."""
    picked = []
    for a in d.axes:
        if a.size is not None:
            if a.size not in a.valid:
                return None
            picked.append(a.size)
            continue
        n = (a.drop_free.first_from(near) or a.valid.first_from(near) or a.drop_free.last_below(near)
             or a.valid.last_below(near))
        if n is None:
            return None
        picked.append(n)
    return picked[0], picked[1]


# --------------------------------------------------------------------------- checking a symbolic file

def check_symbolic(model: Model, classes: int | None) -> Any:
    """`check` on `input 3xHxW`: the report at a representative size, with the derivation attached.

    Size-dependent warnings at that one size (W201, W202) are left out: the derivation says where
    floors drop pixels for every size. With no accepted size, E114 at the input line, and the errors at
    the smallest size tried."""
    from archspec.language.check import check

    d = derive(model)
    inp = model.input
    c = d.channels
    # Size-dependent warnings at one size are left out: the derivation covers every size.
    one_size = (codes.FLOOR_DROPS_PIXELS, codes.SPATIAL_COLLAPSED)
    if d.at is not None:
        report = check(with_input(model, (c, *d.at)), classes=classes)
        report.diagnostics = [x for x in report.diagnostics if x.code not in one_size]
    else:
        tried = tuple(a.size if a.size is not None else a.fits_from or 1 for a in d.axes)
        report = check(with_input(model, (c, *tried)), classes=classes)
        report.diagnostics = [x for x in report.diagnostics if x.code not in one_size]
        at = "x".join(map(str, (c, *tried)))
        for x in report.diagnostics:
            x.notes.insert(0, f"at input size {at}")
        failing = [a for a in d.axes if a.size is not None and a.size not in a.valid]
        why = "; ".join(f"{a.name} = {a.size} fails for every {d.axes[1 - i].name}" for i, a in enumerate(d.axes) if a in failing) \
            if failing else "; ".join(f"no {a.name} works" for a in d.axes if a.valid.empty)
        report.diagnostics.insert(0, Diagnostic(
            codes.NO_INPUT_SIZE, f"no input size makes this network check ({why})", inp.span,  # type: ignore[union-attr]
            notes=[f"the errors below are at input size {at}"],
            help="fix the layer the errors name (a smaller kernel or stride, more padding), or change the concrete size"))
    first = report.body[0] if report.body else None
    if isinstance(first, Layer) and isinstance(first.layer, Input):
        first.layer = inp  # the table shows `input 3xHxW` as written
    attach(report, d)
    return report


def attach(report: Any, d: Derivation) -> None:
    """The derivation on the report, and each node's shape in H and W (from the tree checked in H and W) on
    the report's own node at the same place."""
    report.symbolic = d
    shapes = {n.path: n.symbolic_shape for n in walk(d.tree)}  # (a residual's projection is there at some sizes only)
    for node in report.nodes():
        node.symbolic_shape = shapes.get(node.path)
