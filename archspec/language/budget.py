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

from typing import TYPE_CHECKING

from archspec.language import codes
from archspec.language.diagnostics import Diagnostic, Span
from archspec.language.limits import Limit
from archspec.language.measure import has_stride, human_bytes, output_rf, shape_bytes
from archspec.language.ops import pair_text
from archspec.language.tree import Join, Layer

if TYPE_CHECKING:
    from archspec.language.check import CheckReport

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
        state = row.rf
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
