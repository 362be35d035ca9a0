"""The torch subcommands: `archspec train`, `archspec eval`, `archspec predict`.

Argument parsing only; torch is imported inside the command functions (after require_torch), so
`archspec check` never loads it.
"""
from __future__ import annotations

import argparse
import signal
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, TextIO

from archspec.cli import _batch_size as at_least_one
from archspec.language.errors import ArchspecError, UsageError
from archspec.pytorch.extra import require_torch
from archspec.training.recipes import NORMALIZE, RECIPES, make_config, parse_settings

DEVICES = ("auto", "cpu", "cuda", "mps")
_TRAIN_PARSER: argparse.ArgumentParser | None = None  # kept to rebuild a worker's command line (--nproc-per-node)


def add_parsers(subparsers: Any) -> None:
    p = subparsers.add_parser("train", help="train a .arch network on MNIST, CIFAR-10, ... or an ImageFolder directory",
                              description="Train a .arch network. Explicit flags override the recipe's settings; "
                                          "report.json records every effective setting.")
    p.add_argument("arch", nargs="?", help="the .arch file (with --resume it may be left out: the checkpoint holds it)")
    _data_args(p)
    p.set_defaults(data=None)  # cifar10 for a new run; a resume reads the data it was trained on
    p.add_argument("--recipe", choices=sorted(RECIPES), help="named settings (default: default)")
    p.add_argument("--epochs", type=float, help="epochs (fractions allowed)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, help="peak learning rate (SGD on the mean loss)")
    p.add_argument("--seed", type=int)
    p.add_argument("--tta", type=int, choices=(0, 1, 2), help="test-time augmentation: 0 none, 1 mirror, 2 mirror + translate")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), help="auto: bf16 autocast where the hardware has it")
    p.add_argument("--compile", action="store_const", const=True, help="torch.compile the network")
    p.add_argument("--val", type=holdout, metavar="N|FRACTION",
                   help="hold out this part of the training images, stratified by class, as a validation set evaluated "
                        "every epoch (a fraction below 1, or a number of images; 0: none). Default: 0.1 with the default "
                        "recipe, 0 with fast. The test set is evaluated once, at the end")
    p.add_argument("--patience", type=int, metavar="N",
                   help="stop early after N epochs without a better validation accuracy (default: 0, never); "
                        "the test set is then evaluated on the best epoch's weights (best.pt)")
    p.add_argument("--normalize", choices=NORMALIZE,
                   help="input normalisation: `data` (default) the training images' per-channel mean and std; "
                        "`0.5` mean=std=0.5 (the PyTorch tutorial's Normalize((0.5,)*3, (0.5,)*3)); `none` pixels in [0, 1]. "
                        "Recorded in the checkpoint; eval, predict and archspec.load_checkpoint use it")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="settings",
                   help="override any recipe setting, e.g. --set lookahead=false --set flip=random (repeatable)")
    p.add_argument("--device", default="auto", choices=DEVICES)
    p.add_argument("--threads", type=thread_count, default="auto", metavar="auto|N",
                   help="CPU threads: auto (default) times the first steps at 1, half and all cores and takes the fastest "
                        "(OMP_NUM_THREADS, when set, is used as given)")
    p.add_argument("--out", type=Path, help="output directory (default: runs/<arch name>)")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT/checkpoint.pt with the architecture, settings and data it stores "
                        "(`archspec train --resume --out OUT`; a flag given again must agree)")
    p.add_argument("--init", metavar="WEIGHTS.pt|MODULE:CALLABLE",
                   help="start from torch weights (a saved state dict, or e.g. torchvision.models:resnet18), matched by structure")
    p.add_argument("--quiet", action="store_true", help="no progress bar: one line per epoch and a summary")
    p.add_argument("--allow-softmax", action="store_true",
                   help="train even though the network ends with softmax (W205: cross-entropy applies log-softmax itself)")
    p.add_argument("--nproc-per-node", type=int, metavar="N",
                   help="data-parallel training in N processes on this machine (torchrun's elastic agent; DDP, gloo on CPU, "
                        "nccl on CUDA). The global batch and lr stay as configured. Several nodes: start `torchrun ... -m archspec train` yourself")
    p.add_argument("--sync-bn", action="store_true",
                   help="under DDP, BatchNorm statistics over the global batch (SyncBatchNorm) instead of each process's shard")
    p.set_defaults(func=cmd_train)
    global _TRAIN_PARSER
    _TRAIN_PARSER = p

    p = subparsers.add_parser("eval", help="re-evaluate a checkpoint and print per-class accuracy")
    p.add_argument("checkpoint", type=Path)
    _data_args(p, default=None)
    p.add_argument("--tta", type=int, choices=(0, 1, 2), help="default: the level the checkpoint was trained with")
    p.add_argument("--device", default="auto", choices=DEVICES)
    p.set_defaults(func=cmd_eval)

    p = subparsers.add_parser("predict", help="top classes for image files, from a checkpoint or an exported model.onnx")
    p.add_argument("checkpoint", type=Path, metavar="CHECKPOINT.pt|MODEL.onnx",
                   help="a checkpoint.pt, or a .onnx from `archspec export` (runs on onnxruntime without torch)")
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE|DIR",
                   help="image files, or folders: every image under a folder (recursively, sorted)")
    p.add_argument("--top", type=at_least_one, default=3, help="how many classes to show, at least 1 (default: %(default)s)")
    p.set_defaults(func=cmd_predict)


def _data_args(p: argparse.ArgumentParser, default: str | None = "cifar10") -> None:
    from archspec.training.datasets import names

    p.add_argument("--data", default=default, metavar=f"{names()}|DIR",
                   help="a dataset by name (read by torchvision from its official files under --data-dir; downloaded when "
                        "missing) or an ImageFolder directory with train/ and test/ (./mnist for a folder of that name)"
                        + ("" if default else " (default: the data the checkpoint was trained on)"))
    p.add_argument("--data-dir", type=Path, help="cache directory for downloads and decoded data (default: ~/.cache/archspec)")
    p.add_argument("--limit", type=at_least_one, metavar="N",
                   help="at most N images per split (train and test), each class keeping its share: for a quick try")


def holdout(text: str) -> float:
    """--val: a fraction in [0, 1) or a whole number of images."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (a fraction such as 0.1, or a count such as 5000)") from None
    if not (value >= 0 and (value < 1 or value.is_integer())):
        raise argparse.ArgumentTypeError(f"{text!r}: pass a fraction in [0, 1) such as 0.1, or a whole number of images such as 5000")
    return value


def thread_count(text: str) -> int | str:
    """--threads: `auto` or a positive whole number."""
    if text == "auto":
        return text
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: pass auto or a number of threads, at least 1")
    return int(text)


def worker_argv(args: argparse.Namespace) -> list[str]:
    """The `train ...` command line of `args` without --nproc-per-node: what each torchrun worker runs."""
    assert _TRAIN_PARSER is not None
    argv = ["train"]
    for action in _TRAIN_PARSER._actions:
        value = getattr(args, action.dest, None)
        if not action.option_strings:
            if value is not None:
                argv.append(str(value))
        elif action.dest in ("help", "nproc_per_node") or value is None or value == action.default:
            continue
        elif isinstance(action, (argparse._StoreTrueAction, argparse._StoreConstAction)):
            argv.append(action.option_strings[0])
        elif isinstance(action, argparse._AppendAction):
            argv += [x for v in value for x in (action.option_strings[0], str(v))]
        else:
            argv += [action.option_strings[0], str(value)]
    return argv


def cmd_train(args: argparse.Namespace, out: TextIO) -> int:
    import os

    if args.nproc_per_node is not None and "WORLD_SIZE" not in os.environ:
        require_torch()
        from archspec.training.distributed import launch

        return launch(args.nproc_per_node, worker_argv(args))
    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
        return _train(args, None)  # one process: torch is imported only after the spec checks
    require_torch()
    from archspec.training import distributed

    world = distributed.init(args.device)
    try:
        return _train(args, world)
    except ArchspecError as exc:  # say which rank: torchrun shows every rank's stderr together
        exc.message = f"rank {world.rank}/{world.size}: {exc.message}"
        raise
    except RuntimeError as exc:
        if not distributed.lost_peer(exc):
            raise
        # A peer exited (its own error says why) or timed out: one line here, not a traceback per rank.
        raise distributed.LostPeer(f"rank {world.rank}/{world.size}: lost the other processes ({distributed.peer_loss(exc)})",
                                   "another rank failed first: its error is in this job's output") from None
    finally:
        distributed.shutdown(world)


def _train(args: argparse.Namespace, world: Any) -> int:
    """The run itself; `world` is None for one process, else this rank's distributed.World."""
    from archspec.training.preflight import check_against_source, check_spec, refuse_final_softmax

    arch_path, source, config, data_source, run_dir = _what_to_train(args, world)
    # Before torch is imported or an image decoded: a broken spec, or one for other data, fails in a moment.
    report = check_spec(source, arch_path)
    if not args.allow_softmax:
        refuse_final_softmax(report)
    check_against_source(report, arch_path, data_source)
    require_torch()
    from archspec.training.data import check_cache_dir, load_data
    from archspec.training.loop import build_model, check_against_data, fit, prepare_out_dir

    from archspec.training.distributed import World, data_source as rank_data_source

    world = world or World()
    log = _log if world.main else (lambda line: None)
    if world.main:
        prepare_out_dir(run_dir)  # an unusable --out or cache fails now, not after decoding
    check_cache_dir(args.data_dir)
    with interruptible("decoding the data: nothing saved; run it again"):
        data = load_data(rank_data_source(world, data_source), args.data_dir, log, limit=args.limit,
                         live=_live(args.quiet))
    check_against_data(report, arch_path, data)
    model = build_model(source, arch_path, config.seed)
    if args.init:
        from archspec.pytorch.weights import init_from

        for line in init_from(model, args.init):
            log(line)
    with interruptible("nothing saved; run it again"):  # fit says what it saved once an epoch has finished
        fit(model, data, config, run_dir, arch_source=source, arch_path=arch_path, device=args.device,
            resume=args.resume, log=_log, quiet=args.quiet, world=world, sync_bn=args.sync_bn, threads=args.threads,
            data_dir=args.data_dir)
    return 0


def _what_to_train(args: argparse.Namespace, world: Any) -> tuple[str, str, Any, str, Path]:
    """(arch path, .arch text, TrainConfig, data source, run directory): from the flags, or for --resume from the
    checkpoint in --out with the flags given again on top."""
    from archspec.cli import read_source

    flags = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed, "val": args.val,
             "patience": args.patience, "tta": args.tta, "precision": args.precision, "compile": args.compile,
             "normalize": args.normalize}
    settings = {**parse_settings(args.settings), **{k: v for k, v in flags.items() if v is not None}}
    if args.arch is None and not (args.resume and args.out):
        raise UsageError("archspec train needs an .arch file", "pass FILE.arch, or `--resume --out DIR` to continue a run")
    arch = read_source(args.arch) if args.arch is not None else None
    run_dir = args.out or Path("runs") / Path(arch[0]).stem  # type: ignore[index]
    if not args.resume:
        return (*arch, make_config(args.recipe or "default", **settings), args.data or "cifar10", run_dir)  # type: ignore[misc]
    main = world is None or world.main
    if main and not (run_dir / "checkpoint.pt").is_file():  # rank 0 reads it and sends it on
        raise ArchspecError(f"--resume: no checkpoint in {run_dir}", "pass the --out directory of the interrupted run")
    require_torch()
    from archspec.training.distributed import World
    from archspec.training.resume import continuation

    plan = continuation(run_dir, arch, args.recipe, settings, args.data, world or World())
    return plan.arch_path, plan.source, plan.config, plan.data, run_dir


@contextmanager
def interruptible(what: str) -> Iterator[None]:
    """SIGINT and SIGTERM end the command with one line (exit 130 / 143) instead of a traceback.

    SIGTERM raises `Terminated` (as SIGINT raises KeyboardInterrupt); fit turns either into an
    `Interrupted` that says what the run directory holds; elsewhere `what` says what was saved.
    """
    from archspec.training.loop import Interrupted, Terminated

    def on_sigterm(signum: int, frame: Any) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, on_sigterm) if threading.current_thread() is threading.main_thread() else None
    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted (SIGINT) while {what}", 130) from None
    except Terminated:
        raise Interrupted(f"interrupted (SIGTERM) while {what}", 143) from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def cmd_eval(args: argparse.Namespace, out: TextIO) -> int:
    require_torch()
    import torch
    from rich.console import Console
    from rich.table import Table

    from archspec.training.checkpoint import Checkpoint
    from archspec.training.data import load_data
    from archspec.training.hardware import pick_device, pick_dtype
    from archspec.training.loop import evaluate

    ckpt = Checkpoint.load(args.checkpoint)
    model = ckpt.build_model(str(args.checkpoint))
    with interruptible("decoding the data: nothing saved (eval writes nothing)"):
        data = load_data(args.data or ckpt.data_source or "cifar10", args.data_dir, _log, limit=args.limit, live=_live(False))
    if data.classes != ckpt.classes or list(data.shape) != list(ckpt.input_shape):
        raise ArchspecError(
            f"the data ({data.source}: {len(data.classes)} classes, {'x'.join(map(str, data.shape))}) is not what "
            f"{args.checkpoint} was trained on ({len(ckpt.classes)} classes, {'x'.join(map(str, ckpt.input_shape))})",
            "pass the same --data as for training")
    device = pick_device(args.device)
    config = ckpt.train_config()
    tta = config.tta if args.tta is None else args.tta
    model.to(device).to(memory_format=torch.channels_last)
    with interruptible("evaluating: nothing saved (eval writes nothing)"):
        result = evaluate(model, data.test_x, data.test_y, torch.tensor(ckpt.mean), torch.tensor(ckpt.std),
                          num_classes=len(data.classes), device=device, dtype=pick_dtype(device, config.precision), tta=tta)
    console = Console(file=out)
    console.print(f"{args.checkpoint}: test accuracy [bold]{result.accuracy:.2%}[/bold] on {len(data.test_x):,} images (tta {tta}, normalize {ckpt.normalize})")
    table = Table()
    table.add_column("class")
    table.add_column("accuracy", justify="right")
    table.add_column("images", justify="right")
    table.add_column("most confused with")
    for i, name in enumerate(data.classes):
        row = result.confusion[i]
        wrong = max((c for c in range(len(row)) if c != i), key=row.__getitem__, default=None)
        confused = f"{data.classes[wrong]} ({row[wrong]})" if wrong is not None and row[wrong] else "-"
        table.add_row(name, f"{result.per_class[i]:.1%}", f"{sum(row):,}", confused)
    console.print(table)
    return 0


def image_files(paths: list[Path]) -> list[Path]:
    """The image arguments with each folder replaced by the images under it (recursively, sorted; hidden
    files and folders skipped, as eval skips them); a folder without images is an error naming it."""
    from archspec.training.preflight import IMAGE_SUFFIXES

    files: list[Path] = []
    for path in paths:
        if not path.is_dir():
            files.append(path)
            continue
        found = sorted(f for f in path.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES
                       and not any(part.startswith(".") for part in f.relative_to(path).parts) and f.is_file())
        if not found:
            raise UsageError(f"{path}: a folder with no images in it ({', '.join(sorted(IMAGE_SUFFIXES))})",
                             "pass image files, or a folder that has some")
        files.extend(found)
    return files


def cmd_predict(args: argparse.Namespace, out: TextIO) -> int:
    args.images = image_files(args.images)
    if args.checkpoint.suffix.lower() == ".onnx":  # the torch-free path: onnxruntime, numpy and pillow only
        from archspec.deploy.onnx_predict import print_predictions

        return print_predictions(args.checkpoint, args.images, args.top, out)
    require_torch()
    import torch

    from archspec.training.augment import normalize
    from archspec.training.checkpoint import Checkpoint
    from archspec.training.data import load_image

    ckpt = Checkpoint.load(args.checkpoint)
    model = ckpt.build_model(str(args.checkpoint))
    shape = tuple(ckpt.input_shape)
    if len(shape) != 3:
        raise ArchspecError(f"{args.checkpoint}: the model takes {'x'.join(map(str, shape))} inputs, not images",
                            "predict works with models whose input is CxHxW")
    with interruptible("decoding the images: nothing saved (predict writes nothing)"):
        images = torch.stack([load_image(p, shape) for p in args.images])  # type: ignore[arg-type]
        with torch.no_grad():
            logits = model(normalize(images, torch.tensor(ckpt.mean), torch.tensor(ckpt.std))).float()
    probs = (logits * ckpt.train_config().logit_scale).softmax(1)
    k = min(args.top, probs.shape[1])
    for path, p in zip(args.images, probs):
        top = p.topk(k)
        ranked = ", ".join(f"{ckpt.classes[i]} {v:.1%}" for v, i in zip(top.values.tolist(), top.indices.tolist()))
        print(f"{path}: {ranked}", file=out)
    return 0


def _log(line: str) -> None:
    print(line, flush=True)


def _live(quiet: bool) -> bool:
    """A progress bar (on stderr) only on a terminal, and not under --quiet."""
    import sys

    return sys.stderr.isatty() and not quiet
