"""archspec: a small language for CNN architectures, a static shape checker (no torch),
a compiler to PyTorch and a CIFAR-10 runner.

    >>> import archspec
    >>> report = archspec.check("input 3x32x32\\nconv 6 k5 | relu | maxpool 2\\nflatten\\nlinear 10")
    >>> report.output_shape
    (10,)
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from archspec.errors import ArchError, ArchspecError, UsageError
from archspec.shapes import CheckReport
from archspec.shapes import check as _check
from archspec.specs import Model, load, parse

__version__ = "0.1.0"
__all__ = ["parse", "load", "check", "build", "CheckReport", "Model", "ArchError", "ArchspecError", "UsageError"]

if TYPE_CHECKING:
    from torch import nn


def check(source: "Model | str | Path", classes: int | None = 10) -> CheckReport:
    """Check a Model, .arch text, or a path (a `Path`, or a str ending in `.arch`)."""
    if isinstance(source, Path) or (isinstance(source, str) and source.endswith(".arch") and "\n" not in source):
        source = load(source)
    return _check(source, classes=classes)


def build(source: "Model | str | Path", classes: int | None = None) -> "nn.Module":
    """Compile to a torch.nn.Module (needs the torch extra). Raises ArchError if it does not check."""
    from archspec.errors import require_torch

    require_torch()
    from archspec.compile import build as _build

    return _build(source, classes=classes)


def __getattr__(name: str) -> Any:  # pragma: no cover - only a friendlier AttributeError
    raise AttributeError(f"module 'archspec' has no attribute {name!r}")
