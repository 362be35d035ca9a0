"""timm's selective kernel (SKNet) and split attention (ResNeSt) modules -> a `select` join.

Both are traced whole (layers.ATTENTION_LEAVES) and read here from their submodules: their forwards stack the
branches into a [B, P, C, H, W] tensor, which no layer of the language takes, but the whole module is
exactly `select`: the attention body on the branches' sum, a softmax across the branches, the weighted sum.
A branch's own layers (timm's ConvNormAct, any layer the importer reads) are traced as a network of their own
(`Sub`), their module paths put back under the attention module's."""
from __future__ import annotations

from collections.abc import Callable

from torch import nn

from archspec.importers.layers import layer_text
from archspec.importers.statements import Join, Op, Scope

# (module, its input's C, H, W, its path, the scopes around its statements) -> its statements
Sub = Callable[[nn.Module, tuple[int, ...], str, tuple[Scope, ...]], list]


def selective_kernel(m: nn.Module, shape: tuple[int, ...], path: str, scopes: tuple[Scope, ...], sub: Sub) -> list:
    """SelectiveKernel: each path (on its equal channel part with split_input) is a branch; attn is the attention."""
    me = scopes + (Scope(path, type(m).__name__, False),)
    n, branches = m.num_paths, []
    for i, p in enumerate(m.paths):
        first: list = []
        part = shape
        if m.split_input:  # torch.split(x, in_channels // num_paths, 1): equal parts
            k = shape[0] // n
            first, part = [Op(f"slice {i * k}:{(i + 1) * k}", me)], (k, *shape[1:])
        where = f"{path}.paths.{i}"
        branches.append(first + sub(p, part, where, me + (Scope(where, type(p).__name__, False),)))
    attn, at = m.attn, f"{path}.attn"
    inner = me + (Scope(at, type(attn).__name__, False),)
    attention = [Op("gap", inner)] + _layers(attn, ("fc_reduce", "bn", "act", "fc_select"), at, inner)
    return [Join("select", branches, me, shortcut=attention)]


def split_attention(m: nn.Module, shape: tuple[int, ...], path: str, scopes: tuple[Scope, ...], sub: Sub) -> list:
    """SplitAttn: its conv, bn0, drop and act0, then the radix parts of their output as the branches of `select`
    (fc1, bn1, act1, fc2 the attention; rSoftMax's cardinal groups `gN`); radix 1 is a sigmoid gate (`mul`)."""
    me = scopes + (Scope(path, type(m).__name__, False),)
    head = _layers(m, ("conv", "bn0", "drop", "act0"), path, me)
    attention = [Op("gap", me)] + _layers(m, ("fc1", "bn1", "act1", "fc2"), path, me)
    radix, groups = m.radix, m.rsoftmax.cardinality
    if radix == 1:
        return head + [Join("mul", [[], attention + [Op("sigmoid", me)]], me)]
    c = m.conv.out_channels // radix
    word = "select" if groups == 1 else f"select g{groups}"
    return head + [Join(word, [[Op(f"slice {r * c}:{(r + 1) * c}", me)] for r in range(radix)], me, shortcut=attention)]


def _layers(m: nn.Module, names: tuple[str, ...], path: str, scopes: tuple[Scope, ...]) -> list[Op]:
    """The named submodules as layers, in order: nothing for a place-holder (nn.Identity); Inexpressible for
    a layer the language lacks."""
    ops = []
    for name in names:
        layer = getattr(m, name)
        text = layer_text(layer)
        if text == "identity":
            continue
        ops.append(Op(text, scopes, f"{path}.{name}" if any(True for _ in layer.state_dict()) else None))
    return ops


ATTENTION: dict[str, Callable[..., list]] = {
    "timm.layers.selective_kernel.SelectiveKernel": selective_kernel,
    "timm.layers.split_attn.SplitAttn": split_attention,
}
