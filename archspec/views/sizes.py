"""`archspec sizes`: which input sizes a network accepts, per axis, derived exactly.

The file's `input` is read as `CxHxW` (its channels kept) and `symbolic.derive` composes each op's
size map: the sizes with no error, per axis, as a rule for every size (`H >= 16`, `H % 32 == 0`,
`H = 16 + 4k (k >= 0)`, a list when a join pins them), the subset where no floor drops pixels
(W201), and, for a `linear` after `flatten`, which size gives which in_features (what a built
nn.Linear pins). The lists in the JSON are the same sets within 1..limit.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from archspec.language.errors import UsageError
from archspec.language.nodes import Model
from archspec.language.symbolic import Derivation, derive, ranges, with_input


# Documented in docs/guide/sizes.md: the sets in 1..limit are listed size by
# size, and a network whose layers read `in.h` is checked at each size, so memory and time grow with
# the limit; the rules hold for every size whatever the limit.
MAX_LIMIT = 10_000


def limit_error(limit_text: str) -> UsageError | None:
    """The error for a --max past MAX_LIMIT (read from its digits: thousands of them never reach int())."""
    digits = limit_text.strip()
    if not (digits.isascii() and digits.isdigit()) or (len(digits) <= 19 and int(digits) <= MAX_LIMIT):
        return None
    shown = f"{int(digits):,}" if len(digits) <= 19 else f"{digits[:12]}... ({len(digits):,} digits)"
    return UsageError(f"--max {shown} is past the limit of {MAX_LIMIT:,}",
                      "the rules `archspec sizes` prints hold for every size; --max bounds only the sizes listed "
                      "one by one (--format json, and a network whose layers read in.h or in.w)")


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
    """The sizes one axis accepts in 1..limit, those where no floor drops pixels, and the rules for every size."""

    name: str
    valid: list[int]
    drop_free: list[int]
    limit: int
    valid_rule: str = ""
    drop_free_rule: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"axis": self.name, "valid": self.valid, "drop_free": self.drop_free,
                "valid_rule": self.valid_rule or constraint(self.name, self.valid, self.limit),
                "drop_free_rule": self.drop_free_rule or constraint(self.name, self.drop_free, self.limit)}


@dataclass
class Sizes:
    path: str
    channels: int
    limit: int
    axes: list[Axis]
    in_features: dict[str, list[tuple[int, int, int]]] = field(default_factory=dict)  # linear path -> (H, W, in_features)
    anchor: tuple[int, int] | None = None  # an accepted (H, W)
    derivation: Derivation | None = None
    own: tuple[int, int] | None = None  # the file's own `input CxHxW` size, when it has numbers

    def own_accepted(self) -> bool | None:
        """Whether the file's own size is among the accepted ones (None: the file's input is symbolic)."""
        if self.own is None:
            return None
        return all(size in axis.valid for size, axis in zip(self.own, self.axes))

    def own_line(self) -> list[str]:
        if self.own is None:
            return []
        verdict = "accepted" if self.own_accepted() else "not accepted"
        return [f"  the file's own size {self.own[0]}x{self.own[1]}: {verdict}"]

    def to_dict(self) -> dict[str, Any]:
        d = self.derivation
        return {"path": self.path, "channels": self.channels, "range": [1, self.limit], "exact": bool(d and d.exact),
                "axes": [a.to_dict() for a in self.axes],
                "in_features": {k: [{"H": h, "W": w, "in_features": f} for h, w, f in v] for k, v in self.in_features.items()},
                "in_features_rule": {k: d.features_text(k) for k in d.in_features} if d else {},
                "shapes": {k: list(v) for k, v in d.shapes.items()} if d else {},
                "own": None if self.own is None else {"H": self.own[0], "W": self.own[1], "accepted": self.own_accepted()}}

    def render(self) -> str:
        d = self.derivation
        how = "every size, derived" if d is not None and d.exact else f"sizes 1..{self.limit} checked one by one"
        if d is not None and not d.exact:
            how += f" (each axis with the other at {d.at[0]}x{d.at[1]}: {d.why})" if d.at else f" ({d.why})"
        lines = [f"{self.path}: input {self.channels}xHxW, {how}"]
        if d is not None:
            lines += d.lines()[1:]
        return "\n".join(lines + self.own_line()) + "\n"


def constraint(name: str, sizes: list[int], limit: int) -> str:
    """A readable rule for a set of sizes in 1..limit: `H >= 16`, `H = 32k + 1 (k >= 0)`, or ranges."""
    if not sizes:
        return f"none in 1..{limit}"
    if sizes == list(range(sizes[0], limit + 1)):
        return f"{name} >= {sizes[0]}" if sizes[0] > 1 else f"any {name}"
    if len(sizes) >= 3:
        step = sizes[1] - sizes[0]
        if sizes == list(range(sizes[0], limit + 1, step)) and limit - sizes[-1] < step:
            k = f"{step}k" if sizes[0] % step == 0 else f"{step}k + {sizes[0] % step}"
            low = sizes[0] // step
            return f"{name} = {k} (k >= {low})" if low else f"{name} = {k}"
    return f"{name} in {{{ranges(sizes)}}}"


def input_sizes(model: Model, limit: int = 128) -> Sizes:
    """Every H and W (the file's channels kept): the rules for every size, and the sets in 1..limit."""
    inp = model.input
    if inp is None or len(inp.dims) != 3 or not isinstance(inp.dims[0], int):
        raise UsageError(f"{model.path}: input sizes need an image input `input CxHxW`", "a feature input (`input 784`) has no H or W")
    refused = limit_error(str(limit))
    if refused is not None:
        raise refused
    c = inp.dims[0]
    own = (inp.dims[1], inp.dims[2]) if all(isinstance(n, int) for n in inp.dims[1:]) else None
    if own is not None:  # the sets listed size by size reach the file's own size (within the bound)
        limit = min(max(limit, *own), MAX_LIMIT)
    d = derive(with_input(model, (c, "H", "W")), limit)
    axes = [Axis(a.name, a.valid.upto(limit), a.drop_free.upto(limit), limit, a.valid.rule(a.name), a.drop_free.rule(a.name))
            for a in d.axes]
    features: dict[str, list[tuple[int, int, int]]] = {}
    for path in d.in_features:
        pairs = list(zip(axes[0].valid, axes[1].valid))[:32]
        features[path] = [(h, w, d.features_at(path, h, w)) for h, w in pairs]
    return Sizes(model.path, c, limit, axes, features, d.at, d, own)
