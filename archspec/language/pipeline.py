"""The one pipeline: any input -> a checked tree with its final diagnostics.

`checked(source, options)` parses and expands the text (or takes a Model), checks it, evaluates the
budgets (the file's `budget` statements and the caller's limits), then applies `# noqa` and
--select/--ignore. Every caller goes through it (the CLI, the Python API, the language server, the
notebook, training's preflight and every view), so a file means the same everywhere: a `budget` the
network breaks fails `archspec check`, `archspec.check()`, `summary`, `build` and the editor alike.

It sits above the checker (check.py) and the budgets (budget.py), which never import it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from archspec.language.check import CheckReport, check
from archspec.language.diagnostics import partition_diagnostics
from archspec.language.expand import load, parse
from archspec.language.nodes import Model

if TYPE_CHECKING:
    from archspec.language.limits import Limit


@dataclass(frozen=True)
class CheckOptions:
    """What a caller may add to what the file says.

    classes: the class count the last layer must produce (None: any).
    limits: budgets on top of the file's own `budget` statements (`--max-params 1.5M`, ...).
    batch_size: the batch size an activation budget is measured at (unless it names its own).
    select, ignore: diagnostic codes or prefixes to keep / drop (`# noqa` always applies).
    input_size: checks the network at this input shape instead of its `input` line (--input-sizes).
    """

    classes: int | None = 10
    limits: tuple["Limit", ...] = ()
    batch_size: int = 1
    select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    input_size: tuple[int, ...] | None = None


DEFAULT = CheckOptions()

def as_model(source: "Model | str | Path", name: str | None = None) -> Model:
    """A Model from a Model, a path (a Path, or a one-line str ending in `.arch`), or .arch text.

    `name` is the path shown for text (`<string>` without it)."""
    if isinstance(source, Model):
        return source
    if isinstance(source, Path) or (name is None and isinstance(source, str) and "\n" not in source
                                    and source.endswith(".arch")):
        return load(source)
    return parse(source, name) if name is not None else parse(source)


def checked(source: "CheckReport | Model | str | Path", options: CheckOptions = DEFAULT,
            name: str | None = None) -> CheckReport:
    """The checked tree and its final diagnostics (never raises for a mistake in the file).

    A CheckReport is already final and comes back as it is."""
    if isinstance(source, CheckReport):
        return source
    model = as_model(source, name)
    if options.input_size is not None and model.input is not None:
        from archspec.language.symbolic import with_input

        model = with_input(model, options.input_size)
    if model.input is not None and model.input.symbols:  # `input 3xHxW`: every size at once
        from archspec.language.symbolic import check_symbolic

        report = check_symbolic(model, options.classes)
    else:
        report = check(model, classes=options.classes)
    limits = list(options.limits) + list(report.model.budgets)
    if limits:  # budget.py (and measure.py) only for a network that has some
        from archspec.language.budget import evaluate

        report.diagnostics += evaluate(report, limits, options.batch_size)
    report.diagnostics, report.silenced = partition_diagnostics(report.diagnostics, report.sources,
                                                                options.select, options.ignore)
    return report
