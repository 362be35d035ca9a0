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

from archspec._version import VERSION as __version__  # noqa: E402
__all__ = ["parse", "load", "check", "build", "load_weights", "from_torch", "train", "load_checkpoint", "summary", "graph", "view", "explain", "fmt", "sweep", "runs", "CheckReport",
           "Model", "ArchError", "ArchspecError", "UsageError"]

if TYPE_CHECKING:
    from torch import nn

    from archspec.language.check import CheckReport
    from archspec.language.errors import ArchError, ArchspecError, UsageError
    from archspec.language.expand import Model, load, parse
    from archspec.training.api import TrainResult
    from archspec.views.summary import Summary

# Imported on first use (module __getattr__ below), so `import archspec` costs only this file: the
# language server starts faster, and `from archspec import X` and `archspec.X` work as before.
_LAZY = {
    "CheckReport": "archspec.language.check",
    "ArchError": "archspec.language.errors",
    "ArchspecError": "archspec.language.errors",
    "UsageError": "archspec.language.errors",
    "Model": "archspec.language.expand",
    "load": "archspec.language.expand",
    "parse": "archspec.language.expand",
}


def check(source: "Model | str | Path", classes: int | None = 10) -> "CheckReport":
    """Check a Model, .arch text, or a path (a `Path`, or a str ending in `.arch`): every diagnostic,
    the file's budgets and `# noqa` included, as `archspec check` reports them."""
    from archspec.language.pipeline import CheckOptions, checked

    return checked(source, CheckOptions(classes=classes))


def build(source: "Model | str | Path", classes: int | None = None) -> "nn.Module":
    """Compile to a torch.nn.Module (needs the torch extra). Raises ArchError if it does not check."""
    from archspec.pytorch.extra import require_torch

    require_torch()
    from archspec.pytorch.build import build as _build

    return _build(source, classes=classes)


def load_weights(net: "nn.Module", source: Any) -> list[str]:
    """Copy torch weights (an nn.Module, or a state dict) onto a built network by structure: the n-th layer
    holding tensors of the source goes to the n-th of `net`, each kind and shape checked; raises
    ArchspecError naming the first mismatch on both sides. Needs the torch extra."""
    from archspec.pytorch.extra import require_torch

    require_torch()
    from archspec.pytorch.weights import load_weights as _load

    return _load(net, source)


def from_torch(module: "nn.Module", input_shape: "tuple[int, ...] | str") -> str:
    """The .arch text of a torch module, traced with torch.fx at `input_shape` (C, H, W or "3x224x224"); needs the
    torch extra. Raises ArchspecError naming each construct the language cannot express (see `archspec import`)."""
    from archspec.pytorch.extra import require_torch

    require_torch()
    from archspec.importers.api import from_torch as _from_torch

    return _from_torch(module, input_shape)


def load_checkpoint(path: "str | Path") -> "tuple[nn.Module, Any, list[str]]":
    """A `checkpoint.pt` from `archspec train` as (model, transform, classes); needs the torch extra.

    The model is in eval mode with the trained weights; `transform` (torchvision) turns a PIL image
    into the normalised tensor the network was trained on: the checkpoint's recorded mean and std
    (`archspec train --normalize`), not necessarily the tutorial's 0.5. `classes` are the class names
    in label order. `model(transform(img).unsqueeze(0)).argmax(1)` is the predicted label.
    """
    from archspec.pytorch.extra import require_torch

    require_torch()
    from archspec.training.checkpoint import inference_bundle

    return inference_bundle(Path(path))


# The views import their modules on first use: `import archspec` stays fast and torch-free.


def summary(source: "CheckReport | Model | str | Path", batch_size: int = 1, optimizer: str = "sgd",
            classes: int | None = 10, input_size: "str | tuple[int, ...] | None" = None) -> "Summary":
    """Per-layer shapes, params, MACs, receptive field and memory (str() of it is the table; .to_dict() the JSON).

    `input 3xHxW`: the shapes in H and W, the numbers at a representative size or at `input_size` ("3x64x64")."""
    from archspec.views.summary import summarize

    return summarize(source, batch_size=batch_size, optimizer=optimizer, classes=classes, input_size=input_size)


def graph(source: "CheckReport | Model | str | Path", output: "str | Path | None" = None, format: str | None = None,
          classes: int | None = 10) -> "str | bytes":
    """DOT text, or SVG/PNG/PDF bytes (needs graphviz's `dot`); writes `output` when given (format from its extension)."""
    from archspec.views.graph import graph as _graph

    return _graph(source, output=output, format=format, classes=classes)


def view(source: "CheckReport | Model | str | Path", output: "str | Path | None" = None, classes: int | None = 10) -> Any:
    """The interactive HTML view (`archspec view`): shown in a notebook, written to `output` when given."""
    from archspec.views.interactive import view as _view

    return _view(source, output=output, classes=classes)


def explain(source: "CheckReport | Model | str | Path", layer: "int | str | None" = None, classes: int | None = 10) -> str:
    """Each layer's shape arithmetic as text; `layer` is a source line number or a module name like `conv2`."""
    from archspec.views.explain import explain as _explain

    return _explain(source, layer=layer, classes=classes)


def fmt(source: "str | Path") -> str:
    """The canonical layout of .arch text (or of the file at a Path); raises ArchspecError if it does not parse."""
    from archspec.views.fmt import format_text

    if isinstance(source, Path):
        from archspec.language.errors import UsageError
        from archspec.language.files import Unreadable, read_arch_file

        try:  # the same guards as check: a regular file of at most 1 MiB, UTF-8
            return format_text(read_arch_file(source), str(source))
        except Unreadable as exc:
            raise UsageError(f"{source}: {exc.reason}", exc.help or "check the path") from None
    return format_text(source)


def train(model_or_path: "CheckReport | str | Path | None" = None, data: Any = None, out: "str | Path | None" = None,
          **settings: Any) -> "TrainResult":
    """Train a spec from Python (a path, .arch text, or a CheckReport such as `%%arch NAME` binds); needs the torch extra.

    `data` is `cifar10` (the default), an ImageFolder directory or a loaded Dataset; `settings` are the recipe
    settings `archspec train --set` takes (epochs=1, lr=0.05, val=0.1, patience=3, recipe="fast", device="cpu", ...).
    `archspec.train(out="runs/lenet", resume=True)` continues a run with the spec, settings and data it stored.
    Returns report.json's content with the trained model (`.model`); in Jupyter the progress is
    one display updated in place. See archspec.training.api.
    """
    from archspec.pytorch.extra import require_torch

    require_torch()
    from archspec.training.api import train as _train

    return _train(model_or_path, data, out, **settings)


def sweep(arch: "str | Path", grid: "dict[str, list[Any]] | None" = None, settings: "dict[str, list[Any]] | None" = None,
          out: "str | Path | None" = None, **options: Any) -> Any:
    """Sweep a file's `param`s (`grid={"width": [16, 32]}`) and training settings (`settings={"lr": [0.02, 0.05]}`):
    every variant checked first, the rest trained (needs the torch and sweep extras). Returns `archspec.runs(out)`.
    `options`: sampler, pruner, trials, seed, workers, ray, data, device, and recipe settings every trial shares."""
    from archspec.sweeps.api import sweep as _sweep

    return _sweep(arch, grid, settings, out, **options)


def runs(out: "str | Path") -> Any:
    """The trials of the sweep in `out`: a table (shown as HTML in a notebook), `.best`, `.to_json()`, `.to_csv()`."""
    from archspec.sweeps.api import runs as _runs

    return _runs(out)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'archspec' has no attribute {name!r}")


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext archspec`: the `%%arch NAME` cell magic (see archspec.notebook)."""
    from archspec.notebook import load_ipython_extension as load

    load(ipython)
