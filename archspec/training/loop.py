"""The training loop: read top to bottom (hardware, initialisation, optimiser, evaluation, loop, outputs).

`fit()` trains any nn.Module on a Dataset with a TrainConfig and writes metrics.jsonl,
checkpoint.pt, report.json and curves.png into the output directory. The `archspec train` path
(archspec.cli.train) is: `check_spec()`, load the data, `check_against_data()`, `build_model()`, `fit()`.
"""
from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import nn

from archspec.training.augment import epoch_generator, flip_mask, normalize, random_shifts, translate, tta_logits
from archspec.training.data import Dataset
from archspec.language.errors import ArchspecError
from archspec.training.preflight import check_input, check_spec  # noqa: F401 (check_spec: part of the train path)
from archspec.training.recipes import TrainConfig

if TYPE_CHECKING:
    from archspec.language.check import CheckReport

Log = Callable[[str], None]

# ----------------------------------------------------------------------------- hardware


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if name not in available:
        raise ArchspecError(f"unknown device {name!r}", "use --device auto, cpu, cuda or mps")
    if not available[name]:
        raise ArchspecError(f"device {name!r} is not available on this machine", "use --device auto (or cpu)")
    return torch.device(name)


def cpu_has_native_bf16() -> bool:
    """True on CPUs with bf16 dot-product instructions (AVX512-BF16 or AMX), where bf16 is ~2x fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def pick_dtype(device: torch.device, precision: str) -> torch.dtype:
    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if device.type == "cpu":
        return torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    return torch.float32


def physical_cores() -> int:
    """Physical cores (hyper-threads share one core's FMA units, so more threads only add contention)."""
    try:
        pairs = set()
        phys = core = None
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("physical id"):
                phys = line.split(":")[1].strip()
            elif line.startswith("core id"):
                core = line.split(":")[1].strip()
                pairs.add((phys, core))
        if pairs:
            return len(pairs)
    except OSError:
        pass
    return os.cpu_count() or 1


def cpu_threads() -> int:
    """OMP_NUM_THREADS when the user set it (e.g. several jobs sharing a machine), else the physical cores.

    Two processes each running one thread per core slow each other's OpenMP barriers several-fold.
    """
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else physical_cores()


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
             *, num_classes: int, device: torch.device, dtype: torch.dtype, tta: int = 0, batch_size: int = 1000) -> Eval:
    """Accuracy, per-class accuracy and confusion matrix (rows: true class) of uint8 images."""
    was_training = model.training
    model.eval()
    preds = []
    for i in range(0, len(images), batch_size):
        x = normalize(images[i : i + batch_size].to(device, non_blocking=True), mean, std)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            preds.append(tta_logits(model, x, tta).argmax(1).cpu())
    model.train(was_training)
    pred = torch.cat(preds)
    labels = labels.cpu()
    confusion = torch.bincount(labels * num_classes + pred, minlength=num_classes**2).view(num_classes, num_classes)
    per_class = (confusion.diag() / confusion.sum(1).clamp(min=1)).tolist()
    return Eval((pred == labels).float().mean().item(), per_class, confusion.tolist())


# ----------------------------------------------------------------------------- checkpoints


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # atomic: a crash mid-save leaves the previous checkpoint intact


# Settings that checkpoints written before they existed lack; those ran with these values.
_OLD_DEFAULTS = {"normalize": "data"}
CHECKPOINT_KEYS = ("model", "arch_source", "config", "classes", "input_shape", "mean", "std")


def load_checkpoint(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ArchspecError(f"checkpoint {path} does not exist", "pass the checkpoint.pt that `archspec train --out DIR` wrote")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # tensors and plain data only: no pickled code
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise ArchspecError(f"checkpoint {path} is unreadable or corrupt ({type(exc).__name__}: {exc})",
                            "re-run `archspec train` to write a new one") from None
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise ArchspecError(f"{path} is not an archspec checkpoint (missing: {', '.join(missing)})",
                            "pass the checkpoint.pt that `archspec train --out DIR` wrote")
    state.setdefault("normalize", state["config"].get("normalize", _OLD_DEFAULTS["normalize"]))
    return state


class ConvertImage:
    """A PIL image in the mode and size the network takes (what the runner's decode does)."""

    def __init__(self, shape: tuple[int, int, int]) -> None:
        self.shape = tuple(shape)

    def __call__(self, image: Any) -> Any:
        from PIL import Image

        c, h, w = self.shape
        image = image.convert("L" if c == 1 else "RGB")
        return image if image.size == (w, h) else image.resize((w, h), Image.BILINEAR)

    def __repr__(self) -> str:
        return f"ConvertImage(shape={self.shape})"


def inference_bundle(path: Path) -> tuple[nn.Module, Any, list[str]]:
    """A checkpoint as (model in eval mode, the transform its training used, class names): archspec.load_checkpoint."""
    from torchvision import transforms

    state = load_checkpoint(path)
    shape = tuple(state["input_shape"])
    if shape[0] not in (1, 3):
        raise ArchspecError(f"{path}: the model takes {shape[0]}-channel inputs; a transform of image files needs 1 or 3",
                            "normalise the tensors yourself with the checkpoint's mean and std (archspec.training.loop.load_checkpoint)")
    transform = transforms.Compose([ConvertImage(shape), transforms.ToTensor(),
                                    transforms.Normalize(state["mean"], state["std"])])
    return model_from_checkpoint(state), transform, list(state["classes"])


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
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        self.log(line)


def fit(model: nn.Module, data: Dataset, config: TrainConfig, out_dir: Path, *, arch_source: str = "",
        arch_path: str = "", device: str = "auto", resume: bool = False, log: Log = print, quiet: bool = False,
        progress_every: float = 10.0, stop_after_epoch: int | None = None) -> dict[str, Any]:
    """Train `model` (freshly built, seeded by the caller) and write every output; returns report.json's dict.

    Unless `quiet`, progress shows as a bar when stderr is a terminal, else as a line every
    `progress_every` seconds. `stop_after_epoch` ends the run early after that many epochs, as an
    interruption would (for tests).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
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
    steps_per_epoch = n // batch
    total_steps = math.ceil(steps_per_epoch * config.epochs)
    epochs = math.ceil(total_steps / steps_per_epoch)
    num_classes = len(data.classes)

    model.to(dev)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    t_init = time.perf_counter()
    prepare_model(model, config, normalize(train_x[:5000], mean, std))
    # Whitening biases train for whiten_bias_epochs, then freeze (a None grad makes SGD skip them).
    whiten_biases = [c.bias for c in whitening_convs(model) if c.bias is not None]
    optimizer = make_optimizer(model, config)
    lookahead = Lookahead(model) if config.lookahead else None
    init_time = time.perf_counter() - t_init
    step_fn = torch.compile(model) if config.compile else model
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    autocast = dict(device_type=dev.type, dtype=dtype, enabled=dtype != torch.float32)

    ckpt_path = out_dir / "checkpoint.pt"
    start_epoch, step, train_time, metrics = 0, 0, init_time, []
    if resume:
        start_epoch, step, train_time, metrics = _restore(ckpt_path, model, optimizer, lookahead, config, arch_source)
        log(f"resumed from {ckpt_path} after epoch {start_epoch}")
    params = sum(p.numel() for p in model.parameters())
    settings = f"{dev.type}, {'bf16 autocast' if dtype == torch.bfloat16 else 'fp32'}, " \
               f"{'channels_last' if config.channels_last else 'NCHW'}, {torch.get_num_threads()} threads"
    log(f"train: {arch_path or type(model).__name__}, {params:,} params, {n:,} images, recipe {config.recipe}, "
        f"{config.epochs:g} epochs x {steps_per_epoch} steps of {batch}; {settings}")
    log(f"normalize: {config.normalize} (mean {_floats(mean_list)}, std {_floats(std_list)})")

    reporter = Reporter(log, quiet, live=sys.stderr.isatty(), every_s=progress_every)
    if reporter.plain:
        log(f"progress: a line every {progress_every:g} s during an epoch (output is not a terminal; --quiet: epoch lines only)")
    eval_time = 0.0
    for epoch in range(start_epoch, epochs):
        for b in whiten_biases:
            b.requires_grad_(epoch < config.whiten_bias_epochs)
        g = epoch_generator(config.seed, epoch)
        perm = torch.randperm(n, generator=g).to(dev)
        shifts = random_shifts(n, config.translate, g).to(dev)
        flips = flip_mask(n, config.seed, epoch, config.flip).to(dev)
        epoch_steps = min(steps_per_epoch, total_steps - step)
        loss_sum = torch.zeros((), device=dev)
        correct = torch.zeros((), device=dev, dtype=torch.int64)
        reporter.start_epoch(epoch, epochs, epoch_steps)
        model.train()
        t0 = time.perf_counter()
        for i in range(epoch_steps):
            idx = perm[i * batch : (i + 1) * batch]
            x = train_x[idx]
            x = torch.where(flips[idx].view(-1, 1, 1, 1), x.flip(-1), x)
            x = translate(normalize(x, mean, std), config.translate, shifts[idx])
            y = train_y[idx]
            factor = lr_factor(step, total_steps, config)
            for group in optimizer.param_groups:
                group["lr"] = group["peak_lr"] * factor
            with torch.autocast(**autocast):
                logits = step_fn(x)
                loss = criterion(logits.float() * config.logit_scale, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if lookahead is not None and step % config.lookahead_every == 0:
                lookahead.update(model, lookahead_decay(step, total_steps, config))
            # Accumulate on the device; the host reads these only when logging (no sync inside the step).
            loss_sum += loss.detach() * len(y)
            correct += (logits.detach().argmax(1) == y).sum()
            reporter.step(i + 1, lambda: _running_stats(loss_sum, correct, (i + 1) * batch, time.perf_counter() - t0))
        if lookahead is not None and step == total_steps:
            lookahead.update(model, 1.0)  # finish on the averaged weights
        if dev.type == "cuda":
            torch.cuda.synchronize()
        epoch_time = time.perf_counter() - t0
        train_time += epoch_time

        t_eval = time.perf_counter()
        test = evaluate(model, data.test_x, data.test_y, mean, std, num_classes=num_classes, device=dev, dtype=dtype)
        eval_time += time.perf_counter() - t_eval
        seen = epoch_steps * batch
        row = {"epoch": epoch + 1, "step": step, "elapsed_s": round(train_time, 3), "train_loss": loss_sum.item() / seen,
               "train_acc": correct.item() / seen, "test_acc": test.accuracy, "images_per_s": seen / epoch_time,
               "lr": optimizer.param_groups[-1]["lr"]}
        metrics.append(row)
        reporter.end_epoch(f"epoch {epoch + 1:>3}/{epochs}  train_loss {row['train_loss']:.4f}  train_acc {row['train_acc']:6.2%}"
                           f"  test_acc {row['test_acc']:6.2%}  {row['images_per_s']:>7,.0f} img/s  elapsed {train_time:7.1f}s")
        _write_metrics(out_dir / "metrics.jsonl", metrics)
        save_checkpoint(ckpt_path, {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step, "epoch": epoch + 1,
            "lookahead": lookahead.ema if lookahead else None, "train_time": train_time, "metrics": metrics,
            "arch_source": arch_source, "arch_path": arch_path, "config": config.to_dict(), "classes": data.classes,
            "input_shape": list(data.shape), "mean": mean_list, "std": std_list, "normalize": config.normalize,
            "data_source": data.source,
            "rng": torch.get_rng_state(),
        })
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and epoch + 1 < epochs:
            return {"interrupted_after_epoch": epoch + 1}

    # Final evaluation; multi-crop TTA is part of producing the reported accuracy, so it is timed.
    t_tta = time.perf_counter()
    final = evaluate(model, data.test_x, data.test_y, mean, std, num_classes=num_classes, device=dev, dtype=dtype, tta=config.tta)
    tta_time = time.perf_counter() - t_tta if config.tta else 0.0
    wall = train_time + tta_time
    report = {
        "arch": arch_path, "test_accuracy": final.accuracy, "test_accuracy_no_tta": metrics[-1]["test_acc"],
        "per_class_accuracy": dict(zip(data.classes, final.per_class)), "confusion_matrix": final.confusion,
        "classes": data.classes, "wall_time_s": round(wall, 3), "init_time_s": round(init_time, 3),
        "tta_time_s": round(tta_time, 3), "eval_time_s": round(eval_time, 3),
        "images_per_s": step * batch / (train_time - init_time), "epochs": config.epochs, "steps": step,
        "params": params, "device": _device_name(dev), "dtype": "bf16" if dtype == torch.bfloat16 else "fp32",
        "threads": torch.get_num_threads(), "torch": torch.__version__, "train_images": n,
        "test_images": len(data.test_x), "data": data.source, "settings": config.to_dict(),
        "normalize": {"mode": config.normalize, "mean": mean_list, "std": std_list},
        "time_to_accuracy_s": {f"{t:.0%}": next((m["elapsed_s"] for m in metrics if m["test_acc"] >= t), None)
                               for t in (0.5, 0.6, 0.7, 0.8, 0.85, 0.9)},
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    _plot_curves(out_dir / "curves.png", metrics)
    log(f"done: test accuracy {final.accuracy:.2%}{f' (tta {config.tta})' if config.tta else ''} in {wall:.1f}s of training "
        f"({report['images_per_s']:,.0f} img/s, {report['dtype']}); outputs in {out_dir}")
    return report


def _restore(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, lookahead: Lookahead | None,
             config: TrainConfig, arch_source: str) -> tuple[int, int, float, list[dict]]:
    state = load_checkpoint(path)
    state["config"] = {**_OLD_DEFAULTS, **state["config"]}  # settings added since the checkpoint was written
    if state["arch_source"] != arch_source:
        raise ArchspecError(f"{path} was trained from a different .arch source", "resume with the same .arch file, or drop --resume")
    if state["config"] != config.to_dict():
        diff = {k: (v, config.to_dict().get(k)) for k, v in state["config"].items() if config.to_dict().get(k) != v}
        raise ArchspecError(f"{path} was written with other settings: " + ", ".join(f"{k} {a} -> {b}" for k, (a, b) in diff.items()),
                            "resume with the same flags as the interrupted run")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if lookahead is not None:
        lookahead.ema = {k: v.to(next(iter(lookahead.ema.values())).device) for k, v in state["lookahead"].items()}
    torch.set_rng_state(state["rng"])
    return state["epoch"], state["step"], state["train_time"], state["metrics"]


def _floats(values: list[float]) -> str:
    return " ".join(f"{v:.3f}" for v in values)


def _running_stats(loss_sum: torch.Tensor, correct: torch.Tensor, seen: int, seconds: float) -> str:
    """The epoch so far: mean loss, accuracy and throughput (reads the device: call only to show it)."""
    return f"loss {loss_sum.item() / seen:.3f}  acc {correct.item() / seen:.1%}  {seen / seconds:,.0f} img/s"


def _write_metrics(path: Path, metrics: list[dict]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(m) + "\n" for m in metrics))
    os.replace(tmp, path)


def _device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    if dev.type == "cpu":
        return f"cpu: {platform.processor() or platform.machine()}, {physical_cores()} cores"
    return dev.type


def _plot_curves(path: Path, metrics: list[dict]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
    except ImportError:  # the plot extra is optional
        return
    import matplotlib.pyplot as plt

    fig = curves_figure(metrics)
    fig.savefig(path, dpi=100)
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


def model_from_checkpoint(state: dict[str, Any]) -> nn.Module:
    """Rebuild the network from the .arch text stored in a checkpoint and load its weights."""
    model = build_model(state["arch_source"], state.get("arch_path") or "<checkpoint>", 0)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise ArchspecError(f"the checkpoint's weights do not fit its own .arch source: {exc}",
                            "the checkpoint is damaged or was written by another archspec version; re-run `archspec train`") from None
    return model.eval()
