"""The sweep's space: the values each axis takes, every variant of the file, and the static pruning.

An axis is a `param` of the file (`--grid width=16,32`, typed by its default) or a training setting
(`--set lr=0.02,0.05`, typed like `archspec train --set`). Each variant's .arch text has the values
written in place of the defaults and goes through the one pipeline (`checked`) before anything
trains: a variant that does not check or breaks a budget is removed with its first diagnostic.
"""
from __future__ import annotations

import itertools
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from archspec.language.codes import CODES
from archspec.language.diagnostics import suggest
from archspec.language.errors import UsageError
from archspec.language.expand import with_param_values
from archspec.language.nodes import Model, SweepParam

MAX_GRID = 10_000  # variants enumerated and checked without --max-trials

Values = dict[str, Any]


@dataclass(frozen=True)
class Axis:
    name: str
    values: tuple[Any, ...]
    setting: bool  # a training setting (--set), not a `param` of the file


@dataclass
class Variant:
    """One point of the space: its values, its .arch text, and what the checker found."""

    values: Values
    text: str
    params: int = 0
    macs: int = 0
    removed: str = ""  # the first diagnostic, one line, when the checker removed it
    code: str = ""

    @property
    def key(self) -> str:
        """A stable name: the run directory and the identity of a finished trial."""
        return "_".join(f"{k}={_value_text(v)}" for k, v in self.values.items())


@dataclass
class Space:
    axes: list[Axis]
    variants: list[Variant] = field(default_factory=list)
    total: int = 0  # the grid's size (more than len(variants) when --max-trials sampled it)

    @property
    def kept(self) -> list[Variant]:
        return [v for v in self.variants if not v.removed]

    @property
    def removed(self) -> list[Variant]:
        return [v for v in self.variants if v.removed]

    @property
    def setting_names(self) -> set[str]:
        """The training settings the sweep varies (`--set KEY=V1,V2`)."""
        return {a.name for a in self.axes if a.setting}

    def setting_values(self, name: str) -> tuple[Any, ...]:
        return next((a.values for a in self.axes if a.setting and a.name == name), ())

    def headline(self) -> str:
        """The first line of a sweep's output: how many variants, how many the checker removed, and why."""
        removed = self.removed
        sampled = f" (sampled from a grid of {self.total:,})" if self.total > len(self.variants) else ""
        line = f"{len(self.variants):,} variant{'s' if len(self.variants) != 1 else ''}{sampled}, " \
               f"{len(removed):,} removed by the checker"
        if removed:
            why = Counter(v.code for v in removed)
            line += " (" + ", ".join(f"{n} {code} {CODES[code].name}" for code, n in why.most_common()) + ")"
        return line + f", {len(self.kept):,} to train"


def parse_axes(grid: list[str], sets: list[str], model: Model, arch: str) -> list[Axis]:
    """The axes from `--grid NAME=V1,V2` (file params) and `--set KEY=V1,V2` (training settings)."""
    axes = [param_axis(text, model.sweep_params, arch) for text in grid] + [setting_axis(text) for text in sets]
    seen: set[str] = set()
    for axis in axes:
        if axis.name in seen:
            raise UsageError(f"`{axis.name}` is given twice", f"give all its values at once: {axis.name}=V1,V2,...")
        seen.add(axis.name)
    return axes


def _split(flag: str, text: str) -> tuple[str, list[str]]:
    name, sep, values = text.partition("=")
    items = [v.strip() for v in values.split(",")]
    if not sep or not name.strip() or not all(items):
        raise UsageError(f"{flag} {text!r}: expected NAME=VALUE,VALUE,...", f"e.g. {flag} width=16,32,64")
    return name.strip(), items


def param_axis(text: str, params: dict[str, SweepParam], arch: str) -> Axis:
    name, items = _split("--grid", text)
    if name not in params:
        hint = suggest(name, list(params))
        help = (f"did you mean `{hint}`?" if hint else
                f"its params: {', '.join(params)}" if params else f"declare it in the file: `param {name} = VALUE`")
        raise UsageError(f"--grid {text!r}: {arch} has no param `{name}`", help)
    default = params[name].value
    kind = type(default)
    values = []
    for item in items:
        value = _typed(item, kind)
        if value is None:
            raise UsageError(f"--grid {text!r}: `{item}` is not {'an int' if kind is int else 'a number'}",
                             f"param `{name}` is {'an int' if kind is int else 'a float'} (its default is {default})")
        values.append(value)
    return Axis(name, tuple(dict.fromkeys(values)), setting=False)


def _typed(text: str, kind: type) -> int | float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    if kind is int:
        return int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else None
    return number if math.isfinite(number) else None


def setting_axis(text: str) -> Axis:
    from archspec.training.recipes import parse_settings

    name, items = _split("--set", text)
    values = [next(iter(parse_settings([f"{name}={item}"]).values())) for item in items]
    return Axis(name.replace("-", "_"), tuple(dict.fromkeys(values)), setting=True)


def grid_size(axes: list[Axis]) -> int:
    return math.prod(len(a.values) for a in axes)


def enumerate_space(axes: list[Axis], max_trials: int | None, seed: int) -> tuple[list[Values], int]:
    """Every combination, or `max_trials` distinct ones drawn at random (seeded) from a grid past MAX_GRID."""
    total = grid_size(axes)
    names = [a.name for a in axes]
    if total <= MAX_GRID:
        return [dict(zip(names, combo)) for combo in itertools.product(*(a.values for a in axes))], total
    if max_trials is None:
        raise UsageError(f"the grid has {total:,} variants, past the limit of {MAX_GRID:,}",
                         "pass --max-trials N to try N of them, or give fewer values")
    picks = random.Random(seed).sample(range(total), min(max_trials, total))
    return [dict(zip(names, _combo(axes, index))) for index in picks], total


def _combo(axes: list[Axis], index: int) -> list[Any]:
    """The index-th combination of the grid in itertools.product order (mixed radix)."""
    out = []
    for axis in reversed(axes):
        index, digit = divmod(index, len(axis.values))
        out.append(axis.values[digit])
    return out[::-1]


def build_space(model: Model, axes: list[Axis], limits: tuple, max_trials: int | None = None, seed: int = 0) -> Space:
    """Every variant checked through the pipeline (each distinct file text once)."""
    from archspec.language.pipeline import CheckOptions, checked

    combos, total = enumerate_space(axes, max_trials, seed)
    file_axes = [a.name for a in axes if not a.setting]
    seen: dict[str, Variant] = {}
    variants = []
    for values in combos:
        text = with_param_values(model, {k: values[k] for k in file_axes})
        if text not in seen:
            report = checked(text, CheckOptions(limits=limits), name=model.path)
            seen[text] = _verdict(Variant(values, text), report)
        first = seen[text]
        variants.append(Variant(values, text, first.params, first.macs, first.removed, first.code))
    return Space(axes, variants, total)


def _verdict(variant: Variant, report: Any) -> Variant:
    errors = report.errors
    if errors:
        d = errors[0]
        variant.removed, variant.code = f"{d.code} {d.message} (line {d.span.line})", d.code
    else:
        variant.params, variant.macs = report.params, report.macs
    return variant


def _value_text(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)
