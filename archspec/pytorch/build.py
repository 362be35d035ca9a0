"""Checked specs -> torch.nn.Module. Every size comes from the checker's report.

The module tree mirrors the spec tree, so `dict(net.named_modules())[row.path]` is the module
of each checker row: top-level layers are named like `conv1`, `pool1`, `fc1`; a block call is
an nn.Sequential of its body; `residual` has `body` and `shortcut`; branches `branch1`, ...
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from archspec.language.errors import ArchError, ArchspecError
from archspec.language.ops import Input, LayerSpec
from archspec.language.check import CheckReport, check
from archspec.language.expand import BlockCall, Branch, Model, Node, Seq, load, parse
from archspec.language.expand import Residual as ResidualSpec


class Residual(nn.Module):
    """body(x) + shortcut(x); the shortcut is the identity unless given or projected."""

    def __init__(self, body: nn.Module, shortcut: nn.Module | None) -> None:
        super().__init__()
        self.body = body
        self.shortcut = shortcut if shortcut is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


class Concat(nn.Module):
    """Parallel branches on one input, concatenated on the channel dimension."""

    def __init__(self, branches: list[nn.Module]) -> None:
        super().__init__()
        for i, b in enumerate(branches):
            self.add_module(f"branch{i + 1}", b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([b(x) for b in self.children()], dim=1)


class Add(Concat):
    """Parallel branches on one input, summed elementwise."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = iter(self.children())
        out = next(branches)(x)
        for b in branches:
            out = out + b(x)
        return out


class Net(nn.Sequential):
    """The compiled network: an nn.Sequential of named layers, with its source and shapes attached."""

    def __init__(self, layers: "OrderedDict[str, nn.Module]", source: str, input_shape: tuple[int, ...], output_shape: tuple[int, ...]) -> None:
        super().__init__(layers)
        self.arch_source = source
        self.input_shape = input_shape
        self.output_shape = output_shape


def as_model(source: "Model | str | Path") -> Model:
    """A Model from a Model, a path (Path, or a str naming an existing .arch file), or .arch text."""
    if isinstance(source, Model):
        return source
    if isinstance(source, Path) or (isinstance(source, str) and "\n" not in source and source.endswith(".arch")):
        return load(source)
    return parse(source)


def build(source: "Model | str | Path", classes: int | None = None) -> Net:
    """Compile checked specs to a Net. Raises ArchError (with every diagnostic) if the spec has errors."""
    model = as_model(source)
    report = check(model, classes=classes)
    return build_checked(report)


def build_checked(report: CheckReport) -> Net:
    if not report.ok:
        raise ArchError(report.errors, report.path, report.model.sources)
    if report.input_shape is None:
        raise ArchspecError(f"{report.path} defines blocks but no network: a block library cannot be built",
                            help='`use "FILE"` it from a file that starts with `input CxHxW`')
    layers = _seq(report.model.body, report)
    return Net(layers, report.model.text, tuple(report.input_shape or ()), tuple(report.output_shape or ()))  # type: ignore[arg-type]


def _seq(seq: Seq, report: CheckReport) -> "OrderedDict[str, nn.Module]":
    return OrderedDict((node.name, _node(node, report)) for node in seq.items if not isinstance(node, Input))


def _node(node: Node, report: CheckReport) -> nn.Module:
    x, _ = report.shapes_of(node)
    if isinstance(node, LayerSpec):
        module = node.torch_call(x).build()
        if getattr(node, "init", "default") != "default":
            module.archspec_init = node.init  # type: ignore[attr-defined] # data-dependent: the runner applies it
        return module
    if isinstance(node, BlockCall):
        return nn.Sequential(_seq(node.body, report))
    if isinstance(node, ResidualSpec):
        shortcut = node.shortcut or report.projections.get(id(node))
        return Residual(nn.Sequential(_seq(node.body, report)), nn.Sequential(_seq(shortcut, report)) if shortcut else None)
    if isinstance(node, Branch):
        cls = Concat if node.mode == "concat" else Add
        return cls([nn.Sequential(_seq(b, report)) for b in node.branches])
    raise AssertionError(f"cannot compile {type(node).__name__}")  # Invalid nodes never pass the checker
