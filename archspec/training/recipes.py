"""Named training recipes: every setting the runner uses, in one dataclass.

Hyperparameters are in a decoupled form (after airbench / myrtle.ai), so each can be tuned alone:
`lr` is the peak SGD step size on the mean loss, and `weight_decay` is the fraction of each weight
removed per step at peak lr for a batch of 1024 images (scaled linearly with the batch size),
independent of `lr`. Explicit command-line flags override the recipe; report.json records the result.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from archspec.language.errors import UsageError

NORMALIZE = ("data", "0.5", "none")
_NESTEROV_085 = 1 + 1 / (1 - 0.85)  # how much nesterov momentum 0.85 amplifies a constant gradient


@dataclass(frozen=True)
class TrainConfig:
    recipe: str = "default"
    epochs: float = 20  # fractional epochs are allowed: the last one stops early
    batch_size: int = 256
    lr: float = 0.08  # peak SGD lr on the mean loss
    momentum: float = 0.9  # nesterov
    weight_decay: float = 2e-4  # decay per step per 1024 images at peak lr (decoupled from lr)
    label_smoothing: float = 0.1
    warmup_frac: float = 0.05  # fraction of steps warming up linearly from lr_start to 1
    lr_start: float = 0.1  # warmup starts at lr * lr_start ...
    lr_end: float = 0.0  # ... and the linear decay ends at lr * lr_end
    bias_lr_scale: float = 1.0  # lr multiplier (not wd) for BatchNorm biases
    freeze_bn_weights: bool = False  # keep BatchNorm scales at 1 (airbench)
    bn_momentum: float | None = None  # torch convention; None keeps the model's
    identity_init: bool = False  # dirac init of the first filters of each same-size 3x3 conv (airbench)
    whiten_bias_epochs: float = 3  # train the bias of `init whiten` convs this long, then freeze it
    lookahead: bool = False  # EMA of weights every `lookahead_every` steps, copied back into the net
    lookahead_every: int = 5
    lookahead_decay: float = 0.95  # per-step decay; ramps up as (step / total)^3
    flip: str = "random"  # random | alternate | none
    translate: int = 2  # random translation in pixels, reflect padding
    tta: int = 0  # test-time augmentation level 0 | 1 | 2
    logit_scale: float = 1.0  # multiply the outputs before the loss and softmax (airbench: 1/9)
    seed: int = 0
    precision: str = "auto"  # auto | bf16 | fp32; auto = bf16 where the hardware has it
    channels_last: bool = True
    compile: bool = False
    normalize: str = "data"  # data: the training images' mean/std | 0.5: Normalize((0.5,)*3, (0.5,)*3) | none
    val: float = 0.1  # held out of the training images, stratified by class: a fraction (< 1) or a count (>= 1); 0: none
    patience: int = 0  # stop after this many epochs without a better validation accuracy; 0: never stop early

    def normalization(self, data_mean: list[float], data_std: list[float]) -> tuple[list[float], list[float]]:
        """The per-channel (mean, std) this setting subtracts and divides by, on images in [0, 1]."""
        if self.normalize == "data":
            return list(data_mean), list(data_std)
        value = (0.5, 0.5) if self.normalize == "0.5" else (0.0, 1.0)
        return [value[0]] * len(data_mean), [value[1]] * len(data_mean)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


RECIPES: dict[str, TrainConfig] = {
    # Any network: SGD-nesterov, short warmup then linear decay to 0, label smoothing, random flip and
    # 2-pixel translation. Tuned on lenet.arch (see docs/guide/training.md).
    "default": TrainConfig(),
    # airbench94's recipe, expressed as runner settings (KellerJordan/cifar10-airbench, legacy/airbench94.py).
    "fast": TrainConfig(
        recipe="fast",
        epochs=9.9,
        batch_size=1024,
        lr=11.5 / _NESTEROV_085,  # airbench's 11.5 per 1024 images, made independent of momentum
        momentum=0.85,
        weight_decay=0.0153 / _NESTEROV_085,
        label_smoothing=0.2,
        warmup_frac=0.23,
        lr_start=0.2,
        lr_end=0.07,
        bias_lr_scale=64.0,
        freeze_bn_weights=True,
        bn_momentum=0.4,  # airbench's 0.6 in its own convention
        identity_init=True,
        whiten_bias_epochs=3,
        lookahead=True,
        flip="alternate",
        translate=2,
        tta=2,
        logit_scale=1 / 9,
        val=0.0,  # airbench's schedule on all the training images, as published; --val 0.1 to validate
    ),
}

_CHOICES = {"flip": ("random", "alternate", "none"), "tta": (0, 1, 2), "precision": ("auto", "bf16", "fp32"),
            "normalize": NORMALIZE}


def make_config(recipe: str = "default", **overrides: Any) -> TrainConfig:
    """The named recipe with explicit settings replacing its values."""
    if recipe not in RECIPES:
        raise UsageError(f"unknown recipe {recipe!r}", f"choose one of: {', '.join(RECIPES)}")
    known = {f.name for f in fields(TrainConfig)}
    unknown = set(overrides) - known
    if unknown:
        raise UsageError(f"unknown training setting(s): {', '.join(sorted(unknown))}", f"settings are: {', '.join(sorted(known))}")
    for name, value in overrides.items():
        _check_type(name, value)
    config = replace(RECIPES[recipe], **overrides)
    for name, allowed in _CHOICES.items():
        if getattr(config, name) not in allowed:
            raise UsageError(f"{name} must be one of {allowed}, not {getattr(config, name)!r}",
                             f"choose one of: {', '.join(map(str, allowed))}")
    for name, bounds in RANGES.items():
        _check_range(name, getattr(config, name), bounds)
    _check_validation(config)
    return config


def _check_validation(config: TrainConfig) -> None:
    """`val` is a fraction below 1 or a whole number of images; early stopping needs a validation set."""
    if config.val >= 1 and not float(config.val).is_integer():
        raise UsageError(f"val must be a fraction below 1 or a whole number of images, not {config.val!r}",
                         "pass a fraction such as --val 0.1, or a count of images such as --val 5000")
    if config.patience and not config.val:
        raise UsageError(f"patience {config.patience} needs a validation set, and val is 0",
                         "pass --val FRACTION (e.g. --val 0.1) with --patience, or drop --patience")


# The allowed range of each numeric setting: (low, high, low included, high included).
# Wide enough for any real recipe; narrow enough that a typo (1e308, nan, -1) fails before training.
RANGES: dict[str, tuple[float, float, bool, bool]] = {
    "epochs": (0, 10_000, False, True),
    "batch_size": (1, 1_000_000, True, True),
    "lr": (0, 100, False, True),
    "momentum": (0, 1, True, False),
    "weight_decay": (0, 1, True, True),
    "label_smoothing": (0, 1, True, False),
    "warmup_frac": (0, 1, True, True),
    "lr_start": (0, 1, True, True),
    "lr_end": (0, 1, True, True),
    "bias_lr_scale": (0, 10_000, False, True),
    "bn_momentum": (0, 1, True, True),
    "whiten_bias_epochs": (0, 10_000, True, True),
    "lookahead_every": (1, 1_000_000, True, True),
    "lookahead_decay": (0, 1, True, True),
    "translate": (0, 64, True, True),
    "logit_scale": (0, 1_000, False, True),
    "seed": (0, 2**63 - 1, True, True),
    "val": (0, 1_000_000, True, True),
    "patience": (0, 10_000, True, True),
}


def _range_text(bounds: tuple[float, float, bool, bool]) -> str:
    low, high, low_in, high_in = bounds
    return f"{'[' if low_in else '('}{low:,}, {high:,}{']' if high_in else ')'}"


def _check_range(name: str, value: Any, bounds: tuple[float, float, bool, bool]) -> None:
    if value is None and name == "bn_momentum":
        return  # None keeps the model's own
    low, high, low_in, high_in = bounds
    ok = math.isfinite(value) and (low <= value if low_in else low < value) and (value <= high if high_in else value < high)
    if not ok:
        positive = "positive, " if low == 0 and not low_in else ""
        raise UsageError(f"{name} must be {positive}in {_range_text(bounds)}, not {value!r}",
                         f"set {name} to a finite value in {_range_text(bounds)}")


_FIELD_TYPES = {f.name: f.type for f in fields(TrainConfig)}


def _check_type(name: str, value: Any) -> None:
    """A setting of the wrong type (a checkpoint's config, a Python caller) fails with its name."""
    kind = str(_FIELD_TYPES[name])
    if kind == "bool":
        ok = isinstance(value, bool)
    elif kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif "float" in kind:
        ok = (value is None and "None" in kind) or (isinstance(value, (int, float)) and not isinstance(value, bool))
    else:
        ok = isinstance(value, str)
    if not ok:
        raise UsageError(f"{name} must be of type {kind}, not {value!r}", f"settings are typed: {name} is of type {kind}")


def parse_settings(pairs: list[str]) -> dict[str, Any]:
    """`--set key=value` pairs, each value converted to the type of that TrainConfig field."""
    types = {f.name: f.type for f in fields(TrainConfig) if f.name != "recipe"}
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in types:
            raise UsageError(f"--set {pair!r}: expected KEY=VALUE with KEY one of the recipe settings",
                             f"settings are: {', '.join(sorted(types))}")
        kind = str(types[key])
        try:
            if kind == "bool":
                if value.lower() not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                    raise ValueError(value)
                out[key] = value.lower() in ("true", "1", "yes", "on")
            elif kind == "int":
                out[key] = int(value)
            elif "float" in kind:
                out[key] = None if value.lower() == "none" else float(value)
            else:
                out[key] = value
        except ValueError:
            raise UsageError(f"--set {pair!r}: {value!r} is not a valid {kind}") from None
    return out
