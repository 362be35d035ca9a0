"""Limits on a network's totals: what `budget params <= 1.5M` and `--max-params 1.5M` say, read
and validated (BudgetError with a help). Evaluating them on a checked network is budget.py's job;
this module is at the bottom so that the spec tree (nodes, expand) can hold limits without
reaching up into the analyses.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from archspec.language.diagnostics import Span

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
    example = {"activations": "20MB, 1.5GB@128"}.get(metric, "1.5M, 600k, 32")
    if m is None:
        raise BudgetError(f"`{text}` is not a {metric} limit", f"write a number with an optional k, M or G, e.g. {example}")
    number, scale, byte, batch = m.groups()
    if (byte or batch) and metric != "activations":
        raise BudgetError(f"`{text}`: only an activations limit takes bytes (B) or a batch size (@N)", f"e.g. {example}")
    value = float(number) * _SCALE[scale]
    if value != int(value):
        raise BudgetError(f"`{text}` is not a whole number of {metric}", f"e.g. {example}")
    if batch is not None and int(batch) < 1:
        raise BudgetError(f"`{text}`: the batch size must be at least 1", "e.g. 20MB@128")
    return int(value), int(batch) if batch is not None else None


def make_limit(metric: str, bound: Bound, text: str, written: str, span: Span | None = None) -> Limit:
    """A checked Limit, or BudgetError naming what is wrong."""
    if metric not in _BOUNDS:
        raise BudgetError(f"no budget for `{metric}`", f"budgets are on: {', '.join(METRICS)}")
    if bound not in _BOUNDS[metric]:
        raise BudgetError(f"`{metric}` takes only an upper limit (`{metric} <= N`)", f"write `{metric} <= {text}`")
    value, batch = parse_quantity(text, metric)  # type: ignore[arg-type]
    return Limit(metric, bound, value, written, span, batch)  # type: ignore[arg-type]
