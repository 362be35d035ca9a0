"""The training loop: read top to bottom (initialisation, optimiser, evaluation, progress, the run).

`fit()` trains any nn.Module on a Dataset with a TrainConfig and writes metrics.jsonl,
checkpoint.pt, report.json and curves.png into the output directory. It is a short loop over named
steps: `start_run`, then per epoch `run_epoch`, `record_epoch` (test accuracy), `save`; then
`final_report` and `write_report`. Hardware choices live in hardware.py, the checkpoint format in
checkpoint.py. The `archspec train` path
(archspec.cli.train) is: `check_spec()`, load the data, `check_against_data()`, `build_model()`, `fit()`.
"""
from __future__ import annotations

import copy
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import nn

from archspec.language.errors import ArchspecError
from archspec.pytorch import runtime
from archspec.training.board import Board, confusion_figure, mistakes_figure
from archspec.training.board import available as tensorboard_available
from archspec.training.augment import epoch_generator, flip_mask, normalize, random_shifts, translate, tta_logits
from archspec.training.checkpoint import FILENAME as CHECKPOINT
from archspec.training.checkpoint import (Checkpoint, WriteFailed, self_contained_source, signals_held, write_atomic,
                                          write_atomic_all, write_text_atomic)
from archspec.training.data import Dataset
from archspec.training.distributed import World, check_batch, convert_sync_batchnorm, epoch_seed, wrap
# cpu_has_native_bf16, physical_cores: re-exported for benchmarks/ that import them from here
from archspec.training.hardware import (choose_threads, cpu_has_native_bf16, cpu_threads, device_name,  # noqa: F401
                                        physical_cores, pick_device, pick_dtype)
from archspec.training.preflight import check_input, check_spec  # noqa: F401 (check_spec: part of the train path)
from archspec.training.recipes import TrainConfig
from archspec.training.validation import stratified_split, training_labels

if TYPE_CHECKING:
    from archspec.language.check import CheckReport

Log = Callable[[str], None]
BEST = "best.pt"  # the weights of the epoch with the best validation accuracy, beside checkpoint.pt

# ----------------------------------------------------------------------------- initialisation


@torch.no_grad()
def init_whitening(conv: nn.Conv2d, images: torch.Tensor, eps: float = 5e-4) -> None:
    """Patch-whitening init: filters = eigenvectors of the training patches' covariance / sqrt(eigenvalue).

    With out_channels = 2 x patch dim the filters come in +/- pairs (so a following GELU keeps both
    signs); with fewer, the top principal directions are kept.
    """
    c, kh, kw = conv.weight.shape[1:]
    dim = c * kh * kw
    patches = images.float().unfold(2, kh, 1).unfold(3, kw, 1)  # N, C, H', W', kh, kw
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, dim)
    cov = patches.T @ patches / len(patches)
    eigenvalues, eigenvectors = torch.linalg.eigh(cov)  # ascending
    filters = (eigenvectors.T / torch.sqrt(eigenvalues + eps)[:, None]).flip(0).reshape(dim, c, kh, kw)
    out = conv.out_channels
    if out == 2 * dim:
        filters = torch.cat([filters, -filters])
    elif out <= dim:
        filters = filters[:out]
    else:
        raise ArchspecError(
            f"a whitening conv needs at most {dim} or exactly {2 * dim} output channels for {c}x{kh}x{kw} patches, not {out}",
            f"write `conv {2 * dim} k{kh} init whiten` (or fewer than {dim + 1} channels)",
        )
    conv.weight.copy_(filters.to(conv.weight.dtype))
    if conv.bias is not None:
        conv.bias.zero_()


def whitening_convs(model: nn.Module) -> list[nn.Conv2d]:
    modules = dict(model.named_modules())
    return [modules[path] for path, mode in getattr(model, "init_hints", {}).items() if mode == "whiten"]


@torch.no_grad()
def init_identity(model: nn.Module) -> None:
    """Dirac init of the first min(in, out) filters of each stride-1 'same' conv: the net starts near identity."""
    whitened = {id(m) for m in whitening_convs(model)}
    for m in model.modules():
        if (isinstance(m, nn.Conv2d) and id(m) not in whitened and m.groups == 1
                and m.stride == (1, 1) and all(k % 2 == 1 for k in m.kernel_size)
                and m.padding in ("same", tuple(k // 2 for k in m.kernel_size))):
            n = min(m.in_channels, m.out_channels)
            nn.init.dirac_(m.weight[:n])


def prepare_model(model: nn.Module, config: TrainConfig, whiten_images: torch.Tensor) -> None:
    """Apply the recipe's initialisation and freezing to a freshly built model."""
    if config.identity_init:
        init_identity(model)
    for conv in whitening_convs(model):
        init_whitening(conv, whiten_images)
        conv.weight.requires_grad_(False)  # whitening filters stay fixed; only the bias trains (for a while)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            if config.bn_momentum is not None:
                m.momentum = config.bn_momentum
            if config.freeze_bn_weights and m.weight is not None:
                m.weight.requires_grad_(False)


# ----------------------------------------------------------------------------- optimiser


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.SGD:
    """SGD-nesterov with decoupled weight decay and a separate (scaled) lr for BatchNorm biases."""
    norm = {id(p) for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) for p in m.parameters()}
    params = [p for p in model.parameters() if p.requires_grad]
    decay = config.weight_decay * config.batch_size / 1024  # fraction per step at peak lr
    groups = []
    for scale, members in ((config.bias_lr_scale, [p for p in params if id(p) in norm]),
                           (1.0, [p for p in params if id(p) not in norm])):
        lr = config.lr * scale
        if members:
            # torch's SGD decays by lr * weight_decay per step, so divide to make the decay independent of lr
            groups.append({"params": members, "lr": lr, "peak_lr": lr, "weight_decay": decay / lr})
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.momentum > 0)


def lr_factor(step: int, total: int, config: TrainConfig) -> float:
    """Linear warmup from lr_start to 1 over warmup_frac of the steps, then linear decay to lr_end."""
    warmup = int(total * config.warmup_frac)
    if step < warmup:
        frac = step / warmup
        return config.lr_start * (1 - frac) + frac
    frac = (step - warmup) / max(1, total - warmup)
    return (1 - frac) + config.lr_end * frac


class Lookahead:
    """An EMA of all float state (weights and BN statistics) that is copied back into the net at each update."""

    def __init__(self, model: nn.Module) -> None:
        self.ema = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, model: nn.Module, decay: float) -> None:
        state = model.state_dict()
        for k, ema in self.ema.items():
            ema.lerp_(state[k], 1 - decay)
            state[k].copy_(ema)


def lookahead_decay(step: int, total: int, config: TrainConfig) -> float:
    """airbench's schedule: no averaging at first, ramping as (step/total)^3 to decay^every at the end."""
    return config.lookahead_decay ** config.lookahead_every * (step / total) ** 3


# ----------------------------------------------------------------------------- evaluation


@dataclass
class Eval:
    accuracy: float
    per_class: list[float]
    confusion: list[list[int]]
    loss: float = math.nan  # mean cross-entropy of the (scaled) logits, without label smoothing
    predicted: torch.Tensor | None = None  # this process's images (all of them in one process): the class taken ...
    confidence: torch.Tensor | None = None  # ... and its softmax probability
    first: int = 0  # the index of this process's first image


@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
             *, num_classes: int, device: torch.device, dtype: torch.dtype, tta: int = 0, batch_size: int = 1000,
             world: World = World(), logit_scale: float = 1.0) -> Eval:
    """Accuracy, per-class accuracy, confusion matrix (rows: true class) and mean loss of uint8 images.

    Under DDP each rank evaluates its contiguous shard of the images and the confusion matrices and
    losses are summed, so every rank gets the whole set's figures for 1/world_size of the work.
    """
    first = 0
    if world.distributed:
        shard = world.shard(len(images) + world.size - 1)  # ceil: the last rank's slice may be short
        images, labels, first = images[shard], labels[shard], min(shard.start, len(images))
    was_training = model.training
    model.eval()
    labels = labels.cpu()
    preds, confidences = [], []
    loss_sum = torch.zeros((), dtype=torch.float64)
    for i in range(0, len(images), batch_size):
        x = normalize(images[i : i + batch_size].to(device, non_blocking=True), mean, std)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            logits = tta_logits(model, x, tta).float().cpu() * logit_scale
        probs = logits.softmax(1)
        confidence, pred = probs.max(1)
        preds.append(pred)
        confidences.append(confidence)
        loss_sum += nn.functional.cross_entropy(logits, labels[i : i + batch_size], reduction="sum").double()
    model.train(was_training)
    pred = torch.cat(preds) if preds else torch.zeros(0, dtype=torch.int64)
    confusion = torch.bincount(labels * num_classes + pred, minlength=num_classes**2).view(num_classes, num_classes)
    if world.distributed:
        confusion = world.sum(confusion.to(device)).cpu()
        loss_sum = world.sum(loss_sum.to(device)).cpu()
    correct, total = confusion.diag().sum().item(), confusion.sum().item()
    per_class = (confusion.diag() / confusion.sum(1).clamp(min=1)).tolist()
    confidence = torch.cat(confidences) if confidences else torch.zeros(0)
    return Eval(correct / max(total, 1), per_class, confusion.tolist(), loss_sum.item() / max(total, 1), pred, confidence, first)


# ----------------------------------------------------------------------------- training


@dataclass
class Reporter:
    """Where progress goes during an epoch; the per-epoch lines always go to `log`.

    On a terminal: a transient rich bar on stderr, like tqdm. Not a terminal (piped, a log file): a
    plain line through `log` every `every_s` seconds, with no carriage returns and no blank lines.
    Quiet: nothing during an epoch.
    """

    log: Log = print
    quiet: bool = False
    live: bool = False  # the rich bar (stderr is a terminal)
    every_s: float = 10.0
    _progress: Any = None
    _task: Any = None
    _epoch: str = ""
    _steps: int = 0
    _last: float = 0.0

    @property
    def plain(self) -> bool:
        return not self.quiet and not self.live

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        self._epoch, self._steps, self._last = f"epoch {epoch + 1}/{epochs}", steps, time.monotonic()
        if self.live and not self.quiet:
            self._start_bar(steps)

    def _start_bar(self, steps: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        # On stderr, like tqdm: stdout keeps only the epoch lines and the summary.
        self._progress = Progress(TextColumn(self._epoch), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[stats]}"), TextColumn("eta"), TimeRemainingColumn(),
                                  console=Console(stderr=True), transient=True)
        self._progress.start()
        self._task = self._progress.add_task("train", total=steps, stats="")

    def step(self, done: int, stats: Callable[[], str]) -> None:
        """After `done` steps of the epoch; `stats()` (which reads the device) is called only when shown."""
        if self._progress is not None:
            show = done % 10 == 0 or done == self._steps
            self._progress.update(self._task, advance=1, **({"stats": stats()} if show else {}))
        elif self.plain and time.monotonic() - self._last >= self.every_s:
            self._last = time.monotonic()
            self.log(f"{self._epoch}  step {done}/{self._steps}  {stats()}")

    def end_epoch(self, line: str) -> None:
        self.stop()
        self.log(line)

    def stop(self) -> None:
        """Remove the bar (at the end of an epoch, or on an interruption)."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


class Interrupted(ArchspecError):
    """SIGINT or SIGTERM during a run: says what was saved and how to resume; exits 130 or 143."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Terminated(BaseException):
    """Raised by the SIGTERM handler the CLI installs (like KeyboardInterrupt for SIGINT)."""


@dataclass
class Run:
    """One run's state: set up by `start_run`, advanced by `run_epoch`, written by `save`."""

    model: nn.Module
    data: Dataset
    config: TrainConfig
    out_dir: Path
    arch_source: str  # self-contained .arch text (what the checkpoint stores)
    arch_path: str
    dev: torch.device
    dtype: torch.dtype
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor  # held out of the training set (uint8, on the CPU like the test set); empty when val is 0
    val_y: torch.Tensor
    mean_list: list[float]
    std_list: list[float]
    mean: torch.Tensor
    std: torch.Tensor
    batch: int
    steps_per_epoch: int
    total_steps: int
    epochs: int
    optimizer: torch.optim.Optimizer
    lookahead: Lookahead | None
    whiten_biases: list[torch.Tensor]
    step_fn: Callable[[torch.Tensor], torch.Tensor]
    criterion: nn.Module
    init_time: float
    epoch: int = 0  # epochs completed
    saved_epoch: int = 0  # the epoch checkpoint.pt holds
    step: int = 0
    train_time: float = 0.0
    eval_time: float = 0.0
    metrics: list[dict[str, Any]] = field(default_factory=list)
    world: World = World()
    sync_bn: bool = False
    threads: int = 0  # CPU threads (0: not chosen here, on a GPU)
    best_epoch: int = 0  # the epoch with the best validation accuracy so far (0: none yet, or no validation)
    best_val: float = -1.0
    board: Board = field(default_factory=Board)
    pictured: Eval | None = None  # final_report's evaluation that TensorBoard's pictures show
    resume_flags: str = ""  # what the resume command needs besides --out (--data-dir, --nproc-per-node)
    aux_weights: tuple[float, ...] = ()  # the loss weights of `aux` heads, in the order of the model's extra outputs

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / CHECKPOINT

    @property
    def params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def autocast(self) -> Any:
        return torch.autocast(self.dev.type, dtype=self.dtype, enabled=self.dtype != torch.float32)

    @property
    def best_path(self) -> Path:
        return self.out_dir / BEST

    @property
    def validating(self) -> bool:
        return len(self.val_x) > 0

    def test(self, tta: int = 0) -> Eval:
        return self._evaluate(self.data.test_x, self.data.test_y, tta)

    def validate(self) -> Eval:
        return self._evaluate(self.val_x, self.val_y, 0)

    def _evaluate(self, images: torch.Tensor, labels: torch.Tensor, tta: int) -> Eval:
        return evaluate(self.model, images, labels, self.mean, self.std, num_classes=len(self.data.classes), device=self.dev,
                        dtype=self.dtype, tta=tta, world=self.world, logit_scale=self.config.logit_scale)

    def patience_ran_out(self) -> bool:
        """--patience N: N epochs in a row without a better validation accuracy."""
        return bool(self.config.patience and self.best_epoch) and self.epoch - self.best_epoch >= self.config.patience


def fit(model: nn.Module, data: Dataset, config: TrainConfig, out_dir: Path, *, arch_source: str = "",
        arch_path: str = "", device: str = "auto", resume: bool = False, log: Log = print, quiet: bool = False,
        progress_every: float = 10.0, stop_after_epoch: int | None = None, reporter: Reporter | None = None,
        world: World = World(), sync_bn: bool = False, threads: int | str = "auto", tensorboard: bool = True,
        data_dir: Path | None = None, on_epoch: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any]:
    """Train `model` (freshly built, seeded by the caller) and write every output; returns report.json's dict.

    Unless `quiet`, progress shows as a bar when stderr is a terminal, else as a line every
    `progress_every` seconds. `stop_after_epoch` ends the run early after that many epochs, as an
    interruption would (for tests). `reporter` replaces the bar or lines (archspec.train's notebook display). SIGINT (or SIGTERM, see `Terminated`) raises `Interrupted`.
    Under torchrun (`world`, see distributed.py) every rank trains its shard and rank 0 alone logs and
    writes; `sync_bn` takes BatchNorm statistics over the global batch. `threads`: CPU threads, or
    `auto` (measured, see hardware.choose_threads). `tensorboard`: write event files (when installed).
    `data_dir` only goes into the resume command an interruption prints.
    `on_epoch` gets each epoch's metrics row once it is saved; True ends the run there (a sweep's pruner).
    """
    if not world.main:
        log, quiet = (lambda line: None), True
    run = start_run(model, data, config, Path(out_dir), arch_source, arch_path, device, world, sync_bn)
    run.resume_flags = resume_flags(data_dir, world)
    resumed_threads = restore(run) if resume else 0
    why_threads = pick_threads(run, threads, resumed_threads)
    if resume:
        log(f"resumed from {run.checkpoint_path} after epoch {run.epoch}")
    log_settings(run, log)
    reporter = reporter or Reporter(log, quiet, live=sys.stderr.isatty(), every_s=progress_every)
    if reporter.plain:
        log(f"progress: a line every {progress_every:g} s during an epoch (output is not a terminal; --quiet: epoch lines only)")
    if why_threads:
        log(f"threads: {run.threads}, {why_threads}")
    open_board(run, tensorboard and world.main, resume, log)
    try:
        return train_epochs(run, reporter, log, stop_after_epoch, on_epoch)
    except (KeyboardInterrupt, Terminated) as exc:
        reporter.stop()
        raise interrupted(run, exc) from None
    except WriteFailed as exc:  # a full disk: what the run directory holds, and how to go on once there is room
        reporter.stop()
        raise ArchspecError(exc.message, f"free space in {exc.path.parent} (a save needs room for the new checkpoint "
                            f"beside the old); {_saved(run, 'then ')}") from None
    finally:
        run.board.close()


def train_epochs(run: Run, reporter: Reporter, log: Log, stop_after_epoch: int | None,
                 on_epoch: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any]:
    """The epochs (until the last, or until --patience runs out), then the test set once, and report.json."""
    while run.epoch < run.epochs and not run.patience_ran_out():
        seen, loss_sum, correct, seconds = run_epoch(run, reporter)
        row = record_epoch(run, seen, loss_sum, correct, seconds)
        reporter.end_epoch(epoch_line(row, run.epochs, run.world.size))
        save(run)
        if stop_after_epoch is not None and stop_after_epoch <= run.epoch < run.epochs:
            return {"interrupted_after_epoch": run.epoch}
        if on_epoch is not None and on_epoch(row) and run.epoch < run.epochs:
            return {"stopped_after_epoch": run.epoch}
    if run.patience_ran_out() and run.epoch < run.epochs:
        log(f"early stop: no better val_acc for {counted(run.epoch - run.best_epoch, 'epoch')} (--patience "
            f"{run.config.patience}); the best, {run.best_val:.2%}, was epoch {run.best_epoch} ({run.best_path})")
    report = final_report(run)
    if run.world.main:
        write_report(run.out_dir, report, run.metrics)
        run.board.finish(report, pictures(run, report))
    config = run.config
    tested = f" on the weights of epoch {report['tested_epoch']} (val_acc {report['val_accuracy']:.2%})" if run.validating else ""
    log(f"done: test accuracy {report['test_accuracy']:.2%}{f' (tta {config.tta})' if config.tta else ''}{tested} in "
        f"{report['wall_time_s']:.1f}s of training ({report['images_per_s']:,.0f} img/s{_processes(run.world.size)}, {report['dtype']}); outputs in {run.out_dir}")
    return report


def resume_flags(data_dir: Path | None, world: World) -> str:
    """The flags a resume command needs besides --out: what the checkpoint does not store (machine-local choices)."""
    flags = f" --data-dir {data_dir}" if data_dir is not None else ""
    return flags + (f" --nproc-per-node {world.size}" if world.distributed else "")


def pick_threads(run: Run, requested: int | str, resumed_with: int) -> str:
    """Set the CPU thread count (measured for `auto`); returns why, for the log (empty on a GPU or under DDP)."""
    if run.dev.type != "cpu":
        return ""
    if run.world.distributed and requested == "auto":  # the launcher gave each process its share of the cores
        run.threads = cpu_threads()
        torch.set_num_threads(run.threads)
        return ""
    with torch.random.fork_rng(devices=[]):  # the probe's dropout masks must not shift the run's random stream
        run.threads, why = choose_threads(requested, probe_step(run), resumed_with)
    torch.set_num_threads(run.threads)
    return why


def training_loss(run: Run, out: Any, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(the step's loss, the main logits): the criterion on the logits, plus each `aux` head's loss times its
    weight (in training a model with heads returns (logits, aux_logits...), as torchvision's GoogLeNet does)."""
    logits, *aux = out if isinstance(out, tuple) else (out,)
    loss = run.criterion(logits.float() * run.config.logit_scale, y)
    for weight, extra in zip(run.aux_weights, aux):
        loss = loss + weight * run.criterion(extra.float() * run.config.logit_scale, y)
    return loss, logits


def probe_step(run: Run) -> Callable[[], None]:
    """One forward and backward pass of a training batch on a copy of the model (the run's weights and
    BatchNorm statistics stay as they are): what `--threads auto` times."""
    model = copy.deepcopy(run.model)
    x = normalize(run.train_x[: run.batch], run.mean, run.std)
    y = run.train_y[: run.batch]

    def step() -> None:
        with run.autocast():
            loss = training_loss(run, model(x), y)[0]
        loss.backward()
        model.zero_grad(set_to_none=True)

    return step


def open_board(run: Run, enabled: bool, resume: bool, log: Log) -> None:
    """TensorBoard event files in OUT/tensorboard (when the package is installed), and the command to view them."""
    if not enabled:
        return
    if not tensorboard_available():
        log("tensorboard: not installed, so no event files (pip install 'archspec-cnn[tensorboard]')")
        return
    run.board = Board.open(run.out_dir, run.steps_per_epoch, run.step if resume else None, log)
    run.board.graph(run.model, normalize(run.train_x[:1], run.mean, run.std))
    log(f"tensorboard: `tensorboard --logdir {run.out_dir}` (event files in {run.out_dir / 'tensorboard'})")


def start_run(model: nn.Module, data: Dataset, config: TrainConfig, out_dir: Path, arch_source: str, arch_path: str,
              device: str, world: World = World(), sync_bn: bool = False) -> Run:
    """Hardware, data on the device, the recipe's initialisation, optimiser and lookahead (and DDP around the model)."""
    if world.main:
        prepare_out_dir(out_dir)
    dev = pick_device(device)
    dtype = pick_dtype(dev, config.precision)
    if dev.type == "cpu":
        torch.set_num_threads(cpu_threads())
    torch.manual_seed(config.seed)

    # Data: one uint8 tensor on the device; batches are slices of a (seed, epoch) permutation.
    training, val_x, val_y = hold_out(data, config.val)
    train_x, train_y = training.train_x.to(dev), training.train_y.to(dev)
    mean_list, std_list = config.normalization(*training.stats())  # the held-out images stay unseen
    mean, std = torch.tensor(mean_list, device=dev), torch.tensor(std_list, device=dev)
    n = len(train_x)
    batch = min(config.batch_size, n)
    check_batch(world, batch)
    steps_per_epoch = n // batch
    total_steps = math.ceil(steps_per_epoch * config.epochs)

    model.to(dev)
    if sync_bn and world.distributed:
        model = convert_sync_batchnorm(model, dev)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    t_init = time.perf_counter()
    prepare_model(model, config, normalize(train_x[:5000], mean, std))
    # Whitening biases train for whiten_bias_epochs, then freeze (a None grad makes SGD skip them).
    whiten_biases = [c.bias for c in whitening_convs(model) if c.bias is not None]
    optimizer = make_optimizer(model, config)
    lookahead = Lookahead(model) if config.lookahead else None
    init_time = time.perf_counter() - t_init
    return Run(model, data, config, out_dir, self_contained_source(arch_source, arch_path or "<string>"), arch_path, dev, dtype,
               train_x, train_y, val_x, val_y, mean_list, std_list, mean, std, batch, steps_per_epoch, total_steps,
               math.ceil(total_steps / steps_per_epoch), optimizer, lookahead, whiten_biases,
               _step_fn(model, config, world, dev, bool(whiten_biases)), nn.CrossEntropyLoss(label_smoothing=config.label_smoothing),
               init_time, train_time=init_time, world=world, sync_bn=sync_bn, aux_weights=runtime.Aux.weights(model))


def hold_out(data: Dataset, val: float) -> tuple[Dataset, torch.Tensor, torch.Tensor]:
    """(the data with its training set reduced to what trains, validation images, their labels): `val` of
    the training set held out, stratified by class, chosen from the labels alone (validation.py)."""
    train_idx, val_idx = stratified_split(training_labels(data), val, data.classes)
    if not len(val_idx):
        return data, data.train_x[:0], data.train_y[:0]
    training = replace(data, train_x=data.train_x[train_idx], train_y=data.train_y[train_idx])
    return training, data.train_x[val_idx], data.train_y[val_idx]


def _step_fn(model: nn.Module, config: TrainConfig, world: World, dev: torch.device,
             params_may_freeze: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """The training forward: the model, inside DDP under torchrun, compiled if asked (Run.model stays the bare net)."""
    wrapped = wrap(model, world, dev, params_may_freeze=params_may_freeze)
    return torch.compile(wrapped) if config.compile else wrapped


def prepare_out_dir(out_dir: Path) -> None:
    """The output directory exists and is writable (checked before any training)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ArchspecError(f"--out {out_dir} is a file, not a directory", "pass a directory for the run's outputs")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ArchspecError(f"cannot create the output directory {out_dir}: {exc.strerror}", "pass a writable --out directory") from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise ArchspecError(f"the output directory {out_dir} is not writable", "pass a writable --out directory")


def log_settings(run: Run, log: Log) -> None:
    config = run.config
    settings = f"{run.dev.type}, {'bf16 autocast' if run.dtype == torch.bfloat16 else 'fp32'}, " \
               f"{'channels_last' if config.channels_last else 'NCHW'}, {counted(torch.get_num_threads(), 'thread')}"
    held = f" (and {len(run.val_x):,} held out for validation: val {config.val:g})" if run.validating else ""
    log(f"train: {run.arch_path or type(run.model).__name__}, {run.params:,} params, {len(run.train_x):,} images{held}, "
        f"recipe {config.recipe}, {counted(config.epochs, 'epoch')} x {counted(run.steps_per_epoch, 'step')} of {run.batch}; {settings}")
    if run.world.distributed:
        log(f"distributed: {run.world.size} processes x {run.batch // run.world.size} images per step "
            f"(global batch {run.batch}); BatchNorm {'synchronised (--sync-bn)' if run.sync_bn else 'per process'}; "
            "evaluation sharded and summed; img/s counts the images of all processes")
    log(f"normalize: {config.normalize} (mean {_floats(run.mean_list)}, std {_floats(run.std_list)})")


def run_epoch(run: Run, reporter: Reporter) -> tuple[int, torch.Tensor, torch.Tensor, float]:
    """One epoch of SGD steps; returns (images seen, summed loss, correct count, seconds)."""
    config, epoch, n, batch = run.config, run.epoch, len(run.train_x), run.batch
    for b in run.whiten_biases:
        b.requires_grad_(epoch < config.whiten_bias_epochs)
    g = epoch_generator(config.seed, epoch)
    perm = torch.randperm(n, generator=g).to(run.dev)
    shifts = random_shifts(n, config.translate, g).to(run.dev)
    flips = flip_mask(n, config.seed, epoch, config.flip).to(run.dev)
    if run.world.distributed:
        torch.manual_seed(epoch_seed(config.seed, epoch, run.world.rank))  # dropout: its own masks per rank
    shard = run.world.shard(batch)  # every rank draws the same global batch and keeps its part
    epoch_steps = min(run.steps_per_epoch, run.total_steps - run.step)
    loss_sum = torch.zeros((), device=run.dev)
    correct = torch.zeros((), device=run.dev, dtype=torch.int64)
    reporter.start_epoch(epoch, run.epochs, epoch_steps)
    run.model.train()
    t0 = time.perf_counter()
    for i in range(epoch_steps):
        idx = perm[i * batch : (i + 1) * batch][shard]
        x = run.train_x[idx]
        x = torch.where(flips[idx].view(-1, 1, 1, 1), x.flip(-1), x)
        x = translate(normalize(x, run.mean, run.std), config.translate, shifts[idx])
        y = run.train_y[idx]
        factor = lr_factor(run.step, run.total_steps, config)
        for group in run.optimizer.param_groups:
            group["lr"] = group["peak_lr"] * factor
        with run.autocast():
            loss, logits = training_loss(run, run.step_fn(x), y)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        run.step += 1
        run.board.step(run.step, loss.detach(), run.optimizer.param_groups[-1]["lr"])
        if run.lookahead is not None and run.step % config.lookahead_every == 0:
            run.lookahead.update(run.model, lookahead_decay(run.step, run.total_steps, config))
        # Accumulate on the device; the host reads these only when logging (no sync inside the step).
        loss_sum += loss.detach() * len(y)
        correct += (logits.detach().argmax(1) == y).sum()
        reporter.step(i + 1, lambda: _running_stats(loss_sum, correct, (i + 1) * len(y), (i + 1) * batch,
                                                    time.perf_counter() - t0, run.world.size))
    if run.lookahead is not None and run.step == run.total_steps:
        run.lookahead.update(run.model, 1.0)  # finish on the averaged weights
    if run.dev.type == "cuda":
        torch.cuda.synchronize()
    # The epoch's figures over all ranks (rank 0's buffers everywhere, so evaluation and checkpoint agree).
    run.world.sync_buffers(run.model)
    return epoch_steps * batch, run.world.sum(loss_sum), run.world.sum(correct), time.perf_counter() - t0


def record_epoch(run: Run, seen: int, loss_sum: torch.Tensor, correct: torch.Tensor, seconds: float) -> dict[str, Any]:
    """Evaluate on the validation set (when there is one) and append the epoch's metrics row."""
    run.train_time += seconds
    run.epoch += 1
    row = {"epoch": run.epoch, "step": run.step, "elapsed_s": round(run.train_time, 3), "train_loss": loss_sum.item() / seen,
           "train_acc": correct.item() / seen}
    if run.validating:
        t_eval = time.perf_counter()
        val = run.validate()
        run.eval_time += time.perf_counter() - t_eval
        row.update(val_loss=val.loss, val_acc=val.accuracy)
        if val.accuracy > run.best_val:
            run.best_epoch, run.best_val = run.epoch, val.accuracy
    row.update(images_per_s=seen / seconds, lr=run.optimizer.param_groups[-1]["lr"])
    run.metrics.append(row)
    run.board.epoch(row)
    return row


def epoch_line(row: dict[str, Any], epochs: int, processes: int = 1) -> str:
    """The epoch's figures over the whole global batch (every process's images, under DDP)."""
    val = f"  val_loss {row['val_loss']:.4f}  val_acc {row['val_acc']:6.2%}" if "val_acc" in row else ""
    return (f"epoch {row['epoch']:>3}/{epochs}  train_loss {row['train_loss']:.4f}  train_acc {row['train_acc']:6.2%}"
            f"{val}  {row['images_per_s']:>7,.0f} img/s{_processes(processes)}"
            f"  elapsed {row['elapsed_s']:7.1f}s")


def best_so_far(metrics: list[dict[str, Any]]) -> tuple[int, float]:
    """(epoch, val_acc) of the first epoch with the highest validation accuracy; (0, -1) without validation."""
    best = (0, -1.0)
    for row in metrics:
        if "val_acc" in row and row["val_acc"] > best[1]:
            best = (row["epoch"], row["val_acc"])
    return best


def save(run: Run) -> None:
    """checkpoint.pt and metrics.jsonl, both written whole to temp files, then both renamed: a crash or a full
    disk keeps the previous pair, so the two always hold the same epochs.

    Rank 0 alone writes (the weights and optimiser are the same on every rank).
    """
    if not run.world.main:
        run.saved_epoch = run.epoch
        return
    metrics = "".join(json.dumps(m) + "\n" for m in run.metrics).encode("utf-8")
    with signals_held():  # an interruption lands after the pair is written and counted, never between them
        checkpoint = Checkpoint(
            model=run.model.state_dict(), optimizer=run.optimizer.state_dict(), step=run.step, epoch=run.epoch,
            lookahead=run.lookahead.ema if run.lookahead else None, train_time=run.train_time, metrics=run.metrics,
            arch_source=run.arch_source, arch_path=run.arch_path, config=run.config.to_dict(), classes=run.data.classes,
            input_shape=list(run.data.shape), mean=run.mean_list, std=run.std_list, normalize=run.config.normalize,
            data_source=run.data.source, rng=torch.get_rng_state(), threads=run.threads,
        )
        files = [(run.checkpoint_path, checkpoint.write), (run.out_dir / "metrics.jsonl", lambda f: f.write(metrics))]
        if run.best_epoch == run.epoch:  # the weights alone (eval, predict, export read it; a resume reads checkpoint.pt)
            best = checkpoint.model_copy(update={"optimizer": None, "lookahead": None, "rng": None})
            files.append((run.best_path, best.write))
        write_atomic_all(files)
        run.saved_epoch = run.epoch  # only once the file holds it


def restore(run: Run) -> int:
    """Continue from the run directory's checkpoint: same architecture and settings, every piece of state.

    Returns the thread count the run trained with (0 when not recorded), for an exact continuation."""
    path = run.checkpoint_path
    # Rank 0 reads and sends it: under torchrun only rank 0's --out needs the file (any world size).
    ckpt = run.world.broadcast(Checkpoint.load(path) if run.world.main else None)
    if ckpt.arch_source != run.arch_source:
        raise ArchspecError(f"{path} was trained from a different .arch source", "resume with the same .arch file, or drop --resume")
    current = run.config.to_dict()
    if ckpt.config != current:
        diff = {k: (v, current.get(k)) for k, v in ckpt.config.items() if current.get(k) != v}
        raise ArchspecError(f"{path} was written with other settings: " + ", ".join(f"{k} {a} -> {b}" for k, (a, b) in diff.items()),
                            "resume with the same flags as the interrupted run")
    if ckpt.optimizer is None or ckpt.rng is None or (run.lookahead is not None and ckpt.lookahead is None):
        raise ArchspecError(f"{path} holds weights only, not the optimiser state a resume needs", "drop --resume to train from scratch")
    run.model.load_state_dict({k: v.to(run.dev) for k, v in ckpt.model.items()})
    run.optimizer.load_state_dict(ckpt.optimizer)
    if run.lookahead is not None:
        device = next(iter(run.lookahead.ema.values())).device
        run.lookahead.ema = {k: v.to(device) for k, v in ckpt.lookahead.items()}
    torch.set_rng_state(ckpt.rng)
    run.epoch, run.step, run.train_time, run.metrics = ckpt.epoch, ckpt.step, ckpt.train_time, ckpt.metrics
    run.saved_epoch = ckpt.epoch
    run.best_epoch, run.best_val = best_so_far(ckpt.metrics)
    return ckpt.threads


def load_best(run: Run) -> None:
    """The weights of the best validation epoch into the model (rank 0 reads best.pt and sends them on)."""
    weights = run.world.broadcast(Checkpoint.load(run.best_path).model if run.world.main else None)
    run.model.load_state_dict({k: v.to(run.dev) for k, v in weights.items()})


def final_report(run: Run) -> dict[str, Any]:
    """The test set, evaluated once, on the weights of the best validation epoch (the last without validation);
    multi-crop TTA is part of producing the reported accuracy, so it is timed. Returns report.json's dict."""
    config, data, metrics = run.config, run.data, run.metrics
    tested = run.best_epoch or run.epoch
    if tested != run.epoch:
        load_best(run)
    t_tta = time.perf_counter()
    final = run.test(tta=config.tta)
    tta_time = time.perf_counter() - t_tta if config.tta else 0.0
    plain = run.test() if config.tta else final
    val = run.validate() if run.validating else None
    run.pictured = val or plain
    wall = run.train_time + tta_time
    return {
        "arch": run.arch_path, "test_accuracy": final.accuracy, "test_accuracy_no_tta": plain.accuracy,
        "test_loss": _finite(plain.loss), "val_accuracy": val.accuracy if val else None, "val_loss": _finite(val.loss) if val else None,
        "tested_epoch": tested,
        "best_epoch": run.best_epoch or None, "epochs_run": run.epoch, "stopped_early": run.epoch < run.epochs,
        "per_class_accuracy": dict(zip(data.classes, final.per_class)), "confusion_matrix": final.confusion,
        "classes": data.classes, "wall_time_s": round(wall, 3), "init_time_s": round(run.init_time, 3),
        "tta_time_s": round(tta_time, 3), "eval_time_s": round(run.eval_time, 3),
        "images_per_s": run.step * run.batch / (run.train_time - run.init_time), "epochs": config.epochs, "steps": run.step,
        "params": run.params, "device": device_name(run.dev), "dtype": "bf16" if run.dtype == torch.bfloat16 else "fp32",
        "threads": torch.get_num_threads(), "world_size": run.world.size, "sync_bn": run.sync_bn, "torch": torch.__version__, "train_images": len(run.train_x),
        "val_images": len(run.val_x), "test_images": len(data.test_x), "data": data.source, "settings": config.to_dict(),
        "normalize": {"mode": config.normalize, "mean": run.mean_list, "std": run.std_list},
        "time_to_val_accuracy_s": {f"{t:.0%}": next((m["elapsed_s"] for m in metrics if m.get("val_acc", -1) >= t), None)
                                   for t in (0.5, 0.6, 0.7, 0.8, 0.85, 0.9)} if run.validating else None,
    }


def _finite(x: float) -> float | None:
    """A loss for report.json: null when training diverged (NaN is not JSON)."""
    return x if math.isfinite(x) else None


def write_report(out_dir: Path, report: dict[str, Any], metrics: list[dict[str, Any]]) -> None:
    write_text_atomic(out_dir / "report.json", json.dumps(report, indent=2) + "\n")
    _plot_curves(out_dir / "curves.png", metrics)


def pictures(run: Run, report: dict[str, Any]) -> dict[str, Any]:
    """TensorBoard's pictures (matplotlib figures): the epoch curves, and on the validation set (the test set without
    one) the confusion matrix and the most confident mistakes of the tested weights. None without matplotlib."""
    if run.board.writer is None or run.pictured is None or not _matplotlib():
        return {}
    split, images, labels = ("validation", run.val_x, run.val_y) if run.validating else ("test", run.data.test_x, run.data.test_y)
    result = run.pictured
    part = slice(result.first, result.first + len(result.predicted))  # under DDP: rank 0's shard of the images
    return {"curves/epochs": curves_figure(run.metrics),
            f"{split}/confusion_matrix": confusion_figure(result.confusion, run.data.classes, split),
            f"{split}/most_confident_mistakes": mistakes_figure(images[part], labels[part].cpu(), result.predicted,
                                                                result.confidence, run.data.classes, split)}


def interrupted(run: Run, exc: BaseException) -> Interrupted:
    """The one line an interrupted run ends with: what the run directory holds and how to continue."""
    name, code = ("SIGTERM", 143) if isinstance(exc, Terminated) else ("SIGINT", 130)
    return Interrupted(f"interrupted ({name}) in epoch {min(run.saved_epoch + 1, run.epochs)}: {_saved(run)}", code)


def _saved(run: Run, then: str = "") -> str:
    """What checkpoint.pt holds and how to continue from it."""
    if run.saved_epoch:
        return f"{run.checkpoint_path} holds epoch {run.saved_epoch}/{run.epochs}; {then}continue with " \
               f"`archspec train --resume --out {run.out_dir}{run.resume_flags}`"
    return f"nothing saved (no epoch finished); {then}run it again"

def _floats(values: list[float]) -> str:
    return " ".join(f"{v:.3f}" for v in values)


def _running_stats(loss_sum: torch.Tensor, correct: torch.Tensor, seen: int, seen_globally: int, seconds: float,
                   processes: int = 1) -> str:
    """The epoch so far: mean loss and accuracy of this process's `seen` images (reads the device: call only to
    show it), and the throughput of all processes' `seen_globally` (the ranks step together), as the epoch line."""
    shard = " (rank 0)" if processes > 1 else ""
    return (f"loss {loss_sum.item() / seen:.3f}  acc {correct.item() / seen:.1%}{shard}  "
            f"{seen_globally / seconds:,.0f} img/s{_processes(processes)}")


def _processes(processes: int) -> str:
    """The label of a DDP run's throughput: the images of all its processes."""
    return f" ({processes} processes)" if processes > 1 else ""


def counted(n: float, noun: str) -> str:
    """`1 epoch`, `0.5 epochs`, `4 threads`, `1,024 steps` (a regular plural)."""
    number = f"{n:,}" if isinstance(n, int) else f"{n:g}"
    return f"{number} {noun}" if n == 1 else f"{number} {noun}s"


def _matplotlib() -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
    except ImportError:  # the plot extra is optional
        return False
    return True


def _plot_curves(path: Path, metrics: list[dict]) -> None:
    if not _matplotlib():
        return
    import matplotlib.pyplot as plt

    fig = curves_figure(metrics)
    try:
        write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=100))
    finally:
        plt.close(fig)


def curves_figure(metrics: list[dict]) -> Any:
    """Train loss, and train/validation accuracy, against the epoch (whole epochs on the x axis).

    Rows of runs from before the validation split have a per-epoch test accuracy instead."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [m["epoch"] for m in metrics]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax_loss.plot(epochs, [m["train_loss"] for m in metrics], marker="o")
    ax_loss.set(xlabel="epoch", ylabel="train loss")
    ax_acc.plot(epochs, [m["train_acc"] for m in metrics], marker="o", label="train")
    for key, label in (("val_acc", "validation"), ("test_acc", "test")):
        if any(key in m for m in metrics):
            ax_acc.plot([m["epoch"] for m in metrics if key in m], [m[key] for m in metrics if key in m], marker="o", label=label)
    ax_acc.set(xlabel="epoch", ylabel="accuracy")
    ax_acc.legend()
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- the `archspec train` path


def check_against_data(report: "CheckReport", arch_path: str, data: Dataset) -> None:
    """The spec's input shape and class count must match the decoded data (checked before any training)."""
    check_input(report.input_shape, report.output_shape, arch_path, data.shape, data.classes, data.source)


def build_model(arch_source: str, arch_path: str, seed: int) -> nn.Module:
    """Build the spec with its initial weights a function of the seed."""
    from archspec.language.expand import parse
    from archspec.pytorch.build import build

    torch.manual_seed(seed)
    return build(parse(arch_source, arch_path))

