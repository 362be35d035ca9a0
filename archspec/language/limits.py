"""Limits on a network's totals: what `budget params <= 1.5M` and `--max-params 1.5M` say, read
and validated (BudgetError with a help). Evaluating them on a checked network is budget.py's job;
this module is at the bottom so that the spec tree (nodes, expand) can hold limits without
reaching up into the analyses.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from archspec.language.diagnostics import Span

MAX_INT = (1 << 63) - 1  # torch's int64: a larger whole number cannot reach a layer (values.py reads it here)

Metric = Literal["params", "macs", "activations", "rf", "stride"]
Bound = Literal["max", "min"]
METRICS: tuple[Metric, ...] = ("params", "macs", "activations", "rf", "stride")
_BOUNDS: dict[str, tuple[Bound, ...]] = {"params": ("max",), "macs": ("max",), "activations": ("max",),
                                         "rf": ("max", "min"), "stride": ("max",)}
_SCALE = {"": 1, "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9}
_QUANTITY = re.compile(r"(\d+(?:\.\d+)?)([kKMG]?)(B?)(?:@(\d+))?")


@dataclass(frozen=True)
class Limit:
    """One limit: `metric <= value` (max) or `metric >= value` (min)."""

    metric: Metric
    bound: Bound
    value: int
    written: str  # as the user wrote it: `--max-params 1.5M` or `params <= 1.5M`
    span: Span | None = None  # the `budget` item it came from; None from the command line
    batch_size: int | None = None  # activations only: `20MB@128`, else --batch-size (default 1)


class BudgetError(ValueError):
    """A limit that cannot be read; the message says why, `help` how to write it."""

    def __init__(self, message: str, help: str) -> None:
        super().__init__(message)
        self.help = help


def parse_quantity(text: str, metric: Metric) -> tuple[int, int | None]:
    """(value, batch size) from `1.5M`, `600k`, `20MB`, `2.5GB@128`, `32`: decimal k/M/G, as summary prints."""
    m = _QUANTITY.fullmatch(text.strip())
    text = text if len(text) <= 40 else text[:40] + "..."  # as written, up to a length a message can show
    example = {"activations": "20MB, 1.5GB@128"}.get(metric, "1.5M, 600k, 32")
    if m is None:
        raise BudgetError(f"`{text}` is not a {metric} limit", f"write a number with an optional k, M or G, e.g. {example}")
    number, scale, byte, batch = m.groups()
    if (byte or batch) and metric != "activations":
        raise BudgetError(f"`{text}`: only an activations limit takes bytes (B) or a batch size (@N)", f"e.g. {example}")
    value = _exact(number, _SCALE[scale], text, metric, example)
    if batch is not None and (len(batch) > 19 or int(batch) > MAX_INT):
        raise BudgetError(_OUT_OF_RANGE.format(text=text), "e.g. 20MB@128")
    if batch is not None and int(batch) < 1:
        raise BudgetError(f"`{text}`: the batch size must be at least 1", "e.g. 20MB@128")
    return value, int(batch) if batch is not None else None


# The language's cap on numbers (MAX_INT, E004 in values.py), in the same words.
_OUT_OF_RANGE = "`{text}` is out of range: numbers must be at most 2^63-1"


def _exact(number: str, scale: int, text: str, metric: str, example: str) -> int:
    """`number` times `scale` as a whole number, exactly (a float would round 2^63-1), at most MAX_INT;
    a number of thousands of digits is refused from its length, before int() refuses it with a ValueError."""
    whole, _, fraction = number.partition(".")
    whole, fraction = whole.lstrip("0"), fraction.rstrip("0")
    if len(whole) > 19:
        raise BudgetError(_OUT_OF_RANGE.format(text=text), f"write a limit of a realistic size, e.g. {example}")
    # G is 10^9: with more than 9 decimal places no scale makes a whole number (and none reaches Fraction)
    value = Fraction(f"{whole or 0}.{fraction}") * scale if len(fraction) <= 9 else Fraction(1, 2)
    if value.denominator != 1:
        raise BudgetError(f"`{text}` is not a whole number of {metric}", f"e.g. {example}")
    if value > MAX_INT:
        raise BudgetError(_OUT_OF_RANGE.format(text=text), f"write a limit of a realistic size, e.g. {example}")
    return int(value)


def make_limit(metric: str, bound: Bound, text: str, written: str, span: Span | None = None) -> Limit:
    """A checked Limit, or BudgetError naming what is wrong."""
    if metric not in _BOUNDS:
        raise BudgetError(f"no budget for `{metric}`", f"budgets are on: {', '.join(METRICS)}")
    if bound not in _BOUNDS[metric]:
        raise BudgetError(f"`{metric}` takes only an upper limit (`{metric} <= N`)", f"write `{metric} <= {text}`")
    value, batch = parse_quantity(text, metric)  # type: ignore[arg-type]
    return Limit(metric, bound, value, written, span, batch)  # type: ignore[arg-type]
