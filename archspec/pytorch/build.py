"""Checked tree -> torch.nn.Module. Every size comes from the checked tree.

The module tree mirrors the checked tree, so `dict(net.named_modules())[row.path]` is the module
of each checker row: top-level layers are named like `conv1`, `pool1`, `fc1`; a block call is
an nn.Sequential of its body; a join is its runtime module, with its bodies named as the join names them
(`residual`: `body` and `shortcut`; `concat`, `add`: `branch1`, ...)
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from archspec.language.check import CheckReport
from archspec.language.pipeline import CheckOptions, checked
from archspec.language.errors import ArchspecError
from archspec.language.nodes import Model
from archspec.language.ops import Input, TorchCall
from archspec.language.tree import Branch, Call, CheckedNode, Layer, Visitor
from archspec.pytorch import layers, runtime
from archspec.pytorch.layers import Keep


class Net(nn.Sequential):
    """The compiled network: an nn.Sequential of named layers, with its source, shapes and init hints."""

    def __init__(self, layers: "OrderedDict[str, nn.Module]", source: str, input_shape: tuple[int, ...],
                 output_shape: tuple[int, ...], init_hints: dict[str, str]) -> None:
        super().__init__(layers)
        self.arch_source = source
        self.input_shape = input_shape
        self.output_shape = output_shape
        # Module path -> data-dependent initialiser (`whiten`), from the checked tree: the runner applies them.
        self.init_hints = init_hints

    def forward(self, x: torch.Tensor) -> Any:
        Keep.share(self)  # `as NAME` / `from NAME`: one dict of named tensors for this forward
        try:
            # In training, with `aux` heads: a namedtuple (logits, aux_logits...) as torchvision's GoogLeNet gives.
            return runtime.Aux.outputs(self, super().forward(x))
        finally:
            Keep.release(self)


class _ModuleBuilder(Visitor[nn.Module]):
    def sequential(self, nodes: list[CheckedNode]) -> "OrderedDict[str, nn.Module]":
        return OrderedDict((n.name, self.visit(n)) for n in nodes if not _is_input(n))

    def visit_layer(self, node: Layer) -> nn.Module:
        call = node.layer.torch_call(node.in_shape)  # type: ignore[union-attr]
        return _module_class(call)(*call.args, **call.kwargs)

    def visit_call(self, node: Call) -> nn.Module:
        return nn.Sequential(self.sequential(node.body))

    def visit_branch(self, node: Branch) -> nn.Module:
        join = getattr(runtime, node.rule.runtime_class)  # the join's module (runtime.py), one argument per body
        return join(*(nn.Sequential(self.sequential(b)) for b in node.branches), *node.rule.runtime_args(node))


def _module_class(call: TorchCall) -> type[nn.Module]:
    """The class a layer's torch call names, from torch.nn, torchvision.ops or archspec's own layers."""
    if call.home == "torchvision.ops":
        import torchvision.ops

        return getattr(torchvision.ops, call.cls)
    return getattr(layers if call.home == "layers" else nn, call.cls)


def _is_input(node: CheckedNode) -> bool:
    return isinstance(node, Layer) and isinstance(node.layer, Input)


def init_hints(report: CheckReport) -> dict[str, str]:
    """Module path -> the data-dependent initialiser its layer asks for (`init whiten`)."""
    return {r.path: mode for r in report.rows if r.valid and (mode := r.layer.init_mode())}  # type: ignore[union-attr]


def build(source: "CheckReport | Model | str | Path", classes: int | None = None) -> Net:
    """Compile to a Net. Raises ArchError (with every diagnostic) if the spec has errors."""
    return build_checked(checked(source, CheckOptions(classes=classes)))


def build_checked(report: CheckReport) -> Net:
    report.raise_for_errors()
    if report.input_shape is None:
        raise ArchspecError(f"{report.path} defines blocks but no network: a block library cannot be built",
                            help='`use "FILE"` it from a file that starts with `input CxHxW`')
    layers = _ModuleBuilder().sequential(report.body)
    return Net(layers, report.model.text, tuple(report.input_shape), tuple(report.output_shape or ()),  # type: ignore[arg-type]
               init_hints(report))
