"""`archspec sizes`: which input sizes a network accepts, per axis, found by checking each size.

The checker is run with the file's `input` replaced by C x H x W for every size in a range. The
spatial axes are independent (every error about a size, E101/E102/E107/E108, is about one axis
at a time), so the accepted sizes are a product set: H's with W held at an accepted width, and
W's with H held at an accepted height. Each set is written as a readable constraint
(`H >= 16`, `H = 32k + 1`, or a list), with the subset where no floor drops pixels (W201), and,
for a `linear` after `flatten`, which size gives which in_features (what a built nn.Linear pins).
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from archspec.language import codes
from archspec.language.check import CheckReport, check
from archspec.language.errors import UsageError
from archspec.language.nodes import Model, Seq


def with_input(model: Model, dims: tuple[int, ...]) -> Model:
    """The same network on another input shape (only the `input` layer changes)."""
    first = model.input
    if first is None:
        raise UsageError(f"{model.path} has no `input` layer", "start the file with `input CxHxW`")
    body = Seq([first.model_copy(update={"dims": dims})] + model.body.items[1:])
    return dataclasses.replace(model, body=body, diagnostics=list(model.diagnostics))


def parse_sizes(text: str) -> list[tuple[int, ...]]:
    """`3x32x32,3x64x64` -> [(3, 32, 32), (3, 64, 64)]."""
    sizes = []
    for part in text.split(","):
        dims = part.strip().split("x")
        if not all(d.isdigit() and int(d) >= 1 for d in dims) or len(dims) not in (1, 3):
            raise UsageError(f"--input-sizes: `{part.strip()}` is not CxHxW or F", "e.g. --input-sizes 3x32x32,3x64x64")
        sizes.append(tuple(int(d) for d in dims))
    return sizes


@dataclass
class Axis:
    """The sizes one axis accepts in 1..limit, and those where no floor drops pixels."""

    name: str
    valid: list[int]
    drop_free: list[int]
    limit: int

    def to_dict(self) -> dict[str, Any]:
        return {"axis": self.name, "valid": self.valid, "drop_free": self.drop_free,
                "valid_rule": constraint(self.name, self.valid, self.limit),
                "drop_free_rule": constraint(self.name, self.drop_free, self.limit)}


@dataclass
class Sizes:
    path: str
    channels: int
    limit: int
    axes: list[Axis]
    in_features: dict[str, list[tuple[int, int, int]]] = field(default_factory=dict)  # linear path -> (H, W, in_features)
    anchor: tuple[int, int] | None = None  # the (H, W) one axis was held at while the other was scanned

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "channels": self.channels, "range": [1, self.limit],
                "axes": [a.to_dict() for a in self.axes],
                "in_features": {k: [{"H": h, "W": w, "in_features": f} for h, w, f in v] for k, v in self.in_features.items()}}

    def render(self) -> str:
        lines = [f"{self.path}: input {self.channels}xHxW, sizes 1..{self.limit} checked"]
        for a in self.axes:
            lines.append(f"  {a.name}: valid when {constraint(a.name, a.valid, self.limit)}")
            lines.append(f"  {a.name}: no floor drops pixels (W201) when {constraint(a.name, a.drop_free, self.limit)}")
        for name, rows in self.in_features.items():
            distinct = sorted({f for _, _, f in rows})
            if len(distinct) == 1:
                lines.append(f"  {name}: in_features = {distinct[0]} at every valid size")
            else:
                runs: list[tuple[int, int, int, int, int]] = []  # in_features, first H, first W, last H, last W
                for h, w, f in rows:
                    if runs and runs[-1][0] == f:
                        runs[-1] = runs[-1][:3] + (h, w)
                    else:
                        runs.append((f, h, w, h, w))
                shown = ", ".join(f"{f} at {h1}x{w1}" + (f"..{h2}x{w2}" if (h1, w1) != (h2, w2) else "") for f, h1, w1, h2, w2 in runs[:5])
                lines.append(f"  {name}: in_features depends on the size (a built nn.Linear pins it): {shown}"
                             + (", ..." if len(runs) > 5 else ""))
        return "\n".join(lines) + "\n"


def constraint(name: str, sizes: list[int], limit: int) -> str:
    """A readable rule for a set of sizes in 1..limit: `H >= 16`, `H = 32k + 1 (k >= 0)`, or ranges."""
    if not sizes:
        return f"never (no {name} in 1..{limit})"
    if sizes == list(range(sizes[0], limit + 1)):
        return f"{name} >= {sizes[0]}" if sizes[0] > 1 else f"any {name}"
    if len(sizes) >= 3:
        step = sizes[1] - sizes[0]
        if sizes == list(range(sizes[0], limit + 1, step)) and limit - sizes[-1] < step:
            k = f"{step}k" if sizes[0] % step == 0 else f"{step}k + {sizes[0] % step}"
            low = sizes[0] // step
            return f"{name} = {k} (k >= {low})" if low else f"{name} = {k}"
    return f"{name} in {{{_ranges(sizes)}}}"


def _ranges(sizes: list[int]) -> str:
    parts, start = [], sizes[0]
    for prev, cur in zip(sizes, sizes[1:] + [None]):  # type: ignore[list-item]
        if cur != prev + 1:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
            start = cur
    return ", ".join(parts)


def _verdict(model: Model, dims: tuple[int, int, int]) -> CheckReport:
    return check(with_input(model, dims), classes=None)


def _drops(report: CheckReport, axis: int) -> bool:
    """A W201 on this axis: its message says `drops the last N rows` (H) or `... columns` (W)."""
    word = re.compile(r"drops the last .*\b\d+ " + ("rows?" if axis == 0 else "columns?") + r"\b")
    return any(d.code == codes.FLOOR_DROPS_PIXELS and word.search(d.message) for d in report.diagnostics)


def input_sizes(model: Model, limit: int = 128) -> Sizes:
    """Check every H and W in 1..limit (the file's channels kept)."""
    inp = model.input
    if inp is None or len(inp.dims) != 3:
        raise UsageError(f"{model.path}: input sizes need an image input `input CxHxW`", "a feature input (`input 784`) has no H or W")
    c, h0, w0 = inp.dims
    anchor = _anchor(model, c, h0, w0, limit)
    if anchor is None:
        return Sizes(model.path, c, limit, [Axis("H", [], [], limit), Axis("W", [], [], limit)])
    ha, wa = anchor
    axes = []
    for axis, name in ((0, "H"), (1, "W")):
        valid, drop_free = [], []
        for n in range(1, limit + 1):
            report = _verdict(model, (c, n, wa) if axis == 0 else (c, ha, n))
            if report.ok:
                valid.append(n)
                if not _drops(report, axis):
                    drop_free.append(n)
        axes.append(Axis(name, valid, drop_free, limit))
    return Sizes(model.path, c, limit, axes, _in_features(model, c, axes), anchor)


def _anchor(model: Model, c: int, h0: int, w0: int, limit: int) -> tuple[int, int] | None:
    """A valid (H, W) to hold one axis at while the other is scanned: the file's own, a square, or a pair."""
    if _verdict(model, (c, h0, w0)).ok:
        return h0, w0
    for n in range(1, limit + 1):
        if _verdict(model, (c, n, n)).ok:
            return n, n
    for h in range(1, limit + 1, max(1, limit // 16)):
        for w in range(1, limit + 1):
            if _verdict(model, (c, h, w)).ok:
                return h, w
    return None


def _in_features(model: Model, c: int, axes: list[Axis]) -> dict[str, list[tuple[int, int, int]]]:
    """For each `linear`, its in_features at valid square-ish sizes (H and W stepped together)."""
    hs, ws = axes[0].valid, axes[1].valid
    out: dict[str, list[tuple[int, int, int]]] = {}
    for h, w in list(zip(hs, ws))[:32]:
        for row in _verdict(model, (c, h, w)).rows:
            if row.op == "linear" and row.in_shape is not None and row.in_shape[0] is not None:
                out.setdefault(row.path, []).append((h, w, row.in_shape[0]))
    return out
