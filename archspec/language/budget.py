"""Budgets: limits on params, MACs, activation memory, receptive field and output stride that
`archspec check` turns into diagnostics (E301-E305), so a budget sets the exit code in CI.

Limits come from the command line (`--max-params 1.5M`) or from a `budget` statement in the file
(`budget params <= 1.5M, macs <= 600M, rf >= 32`). They are evaluated on a network that checks
(numbers of a network with errors are not meaningful), with the same numbers `archspec summary`
shows: params and MACs from the checked tree, RF, jump and activation bytes from
`archspec.language.measure`. A total over budget is reported at the `input` line; an RF or stride
limit at the first layer that crosses it (a minimum RF at the last layer, whose RF falls short).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Literal

from archspec.language import codes
from archspec.language.diagnostics import Diagnostic, Span
from archspec.language.measure import has_stride, human_bytes, output_rf, receptive_fields, shape_bytes
from archspec.language.ops import pair_text
from archspec.language.tree import Join, Layer
from archspec.language.values import MAX_INT

if TYPE_CHECKING:
    from archspec.language.check import CheckReport

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


# The language's cap on numbers (values.MAX_INT, E004), in the same words.
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


# --------------------------------------------------------------------------- evaluation

def evaluate(report: "CheckReport", limits: list[Limit], batch_size: int = 1) -> list[Diagnostic]:
    """One diagnostic per limit the network breaks; nothing for a network with errors."""
    if not limits or not report.ok or report.model.input is None:
        return []
    found: list[Diagnostic] = []
    for limit in limits:
        d = _evaluate_one(report, limit, batch_size)
        if d is not None:
            found.append(d)
    return sorted(found, key=lambda d: d.span.start if d.span else 0)


def activation_bytes_per_sample(report: "CheckReport") -> int:
    """Every layer's and join's output, and the input, as fp32 (what `archspec summary` adds up)."""
    return sum(shape_bytes(n.out_shape) for n in report.nodes() if isinstance(n, (Layer, Join)))


def _evaluate_one(report: "CheckReport", limit: Limit, batch_size: int) -> Diagnostic | None:
    if limit.metric in ("rf", "stride"):
        return _window_limit(report, limit)
    if limit.metric == "params":
        value, what, code = report.params, "parameters", codes.PARAMS_BUDGET
        help = "use fewer or narrower layers (or depthwise convs), or raise the limit"
    elif limit.metric == "macs":
        value, what, code = report.macs, "MACs per sample", codes.MACS_BUDGET
        help = "downsample earlier, or use narrower or depthwise convs, or raise the limit"
    else:
        batch = limit.batch_size or batch_size
        per_sample = activation_bytes_per_sample(report)
        value, code = batch * per_sample, codes.ACTIVATIONS_BUDGET
        what = f"of activations at batch size {batch} ({_bytes(per_sample)} per sample)"
        help = "downsample earlier or use fewer channels at full resolution, use a smaller batch, or raise the limit"
    if value <= limit.value:
        return None
    shown = _bytes if limit.metric == "activations" else (lambda n: f"{n:,}")
    message = (f"{shown(value)} {what}, over the budget of {shown(limit.value)} (`{limit.written}`)"
               if limit.metric == "activations" else
               f"the network has {value:,} {what}, over the budget of {limit.value:,} (`{limit.written}`)")
    if limit.metric == "activations":
        message = f"the network keeps {message}"
    notes = [f"over by {shown(value - limit.value)} ({(value - limit.value) / limit.value:.0%})" if limit.value else "the limit is 0"]
    return _diagnostic(report, code, message, limit, notes, help, report.model.input.span, ())  # type: ignore[union-attr]


def _window_limit(report: "CheckReport", limit: Limit) -> Diagnostic | None:
    """RF or stride: the first layer past a maximum, or the output short of a minimum."""
    rf = receptive_fields(report.body, report.input_shape)
    index = 0 if limit.metric == "rf" else 1
    name = "receptive field" if limit.metric == "rf" else "output stride (jump)"
    code = codes.RF_BUDGET if limit.metric == "rf" else codes.STRIDE_BUDGET
    if limit.bound == "min":
        final = output_rf(report.body, report.input_shape)
        last = report.rows[-1]
        if final is None or min(final[index]) >= limit.value:
            return None
        return _diagnostic(report, code, f"the output's {name} is {pair_text(final[index])} pixels, under the budget's "
                           f"minimum of {limit.value} (`{limit.written}`)", limit,
                           [f"the last layer, `{last.path}`, sees {pair_text(final[index])} input pixels"],
                           "add downsampling, larger kernels or dilation so each output sees more of the input",
                           last.span, last.trace)
    for row in report.rows:
        state = rf.get(id(row))
        if limit.metric == "stride" and not has_stride(row.out_shape):
            continue  # a vector or a 1x1 map: its outputs are not spaced at all
        if state is not None and max(state[index]) > limit.value:
            help = ("downsample later or less, use smaller kernels, or raise the limit" if limit.metric == "rf"
                    else "downsample less (stride 1, or drop a pool), use dilation instead, or raise the limit")
            return _diagnostic(report, code, f"the {name} reaches {pair_text(state[index])} at `{row.path}`, over the budget of "
                               f"{limit.value} (`{limit.written}`)", limit,
                               [f"`{row.path}` is the first layer past {limit.value}"], help, row.span, row.trace)
    return None


def _diagnostic(report: "CheckReport", code: str, message: str, limit: Limit, notes: list[str], help: str,
                span: Span | None, trace: tuple) -> Diagnostic:
    if limit.span is not None:
        notes = notes + [f"budget set at {limit.span.path}:{limit.span.line}:{limit.span.column}"]
    return Diagnostic(code, message, span or limit.span, help=help, notes=notes, trace=trace)




def _bytes(n: float) -> str:
    return human_bytes(n)
