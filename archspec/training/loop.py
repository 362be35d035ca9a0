"""The training loop: read top to bottom (initialisation, optimiser, evaluation, progress, the run).

`fit()` trains any nn.Module on a Dataset with a TrainConfig and writes metrics.jsonl,
checkpoint.pt, report.json and curves.png into the output directory. It is a short loop over named
steps: `start_run`, then per epoch `run_epoch`, `record_epoch` (test accuracy), `save`; then
`final_report` and `write_report`. Hardware choices live in hardware.py, the checkpoint format in
checkpoint.py. The `archspec train` path
(archspec.cli.train) is: `check_spec()`, load the data, `check_against_data()`, `build_model()`, `fit()`.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import nn

from archspec.language.errors import ArchspecError
from archspec.training.augment import epoch_generator, flip_mask, normalize, random_shifts, translate, tta_logits
from archspec.training.checkpoint import FILENAME as CHECKPOINT
from archspec.training.checkpoint import (Checkpoint, WriteFailed, self_contained_source, signals_held, write_atomic,
                                          write_atomic_all, write_text_atomic)
from archspec.training.data import Dataset
from archspec.training.distributed import World, check_batch, convert_sync_batchnorm, epoch_seed, wrap
# cpu_has_native_bf16, physical_cores: re-exported for benchmarks/ that import them from here
from archspec.training.hardware import cpu_has_native_bf16, cpu_threads, device_name, physical_cores, pick_device, pick_dtype  # noqa: F401
from archspec.training.preflight import check_input, check_spec  # noqa: F401 (check_spec: part of the train path)
from archspec.training.recipes import TrainConfig

if TYPE_CHECKING:
    from archspec.language.check import CheckReport

Log = Callable[[str], None]

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


@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
             *, num_classes: int, device: torch.device, dtype: torch.dtype, tta: int = 0, batch_size: int = 1000,
             world: World = World()) -> Eval:
    """Accuracy, per-class accuracy and confusion matrix (rows: true class) of uint8 images.

    Under DDP each rank evaluates its contiguous shard of the images and the confusion matrices are
    summed, so every rank gets the whole test set's figures for 1/world_size of the work.
    """
    if world.distributed:
        shard = world.shard(len(images) + world.size - 1)  # ceil: the last rank's slice may be short
        images, labels = images[shard], labels[shard]
    was_training = model.training
    model.eval()
    preds = []
    for i in range(0, len(images), batch_size):
        x = normalize(images[i : i + batch_size].to(device, non_blocking=True), mean, std)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            preds.append(tta_logits(model, x, tta).argmax(1).cpu())
    model.train(was_training)
    pred = torch.cat(preds) if preds else torch.zeros(0, dtype=torch.int64)
    labels = labels.cpu()
    confusion = torch.bincount(labels * num_classes + pred, minlength=num_classes**2).view(num_classes, num_classes)
    if world.distributed:
        confusion = world.sum(confusion.to(device)).cpu()
    correct, total = confusion.diag().sum().item(), confusion.sum().item()
    per_class = (confusion.diag() / confusion.sum(1).clamp(min=1)).tolist()
    return Eval(correct / max(total, 1), per_class, confusion.tolist())


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

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / CHECKPOINT

    @property
    def params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def autocast(self) -> Any:
        return torch.autocast(self.dev.type, dtype=self.dtype, enabled=self.dtype != torch.float32)

    def test(self, tta: int = 0) -> Eval:
        return evaluate(self.model, self.data.test_x, self.data.test_y, self.mean, self.std, num_classes=len(self.data.classes),
                        device=self.dev, dtype=self.dtype, tta=tta, world=self.world)


def fit(model: nn.Module, data: Dataset, config: TrainConfig, out_dir: Path, *, arch_source: str = "",
        arch_path: str = "", device: str = "auto", resume: bool = False, log: Log = print, quiet: bool = False,
        progress_every: float = 10.0, stop_after_epoch: int | None = None, reporter: Reporter | None = None,
        world: World = World(), sync_bn: bool = False,
        on_epoch: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any]:
    """Train `model` (freshly built, seeded by the caller) and write every output; returns report.json's dict.

    Unless `quiet`, progress shows as a bar when stderr is a terminal, else as a line every
    `progress_every` seconds. `stop_after_epoch` ends the run early after that many epochs, as an
    interruption would (for tests). `reporter` replaces the bar or lines (archspec.train's notebook display). SIGINT (or SIGTERM, see `Terminated`) raises `Interrupted`.
    Under torchrun (`world`, see distributed.py) every rank trains its shard and rank 0 alone logs and
    writes; `sync_bn` takes BatchNorm statistics over the global batch.
    `on_epoch` gets each epoch's metrics row once it is saved; True ends the run there (a sweep's pruner).
    """
    if not world.main:
        log, quiet = (lambda line: None), True
    run = start_run(model, data, config, Path(out_dir), arch_source, arch_path, device, world, sync_bn)
    if resume:
        restore(run)
        log(f"resumed from {run.checkpoint_path} after epoch {run.epoch}")
    log_settings(run, log)
    reporter = reporter or Reporter(log, quiet, live=sys.stderr.isatty(), every_s=progress_every)
    if reporter.plain:
        log(f"progress: a line every {progress_every:g} s during an epoch (output is not a terminal; --quiet: epoch lines only)")
    try:
        while run.epoch < run.epochs:
            seen, loss_sum, correct, seconds = run_epoch(run, reporter)
            row = record_epoch(run, seen, loss_sum, correct, seconds)
            reporter.end_epoch(epoch_line(row, run.epochs, run.world.size))
            save(run)
            if stop_after_epoch is not None and stop_after_epoch <= run.epoch < run.epochs:
                return {"interrupted_after_epoch": run.epoch}
            if on_epoch is not None and on_epoch(row) and run.epoch < run.epochs:
                return {"stopped_after_epoch": run.epoch}
        report = final_report(run)
        if world.main:
            write_report(run.out_dir, report, run.metrics)
    except (KeyboardInterrupt, Terminated) as exc:
        reporter.stop()
        raise interrupted(run, exc) from None
    except WriteFailed as exc:  # a full disk: what the run directory holds, and how to go on once there is room
        reporter.stop()
        raise ArchspecError(exc.message, f"free space in {exc.path.parent} (a save needs room for the new checkpoint "
                            f"beside the old); {_saved(run, 'then ')}") from None
    log(f"done: test accuracy {report['test_accuracy']:.2%}{f' (tta {config.tta})' if config.tta else ''} in "
        f"{report['wall_time_s']:.1f}s of training ({report['images_per_s']:,.0f} img/s{_processes(run.world.size)}, {report['dtype']}); outputs in {run.out_dir}")
    return report


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
    train_x, train_y = data.train_x.to(dev), data.train_y.to(dev)
    mean_list, std_list = config.normalization(*data.stats())
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
               train_x, train_y, mean_list, std_list, mean, std, batch, steps_per_epoch, total_steps,
               math.ceil(total_steps / steps_per_epoch), optimizer, lookahead, whiten_biases,
               _step_fn(model, config, world, dev, bool(whiten_biases)), nn.CrossEntropyLoss(label_smoothing=config.label_smoothing),
               init_time, train_time=init_time, world=world, sync_bn=sync_bn)


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
    log(f"train: {run.arch_path or type(run.model).__name__}, {run.params:,} params, {len(run.train_x):,} images, "
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
            logits = run.step_fn(x)
            loss = run.criterion(logits.float() * config.logit_scale, y)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        run.step += 1
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
    """Evaluate on the test set and append the epoch's metrics row."""
    run.train_time += seconds
    t_eval = time.perf_counter()
    test = run.test()
    run.eval_time += time.perf_counter() - t_eval
    run.epoch += 1
    row = {"epoch": run.epoch, "step": run.step, "elapsed_s": round(run.train_time, 3), "train_loss": loss_sum.item() / seen,
           "train_acc": correct.item() / seen, "test_acc": test.accuracy, "images_per_s": seen / seconds,
           "lr": run.optimizer.param_groups[-1]["lr"]}
    run.metrics.append(row)
    return row


def epoch_line(row: dict[str, Any], epochs: int, processes: int = 1) -> str:
    """The epoch's figures over the whole global batch (every process's images, under DDP)."""
    return (f"epoch {row['epoch']:>3}/{epochs}  train_loss {row['train_loss']:.4f}  train_acc {row['train_acc']:6.2%}"
            f"  test_acc {row['test_acc']:6.2%}  {row['images_per_s']:>7,.0f} img/s{_processes(processes)}"
            f"  elapsed {row['elapsed_s']:7.1f}s")


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
            data_source=run.data.source, rng=torch.get_rng_state(),
        )
        write_atomic_all([(run.checkpoint_path, checkpoint.write), (run.out_dir / "metrics.jsonl", lambda f: f.write(metrics))])
        run.saved_epoch = run.epoch  # only once the file holds it


def restore(run: Run) -> None:
    """Continue from the run directory's checkpoint: same architecture and settings, every piece of state."""
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


def final_report(run: Run) -> dict[str, Any]:
    """The final evaluation (multi-crop TTA is part of producing the reported accuracy, so it is timed) and report.json's dict."""
    config, data, metrics = run.config, run.data, run.metrics
    t_tta = time.perf_counter()
    final = run.test(tta=config.tta)
    tta_time = time.perf_counter() - t_tta if config.tta else 0.0
    wall = run.train_time + tta_time
    return {
        "arch": run.arch_path, "test_accuracy": final.accuracy, "test_accuracy_no_tta": metrics[-1]["test_acc"],
        "per_class_accuracy": dict(zip(data.classes, final.per_class)), "confusion_matrix": final.confusion,
        "classes": data.classes, "wall_time_s": round(wall, 3), "init_time_s": round(run.init_time, 3),
        "tta_time_s": round(tta_time, 3), "eval_time_s": round(run.eval_time, 3),
        "images_per_s": run.step * run.batch / (run.train_time - run.init_time), "epochs": config.epochs, "steps": run.step,
        "params": run.params, "device": device_name(run.dev), "dtype": "bf16" if run.dtype == torch.bfloat16 else "fp32",
        "threads": torch.get_num_threads(), "world_size": run.world.size, "sync_bn": run.sync_bn, "torch": torch.__version__, "train_images": len(run.train_x),
        "test_images": len(data.test_x), "data": data.source, "settings": config.to_dict(),
        "normalize": {"mode": config.normalize, "mean": run.mean_list, "std": run.std_list},
        "time_to_accuracy_s": {f"{t:.0%}": next((m["elapsed_s"] for m in metrics if m["test_acc"] >= t), None)
                               for t in (0.5, 0.6, 0.7, 0.8, 0.85, 0.9)},
    }


def write_report(out_dir: Path, report: dict[str, Any], metrics: list[dict[str, Any]]) -> None:
    write_text_atomic(out_dir / "report.json", json.dumps(report, indent=2) + "\n")
    _plot_curves(out_dir / "curves.png", metrics)


def interrupted(run: Run, exc: BaseException) -> Interrupted:
    """The one line an interrupted run ends with: what the run directory holds and how to continue."""
    name, code = ("SIGTERM", 143) if isinstance(exc, Terminated) else ("SIGINT", 130)
    return Interrupted(f"interrupted ({name}) in epoch {min(run.saved_epoch + 1, run.epochs)}: {_saved(run)}", code)


def _saved(run: Run, then: str = "") -> str:
    """What checkpoint.pt holds and how to continue from it."""
    if run.saved_epoch:
        return f"{run.checkpoint_path} holds epoch {run.saved_epoch}/{run.epochs}; {then}continue with `archspec train " \
               f"{run.arch_path or 'ARCH'} --resume --out {run.out_dir}` and the same flags"
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


def _plot_curves(path: Path, metrics: list[dict]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
    except ImportError:  # the plot extra is optional
        return
    import matplotlib.pyplot as plt

    fig = curves_figure(metrics)
    try:
        write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=100))
    finally:
        plt.close(fig)


def curves_figure(metrics: list[dict]) -> Any:
    """Train loss, and train/test accuracy, against the epoch (whole epochs on the x axis)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [m["epoch"] for m in metrics]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax_loss.plot(epochs, [m["train_loss"] for m in metrics], marker="o")
    ax_loss.set(xlabel="epoch", ylabel="train loss")
    ax_acc.plot(epochs, [m["train_acc"] for m in metrics], marker="o", label="train")
    ax_acc.plot(epochs, [m["test_acc"] for m in metrics], marker="o", label="test")
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

