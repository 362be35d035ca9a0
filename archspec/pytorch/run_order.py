"""The order a module's layers run in, read from one forward pass on the meta device (no arithmetic, no state
touched): `run_order(module, input_shape)`.

Registration order is not execution order (torchvision's RegNet registers its shortcut before the branch it
adds to), and execution order is not enough either: `proj(x) + f(x)` and `f(x) + shortcut(x)` are the same
block, the operands of a sum or a product taken in either order. So the pass records the data flow (every
torch function, which tensors it reads and writes), and the layers are listed by walking it from the outputs
back to the input, ancestors first, each operand in turn: in order for most functions (a concatenation's
order is its meaning), and for `+` and `*` the operand with more layers of its own first. The residual branch
then comes before its shortcut whatever side of `+` each side's code writes it on.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

# Functions whose tensor operands commute: their order says nothing about the network.
_COMMUTATIVE = frozenset({"__add__", "__radd__", "__iadd__", "add", "add_", "__mul__", "__rmul__", "__imul__", "mul", "mul_"})


@dataclass
class _Call:
    """One torch function call: the calls that made its tensor inputs, and the layers whose tensors it read."""

    inputs: list[int]
    layers: list[str]
    commutative: bool
    mask: int = 0  # a bit per layer this call depends on, itself included
    own: int = 0


class _Recorder(TorchFunctionMode):
    """Records each torch function called inside it as a _Call, linked to its inputs by tensor identity."""

    def __init__(self, owner: dict[int, str]) -> None:
        super().__init__()
        self.owner = owner  # id of a parameter or buffer -> the path of the module that holds it
        self.calls: list[_Call] = []
        self.made_by: dict[int, int] = {}  # id of a tensor -> the call that last wrote it
        self.alive: list[Any] = []  # every tensor seen, so no id is reused while recording

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        tensors = [t for t in tree_flatten((args, kwargs or {}))[0] if isinstance(t, torch.Tensor)]
        inputs = [self.made_by[id(t)] for t in tensors if id(t) in self.made_by]
        layers = list(dict.fromkeys(self.owner[id(t)] for t in tensors if id(t) in self.owner))
        self.calls.append(_Call(inputs, layers, getattr(func, "__name__", "") in _COMMUTATIVE))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self.made_by[id(t)] = len(self.calls) - 1
                self.alive.append(t)
        self.alive.extend(tensors)
        return out


def run_order(module: nn.Module, input_shape: tuple[int, ...]) -> list[str]:
    """The paths of the modules holding tensors, in the order explained above; those the pass never reads
    (unused layers) follow in registration order. Runs in training mode, so auxiliary heads count; raises
    whatever the forward pass raises on the meta device."""
    meta = {name: torch.empty_like(t, device="meta") for name, t in [*module.named_parameters(), *module.named_buffers()]}
    owner = {id(t): name.rpartition(".")[0] for name, t in meta.items()}
    modes = {m: m.training for m in module.modules()}
    recorder = _Recorder(owner)
    x = torch.empty((2, *input_shape), device="meta")  # two samples: batch norm refuses one value per channel
    try:
        module.train()
        with recorder:
            out = torch.func.functional_call(module, meta, (x,))
    finally:
        for m, training in modes.items():
            m.train(training)
    ends = [recorder.made_by[id(t)] for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor) and id(t) in recorder.made_by]
    order = _walk(recorder.calls, ends)
    return order + [p for p in dict.fromkeys(owner.values()) if p not in order]


def _walk(calls: list[_Call], ends: list[int]) -> list[str]:
    """The layers the outputs depend on, ancestors first (an iterative depth-first walk: networks are deep)."""
    bits: dict[str, int] = {}
    for call in calls:  # calls are recorded after their inputs, so one pass fills every mask
        call.own = sum(1 << bits.setdefault(p, len(bits)) for p in call.layers)
        call.mask = call.own
        for i in call.inputs:
            call.mask |= calls[i].mask
    order: list[str] = []
    done_layers, seen = 0, set()
    stack: list[tuple[int, bool]] = [(i, False) for i in reversed(ends)]
    while stack:
        i, expanded = stack.pop()
        if expanded:
            for p in calls[i].layers:
                if not done_layers & (1 << bits[p]):
                    order.append(p)
                    done_layers |= 1 << bits[p]
            continue
        if i in seen:
            continue
        seen.add(i)
        stack.append((i, True))
        inputs = list(dict.fromkeys(calls[i].inputs))
        if calls[i].commutative:  # the operand with more layers not yet listed goes first
            inputs.sort(key=lambda j: -(calls[j].mask & ~done_layers).bit_count())
        stack.extend((j, False) for j in reversed(inputs))
    return order
