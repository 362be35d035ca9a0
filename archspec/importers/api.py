"""`archspec.from_torch`, `archspec import`: a torch module -> checked .arch text, and its weights."""
from __future__ import annotations

import importlib
import inspect
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.error import URLError

import torch
from torch import nn

from archspec.importers.render import render
from archspec.importers.statements import Imported, Refusal, weight_order
from archspec.importers.trace import trace
from archspec.language.errors import ArchspecError
from archspec.pytorch.weights import torch_kind

SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class ImportRefused(ArchspecError):
    """The module uses constructs the language cannot express: one line per distinct construct."""

    def __init__(self, refusals: list[Refusal], partial: Imported | None = None) -> None:
        self.lines = _distinct(refusals)
        # One `error:` line per construct: the CLI prints the message after `error: `.
        super().__init__("\nerror: ".join(self.lines),
                         "the language cannot express these; `archspec import --partial` writes what comes before the first")
        self.partial = partial


def _distinct(refusals: list[Refusal]) -> list[str]:
    seen: dict[tuple[str, str], list[Refusal]] = {}
    for r in refusals:
        seen.setdefault((r.construct, r.why), []).append(r)
    out = []
    for same in seen.values():
        more = len(same) - 1
        out.append(same[0].text() + (f" (and in {more} more place{'s' if more != 1 else ''})" if more else ""))
    return out


@dataclass
class Result:
    """An imported network: its .arch text, and where it stopped when only a prefix could be written."""

    text: str
    imported: Imported
    stopped_at: str | None = None  # the module path of the first statement left out (--partial)


def from_torch(module: nn.Module, input_shape: tuple[int, ...] | str, title: str | None = None) -> str:
    """The .arch text of a torch module, checked clean at `input_shape` (C, H, W, or "3x224x224")."""
    return import_module(module, input_shape, title).text


def import_module(module: nn.Module, input_shape: tuple[int, ...] | str, title: str | None = None,
                  partial: bool = False) -> Result:
    shape = parse_shape(input_shape) if isinstance(input_shape, str) else tuple(input_shape)
    imported = trace(module, shape)
    return written(imported, title or f"{type(module).__name__}, imported from PyTorch", partial)


def import_onnx(path: str | Path, input_shape: tuple[int, ...] | str | None = None, title: str | None = None,
                partial: bool = False) -> tuple[Result, nn.Module]:
    """The .arch text of an ONNX model, and the module holding its initializers (for `imported_weights`).

    The input size is the file's; `input_shape` (C, H, W or "3x224x224") gives it where the file leaves it open."""
    from archspec.importers.onnx_graph import lift, load_model

    shape = parse_shape(input_shape) if isinstance(input_shape, str) else tuple(input_shape) if input_shape else None
    module, imported = lift(load_model(Path(path)), shape)
    return written(imported, title or f"{Path(path).name}, imported from ONNX", partial), module


def written(imported: Imported, title: str, partial: bool = False) -> Result:
    """The text of imported statements (from torch or ONNX), checked; ImportRefused unless `partial`."""
    if imported.refusals and not partial:
        raise ImportRefused(imported.refusals)
    text = render(imported, title)
    stopped_at = None
    if imported.refusals:
        stopped_at = imported.refusals[0].path or "(top)"
        text += f"# stopped here: {_distinct(imported.refusals)[0]}\n"
    _verify(text, imported, partial=bool(imported.refusals))
    return Result(text, imported, stopped_at)


def _verify(text: str, imported: Imported, partial: bool) -> None:
    """The text must check clean and give the traced output shape: anything else is a bug here, said plainly."""
    from archspec.language.pipeline import CheckOptions, checked

    report = checked(text, CheckOptions(classes=None), name="<imported>")
    if report.errors:
        first = report.errors[0]
        raise ArchspecError(f"the imported text does not check: {first.message}",
                            "please report this with the module you imported") from None
    if not partial and tuple(report.output_shape or ()) != tuple(imported.output_shape):
        raise ArchspecError(f"the imported text gives {list(report.output_shape or ())}, the module {list(imported.output_shape)}",
                            "please report this with the module you imported")


def parse_shape(text: str) -> tuple[int, ...]:
    parts = text.lower().split("x")
    if not all(p.isdigit() and int(p) > 0 for p in parts) or len(parts) not in (1, 3):
        raise ArchspecError(f"--input {text!r} is not an input size", "write C x H x W, e.g. 3x224x224 (or F for features, e.g. 784)")
    return tuple(int(p) for p in parts)


def load_spec(spec: str, kwargs: str | dict[str, Any] | None = None) -> nn.Module:
    """The module `MODULE:CALLABLE` builds (called with `kwargs`; `weights=None` is never overridden)."""
    if not SPEC.match(spec):
        raise ArchspecError(f"{spec!r} is not MODULE:CALLABLE", "e.g. torchvision.models:resnet18 or mypkg.nets:Net")
    options = _kwargs(kwargs)
    name, attr = spec.split(":")
    try:
        found = getattr(_spec_module(name, attr), attr)
    except ModuleNotFoundError as exc:
        raise ArchspecError(f"{spec}: no module named {exc.name!r}", "install it, or check the spelling and PYTHONPATH") from None
    except AttributeError:
        raise ArchspecError(f"{spec}: {name} has no {attr!r}", f"check the name: `python -c 'import {name}; print(dir({name}))'`") from None
    try:
        module = found(**options) if not isinstance(found, nn.Module) else found
    except Exception as exc:  # noqa: BLE001 - the user's constructor can raise anything
        raise ArchspecError(f"{spec}({_call_args(options)}) failed: {type(exc).__name__}: {exc}", _build_help(found, options, exc)) from None
    if not isinstance(module, nn.Module):
        raise ArchspecError(f"{spec} gave a {type(module).__name__}, not a torch.nn.Module", "name a class or a function that builds an nn.Module")
    return module


def _build_help(builder: Any, options: dict[str, Any], exc: Exception) -> str:
    """What to pass instead; a builder that tried to download pretrained weights is told which argument skips them."""
    if isinstance(exc, URLError) or isinstance(exc.__cause__, URLError):
        try:
            parameters = inspect.signature(builder).parameters
        except (TypeError, ValueError):
            parameters = {}  # type: ignore[assignment]
        skip = {k: None for k in ("weights", "weights_backbone", "pretrained", "pretrained_backbone")
                if k in parameters and k not in options and parameters[k].default not in (None, False)}
        if skip:
            return (f"it tried to download pretrained weights; import reads the structure only: "
                    f"pass --kwargs '{json.dumps({**options, **skip})}'")
        return "it tried to download something; import needs a builder that runs without a network"
    return "pass the arguments it needs with --kwargs '{\"num_classes\": 10}'"


def _spec_module(name: str, attr: str) -> Any:
    """The module named; for `timm:resnet50d`, timm.models, where timm keeps its builders."""
    module = importlib.import_module(name)
    if name == "timm" and not hasattr(module, attr):
        return importlib.import_module("timm.models")
    return module


def _kwargs(kwargs: str | dict[str, Any] | None) -> dict[str, Any]:
    if kwargs is None:
        return {}
    if isinstance(kwargs, dict):
        return kwargs
    try:
        value = json.loads(kwargs)
    except json.JSONDecodeError as exc:
        raise ArchspecError(f"--kwargs is not JSON: {exc.msg} at character {exc.pos + 1}", "write a JSON object, e.g. '{\"num_classes\": 10}'") from None
    if not isinstance(value, dict):
        raise ArchspecError(f"--kwargs must be a JSON object, got {type(value).__name__}", "write a JSON object, e.g. '{\"num_classes\": 10}'")
    return value


def _call_args(options: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in options.items())


def imported_weights(module: nn.Module, result: Result) -> dict[str, torch.Tensor]:
    """The module's tensors as the state dict of `archspec.build(result.text)`: what `train --init`, `eval` and `export` read.

    Mapped by structure: the n-th layer holding tensors in the built network is the n-th in the import's order."""
    from archspec.pytorch.build import build

    net = build(result.text)
    mine = [(path, m) for path, m in net.named_modules() if any(True for _ in m.state_dict(keep_vars=True)) and not list(m.children())]
    modules = dict(module.named_modules())
    statements = result.imported.statements
    theirs = [_tensors_at(module, modules, p) for p in weight_order(statements[:result.imported.stopped]
                                                                      if result.imported.stopped is not None else statements)]
    if len(mine) != len(theirs):
        raise ArchspecError(f"the imported network has {len(mine)} layers with tensors, the module {len(theirs)}",
                            "please report this with the module you imported")
    state = {}
    for (path, a), (kind, source) in zip(mine, theirs):
        ours = a.state_dict()
        if kind is None and len(ours) == 1 and next(iter(ours.values())).numel() == next(iter(source.values())).numel():
            # a layer scale's [C] vector (timm's ConvNeXt `gamma`) in the language's [C, 1, 1] layout
            source = {k: v.reshape(next(iter(ours.values())).shape) for k, v in source.items()}
        if torch_kind(a) != kind or [v.shape for v in ours.values()] != [v.shape for v in source.values()]:
            raise ArchspecError(f"the imported layer `{path}` ({type(a).__name__}) does not match the module's ({kind or 'a parameter'})",
                                "please report this with the module you imported")
        state.update({f"{path}.{k}": v.detach().clone() for k, v in zip(ours, source.values())})
    return state


def _tensors_at(module: nn.Module, modules: dict[str, nn.Module], path: str) -> tuple[str | None, dict[str, torch.Tensor]]:
    """(the torch.nn kind, the tensors) of the layer at `path`; a bare parameter (a layer scale) has no kind."""
    if path in modules:
        return torch_kind(modules[path]), modules[path].state_dict()
    return None, {path: module.get_parameter(path)}
