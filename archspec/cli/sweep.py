"""`archspec sweep` and `archspec runs`: argument parsing; the work is in archspec.sweeps."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, TextIO

from archspec.language.errors import ArchspecError
from archspec.training.recipes import RECIPES


def add_parsers(subparsers: Any) -> None:
    from archspec.training.datasets import names

    p = subparsers.add_parser("sweep", help="train many variants of a .arch file: checked first, searched and pruned by Optuna",
                              description="Every variant is checked before anything trains; those that do not check or break "
                                          "a budget are listed and never trained. Trials are scored and pruned on the validation accuracy, "
                                          "so every trial must hold out validation images (the recipe's val, or --set "
                                          "val=0.1). Rerun the same command to continue.")
    p.add_argument("arch", help="the .arch file, with `param NAME = DEFAULT` statements")
    p.add_argument("--grid", action="append", default=[], metavar="PARAM=V1,V2", help="values of a `param` of the file (repeatable)")
    p.add_argument("--set", action="append", default=[], metavar="SETTING=V1,V2", dest="sets",
                   help="values of a training setting, e.g. lr=0.02,0.05 (one value: every trial)")
    p.add_argument("--sampler", choices=("grid", "random", "tpe"), default="grid",
                   help="grid: every variant; random: --trials of them; tpe: Optuna's TPE, --trials (default: grid)")
    p.add_argument("--pruner", choices=("none", "median", "asha", "hyperband"),
                   help="stop weak trials early on the validation accuracy (default: hyperband for tpe, else none)")
    p.add_argument("--trials", type=int, metavar="N", help="trials to train (random: 10, tpe: 20 by default)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampler (default: %(default)s)")
    p.add_argument("--max-trials", type=int, metavar="N", help="accept a grid past 10,000 variants by checking N of them at random")
    p.add_argument("--max-params", metavar="N", help="remove variants with more parameters, e.g. 1.5M")
    p.add_argument("--max-macs", metavar="N", help="remove variants with more MACs per sample, e.g. 600M")
    p.add_argument("--workers", type=int, metavar="N", help="trials at once (default: one per core, the cores split between them)")
    p.add_argument("--ray", metavar="auto|ADDRESS", help="run trials as tasks on a running Ray cluster")
    p.add_argument("--data", default="cifar10", metavar=f"{names()}|DIR",
                   help="a dataset by name or an ImageFolder directory with train/ and test/, as for `archspec train` "
                        "(default: %(default)s)")
    p.add_argument("--data-dir", type=Path, help="cache directory for downloads and decoded data (default: ~/.cache/archspec)")
    p.add_argument("--recipe", default="default", choices=sorted(RECIPES),
                   help="named settings every trial starts from (default: %(default)s; fast holds out no validation "
                        "images, so add --set val=0.1)")
    p.add_argument("--epochs", type=float, help="epochs of every trial")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    p.add_argument("--out", type=Path, help="the sweep directory (default: sweeps/<arch name>)")
    p.add_argument("--dry-run", action="store_true", help="check every variant and stop")
    p.set_defaults(func=cmd_sweep, max_activations=None, min_rf=None, max_rf=None, max_stride=None)

    p = subparsers.add_parser("runs", help="compare a sweep's runs: table, JSON/CSV, Pareto picture, best variant")
    p.add_argument("dir", type=Path, metavar="DIR", help="a sweep directory")
    p.add_argument("--sort", default="val_acc", metavar="COLUMN", help="sort by this column (default: %(default)s)")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")
    p.set_defaults(func=cmd_runs)


def cmd_sweep(args: argparse.Namespace, out: TextIO) -> int:
    from archspec.cli import _budget_flags
    from archspec.sweeps.api import execute, plan
    from archspec.sweeps.study import SweepConfig, require_optuna
    from archspec.training.recipes import parse_settings

    if args.max_trials is not None and args.max_trials < 1:
        raise ArchspecError(f"--max-trials {args.max_trials}: must be at least 1", "e.g. --max-trials 100")
    require_optuna()
    fixed = {k: v for k, v in parse_settings([s for s in args.sets if "," not in s]).items()}
    if args.epochs is not None:
        fixed["epochs"] = args.epochs
    space = plan(args.arch, args.grid, [s for s in args.sets if "," in s], tuple(_budget_flags(args)), args.max_trials, args.seed)
    print(space.headline(), file=out, flush=True)
    for variant in space.removed:
        print(f"  removed {variant.key}: {variant.removed}", file=out)
    if args.dry_run or not space.kept:
        return 0 if space.kept else 1
    config = SweepConfig(args.arch, args.out or Path("sweeps") / Path(args.arch).stem, args.data,
                         str(args.data_dir) if args.data_dir else None, args.recipe, fixed, args.sampler,
                         args.pruner or ("hyperband" if args.sampler == "tpe" else "none"), args.trials, args.seed,
                         args.workers, args.device, args.ray)
    result = execute(space, config, lambda line: print(line, file=out, flush=True))
    if result.interrupted:
        raise ArchspecError(f"interrupted: the finished trials are recorded in {config.out / 'sweep.db'}",
                            "run the same command again to continue")
    print(f"done: {result.finished} finished, {result.pruned} pruned, {result.failed} failed; "
          f"compare them with `archspec runs {config.out}`", file=out)
    return 0


def cmd_runs(args: argparse.Namespace, out: TextIO) -> int:
    from archspec.sweeps.runs import read_runs, write_best, write_pareto

    runs = read_runs(args.dir).sorted(args.sort)
    if args.format != "table":
        out.write(runs.to_json() if args.format == "json" else runs.to_csv())
        return 0
    out.write(runs.table())
    pictured = write_pareto(runs, args.dir / "pareto.png", args.dir / "pareto.html")
    best = write_best(runs, args.dir / "best.arch")
    print(f"Pareto picture: {args.dir / 'pareto.html'}" + ("" if pictured else " (no PNG: pip install matplotlib)"), file=out)
    if best is not None:
        print(f"best variant (validation accuracy {runs.best.val_acc:.2%}): {best}", file=out)  # type: ignore[union-attr]
    return 0
