"""Symbolic input sizes: `input 3xHxW` checked for every H and W at once.

Each op maps one axis's size by a monotone rule with a shift property, g(x + P) = g(x) + q
(`sizemap.py`; each op says which in `axis_map`). Composing them along the checked tree gives
every layer's size as an expression in H (or W), and the whole set of sizes is then exact:

- every window and transposed conv needs its output >= 1: maps are non-decreasing, so together
  they hold exactly from a threshold T on (inverted exactly, `Expr.least`);
- every join (residual add, branch add/concat) needs two sizes equal: beyond T, with P the
  common period of all the maps, a difference d(x) has d(x + P) = d(x) + dq, so on each residue
  class it holds for every k (dq = 0, d = 0), for one k (a pin: a finite set), or never;
- W201 (a floor dropping pixels) depends on each window's input modulo its stride: periodic with
  the same P beyond T.

So the accepted sizes are a threshold, a periodic pattern and finitely many pinned points, read off
the concrete rules on [T, T + P). Both axes are independent (each rule is per axis), so the
accepted inputs are a product set. A layer that reads `in.h`/`in.w` makes the network's structure
depend on the size itself; those networks are checked size by size instead (`exact` is False).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Iterable

from archspec.language import codes
from archspec.language.diagnostics import Diagnostic
from archspec.language.errors import ArchspecError, UsageError
from archspec.language.nodes import BlockCall, Deferred, Join, Model, Seq
from archspec.language.ops import Input, LayerSpec
from archspec.language.sizemap import Expr, Lin, Num, Same, Sym, Window
from archspec.language.tree import Branch, Call, CheckedNode, Layer, TensorRead, layers, stride_of

AXES = ("H", "W")
MAX_PERIOD = 1 << 16  # past this, residues are not enumerated: checked size by size instead
PROBE = 4096  # the size the checked tree's structure is read at (any size gives the same layers)


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


# --------------------------------------------------------------------------- walking one axis

@dataclass
class AxisWalk:
    """One axis through the checked tree: each layer's size, and the conditions on the input size."""

    axis: int
    need: list[Expr] = field(default_factory=list)  # each must be >= 1
    windows: list[tuple[Expr, Window]] = field(default_factory=list)  # (input size, window): where floors drop pixels
    equal: list[list[tuple[Expr, Expr]]] = field(default_factory=list)  # each: one of these pairs must be equal
    sizes: dict[str, Expr] = field(default_factory=dict)  # path -> output size (image layers)
    flattened: dict[str, Expr] = field(default_factory=dict)  # flatten path -> the size it flattens
    feeds: dict[str, str] = field(default_factory=dict)  # linear path -> the flatten whose output it reads
    exact: bool = True
    why: str = ""  # when not exact: why the sizes are checked one by one
    _flat: str | None = None

    def seq(self, nodes: Iterable[CheckedNode], e: Expr | None, silent: bool = False) -> Expr | None:
        for node in nodes:
            e = self.node(node, e, silent)
        return e

    def node(self, node: CheckedNode, e: Expr | None, silent: bool) -> Expr | None:
        if isinstance(node, Layer):
            return self.layer(node, e, silent)
        if isinstance(node, Call):
            y = self.seq(node.body, e, silent)
        elif isinstance(node, Branch):
            y = node.rule.axis(self, node, e, silent)  # each join's own rule (archspec/language/joins/)
        else:  # pragma: no cover
            raise AssertionError(type(node))
        if y is not None:
            self.sizes[node.path] = y
        return y

    def stride_of(self, nodes: list[CheckedNode]) -> Any:
        return stride_of(nodes)

    def layers(self, nodes: list[CheckedNode]) -> list[Layer]:
        return layers(nodes)

    def layer(self, node: Layer, e: Expr | None, silent: bool) -> Expr | None:
        if isinstance(node, TensorRead):  # `from NAME`: the size where it was named (None: features or unknown)
            y = self.sizes.get(node.source.path) if node.source is not None else None
            if y is not None:
                self.sizes[node.path] = y
            return y
        spec = node.layer
        if not isinstance(spec, LayerSpec) or isinstance(spec, Input):
            return e  # an input, or a layer whose arguments are wrong (an error at every size)
        # The rank from the ops, not from the probe's shapes (after an error at the probe's size they are unknown).
        if e is not None and spec.op_name == "flatten":
            self.flattened[node.path] = e
            self._flat = node.path
            return None
        if e is None:
            if spec.checks_features and self._flat is not None and not isinstance(self.flattened[self._flat], Num):
                self.exact = False  # a condition on F = C*h(H)*w(W): not one axis at a time
                self.why = f"`{spec.op_name}` after `flatten` needs a condition on C*H'*W', both axes at once"
            if spec.op_name == "linear" and self._flat is not None:
                self.feeds[node.path] = self._flat
                self._flat = None
            return None
        rule = spec.axis_map(self.axis)
        y = rule.apply(e)
        if not isinstance(rule, Same):
            self.need.append(y)
        if isinstance(rule, Window) and not silent:
            self.windows.append((e, rule))
        self.sizes[node.path] = y
        return y


def threshold(walk: AxisWalk) -> int | None:
    """The least size from which every window fits (outputs >= 1), or None when none does."""
    start = 1
    for y in walk.need:
        least = y.least(1)
        if least is None:
            return None
        start = max(start, least)
    return start


def solve(walk: AxisWalk) -> tuple[SizeSet, SizeSet]:
    """The exact sets of sizes with no error, and those of them where no floor drops pixels."""
    start = threshold(walk)
    if start is None:
        return EMPTY, EMPTY
    exprs = walk.need + [e for e, _ in walk.windows] + [x for alts in walk.equal for pair in alts for x in pair]
    period = 1
    for e in exprs:
        period = math.lcm(period, e.shift()[0])
    if period > MAX_PERIOD:
        raise _Inexact(f"the strides' common period {period:,} is too long to enumerate")
    tail, points = set(), set()
    for r in range(start, start + period):
        ks = _ks(walk.equal, r, period)
        if ks is None:
            tail.add(r - start)
        else:
            points.update(r + k * period for k in ks)
    valid = SizeSet(start, period, frozenset(tail), frozenset(points))
    drops = [lambda x, e=e, w=w: w.drops(e.at(x)) for e, w in walk.windows]
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
    """What `input CxHxW` accepts: per axis, and every layer's size as an expression."""

    channels: int
    dims: tuple[Any, ...]  # as written: (3, "H", "W")
    axes: list[Axis]
    exact: bool
    shapes: dict[str, tuple[str, ...]] = field(default_factory=dict)  # path -> ("16", "floor(H/4) - 3", ...)
    exprs: dict[str, tuple[int, Expr, Expr]] = field(default_factory=dict)  # path -> (C, H's size, W's size) for images
    in_features: dict[str, tuple[int, Expr, Expr]] = field(default_factory=dict)  # linear path -> C, h, w
    limit: int = 128  # only for inexact derivations: the sizes checked
    at: tuple[int, int] | None = None  # a size the network checks at (for the table's params and MACs)
    why: str = ""  # when not exact: why the sizes were checked one by one

    @property
    def ok(self) -> bool:
        return all(not a.valid.empty for a in self.axes)

    def features_text(self, path: str) -> str:
        return features_text(*self.in_features[path])

    def features_at(self, path: str, h: int, w: int) -> int:
        c, eh, ew = self.in_features[path]
        return c * eh.at(h) * ew.at(w)

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
        c, eh, ew = self.in_features[path]
        if not hs or not ws or (isinstance(eh, Num) and isinstance(ew, Num)):
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


def features_text(c: int, h: Expr, w: Expr) -> str:
    """C*h*w as an expression: `16*(floor(H/4) - 3)*(floor(W/4) - 3)`, or its number when both are concrete."""
    constant = c * math.prod(e.value for e in (h, w) if isinstance(e, Num))
    sizes = [f"({e})" if isinstance(e, Lin) and e.offset else str(e) for e in (h, w) if not isinstance(e, Num)]
    return "*".join(([str(constant)] if constant != 1 or not sizes else []) + sizes)


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
    from archspec.language.check import check

    inp = model.input
    if inp is None or len(inp.dims) != 3 or not isinstance(inp.dims[0], int):
        raise ArchspecError(f"{model.path}: input sizes need an image input `input CxHxW`",
                            "a feature input (`input 784`) has no H or W")
    c = inp.dims[0]
    concrete = [d if isinstance(d, int) else None for d in inp.dims[1:]]
    probe = check(with_input(model, (c, PROBE, PROBE)), classes=None)
    try:
        if _shape_reads(model.body.items):
            raise _Inexact("a layer reads in.h, in.w or in.f")
        derivation = _derive_exact(model, probe, c, concrete)
        derivation.at = at = representative(derivation)
        if not probe.ok and at is not None:
            # An error at the probe's size leaves later shapes unknown (a layer reading `in.c` there does
            # not bind): read the tree again at an accepted size. A partial walk can only miss conditions,
            # so when it finds no accepted size there is none.
            probe = check(with_input(model, (c, *at)), classes=None)
            derivation = _derive_exact(model, probe, c, concrete)
            derivation.at = representative(derivation)
    except _Inexact as exc:
        derivation = _derive_by_checking(model, c, concrete, limit)
        derivation.why = str(exc)
    return derivation


def _derive_exact(model: Model, probe: Any, c: int, concrete: list[int | None]) -> Derivation:
    axes, shown = [], []
    for i, name in enumerate(AXES):
        walk = AxisWalk(i)
        walk.seq(probe.body, Sym(name))
        if not walk.exact:
            raise _Inexact(walk.why)
        valid, clean = solve(walk)
        axes.append(Axis(name, valid, clean, concrete[i], threshold(walk)))
        if concrete[i] is not None:  # the shapes shown with the concrete size in place of the symbol
            walk = AxisWalk(i)
            walk.seq(probe.body, Num(concrete[i]))  # type: ignore[arg-type]
        shown.append(walk)
    if any(a.size is not None and a.size not in a.valid for a in axes):  # a concrete size that fails fails every size
        axes = [a if a.size is not None else Axis(a.name, EMPTY, EMPTY, None, a.fits_from) for a in axes]
    d = Derivation(c, tuple(model.input.dims), axes, exact=True)  # type: ignore[union-attr]
    for row in probe.nodes():  # layers, and block calls, residuals and branches (a table's folded rows)
        if row.out_shape is not None and len(row.out_shape) == 3 and row.path in shown[0].sizes:
            d.exprs[row.path] = (row.out_shape[0], shown[0].sizes[row.path], shown[1].sizes[row.path])  # type: ignore[assignment]
            d.shapes[row.path] = tuple(map(str, d.exprs[row.path]))
        elif isinstance(row, Layer) and row.op == "input":
            d.shapes[row.path] = tuple(str(x) for x in model.input.dims)  # type: ignore[union-attr]
    for row in probe.rows:
        # (its channels unknown after an error at the probe's size: the second read, at an accepted size, has them)
        if row.op == "flatten" and row.path in shown[0].flattened and row.in_shape and row.in_shape[0] is not None:
            h, w = shown[0].flattened[row.path], shown[1].flattened[row.path]
            d.shapes[row.path] = (features_text(row.in_shape[0], h, w),)
    features = None  # after `flatten`, until a `linear` fixes the count: it depends on the size
    for row in probe.rows:
        if row.op == "flatten" and row.path in d.shapes:
            features = d.shapes[row.path]
        elif row.op == "linear" or (row.out_shape is not None and len(row.out_shape) == 3):
            features = None
        elif features is not None:
            d.shapes[row.path] = features
    for linear, flat in shown[0].feeds.items():
        flat_row = next(r for r in probe.rows if r.path == flat)
        if flat_row.in_shape is None:  # a mistake before the flatten: its channels are unknown, so is the rule
            continue
        d.in_features[linear] = (flat_row.in_shape[0], shown[0].flattened[flat], shown[1].flattened[flat])  # type: ignore[index]
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
    """The derivation on the report, and each node's shape in H and W on the node itself."""
    report.symbolic = d
    for node in report.nodes():
        found = d.shapes.get(node.path)
        node.symbolic_shape = tuple(found) if found is not None else None
