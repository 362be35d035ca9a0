"""`archspec.sweep(...)` and `archspec.runs(DIR)`: the CLI's sweep and comparison from Python.

    runs = archspec.sweep("net.arch", grid={"width": [16, 32]}, settings={"lr": [0.02, 0.05]}, epochs=2)
    runs            # in a notebook: the table of trials, the best in bold
    runs.best       # the complete trial with the highest validation accuracy
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from archspec.language.errors import UsageError
from archspec.sweeps.runs import Runs, read_runs
from archspec.sweeps.space import Space, build_space, parse_axes
from archspec.sweeps.study import PRUNERS, SAMPLERS, SweepConfig, SweepResult, run_sweep


def plan(arch: str, grid: list[str], sets: list[str], limits: tuple = (), max_trials: int | None = None,
         seed: int = 0) -> Space:
    """The checked space of a file's variants (every one through the pipeline, nothing trained)."""
    from archspec.language.expand import load

    model = load(arch)
    if model.diagnostics and any(d.severity == "error" for d in model.diagnostics):
        first = next(d for d in model.diagnostics if d.severity == "error")
        raise UsageError(f"{arch}:{first.span.line}:{first.span.column}: {first.code} {first.message}",
                         f"fix the file first: `archspec check {arch}`")
    axes = parse_axes(grid, sets, model, arch)
    if not axes:
        raise UsageError("nothing to sweep", "give values with --grid PARAM=V1,V2 or --set SETTING=V1,V2")
    return build_space(model, axes, limits, max_trials, seed)


def check_choices(sampler: str, pruner: str) -> None:
    if sampler not in SAMPLERS:
        raise UsageError(f"unknown sampler {sampler!r}", f"choose one of: {', '.join(SAMPLERS)}")
    if pruner not in PRUNERS:
        raise UsageError(f"unknown pruner {pruner!r}", f"choose one of: {', '.join(PRUNERS)}")


def sweep(arch: str | Path, grid: dict[str, list[Any]] | None = None, settings: dict[str, list[Any]] | None = None,
          out: str | Path | None = None, *, data: str = "cifar10", sampler: str = "grid", pruner: str | None = None,
          trials: int | None = None, seed: int = 0, workers: int | None = None, ray: str | None = None,
          device: str = "auto", max_trials: int | None = None, log: Callable[[str], None] = print,
          **fixed: Any) -> Runs:
    """Sweep a file's `param`s (`grid`) and training settings (`settings`), each a list of values;
    `fixed` are recipe settings every trial shares (epochs=2, ...); `pruner` defaults as on the command line
    (hyperband with tpe, else none). Returns the runs (`archspec.runs(out)`)."""
    pruner = pruner or ("hyperband" if sampler == "tpe" else "none")
    check_choices(sampler, pruner)
    space = plan(str(arch), _flags(grid), _flags(settings), max_trials=max_trials, seed=seed)
    log(space.headline())
    for variant in space.removed:
        log(f"  removed {variant.key}: {variant.removed}")
    config = SweepConfig(str(arch), Path(out) if out is not None else Path("sweeps") / Path(arch).stem, data=data,
                         settings=fixed, sampler=sampler, pruner=pruner, trials=trials, seed=seed, workers=workers,
                         device=device, ray=ray)
    execute(space, config, log)
    return read_runs(config.out)


def _flags(values: dict[str, list[Any]] | None) -> list[str]:
    """{"width": [16, 32]} as the CLI's ["width=16,32"] (one parser for both)."""
    return [f"{k}={','.join(map(str, v))}" for k, v in (values or {}).items()]


def execute(space: Space, config: SweepConfig, log: Callable[[str], None]) -> SweepResult:
    from archspec.training.recipes import make_config

    make_config(config.recipe, **config.settings)  # a wrong fixed setting fails before anything runs
    return run_sweep(space, config, log)


def runs(out: str | Path) -> Runs:
    """The trials of the sweep in `out`, as a table (text, `_repr_html_` in a notebook, JSON, CSV)."""
    return read_runs(out)
