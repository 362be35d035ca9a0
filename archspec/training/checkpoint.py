"""The checkpoint format, in one place: what `archspec train` writes and what eval, predict, resume
and `archspec.load_checkpoint` read.

A checkpoint is a `torch.save`d dict of tensors and plain data (read back with weights_only=True:
no pickled code). Every field is validated on load (`Checkpoint`, a pydantic model), so a damaged
or foreign file is one `error:` + `help:` line, never a traceback. The network is stored as
self-contained .arch text (the `use`d block libraries inlined), checked, and size-guarded before a
model is allocated: reading a checkpoint never reads another file. Then the parts must agree
(`Checkpoint.check_consistency`): the input shape and class names with the architecture, every stored
tensor's shape with the one the architecture gives it (known on torch's meta device, where nothing is
allocated), and every weight finite. eval, predict, export, resume and `archspec.load_checkpoint` all
load through `Checkpoint.load`, so each refuses the same files with the same line.
"""
from __future__ import annotations

import math
import os
import shutil
import signal
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import torch
from pydantic import BaseModel, ConfigDict, PrivateAttr, ValidationError, field_validator, model_validator
from torch import nn

from archspec.language.errors import ArchError, ArchspecError
from archspec.language.files import new_file_mode
from archspec.training.recipes import NORMALIZE, TrainConfig, make_config

FILENAME = "checkpoint.pt"
MAX_PARAMS = 2_000_000_000  # a stored architecture above this is refused before anything is allocated
REQUIRED = ("model", "arch_source", "config", "classes", "input_shape", "mean", "std")
# Settings that checkpoints written before they existed lack; those runs used these values.
OLD_DEFAULTS: dict[str, Any] = {"normalize": "data", "val": 0.0, "patience": 0}
_REWRITE = "pass the checkpoint.pt that `archspec train --out DIR` wrote, or re-run `archspec train` to write a new one"


# ----------------------------------------------------------------------------- atomic writes


def write_atomic(path: Path, write: Callable[[Any], None]) -> None:
    """Call `write(file)` on a temp file beside `path`, fsync it and rename it over `path`.

    A crash, a signal or a full disk leaves the previous file intact and no temp file behind.
    """
    write_atomic_all([(Path(path), write)])


def write_atomic_all(files: Sequence[tuple[Path, Callable[[Any], None]]]) -> None:
    """Write every file whole to a temp file beside it, then rename them all, in order: all or none.

    The writes are what fail (a full disk); the renames only need the temp files to exist. So a
    failure leaves every previous file as it was (a run's checkpoint and metrics stay one pair) and
    no temp file behind, and raises `WriteFailed` naming the file and the space left.
    """
    temps: list[str] = []
    current = Path(files[0][0])  # the file being written or renamed, for the message
    with signals_held():
        try:
            for path, write in files:
                current = Path(path)
                fd, tmp = tempfile.mkstemp(prefix=f".{Path(path).name}.", suffix=".tmp", dir=Path(path).parent)
                temps.append(tmp)
                os.chmod(tmp, new_file_mode())  # mkstemp's 0600 is for secrets; these files are like any other
                with os.fdopen(fd, "wb") as f:
                    write(f)
                    f.flush()
                    os.fsync(f.fileno())
            for tmp, (path, _) in zip(temps, files):
                current = Path(path)
                os.replace(tmp, path)
        except BaseException as exc:
            for tmp in temps:
                Path(tmp).unlink(missing_ok=True)
            reason = write_failure(exc)
            if reason is None:
                raise
            raise WriteFailed(current, reason) from None
    for directory in {Path(path).parent for path, _ in files}:
        _fsync_dir(directory)


class WriteFailed(ArchspecError):
    """A file that could not be written (a full disk, no permission): the message names it and the space left."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"cannot write {path}: {reason} ({free_space(path.parent)} free in {path.parent})",
                         f"free space or fix the permissions in {path.parent}; the previous file is kept")
        self.path = path


def write_failure(exc: BaseException) -> str | None:
    """Why a write failed, or None when `exc` is not a failed write.

    An OSError, or torch's RuntimeError from its zip writer: torch.save on a full disk raises
    `[enforce fail at inline_container.cc:...] . unexpected pos 960 vs 854`, the ENOSPC only its context.
    """
    link: BaseException | None = exc
    while link is not None:
        if isinstance(link, OSError):
            return link.strerror or str(link)
        link = link.__cause__ or link.__context__
    text = str(exc).strip()
    if isinstance(exc, RuntimeError) and ("inline_container" in text or "PytorchStreamWriter" in text):
        return f"the write stopped short (torch: {text.split('] ', 1)[-1].lstrip('. ').splitlines()[0]})"
    return None


def free_space(directory: Path) -> str:
    """The space left on `directory`'s file system, e.g. `1.2 MB` (binary units, as df -h)."""
    try:
        free = float(shutil.disk_usage(directory).free)
    except OSError:
        return "unknown space"
    if free < 1024:
        return f"{free:.0f} bytes"
    for unit in ("KB", "MB", "GB", "TB"):
        free /= 1024
        if free < 1024 or unit == "TB":
            return f"{free:.1f} {unit}"
    raise AssertionError("unreachable")


@contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the write is whole. Their handlers raise, and one landing between
    creating the temp file and the `try` (or inside the clean-up) left the temp file behind. Held here,
    a signal is raised again, with its own handler, once the rename is done; a write takes a moment.
    (A signal mask would not do: torch's threads leave the signals unblocked, so one of them takes it
    and the main thread still runs the handler mid-write.) Nested holds pass the signal outwards: a run
    holds it over a whole save, so metrics.jsonl, checkpoint.pt and what the run reports stay one epoch."""
    if threading.current_thread() is not threading.main_thread():
        yield  # Python runs signal handlers in the main thread only: nothing to hold here
        return
    caught: list[int] = []
    held = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in held}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
        if caught:
            signal.raise_signal(caught[0])


def write_text_atomic(path: Path, text: str) -> None:
    write_atomic(path, lambda f: f.write(text.encode("utf-8")))


def _fsync_dir(directory: Path) -> None:
    try:  # makes the rename itself durable; not every platform can open a directory
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------- the stored architecture


def self_contained_source(text: str, path: str = "<string>") -> str:
    """The .arch text with every `use "FILE"` replaced by that file's (self-contained) text, each file once.

    Block definitions do not create modules, so the network and its module names are unchanged.
    """
    return _inline_uses(text, path, set())


def _inline_uses(text: str, path: str, seen: set[Path]) -> str:
    from archspec.language.syntax import parse_tree

    uses = [t for t in parse_tree(text, path).iter_subtrees_topdown() if t.data == "use"]
    base = Path(path).parent if path not in ("<string>", "<stdin>", "-") else Path.cwd()
    pieces = []
    for use in sorted(uses, key=lambda t: t.meta.start_pos):
        target = (base / str(use.children[0])[1:-1]).resolve()
        if target in seen:
            pieces.append((use, ""))
            continue
        seen.add(target)
        used = _inline_uses(target.read_text(encoding="utf-8"), str(target), seen)
        pieces.append((use, f"# from {target.name}\n{used.strip()}\n"))
    for use, replacement in reversed(pieces):
        text = text[: use.meta.start_pos] + replacement + text[use.meta.end_pos:]
    return text


def checked_architecture(text: str, label: str, classes: int) -> Any:
    """The checked tree of a checkpoint's stored text: refused if it `use`s files, does not check, or is absurdly large."""
    from archspec.language.pipeline import CheckOptions, checked
    from archspec.language.syntax import ParseFailed, parse_tree

    try:
        tree = parse_tree(text, label)
    except ParseFailed:
        raise ArchspecError(f"{label}: the stored architecture does not parse", _REWRITE) from None
    if any(t.data == "use" for t in tree.iter_subtrees()):
        raise ArchspecError(f"{label}: the stored architecture has a `use` line; a checkpoint must be self-contained",
                            "checkpoints hold the expanded .arch text and never read other files; " + _REWRITE)
    report = checked(text, CheckOptions(classes=classes), name=label)
    try:
        report.raise_for_errors()
    except ArchError as exc:
        raise ArchspecError(f"{label}: the stored architecture does not check ({exc.errors[0].message if exc.errors else 'invalid'})",
                            _REWRITE) from None
    if report.params > MAX_PARAMS:
        raise ArchspecError(f"{label}: the stored architecture has {report.params:,} parameters (more than {MAX_PARAMS:,})",
                            "refused before allocating it; " + _REWRITE)
    return report


# ----------------------------------------------------------------------------- the checkpoint


def _finite(x: float, what: str) -> float:
    if not math.isfinite(x):
        raise ValueError(f"{what} must be finite, not {x}")
    return x


def _tensors(value: Any, what: str) -> dict[str, torch.Tensor]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items()):
        raise ValueError(f"{what} must map names to tensors")
    return value


class Checkpoint(BaseModel):
    """Everything a run needs to resume exactly, and everything eval / predict need, validated."""

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="ignore", strict=True)  # no "3" -> 3 coercion

    model: dict[str, Any]  # the state dict
    arch_source: str  # self-contained .arch text
    arch_path: str = ""
    config: dict[str, Any]
    classes: list[str]
    input_shape: list[int]
    mean: list[float]
    std: list[float]
    normalize: str = "data"
    data_source: str = ""
    epoch: int = 0
    step: int = 0
    train_time: float = 0.0
    metrics: list[dict[str, Any]] = []
    optimizer: Optional[dict[str, Any]] = None
    lookahead: Optional[dict[str, Any]] = None
    rng: Optional[Any] = None
    threads: int = 0  # the CPU threads it trained with (0: not recorded), which a resume keeps for exact arithmetic
    _report: Any = PrivateAttr(default=None)  # the stored architecture's check report, once checked

    @field_validator("model")
    @classmethod
    def _model(cls, v: dict) -> dict:
        if not v:
            raise ValueError("holds no weights")
        return _tensors(v, "model")

    @field_validator("lookahead")
    @classmethod
    def _lookahead(cls, v: dict | None) -> dict | None:
        return None if v is None else _tensors(v, "lookahead")

    @field_validator("rng")
    @classmethod
    def _rng(cls, v: Any) -> Any:
        if v is not None and not (isinstance(v, torch.Tensor) and v.dtype == torch.uint8):
            raise ValueError("must be a uint8 tensor (torch.get_rng_state())")
        return v

    @field_validator("optimizer")
    @classmethod
    def _optimizer(cls, v: dict | None) -> dict | None:
        if v is not None and not {"state", "param_groups"} <= set(v):
            raise ValueError("is not an optimizer state dict (needs state and param_groups)")
        return v

    @field_validator("classes")
    @classmethod
    def _classes(cls, v: list[str]) -> list[str]:
        if not v or len(set(v)) != len(v):
            raise ValueError("must be a non-empty list of distinct class names")
        return v

    @field_validator("input_shape")
    @classmethod
    def _shape(cls, v: list[int]) -> list[int]:
        if not 1 <= len(v) <= 3 or not all(1 <= d <= 65536 for d in v):
            raise ValueError(f"must be 1 to 3 sizes in 1..65536, not {v}")
        return v

    @field_validator("mean", "std")
    @classmethod
    def _stats(cls, v: list[float]) -> list[float]:
        return [_finite(x, "every value") for x in v]

    @field_validator("normalize")
    @classmethod
    def _normalize(cls, v: str) -> str:
        if v not in NORMALIZE:
            raise ValueError(f"must be one of {NORMALIZE}")
        return v

    @field_validator("epoch", "step", "threads")
    @classmethod
    def _count(cls, v: int) -> int:
        if not 0 <= v < 2**53:
            raise ValueError("must be a count >= 0")
        return v

    @field_validator("train_time")
    @classmethod
    def _time(cls, v: float) -> float:
        if not (math.isfinite(v) and v >= 0):
            raise ValueError("must be a finite number of seconds >= 0")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "Checkpoint":
        if len(self.mean) != self.input_shape[0] or len(self.std) != self.input_shape[0]:
            raise ValueError(f"mean and std need one value per input channel ({self.input_shape[0]})")
        if any(s <= 0 for s in self.std):
            raise ValueError("std values must be > 0")
        if len(self.metrics) != self.epoch:
            raise ValueError(f"metrics has {len(self.metrics)} rows for {self.epoch} epochs")
        self.config = {**OLD_DEFAULTS, **self.config}
        self.train_config()  # raises on unknown or out-of-range settings
        return self

    # ---- reading and writing

    @classmethod
    def load(cls, path: Path) -> "Checkpoint":
        path = Path(path)
        if not path.is_file():
            raise ArchspecError(f"checkpoint {path} does not exist", "pass the checkpoint.pt that `archspec train --out DIR` wrote")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)  # tensors and plain data only: no pickled code
        except Exception as exc:  # torch raises several types for truncated or foreign files
            raise ArchspecError(f"checkpoint {path} is unreadable or corrupt ({_load_failure(exc)})", _REWRITE) from None
        missing = [k for k in REQUIRED if not isinstance(state, dict) or k not in state]
        if missing:
            raise ArchspecError(f"{path} is not an archspec checkpoint (missing: {', '.join(missing)})", _REWRITE)
        state.setdefault("normalize", state["config"].get("normalize", OLD_DEFAULTS["normalize"])
                         if isinstance(state["config"], dict) else None)
        try:
            ckpt = cls.model_validate(state)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "checkpoint"
            raise ArchspecError(f"checkpoint {path} is malformed: {where}: {err['msg'].removeprefix('Value error, ')}",
                                _REWRITE) from None
        ckpt.check_consistency(str(path))
        return ckpt

    def save(self, path: Path) -> None:
        write_atomic(path, self.write)

    def write(self, f: Any) -> None:
        """The checkpoint into an open binary file (write_atomic_all writes it with metrics.jsonl)."""
        torch.save({k: getattr(self, k) for k in type(self).model_fields}, f)

    # ---- what readers need

    def train_config(self) -> TrainConfig:
        settings = {k: v for k, v in self.config.items() if k != "recipe"}
        try:
            return make_config(self.config.get("recipe", "default"), **settings)
        except ArchspecError as exc:
            raise ValueError(f"config: {exc.message}") from None

    def check_consistency(self, label: str = "") -> None:
        """Refuse a checkpoint whose parts disagree, before anything the size of its network is allocated.

        Each of these gave a traceback (or, for NaN, a silent 10% accuracy) further on: a stored
        `linear 585000` in a small file allocated gigabytes before load_state_dict saw the mismatch."""
        label = label or self.arch_path or "<checkpoint>"
        report = checked_architecture(self.arch_source, label, classes=None)
        expected = _state_shapes(report)
        problem = (_input_problem(self.input_shape, report) or _classes_problem(self.classes, report)
                   or _weights_problem(self.model, expected) or _lookahead_problem(self.lookahead, expected))
        if problem:
            raise ArchspecError(f"checkpoint {label}: {problem}", _REWRITE)
        bad = _first_non_finite(self.model)
        if bad:
            raise ArchspecError(f"checkpoint {label}: the weights contain NaN or infinity ({bad})",
                                "the training diverged before this checkpoint was saved (try a lower --lr) or the file is damaged; "
                                "re-run `archspec train`")
        self._report = report

    def build_model(self, label: str = "") -> nn.Module:
        """The stored network with the stored weights, in eval mode (checked for consistency first)."""
        from archspec.pytorch.build import build_checked

        if self._report is None:
            self.check_consistency(label)
        with torch.device("meta"):  # the shapes agree, so no random init: the weights replace it
            model = build_checked(self._report)
        model = model.to_empty(device="cpu")
        model.load_state_dict(self.model)
        return model.eval()


def _state_shapes(report: Any) -> dict[str, tuple[int, ...]]:
    """Every state-dict entry the checked architecture builds, and its shape: built on the meta device (no memory)."""
    from archspec.pytorch.build import build_checked

    with torch.device("meta"):
        model = build_checked(report)
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


def _dims(shape: Any) -> str:
    return "x".join(map(str, shape))


def _input_problem(input_shape: list[int], report: Any) -> str | None:
    if report.input_shape is None or tuple(input_shape) == tuple(report.input_shape):
        return None
    return f"input_shape is {_dims(input_shape)} but its .arch source takes {_dims(report.input_shape)}"


def _classes_problem(classes: list[str], report: Any) -> str | None:
    out = tuple(report.output_shape or ())
    if len(out) != 1:
        return f"its .arch source outputs [B, {', '.join(map(str, out))}], not class scores for its {len(classes)} classes"
    if out[0] != len(classes):
        return f"it has {_count(len(classes), 'class name')} but its .arch source outputs {_count(out[0], 'class score')}"
    return None


def _weights_problem(model: dict[str, torch.Tensor], expected: dict[str, tuple[int, ...]]) -> str | None:
    """The first stored tensor, in the network's order, that is missing or of another shape; then any extra one."""
    problems = [f"{k} {list(shape)} is missing" if k not in model
                else f"{k} is {list(model[k].shape)} but the .arch source makes it {list(shape)}"
                for k, shape in expected.items() if k not in model or tuple(model[k].shape) != shape]
    problems += [f"it holds {k}, which the .arch source has no place for" for k in model if k not in expected]
    return f"its weights do not fit its own .arch source: {problems[0]}{_more(problems)}" if problems else None


def _lookahead_problem(lookahead: dict[str, torch.Tensor] | None, expected: dict[str, tuple[int, ...]]) -> str | None:
    wrong = [k for k, v in (lookahead or {}).items() if expected.get(k) != tuple(v.shape)]
    if not wrong:
        return None
    k, shape = wrong[0], expected.get(wrong[0])
    made = f"makes it {list(shape)}" if shape is not None else "has no such tensor"
    return (f"its lookahead state does not fit its own .arch source: {k} is {list(lookahead[k].shape)} "  # type: ignore[index]
            f"but the .arch source {made}{_more(wrong)}")


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _more(names: list[str]) -> str:
    return f" (and {len(names) - 1} more)" if len(names) > 1 else ""


def _first_non_finite(model: dict[str, torch.Tensor]) -> str | None:
    """`name: N of M values` for the first tensor with a NaN or an infinity, else None."""
    for name, tensor in model.items():
        if tensor.is_floating_point() or tensor.is_complex():
            bad = int((~torch.isfinite(tensor)).sum())
            if bad:
                return f"{name}: {bad:,} of {tensor.numel():,} values"
    return None


def _load_failure(exc: Exception) -> str:
    """Why torch.load failed, in words (without torch's advice to load untrusted pickles)."""
    text = str(exc)
    if "weights_only" in text or "Unsupported global" in text:
        return "it holds objects other than tensors and plain data, which are not loaded because that could run code"
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


# ----------------------------------------------------------------------------- inference


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

    ckpt = Checkpoint.load(path)
    shape = tuple(ckpt.input_shape)
    if len(shape) != 3 or shape[0] not in (1, 3):
        raise ArchspecError(f"{path}: the model takes {'x'.join(map(str, shape))} inputs; a transform of image files needs 1 or 3 channels",
                            "normalise the tensors yourself with the checkpoint's mean and std (archspec.training.checkpoint.Checkpoint)")
    transform = transforms.Compose([ConvertImage(shape), transforms.ToTensor(), transforms.Normalize(ckpt.mean, ckpt.std)])
    return ckpt.build_model(str(path)), transform, list(ckpt.classes)
