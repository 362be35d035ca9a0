"""Weights from torch onto a built network, by structure: `load_weights(net, source)`.

Names differ between an .arch network (`stage1.basic1.res1.body.conv1`) and torch code
(`layer1.0.conv1`), so tensors are matched by order instead: each side is read as its layers that
hold tensors (parameters and buffers), in the order its forward pass uses them (run_order.py: data
flow on the meta device, the operands of `+` and `*` in a fixed order), and the n-th layer of the
source goes to the n-th layer of the network, tensor by tensor, after checking both are the same
kind of layer with the same shapes. A state dict has no forward pass: its layers keep the order of
its keys, the order the code registered them in, each module's own tensors (the layer scale of
torchvision's ConvNeXt block) after its children's; so does a module whose forward pass cannot run
on the meta device.
"""
from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from archspec.language.errors import ArchspecError
from archspec.pytorch.run_order import run_order


@dataclass(frozen=True)
class Slot:
    """One layer holding tensors: its module path, its kind (torch.nn class, or None when unknown) and tensors."""

    path: str
    kind: str | None
    tensors: tuple[tuple[str, tuple[int, ...]], ...]  # (key in the state dict, shape)

    def text(self) -> str:
        names = ", ".join(f"{key.rsplit('.', 1)[-1]} {list(shape)}" for key, shape in self.tensors)
        return f"`{self.path or '(top)'}` ({self.kind or 'tensors'}: {names})"


def torch_kind(module: nn.Module) -> str | None:
    """The torch.nn class a module is (a subclass counts as its torch.nn base: LayerNorm2d is LayerNorm), or None."""
    for cls in type(module).__mro__:
        if cls.__module__.startswith("torch.nn.modules") and cls is not nn.Module:
            return cls.__name__
    return None


def slots(state: Mapping[str, torch.Tensor], modules: Mapping[str, nn.Module] | None = None,
          run: list[str] | None = None) -> list[Slot]:
    """The layers of a state dict in order: `run`'s (run_order's), else each module's own tensors after its children's."""
    groups: dict[str, list[str]] = {}
    for key in state:
        groups.setdefault(key.rpartition(".")[0], []).append(key)
    ordered = list(groups)
    for path in list(groups):  # a parent's own tensors go after its last descendant's
        descendants = [p for p in ordered if p != path and (path == "" or p.startswith(path + "."))]
        if descendants:
            ordered.remove(path)
            ordered.insert(ordered.index(descendants[-1]) + 1, path)
    if run is not None:  # layers it lists in its order; any other tensors (none in practice) after them
        ordered = [p for p in run if p in groups] + [p for p in ordered if p not in run]
    return [Slot(path, torch_kind(modules[path]) if modules is not None and path in modules else None,
                 tuple((key, tuple(state[key].shape)) for key in groups[path])) for path in ordered]


def _mismatch(mine: Slot, theirs: Slot) -> str | None:
    """Why the source's layer cannot load into the network's, or None when it fits."""
    if mine.kind and theirs.kind and mine.kind != theirs.kind:
        return "the kinds differ"
    if len(mine.tensors) != len(theirs.tensors):
        return "they hold different numbers of tensors"
    # A state dict has no classes, but torch.nn layers name their tensors the same everywhere.
    if mine.kind and theirs.kind is None and _local_names(mine) != _local_names(theirs):
        return "their tensors have different names"
    if [s for _, s in mine.tensors] != [s for _, s in theirs.tensors]:
        return "the shapes differ"
    return None


def _local_names(slot: Slot) -> list[str]:
    return [key.rsplit(".", 1)[-1] for key, _ in slot.tensors]


@dataclass(frozen=True)
class Side:
    """One side of the match: its layers in order, and why that order is registration order when it is."""

    state: Mapping[str, torch.Tensor]
    slots: list[Slot]
    registered: str | None  # None: the order its forward pass uses them


def _side(source: nn.Module | Mapping[str, torch.Tensor], input_shape: tuple[int, ...] | None) -> Side:
    if not isinstance(source, nn.Module):
        return Side(source, slots(source), "a state dict has no forward pass to order them by "
                    "(give the nn.Module itself to match its layers in the order they run)")
    state, modules = source.state_dict(), dict(source.named_modules())
    if input_shape is None:
        return Side(state, slots(state, modules), "the network has no `input_shape` to run a forward pass at")
    try:
        return Side(state, slots(state, modules, run_order(source, input_shape)), None)
    except Exception as exc:  # noqa: BLE001 - any forward pass that cannot run on meta tensors: registration order
        return Side(state, slots(state, modules), f"its forward pass did not run on the meta device "
                    f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})")


def _as_state(source: Any) -> nn.Module | Mapping[str, torch.Tensor]:
    if isinstance(source, nn.Module):
        return source
    if isinstance(source, Mapping) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in source.items()):
        return source
    raise ArchspecError(f"cannot load weights from a {type(source).__name__}",
                        "give an nn.Module or a state dict (a mapping of names to tensors, as torch.save(model.state_dict()) writes)")


def load_weights(net: nn.Module, source: Any, *, reinit_classifier: bool = False) -> list[str]:
    """Copy `source`'s tensors (an nn.Module or a state dict) onto `net` by structure; raise on the first mismatch.

    With reinit_classifier, a last layer that differs only in its output size (another class count)
    keeps `net`'s initial values. Returns one line for each thing worth saying (that re-initialisation).
    """
    shape = getattr(net, "input_shape", None)
    source_side, net_side = _side(_as_state(source), shape), _side(net, shape)
    state, theirs, mine = source_side.state, source_side.slots, net_side.slots
    help_ = _order_help(source_side, net_side)
    notes: list[str] = []
    if reinit_classifier and _other_class_count(mine, theirs):
        notes.append(f"{mine[-1].text()} is initialised afresh: the source's {theirs[-1].text()} has another class count")
        mine, theirs = mine[:-1], theirs[:-1]
    for i, (a, b) in enumerate(zip(mine, theirs)):
        why = _mismatch(a, b)
        if why:
            raise ArchspecError(f"the weights do not fit layer {i + 1} of the network: {why}: "
                                f"the network's {a.text()}, the source's {b.text()}", help_)
    if len(mine) != len(theirs):
        extra, side = (mine[len(theirs)], "network's") if len(mine) > len(theirs) else (theirs[len(mine)], "source's")
        raise ArchspecError(f"the weights do not fit: the network has {len(mine)} layers with tensors, the source {len(theirs)}; "
                            f"the first without a counterpart is the {side} {extra.text()}", help_)
    loaded = dict(net.state_dict())
    for a, b in zip(mine, theirs):
        for (key, _), (src, _) in zip(a.tensors, b.tensors):
            loaded[key] = state[src]
    net.load_state_dict(loaded)
    return notes


def _order_help(source: Side, net: Side) -> str:
    """The help of a mismatch, saying which side was taken in registration order (which can differ from its run)."""
    text = "the source must have the network's layers in the same order, with the same shapes"
    for side, whose in ((source, "the source's"), (net, "the network's")):
        if side.registered:
            text += f"; {whose} layers were taken in the order its code registers them: {side.registered}"
    return text


def _other_class_count(mine: list[Slot], theirs: list[Slot]) -> bool:
    """Both end in a Linear that differs only in its output size."""
    if not mine or not theirs or len(mine) != len(theirs):
        return False
    a, b = mine[-1], theirs[-1]
    shapes_a, shapes_b = [s for _, s in a.tensors], [s for _, s in b.tensors]
    return (a.kind == "Linear" and b.kind in ("Linear", None) and len(shapes_a) == len(shapes_b)
            and shapes_a != shapes_b and all(x[1:] == y[1:] for x, y in zip(shapes_a, shapes_b)))


def init_source(spec: str) -> Any:
    """`--init`: a state dict file (`weights.pt`) or `MODULE:CALLABLE` returning an nn.Module or a state dict."""
    if ":" in spec and not Path(spec).exists():
        module_name, _, attr = spec.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ArchspecError(f"--init {spec}: cannot import it ({type(exc).__name__}: {exc})",
                                "write MODULE:CALLABLE, e.g. torchvision.models:resnet18") from None
        return factory()
    try:
        state = torch.load(spec, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ArchspecError(f"--init {spec}: no such file", "give a file written by torch.save(model.state_dict()), "
                            "or MODULE:CALLABLE") from None
    except Exception as exc:  # noqa: BLE001 - a corrupt or non-torch file: one line, not a traceback
        raise ArchspecError(f"--init {spec}: not a torch weights file ({type(exc).__name__}: {str(exc).splitlines()[0]})",
                            "give a file written by torch.save(model.state_dict())") from None
    return state.get("state_dict", state) if isinstance(state, dict) else state


def init_from(net: nn.Module, spec: str) -> list[str]:
    """`archspec train --init SPEC`: load it onto `net`; a classifier for another class count starts afresh."""
    notes = load_weights(net, init_source(spec), reinit_classifier=True)
    layers = len(slots(net.state_dict()))
    return [f"initialised from {spec}: {layers - len(notes)} of {layers} layers with tensors", *notes]
