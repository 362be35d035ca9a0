"""The checker against an independent oracle: PyTorch itself.

Hypothesis generates random architectures as a small test-local description (the classes below,
not archspec's specs). Each is rendered to .arch text for archspec and, separately, translated
here straight into torch.nn layers that run one after the other on a batch of 2. Then:

* the checker reports an error exactly when torch raises, and the first error it reports (in
  execution order) is at the layer (or residual/branch join) where torch raised;
* when torch runs, every checker row has the output shape and the parameter count of the
  matching torch layer (same order: body before shortcut, branches in order, blocks expanded);
* `archspec.build` of the same text has, for each row, a module of the same type with the same
  output shape and params; with the oracle's weights copied in it computes the same function.

Deliberately not compared, because torch runs where archspec reports E103 on purpose:
* `linear` on a 4-D tensor: nn.Linear applies to the last dimension (W) only (a forgotten
  `flatten`), so the generators never put a `linear` before `flatten`;
* `dropout2d` after `flatten`: torch only warns (and drops single features), archspec reports E103;
* `gap` after `flatten`: nn.AdaptiveAvgPool2d(1) takes a 2-D [B, F] tensor for an unbatched
  [H, W] image and returns [1, 1], averaging over the batch; the generators never put `gap` after
  `flatten` (conv, max/avg pools and adaptiveavgpool HxW after `flatten` do raise, and are tested).
"""
from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Callable

import pytest

torch = pytest.importorskip("torch")
import hypothesis  # noqa: E402
from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import archspec  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Using padding=.same. with even kernel")


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one intra-op thread is ~20x faster than a pool contending for 2 busy cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

# --------------------------------------------------------------------------- the description

@dataclass(eq=False)
class X:
    """An expression over block parameters, e.g. X("c*2"): `{c*2}` in the text."""

    text: str

    def ev(self, env: dict[str, int]) -> int:
        # `in.c` (the incoming shape) is `in_c` in the env (`in` is a Python keyword)
        text = re.sub(r"\bin\.([chwf])\b", r"in_\1", self.text)
        return eval(text, {"__builtins__": {}}, dict(env))  # noqa: S307 - our own generated text


@dataclass(eq=False)
class Layer:
    op: str
    a: dict[str, Any] = field(default_factory=dict)


@dataclass(eq=False)
class Res:
    body: list
    shortcut: list | None = None
    project: bool = False


@dataclass(eq=False)
class Branch:
    mode: str  # concat | add
    branches: list[list]


@dataclass(eq=False)
class Repeat:
    n: int
    body: list


@dataclass(eq=False)
class Call:
    block: "Block"
    pos: tuple = ()
    kw: dict = field(default_factory=dict)
    times: int = 1


@dataclass(eq=False)
class Block:
    name: str
    params: list[tuple[str, int | None]]
    body: list


@dataclass(eq=False)
class Arch:
    input: tuple[int, ...]
    body: list
    blocks: list[Block] = field(default_factory=list)
    fault: str = ""  # what an invalid generator injected (for the statistics)


ACTIVATIONS = ["relu", "relu6", "gelu", "silu", "sigmoid", "tanh", "hardswish", "hardsigmoid", "leakyrelu", "softmax"]
POOLS = ["maxpool", "avgpool"]


# --------------------------------------------------------------------------- rendering to .arch

def _num(v: Any) -> str:
    return "{" + v.text + "}" if isinstance(v, X) else str(v)


def _pair(key: str, v: Any) -> str:
    if isinstance(v, X):
        return f"{key}{{{v.text}}}"
    return f"{key}{v[0]}" if v[0] == v[1] else f"{key}{v[0]}x{v[1]}"


def conv_text(a: dict) -> str:
    parts = ["conv", _num(a["c"]), _pair("k", a["k"])]
    if a.get("s", (1, 1)) != (1, 1):
        parts.append(_pair("s", a["s"]))
    p = a.get("p", (0, 0))
    if isinstance(p, str):
        parts.append(f"p {p}")
    elif p != (0, 0) or a.get("show_p0"):
        parts.append(_pair("p", p))
    if a.get("d", (1, 1)) != (1, 1):
        parts.append(_pair("d", a["d"]))
    g = a.get("g", 1)
    if isinstance(g, X) or g != 1:
        parts.append("g" + (f"{{{g.text}}}" if isinstance(g, X) else str(g)))
    if not a.get("bias", True):
        parts.append("nobias")
    return " ".join(parts)


def pool_text(op: str) -> Callable[[dict], str]:
    def text(a: dict) -> str:
        parts = [op, f"{a['k'][0]}" if a["k"][0] == a["k"][1] else f"{a['k'][0]}x{a['k'][1]}"]
        if a.get("s") is not None:
            parts.append(_pair("s", a["s"]))
        if a.get("p", (0, 0)) != (0, 0):
            parts.append(_pair("p", a["p"]))
        if a.get("d", (1, 1)) != (1, 1):
            parts.append(_pair("d", a["d"]))
        if a.get("ceil"):
            parts.append("ceil")
        if a.get("noinclude"):
            parts.append("noinclude")
        return " ".join(parts)
    return text


def bn_text(a: dict) -> str:
    parts = ["bn"] + [f"{key}={a[key]}" for key in ("eps", "momentum") if key in a]
    return " ".join(parts + (["noaffine"] if a.get("noaffine") else []))


def bn_module(a: dict, x: "torch.Tensor", env: dict) -> nn.Module:
    cls = nn.BatchNorm2d if x.dim() == 4 else nn.BatchNorm1d
    return cls(x.shape[1], eps=a.get("eps", 1e-5), momentum=a.get("momentum", 0.1), affine=not a.get("noaffine"))


def leaf_text(layer: Layer) -> str:
    return ORACLE[layer.op].text(layer.a)


class Renderer:
    """The .arch text, and the line of every leaf and structure (for where errors are reported).

    With sep="nl" every layer and every structure keyword gets its own line; "pipe" joins runs of
    layers with `|` (more like hand-written files; lines are then not unique)."""

    def __init__(self, sep: str = "nl") -> None:
        self.sep = sep
        self.lines: list[str] = []
        self.line_of: dict[int, int] = {}

    def emit(self, text: str, node: Any = None, indent: int = 0) -> None:
        self.lines.append("  " * indent + text)
        if node is not None:
            self.line_of[id(node)] = len(self.lines)

    def seq(self, items: list, indent: int) -> None:
        i = 0
        while i < len(items):
            node = items[i]
            if isinstance(node, Layer) and self.sep == "pipe":
                run = [node]
                while i + 1 < len(items) and isinstance(items[i + 1], Layer):
                    i += 1
                    run.append(items[i])
                self.emit(" | ".join(leaf_text(n) for n in run), None, indent)
                for n in run:
                    self.line_of[id(n)] = len(self.lines)
            else:
                self.node(node, indent)
            i += 1

    def node(self, node: Any, indent: int) -> None:
        if isinstance(node, Layer):
            self.emit(leaf_text(node), node, indent)
        elif isinstance(node, Res):
            self.emit("residual project {" if node.project else "residual {", node, indent)
            self.seq(node.body, indent + 1)
            if node.shortcut is not None:
                self.emit("} shortcut {", None, indent)
                self.seq(node.shortcut, indent + 1)
            self.emit("}", None, indent)
        elif isinstance(node, Branch):
            self.emit(f"{node.mode} {{", node, indent)
            for i, b in enumerate(node.branches):
                if i:
                    self.emit("} {", None, indent)
                self.seq(b, indent + 1)
            self.emit("}", None, indent)
        elif isinstance(node, Repeat):
            self.emit(f"repeat {node.n} {{", node, indent)
            self.seq(node.body, indent + 1)
            self.emit("}", None, indent)
        elif isinstance(node, Call):
            args = [str(v) for v in node.pos] + [f"{k}={v}" for k, v in node.kw.items()]
            self.emit(f"{node.block.name}({', '.join(args)})" + (f" * {node.times}" if node.times != 1 else ""), node, indent)
        else:  # pragma: no cover
            raise AssertionError(node)

    def render(self, arch: Arch) -> str:
        for b in arch.blocks:
            params = ", ".join(p if d is None else f"{p}={d}" for p, d in b.params)
            self.emit(f"block {b.name}({params}) {{")
            self.seq(b.body, 1)
            self.emit("}")
        self.emit(ORACLE["input"].text({"dims": arch.input}))
        self.seq(arch.body, 0)
        return "\n".join(self.lines) + "\n"


# --------------------------------------------------------------------------- the torch oracle

def ev(v: Any, env: dict[str, int]) -> Any:
    return v.ev(env) if isinstance(v, X) else v


def ev_pair(v: Any, env: dict[str, int]) -> Any:
    if isinstance(v, X):
        n = v.ev(env)
        return (n, n)
    return v


def torch_layer(layer: Layer, x: "torch.Tensor", env: dict[str, int]) -> nn.Module:
    """The nn module for one layer, sized from the tensor that reaches it (as one writes torch by hand)."""
    sizes = dict(zip(("in_c", "in_h", "in_w"), x.shape[1:])) if x.dim() == 4 else {"in_f": x.shape[1]}
    return ORACLE[layer.op].module(layer.a, x, {**env, **sizes})  # what `in.*` reads: the tensor reaching the layer


def pool_module(cls: type) -> Callable[[dict, "torch.Tensor", dict], nn.Module]:
    def module(a: dict, x: "torch.Tensor", env: dict) -> nn.Module:
        extra = ({"dilation": a.get("d", (1, 1))} if cls is nn.MaxPool2d
                 else {"count_include_pad": not a.get("noinclude")})
        return cls(a["k"], stride=a.get("s") or a["k"], padding=a.get("p", (0, 0)), ceil_mode=a.get("ceil", False), **extra)
    return module


@dataclass(frozen=True)
class OracleOp:
    """The oracle's own knowledge of one op, independent of archspec: how to write it as .arch text
    (from the test-local arguments `a`) and which torch.nn module it is (sized from the tensor `x`
    that reaches it, with block parameters `env`). Optional, for the random generators:
    `draw(draw, shape)` gives a valid layer on `shape` and its output shape (None: not on this rank);
    `aligned(draw, c)` gives layers that keep [c, H, W] for any H, W (for structured nets);
    `fault(draw, shape)` gives layers torch refuses on the image `shape`, with the code the checker reports.
    tests/test_ops_registry.py requires an entry for every op in archspec's registry."""

    text: Callable[[dict], str]
    module: Callable[[dict, "torch.Tensor", dict], nn.Module] | None
    draw: Callable[[Any, tuple], "tuple[Layer, tuple] | None"] | None = None
    aligned: Callable[[Any, int], list] | None = None
    fault: Callable[[Any, tuple], list] | None = None
    fault_codes: tuple[str, ...] = ()


class LayerScale(nn.Module):
    """The oracle's layer scale: torchvision's CNBlock multiplies by a [C, 1, 1] parameter (a [F] one on features)."""

    def __init__(self, shape: tuple[int, ...], init: float) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.full(shape, init))

    def forward(self, x: "torch.Tensor") -> "torch.Tensor":
        return self.scale * x


class PointwiseLinear(nn.Linear):
    """The oracle's pointwise linear: the channels of each pixel times nn.Linear's [out, in] weight, transposed."""

    def forward(self, x: "torch.Tensor") -> "torch.Tensor":
        y = (x.transpose(1, 3) @ self.weight.T).transpose(1, 3)  # [B, W, H, C] @ [C, out]: a matmul, as FlopCounterMode counts
        return y if self.bias is None else y + self.bias[:, None, None]


def layernorm_module(a: dict, x: "torch.Tensor", env: dict) -> nn.Module:
    from torchvision.models.convnext import LayerNorm2d

    return (LayerNorm2d if x.dim() == 4 else nn.LayerNorm)(x.shape[1], eps=a.get("eps", 1e-5))


def draw_layernorm(draw, shape: tuple) -> "tuple[Layer, tuple]":
    return Layer("layernorm", {"eps": draw(st.sampled_from([1e-5, 1e-6, 0.001]))} if draw(st.booleans()) else {}), shape


def draw_layerscale(draw, shape: tuple) -> "tuple[Layer, tuple]":
    return Layer("layerscale", {"init": draw(st.sampled_from([1e-6, 0.5, 1.0, -2.0]))}), shape


def draw_pwlinear(draw, shape: tuple) -> "tuple[Layer, tuple] | None":
    if len(shape) != 3:
        return None
    n = draw(st.integers(1, 12))
    return Layer("pwlinear", {"n": n, "bias": draw(st.booleans())}), (n, *shape[1:])


def draw_stochasticdepth(draw, shape: tuple) -> "tuple[Layer, tuple]":
    return Layer("stochasticdepth", {"p": draw(st.sampled_from([0.0, 0.1, 0.5])), "mode": draw(st.sampled_from(["row", "batch"]))}), shape


def draw_channelshuffle(draw, shape: tuple) -> "tuple[Layer, tuple] | None":
    return (Layer("channelshuffle", {"g": draw(st.sampled_from(divisors(shape[0])))}), shape) if len(shape) == 3 else None


def channelshuffle_fault(draw, shape: tuple) -> list:
    bad = [g for g in range(2, 9) if shape[0] % g]
    if draw(st.booleans()) or not bad:
        return [Layer("flatten"), Layer("channelshuffle", {"g": draw(st.integers(1, 4))})]
    return [Layer("channelshuffle", {"g": draw(st.sampled_from(bad))})]


class ChannelSlice(nn.Module):
    """The oracle's channel slice, x[:, a:b]; a range past the channels is refused here, where Python's slice would
    clamp it silently (the checker reports E133 there: the network would get fewer channels than written)."""

    def __init__(self, a: int, b: int) -> None:
        super().__init__()
        self.a, self.b = a, b

    def forward(self, x: "torch.Tensor") -> "torch.Tensor":
        if not 0 <= self.a < self.b <= x.shape[1]:
            raise ValueError(f"slice {self.a}:{self.b} of {x.shape[1]} channels")
        return x[:, self.a:self.b]


def draw_slice(draw, shape: tuple) -> "tuple[Layer, tuple]":
    a = draw(st.integers(0, shape[0] - 1))
    b = draw(st.integers(a + 1, shape[0]))
    return Layer("slice", {"a": a, "b": b}), (b - a, *shape[1:])


def draw_pad(draw, shape: tuple) -> "tuple[Layer, tuple] | None":
    if len(shape) != 3:
        return None
    value = draw(st.sampled_from([0.0, 0.0, -1.5, 2.0]))
    sides = draw(st.tuples(*[st.integers(0, 3)] * 4))
    return Layer("pad", {"sides": sides, "value": value}), (shape[0], shape[1] + sides[2] + sides[3], shape[2] + sides[0] + sides[1])


class ChannelConv(nn.Conv1d):
    """The oracle's channel conv, as the ECA paper writes it: nn.Conv1d(1, 1, k, padding=(k-1)//2, bias=False) over the
    channels, each pixel's channels a sequence of its own."""

    def __init__(self, k: int) -> None:
        super().__init__(1, 1, k, padding=(k - 1) // 2, bias=False)

    def forward(self, x: "torch.Tensor") -> "torch.Tensor":
        b, c, h, w = x.shape  # a [B, F] tensor raises here, where the checker reports E103
        rows = x.permute(0, 2, 3, 1).reshape(b * h * w, 1, c)
        return super().forward(rows).reshape(b, h, w, c).permute(0, 3, 1, 2)


def draw_chanconv(draw, shape: tuple) -> "tuple[Layer, tuple] | None":
    return (Layer("chanconv", {"k": draw(st.sampled_from([1, 3, 3, 5, 9]))}), shape) if len(shape) == 3 else None


class BlurPool(nn.Module):
    """The oracle's blur pool, written from the paper's recipe (timm's BlurPool2d): pad ((s-1) + (k-1)) // 2 on each side
    (reflect, or zeros), then a depthwise conv with the outer product of the binomial row C(k-1, i) / 2^(k-1), stride s."""

    def __init__(self, channels: int, k: int, s: int, zeros: bool) -> None:
        super().__init__()
        taps = torch.tensor([math.comb(k - 1, i) for i in range(k)], dtype=torch.float32) / 2 ** (k - 1)
        self.register_buffer("weight", torch.outer(taps, taps).repeat(channels, 1, 1, 1), persistent=False)
        self.pad, self.stride, self.mode, self.groups = ((s - 1) + (k - 1)) // 2, s, "constant" if zeros else "reflect", channels

    def forward(self, x: "torch.Tensor") -> "torch.Tensor":
        x = nn.functional.pad(x, (self.pad,) * 4, mode=self.mode)
        return nn.functional.conv2d(x, self.weight, stride=self.stride, groups=self.groups)


def blurpool_text(a: dict) -> str:
    return f"blurpool k{a['k']} s{a['s']}" + (" zeros" if a["zeros"] else "")


def draw_blurpool(draw, shape: tuple) -> "tuple[Layer, tuple] | None":
    """A blur pool that torch runs on this image: reflect padding below H and W, the window within the padded input."""
    if len(shape) != 3:
        return None
    k, s, zeros = draw(st.integers(2, 5)), draw(st.integers(1, 3)), draw(st.booleans())
    p = ((s - 1) + (k - 1)) // 2
    if (not zeros and min(shape[1:]) <= p) or min(shape[1:]) + 2 * p < k:
        return None
    return (Layer("blurpool", {"k": k, "s": s, "zeros": zeros}),
            (shape[0], *((n + 2 * p - k) // s + 1 for n in shape[1:])))


class GlobalResponseNorm(nn.Module):
    """The oracle's GRN, from ConvNeXt-V2's paper (Woo et al. 2023, Algorithm 1), written out: G = sqrt(sum of x^2 over
    H, W) per channel, N = G / (mean of G over the channels + eps), gamma * (x * N) + beta + x. Its gamma and beta are
    drawn (not zeros, the layer's initial identity), so the comparison sees every term."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.randn(channels))
        self.bias = nn.Parameter(torch.randn(channels))

    def forward(self, x: "torch.Tensor") -> "torch.Tensor":
        g = (x * x).sum(dim=(2, 3), keepdim=True).sqrt()
        n = g / (g.mean(dim=1, keepdim=True) + self.eps)
        return self.weight[:, None, None] * (x * n) + self.bias[:, None, None] + x


def draw_grn(draw, shape: tuple) -> "tuple[Layer, tuple] | None":
    return (Layer("grn", {"eps": draw(st.sampled_from([1e-6, 1e-3]))} if draw(st.booleans()) else {}), shape) if len(shape) == 3 else None


class RmsNorm(nn.Module):
    """The oracle's RMS norm: torch's own F.rms_norm (nn.RMSNorm's) over the last dimension, the channels moved there on
    an image and back; its scale drawn (not ones, nn.RMSNorm's start) so the comparison sees it."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.randn(channels))

    def forward(self, x: "torch.Tensor") -> "torch.Tensor":
        if x.dim() == 2:
            return nn.functional.rms_norm(x, (x.shape[1],), self.weight, self.eps)
        return nn.functional.rms_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.eps).permute(0, 3, 1, 2)


def draw_rmsnorm(draw, shape: tuple) -> "tuple[Layer, tuple]":
    return Layer("rmsnorm", {"eps": draw(st.sampled_from([1e-6, 1e-5, 0.1]))} if draw(st.booleans()) else {}), shape


class StdConv2d(nn.Conv2d):
    """The oracle's weight-standardised conv, from the papers' formula (not timm's batch_norm): each filter minus its mean,
    over its standard deviation (biased, eps added to the variance); `gamma` (scaled): times a gain per filter and
    gamma / sqrt(fan-in). The gains start random here, so that copying them into the built layer is tested."""

    def __init__(self, *args: Any, eps: float, gamma: float | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.eps, self.gamma = eps, gamma
        self.gain = None if gamma is None else nn.Parameter(torch.rand(self.out_channels, 1, 1, 1) + 0.5)

    def forward(self, x: "torch.Tensor") -> "torch.Tensor":
        w = self.weight
        if w[0].numel() == 1:  # as torch's batch_norm in timm's StdConv2d: the variance of one value is no statistic
            raise ValueError("a filter of one weight cannot be standardised")
        dims = (1, 2, 3)
        w = (w - w.mean(dims, keepdim=True)) / torch.sqrt(w.var(dims, unbiased=False, keepdim=True) + self.eps)
        if self.gamma is not None:
            w = w * self.gain * self.gamma / math.sqrt(self.weight[0].numel())
        return nn.functional.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


def stdconv_text(a: dict) -> str:
    text = "std" + conv_text(a) + (f" eps={a['eps']}" if "eps" in a else "")
    return text + (" scaled" + (f" gamma={a['gamma']}" if a["gamma"] != 1.0 else "") if a.get("gamma") is not None else "")


def stdconv_module(a: dict, x: "torch.Tensor", env: dict) -> nn.Module:
    return StdConv2d(x.shape[1], ev(a["c"], env), kernel_size=a["k"], stride=ev_pair(a.get("s", (1, 1)), env),
                     padding=a.get("p", (0, 0)), dilation=a.get("d", (1, 1)), groups=ev(a.get("g", 1), env),
                     bias=a.get("bias", True), eps=a.get("eps", 1e-6), gamma=a.get("gamma"))


def stdconv_options(draw) -> dict:
    """eps (default or not) and scaled with gamma (None: not scaled)."""
    eps = {"eps": draw(st.sampled_from([1e-8, 1e-5, 0.1]))} if draw(st.booleans()) else {}
    return {**eps, "gamma": draw(st.sampled_from([None, None, 1.0, 1.7, -0.5]))}


def draw_stdconv(draw, shape: tuple) -> "tuple[Layer, tuple] | None":
    if len(shape) != 3:
        return None
    layer, out = valid_conv(draw, shape)
    if shape[0] // layer.a["g"] * layer.a["k"][0] * layer.a["k"][1] == 1:
        return layer, out  # one weight per filter: E134 (test_stdconv_reports_e134...); a plain conv here
    return Layer("stdconv", {**layer.a, **stdconv_options(draw)}), out


def aligned_stdconv(draw, c: int) -> list:
    """Keeps [c, H, W]: k odd, p (k-1)/2 (k3 where a 1x1 filter would have one weight)."""
    g = draw(st.sampled_from(divisors(c)))
    k = draw(st.sampled_from([1, 3])) if c // g > 1 else 3
    return [Layer("stdconv", {"c": c, "k": (k, k), "p": (k // 2, k // 2), "g": g, "bias": draw(st.booleans()),
                              **stdconv_options(draw)})]
class Scale(nn.Module):
    """The oracle's constant factor: torch.mul by a Python number (Inception-ResNet's `x * self.scale`)."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: "torch.Tensor") -> "torch.Tensor":
        return torch.mul(x, self.factor)


def draw_scale(draw, shape: tuple) -> "tuple[Layer, tuple]":
    return Layer("scale", {"factor": draw(st.sampled_from([0.2, 0.5, -1.5, 0.0, 3.0]))}), shape


def torchvision_ops(name: str) -> type:
    import torchvision.ops

    return getattr(torchvision.ops, name)


def _plain(op: str, cls: type) -> OracleOp:
    return OracleOp(lambda a: op, lambda a, x, env: cls())


ORACLE: dict[str, OracleOp] = {
    "input": OracleOp(lambda a: "input " + "x".join(map(str, a["dims"])), None),  # the tensor itself: no module
    "conv": OracleOp(conv_text, lambda a, x, env: nn.Conv2d(
        x.shape[1], ev(a["c"], env), kernel_size=a["k"], stride=ev_pair(a.get("s", (1, 1)), env), padding=a.get("p", (0, 0)),
        dilation=a.get("d", (1, 1)), groups=ev(a.get("g", 1), env), bias=a.get("bias", True))),
    "maxpool": OracleOp(pool_text("maxpool"), pool_module(nn.MaxPool2d)),
    "avgpool": OracleOp(pool_text("avgpool"), pool_module(nn.AvgPool2d)),
    "adaptiveavgpool": OracleOp(lambda a: f"adaptiveavgpool {a['size'][0]}x{a['size'][1]}",
                                lambda a, x, env: nn.AdaptiveAvgPool2d(a["size"])),
    "gap": OracleOp(lambda a: "gap", lambda a, x, env: nn.AdaptiveAvgPool2d(1)),
    "bn": OracleOp(bn_text, bn_module),
    "dropout": OracleOp(lambda a: f"dropout {a['p']}", lambda a, x, env: nn.Dropout(a["p"])),
    "flatten": OracleOp(lambda a: "flatten", lambda a, x, env: nn.Flatten()),
    "linear": OracleOp(lambda a: f"linear {_num(a['n'])}" + ("" if a.get("bias", True) else " nobias"),
                       lambda a, x, env: nn.Linear(x.shape[-1], ev(a["n"], env), bias=a.get("bias", True))),
    "leakyrelu": OracleOp(lambda a: "leakyrelu" if a.get("slope", 0.01) == 0.01 else f"leakyrelu {a['slope']}",
                          lambda a, x, env: nn.LeakyReLU(a.get("slope", 0.01))),
    "softmax": OracleOp(lambda a: "softmax", lambda a, x, env: nn.Softmax(dim=1)),
    "upsample": OracleOp(
        lambda a: f"upsample {a['f']}" + ("" if a["mode"] == "nearest" and not a.get("say_mode") else f" {a['mode']}"),
        lambda a, x, env: nn.Upsample(scale_factor=a["f"], mode=a["mode"]),
        draw=lambda draw, shape: draw_upsample(draw, shape),
        aligned=lambda draw, c: [draw_upsample(draw, (c, 1, 1))[0], Layer(draw(st.sampled_from(POOLS)), {"k": (0, 0)})],
        fault=lambda draw, shape: [Layer("flatten"), draw_upsample(draw, shape)[0]], fault_codes=("E103",)),
    "convtranspose": OracleOp(
        lambda a: convtranspose_text(a),
        lambda a, x, env: nn.ConvTranspose2d(x.shape[1], a["c"], a["k"], stride=a["s"], padding=a["p"], output_padding=a["op"],
                                             dilation=a["d"], groups=a["g"], bias=a["bias"]),
        draw=lambda draw, shape: draw_convtranspose(draw, shape), aligned=lambda draw, c: aligned_convtranspose(draw, c),
        fault=lambda draw, shape: convtranspose_fault(draw, shape), fault_codes=("E103", "E104", "E110", "E111")),
    "groupnorm": OracleOp(
        lambda a: f"groupnorm {a['g']}" + (f" eps={a['eps']}" if "eps" in a else ""),
        lambda a, x, env: nn.GroupNorm(a["g"], x.shape[1], eps=a.get("eps", 1e-5)),
        draw=lambda draw, shape: (Layer("groupnorm", {"g": draw(st.sampled_from(divisors(shape[0]))),
                                                      **({"eps": 0.5} if draw(st.booleans()) else {})}), shape),
        aligned=lambda draw, c: [Layer("groupnorm", {"g": draw(st.sampled_from(divisors(c)))})],
        fault=lambda draw, shape: [Layer("groupnorm", {"g": draw(st.sampled_from([g for g in range(2, 9) if shape[0] % g]))})],
        fault_codes=("E109",)),
    "dropout2d": OracleOp(  # never after flatten: torch only warns there (see the top of this file)
        lambda a: f"dropout2d {a['p']}", lambda a, x, env: nn.Dropout2d(a["p"]),
        draw=lambda draw, shape: (Layer("dropout2d", {"p": draw(st.sampled_from([0.0, 0.1, 0.5]))}), shape) if len(shape) == 3 else None,
        aligned=lambda draw, c: [Layer("dropout2d", {"p": draw(st.sampled_from([0.0, 0.2]))})]),
    "layernorm": OracleOp(lambda a: "layernorm" + (f" eps={a['eps']}" if "eps" in a else ""), layernorm_module,
                          draw=draw_layernorm, aligned=lambda draw, c: [draw_layernorm(draw, (c,))[0]]),
    "layerscale": OracleOp(lambda a: f"layerscale {a['init']}",
                           lambda a, x, env: LayerScale((x.shape[1], 1, 1) if x.dim() == 4 else (x.shape[1],), a["init"]),
                           draw=draw_layerscale, aligned=lambda draw, c: [draw_layerscale(draw, (c,))[0]]),
    "pwlinear": OracleOp(lambda a: f"pwlinear {a['n']}" + ("" if a.get("bias", True) else " nobias"),
                         lambda a, x, env: PointwiseLinear(x.shape[1], a["n"], bias=a.get("bias", True)),
                         draw=draw_pwlinear, aligned=lambda draw, c: [Layer("pwlinear", {"n": c, "bias": draw(st.booleans())})],
                         fault=lambda draw, shape: [Layer("flatten"), draw_pwlinear(draw, shape)[0]], fault_codes=("E103",)),
    "stochasticdepth": OracleOp(lambda a: f"stochasticdepth {a['p']}" + ("" if a["mode"] == "row" else " batch"),
                                lambda a, x, env: torchvision_ops("StochasticDepth")(a["p"], a["mode"]),
                                draw=draw_stochasticdepth, aligned=lambda draw, c: [draw_stochasticdepth(draw, (c,))[0]]),
    "channelshuffle": OracleOp(lambda a: f"channelshuffle {a['g']}", lambda a, x, env: nn.ChannelShuffle(a["g"]),
                               draw=draw_channelshuffle, aligned=lambda draw, c: [draw_channelshuffle(draw, (c, 1, 1))[0]],
                               fault=channelshuffle_fault, fault_codes=("E103", "E104")),
    "slice": OracleOp(lambda a: f"slice {a['a']}:{a['b']}", lambda a, x, env: ChannelSlice(a["a"], a["b"]),
                      draw=draw_slice, aligned=lambda draw, c: [Layer("slice", {"a": 0, "b": c})]),
    "identity": OracleOp(lambda a: "identity", lambda a, x, env: nn.Identity(),
                         draw=lambda draw, shape: (Layer("identity"), shape), aligned=lambda draw, c: [Layer("identity")]),
    "gelu": OracleOp(lambda a: "gelu tanh" if a.get("tanh") else "gelu",
                     lambda a, x, env: nn.GELU(approximate="tanh" if a.get("tanh") else "none")),
    **{op: _plain(op, cls) for op, cls in {"relu": nn.ReLU, "relu6": nn.ReLU6, "silu": nn.SiLU,
                                            "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "hardswish": nn.Hardswish,
                                            "hardsigmoid": nn.Hardsigmoid}.items()},
    "pad": OracleOp(lambda a: "pad " + " ".join(map(str, a["sides"])) + (f" value={a['value']}" if a["value"] else ""),
                    lambda a, x, env: nn.ConstantPad2d(a["sides"], a["value"]) if a["value"] else nn.ZeroPad2d(a["sides"]),
                    draw=draw_pad),  # no fault: on [B, F] torch pads the batch and features as an image's H, W
    "chanconv": OracleOp(lambda a: f"chanconv k{a['k']}", lambda a, x, env: ChannelConv(a["k"]),
                         draw=draw_chanconv, aligned=lambda draw, c: [draw_chanconv(draw, (c, 1, 1))[0]]),
    "blurpool": OracleOp(blurpool_text, lambda a, x, env: BlurPool(x.shape[1], a["k"], a["s"], a["zeros"]), draw=draw_blurpool,
                         aligned=lambda draw, c: [Layer("blurpool", {"k": draw(st.sampled_from([3, 5])), "s": 1, "zeros": True})]),
    # (no fault: E122 has its own sweep below, so the other ops' faults keep their share of the invalid nets)
    "grn": OracleOp(lambda a: "grn" + (f" eps={a['eps']}" if "eps" in a else ""),
                    lambda a, x, env: GlobalResponseNorm(x.shape[1], a.get("eps", 1e-6)),
                    draw=draw_grn, aligned=lambda draw, c: [draw_grn(draw, (c, 1, 1))[0]]),  # its fault: test_grn_on_features_fails_where_torch_fails
    "rmsnorm": OracleOp(lambda a: "rmsnorm" + (f" eps={a['eps']}" if "eps" in a else ""),
                        lambda a, x, env: RmsNorm(x.shape[1], a.get("eps", 1e-6)),
                        draw=draw_rmsnorm, aligned=lambda draw, c: [draw_rmsnorm(draw, (c,))[0]]),
    "stdconv": OracleOp(stdconv_text, stdconv_module, draw=draw_stdconv, aligned=aligned_stdconv),  # E134: its own test
    "scale": OracleOp(lambda a: f"scale {a['factor']}", lambda a, x, env: Scale(a["factor"]),
                      draw=draw_scale, aligned=lambda draw, c: [draw_scale(draw, (c,))[0]]),
}


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


class TorchOracle:
    """Runs a description with torch.nn, layer by layer, recording what each layer gives.

    `residual project`: when the body changes the shape, a 1x1 conv (no bias) + BatchNorm2d, with
    the stride of the body (the product of its strides, as torchvision's ResNet gives its
    downsample the block's stride). Joins use torch.stack / torch.cat, which refuse shapes that
    differ (a bare `+` would broadcast [B, C, 1, 1] against [B, C, H, W])."""

    def __init__(self, line_of: dict[int, int]) -> None:
        self.line_of = line_of
        self.records: list[tuple[str, tuple[int, ...], int]] = []
        self.modules: list[nn.Module] = []
        self.visits: list[int | None] = []  # line of each leaf / join, in execution order
        self.where: int | None = None  # line being executed (where torch raised, after a raise)
        self.projections = 0
        self.where_node: Any = None
        self.flops: FlopCounterMode | None = None  # counting while the oracle runs: MACs per layer

    def counted(self) -> int:
        return self.flops.get_total_flops() if self.flops is not None else 0

    def visit(self, node: Any) -> None:
        self.where_node = node
        self.where = self.line_of.get(id(node))
        self.visits.append(self.where)

    def leaf(self, op: str, module_factory: Callable[[], nn.Module], x: "torch.Tensor") -> "torch.Tensor":
        m = module_factory().to(x.dtype)  # compare() runs float64: a deep random net amplifies float32's rounding
        m.eval()
        before = self.counted()
        y = m(x)
        if 0 in y.shape:
            # torch returns an empty tensor here (a transposed conv whose padding eats the output), which
            # no later layer can use; the checker reports it at this layer, so count it as torch refusing.
            raise ValueError(f"{op} gives an empty tensor {tuple(y.shape)}")
        self.modules.append(m)
        # FlopCounterMode's FLOPs for the batch are 2 x MACs per sample x batch.
        macs = (self.counted() - before) // (2 * x.shape[0])
        self.records.append((op, tuple(y.shape[1:]), n_params(m), macs))
        return y

    def seq(self, items: list, x: "torch.Tensor", env: dict[str, int]) -> "torch.Tensor":
        for node in items:
            x = self.node(node, x, env)
        return x

    def node(self, node: Any, x: "torch.Tensor", env: dict[str, int]) -> "torch.Tensor":
        if isinstance(node, Layer):
            self.visit(node)
            return self.leaf(node.op, lambda: torch_layer(node, x, env), x)
        if isinstance(node, Res):
            y = self.seq(node.body, x, env)
            if node.shortcut is not None:
                s = self.seq(node.shortcut, x, env)
            elif node.project and y.shape != x.shape:
                stride = path_stride(node.body, env)
                self.projections += 1
                s = self.leaf("conv", lambda: nn.Conv2d(x.shape[1], y.shape[1], 1, stride=stride, bias=False), x)
                s = self.leaf("bn", lambda: nn.BatchNorm2d(s.shape[1]), s)
            else:
                s = x
            self.visit(node)
            return torch.stack([y, s]).sum(0)
        if isinstance(node, Branch):
            outs = [self.seq(b, x, env) for b in node.branches]
            self.visit(node)
            return torch.cat(outs, dim=1) if node.mode == "concat" else torch.stack(outs).sum(0)
        if isinstance(node, Repeat):
            for _ in range(node.n):
                x = self.seq(node.body, x, env)
            return x
        if isinstance(node, Call):
            inner = call_env(node, env)
            for _ in range(node.times):
                x = self.seq(node.block.body, x, inner)
            return x
        raise AssertionError(node)  # pragma: no cover


def call_env(call: Call, env: dict[str, int]) -> dict[str, int]:
    names = [p for p, _ in call.block.params]
    bound = dict(zip(names, call.pos)) | dict(call.kw)
    for p, default in call.block.params:
        bound.setdefault(p, default)
    return bound


def path_stride(items: list, env: dict[str, int]) -> int:
    """The stride along a sequence (square strides only: the generators keep projected bodies square)."""
    s: Any = 1
    for node in items:
        if isinstance(node, Layer):
            if node.op == "conv":
                s *= ev_pair(node.a.get("s", (1, 1)), env)[0]
            elif node.op in POOLS:
                s *= (node.a.get("s") or node.a["k"])[0]
            elif node.op == "upsample":
                s = Fraction(s, node.a["f"])
            elif node.op == "convtranspose":
                s = Fraction(s, node.a["s"][0])
        elif isinstance(node, Res):
            s *= path_stride(node.body, env)
        elif isinstance(node, Branch):
            s *= path_stride(node.branches[0], env)
        elif isinstance(node, Repeat):
            s *= path_stride(node.body, env) ** node.n
        elif isinstance(node, Call):
            s *= path_stride(node.block.body, call_env(node, env)) ** node.times
    return int(s)  # an upsampling is always undone in a projected body (aligned_chain)


# --------------------------------------------------------------------------- the comparison

@dataclass
class Outcome:
    torch_ok: bool
    checker_ok: bool
    layers: int
    codes: list[str]
    problems: list[str]
    text: str
    projections: int = 0
    known: str = ""  # a disagreement that is a reported checker bug (see test_projection_uses_the_body_stride)


def compare(arch: Arch, sep: str = "nl", build: bool = True) -> Outcome:
    r = Renderer(sep)
    text = r.render(arch)
    report = archspec.check(text, classes=None)
    oracle = TorchOracle(r.line_of)
    x = torch.randn(2, *arch.input, dtype=torch.float64)
    problems: list[str] = []
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as oracle.flops:
            y = oracle.seq(arch.body, x, {})
        torch_ok, torch_error = True, ""
    except (RuntimeError, ValueError, IndexError) as exc:  # what torch raises (AvgPool2d on 2-D: IndexError)
        torch_ok, torch_error = False, str(exc).splitlines()[0]
    errors = report.errors
    known = ""
    if torch_ok and errors:
        problems.append(f"checker reports {[(d.code, d.span.line, d.message) for d in errors]} but torch runs")
    elif not torch_ok and not errors:
        problems.append(f"torch raises at line {oracle.where} ({torch_error}) but the checker reports no error")
        if isinstance(oracle.where_node, Res) and oracle.where_node.project and any(getattr(n, "projected", False) for n in report.nodes()):
            known = "projection stride"
    elif not torch_ok:
        # The checker's first error in execution order is where torch raised (lines are unique with sep="nl").
        order = {line: i for i, line in reversed(list(enumerate(oracle.visits)))}
        first = min((d for d in errors if d.span and d.span.line in order), key=lambda d: order[d.span.line], default=None)
        if sep == "nl" and not arch.blocks and (first is None or first.span.line != oracle.where):
            problems.append(f"torch raises at line {oracle.where} ({torch_error}); the checker's first error is "
                            f"{(first.code, first.span.line, first.message) if first else None}")
    else:
        rows = [row for row in report.rows if row.op != "input"]
        ours = [(row.op, row.out_shape, row.params, row.macs) for row in rows]
        if ours != oracle.records:
            diff = [f"#{i} checker {a} torch {b}" for i, (a, b) in enumerate(zip(ours, oracle.records)) if a != b]
            problems.append(f"rows differ ({len(ours)} vs {len(oracle.records)} layers): {diff[:3]}")
        elif report.output_shape != tuple(y.shape[1:]):
            problems.append(f"output {report.output_shape} vs torch {tuple(y.shape[1:])}")
        elif build:
            problems += compare_build(text, rows, oracle, x, y)
    return Outcome(torch_ok, report.ok, len(oracle.records), [d.code for d in report.diagnostics], problems, text,
                   oracle.projections, known)


def compare_build(text: str, rows: list, oracle: TorchOracle, x: "torch.Tensor", y: "torch.Tensor") -> list[str]:
    """archspec.build: each row's module has the oracle's type, shape and params; same function."""
    try:
        net = archspec.build(text)
    except Exception as exc:  # noqa: BLE001 - any failure to build a checked spec is a disagreement
        return [f"archspec.build raises {type(exc).__name__}: {exc}"]
    net.eval().double()  # as the oracle runs
    modules = dict(net.named_modules())
    problems: list[str] = []
    seen: dict[str, tuple[int, ...]] = {}
    hooks = []
    for row, mine in zip(rows, oracle.modules):
        m = modules.get(row.path)
        if m is None:
            return [f"build has no module {row.path}"]
        # archspec's own layers (archspec/pytorch/layers.py) stand for the oracle's class of the same name.
        own = type(m).__module__ == "archspec.pytorch.layers" and type(m).__name__ == type(mine).__name__
        if type(m) is not type(mine) and not own:
            return [f"{row.path}: build made {type(m).__name__}, torch oracle {type(mine).__name__}"]
        if n_params(m) != row.params:
            problems.append(f"{row.path}: build has {n_params(m)} params, checker {row.params}")
        m.load_state_dict(mine.state_dict())
        if isinstance(m, nn.Dropout) and m.p != mine.p:
            problems.append(f"{row.path}: dropout p {m.p} vs {mine.p}")
        hooks.append(m.register_forward_hook(lambda mod, i, o, path=row.path: seen.setdefault(path, tuple(o.shape[1:])) and None))
    try:
        with torch.no_grad():
            out = net(x)
    except Exception as exc:  # noqa: BLE001
        return [f"the built net raises {type(exc).__name__}: {exc}"]
    for h in hooks:
        h.remove()
    for row in rows:
        if seen.get(row.path) != row.out_shape:
            problems.append(f"{row.path}: build gives {seen.get(row.path)}, checker {row.out_shape}")
    if out.shape != y.shape or not torch.allclose(out, y, rtol=1e-4, atol=1e-5):
        problems.append("build computes a different function from the torch oracle")
    return problems


# --------------------------------------------------------------------------- generators: helpers

def window(n: int, k: int, s: int, p: int, d: int = 1, ceil: bool = False) -> int:
    """Output size of a window op (only to steer the generators towards valid choices)."""
    span = n + 2 * p - d * (k - 1) - 1
    if ceil:
        out = -(-span // s) + 1
        if (out - 1) * s >= n + p:
            out -= 1
        return out
    return span // s + 1 if span >= 0 else 0


def divisors(n: int) -> list[int]:
    return [i for i in range(1, n + 1) if n % i == 0]


def draw_pair(draw, lo: int, hi: int, rect_chance: int = 4) -> tuple[int, int]:
    a = draw(st.integers(lo, hi))
    if draw(st.integers(0, rect_chance - 1)) == 0:
        return (a, draw(st.integers(lo, hi)))
    return (a, a)


def draw_activation(draw) -> Layer:
    op = draw(st.sampled_from(ACTIVATIONS))
    if op == "leakyrelu":
        return Layer(op, {"slope": draw(st.sampled_from([0.01, 0.0, 0.1, 0.2, 0.3, 1.5]))})
    if op == "gelu":  # exact, or torch's tanh approximation (timm's GELUTanh)
        return Layer(op, {"tanh": draw(st.booleans())})
    return Layer(op)


def draw_shape_free(draw) -> Layer:
    """A layer that keeps any shape: activation, bn, dropout."""
    kind = draw(st.sampled_from(["act", "act", "bn", "dropout"]))
    if kind == "act":
        return draw_activation(draw)
    if kind == "dropout":
        return Layer("dropout", {"p": draw(st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.9]))})
    return draw_bn(draw)


def draw_bn(draw) -> Layer:
    """`bn`, sometimes with torch's other arguments (GoogLeNet's eps=0.001, a momentum, noaffine)."""
    a: dict[str, Any] = {}
    if draw(st.integers(0, 2)) == 0:
        a["eps"] = draw(st.sampled_from([0.001, 1e-3, 0.1]))
    if draw(st.integers(0, 2)) == 0:
        a["momentum"] = draw(st.sampled_from([0.01, 0.5, 0.0, 1]))
    if draw(st.integers(0, 3)) == 0:
        a["noaffine"] = True
    return Layer("bn", a)


# --------------------------------------------------------------------------- valid flat chains

def convtranspose_text(a: dict) -> str:
    parts = ["convtranspose", str(a["c"]), _pair("k", a["k"])]
    for key, default in (("s", (1, 1)), ("p", (0, 0)), ("op", (0, 0)), ("d", (1, 1))):
        if a[key] != default:
            parts.append(_pair(key, a[key]))
    return " ".join(parts + ([f"g{a['g']}"] if a["g"] != 1 else []) + ([] if a["bias"] else ["nobias"]))


def transposed_size(n: int, a: dict, i: int) -> int:
    return (n - 1) * a["s"][i] - 2 * a["p"][i] + a["d"][i] * (a["k"][i] - 1) + a["op"][i] + 1


def draw_convtranspose(draw, shape: tuple) -> tuple[Layer, tuple] | None:
    if len(shape) != 3:
        return None
    c, h, w = shape
    out = draw(st.integers(1, 8))
    s = draw_pair(draw, 1, 3) if h * w <= 100 else (1, 1)
    d = draw_pair(draw, 1, 2, rect_chance=3)
    a = {"c": out, "k": draw_pair(draw, 1, 4), "s": s, "d": d, "p": draw_pair(draw, 0, 2),
         "op": (draw(st.integers(0, max(s[0], d[0]) - 1)), draw(st.integers(0, max(s[1], d[1]) - 1))),
         "g": draw(st.sampled_from(divisors(math.gcd(c, out)))), "bias": draw(st.booleans())}
    if min(transposed_size(h, a, 0), transposed_size(w, a, 1)) < 1:
        a["p"] = (0, 0)
    return Layer("convtranspose", a), (out, transposed_size(h, a, 0), transposed_size(w, a, 1))


def aligned_convtranspose(draw, c: int) -> list:
    """Keeps [c, H, W]: k odd, p (k-1)/2 at stride 1; or doubles it (k3 s2 p1 op1) and a pool 2 halves it again."""
    if draw(st.booleans()):
        k = draw(st.sampled_from([1, 3, 5]))
        return [Layer("convtranspose", {"c": c, "k": (k, k), "s": (1, 1), "p": (k // 2, k // 2), "op": (0, 0), "d": (1, 1),
                                        "g": draw(st.sampled_from(divisors(c))), "bias": draw(st.booleans())})]
    return [Layer("convtranspose", {"c": c, "k": (3, 3), "s": (2, 2), "p": (1, 1), "op": (1, 1), "d": (1, 1), "g": 1,
                                    "bias": True, "f": 2}), Layer(draw(st.sampled_from(POOLS)), {"k": (0, 0)})]


def convtranspose_fault(draw, shape: tuple) -> list:
    c, h, w = shape
    # Output padding and too small twice each: E110 and E111 are this fault's own codes (E104 and E103 are met elsewhere
    # too), and each must keep its ten cases however many ops the generators draw from.
    kind = draw(st.sampled_from(["output_padding", "too_small", "output_padding", "too_small", "groups", "after_flatten"]))
    a = {"c": draw(st.integers(1, 6)), "k": (1, 1), "s": (1, 1), "p": (0, 0), "op": (0, 0), "d": (1, 1), "g": 1, "bias": True}
    if kind == "output_padding":
        a |= {"k": (3, 3), "s": (draw(st.integers(1, 3)),) * 2, "d": (draw(st.integers(1, 2)),) * 2}
        a["op"] = (max(a["s"][0], a["d"][0]) + draw(st.integers(0, 1)), 0)
    elif kind == "too_small":  # k1 s1: out = H - 2p
        a["p"] = (draw(st.integers(-(-h // 2), h)), 0)
    elif kind == "groups":
        a["g"] = draw(st.sampled_from([g for g in range(2, 9) if c % g or a["c"] % g]))
    else:
        return [Layer("flatten"), Layer("convtranspose", a)]
    return [Layer("convtranspose", a)]


def draw_upsample(draw, shape: tuple) -> tuple[Layer, tuple] | None:
    if len(shape) != 3:
        return None
    c, h, w = shape
    f = draw(st.integers(1, 3)) if h * w <= 64 else 1  # keep the tensors small
    layer = Layer("upsample", {"f": f, "mode": draw(st.sampled_from(["nearest", "bilinear"])), "say_mode": draw(st.booleans())})
    return layer, (c, h * f, w * f)


def valid_conv(draw, shape: tuple[int, int, int]) -> tuple[Layer, tuple]:
    c, h, w = shape
    if draw(st.integers(0, 5)) == 0:  # depthwise (or channel-multiplier) conv
        out, g = c * draw(st.integers(1, 2)), c
    else:
        out = draw(st.integers(1, 12))
        g = draw(st.sampled_from(divisors(math.gcd(c, out))))
    k = draw_pair(draw, 1, 5)
    d = draw_pair(draw, 1, 3, rect_chance=3) if draw(st.integers(0, 3)) == 0 else (1, 1)
    mode = draw(st.sampled_from(["int", "int", "int", "same", "valid"]))
    s = draw_pair(draw, 1, 3) if mode != "same" else (1, 1)
    p: Any = draw_pair(draw, 0, 3) if mode == "int" else mode
    eff = (d[0] * (k[0] - 1) + 1, d[1] * (k[1] - 1) + 1)
    if mode != "same":
        pp = (0, 0) if mode == "valid" else p
        if eff[0] > h + 2 * pp[0] or eff[1] > w + 2 * pp[1]:  # would not fit: pad enough
            p = (max(pp[0], -(-(eff[0] - h) // 2)), max(pp[1], -(-(eff[1] - w) // 2)))
    a = {"c": out, "k": k, "s": s, "p": p, "d": d, "g": g, "bias": draw(st.booleans()),
         "show_p0": draw(st.integers(0, 5)) == 0}
    if p == "same":
        return Layer("conv", a), (out, h, w)
    pp = (0, 0) if p == "valid" else p
    return Layer("conv", a), (out, window(h, k[0], s[0], pp[0], d[0]), window(w, k[1], s[1], pp[1], d[1]))


def valid_pool(draw, shape: tuple[int, int, int]) -> tuple[Layer, tuple]:
    c, h, w = shape
    k = draw_pair(draw, 1, 4)
    s = draw_pair(draw, 1, 3) if draw(st.booleans()) else None
    p = (draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[1] // 2)))
    ceil = draw(st.integers(0, 2)) == 0
    op = draw(st.sampled_from(POOLS))
    # maxpool's dilation d (the window spans d*(k-1)+1), avgpool's `noinclude` (count_include_pad=False)
    d = draw_pair(draw, 1, 2) if op == "maxpool" and draw(st.booleans()) else (1, 1)
    ss = s or k
    if window(h, k[0], ss[0], p[0], d[0], ceil) < 1 or window(w, k[1], ss[1], p[1], d[1], ceil) < 1:
        d = (1, 1)
        k = (min(k[0], h), min(k[1], w))
        p = (min(p[0], k[0] // 2), min(p[1], k[1] // 2))
        s = None if s is None else s
        ss = s or k
    out = (c, window(h, k[0], ss[0], p[0], d[0], ceil), window(w, k[1], ss[1], p[1], d[1], ceil))
    extra = {"d": d} if op == "maxpool" else {"noinclude": draw(st.booleans())}
    return Layer(op, {"k": k, "s": s, "p": p, "ceil": ceil, **extra}), out


def drawn_ops() -> list[str]:
    """The ops whose oracle entry draws them (the generators below draw the others themselves)."""
    return [op for op, entry in ORACLE.items() if entry.draw is not None]


def registry_layer(draw, shape: tuple) -> tuple[Layer, tuple] | None:
    """A valid layer of an op from its oracle entry, or None when that op does not take this rank."""
    ops = drawn_ops()
    return ORACLE[draw(st.sampled_from(ops))].draw(draw, shape) if ops else None


def valid_layer(draw, shape: tuple) -> tuple[Layer, tuple]:
    # One layer in five from the registry's oracle entries: with 40-odd ops, each is still drawn a few times in 600 nets
    if draw(st.integers(0, 4)) == 0:
        drawn = registry_layer(draw, shape)
        if drawn is not None:
            return drawn
    if len(shape) == 3:
        kind = draw(st.sampled_from(["conv"] * 4 + ["pool"] * 2 + ["adaptive", "gap", "free", "free", "free", "flatten"]))
        if kind == "conv":
            return valid_conv(draw, shape)
        if kind == "pool":
            return valid_pool(draw, shape)
        if kind == "adaptive":
            size = draw_pair(draw, 1, 4)
            return Layer("adaptiveavgpool", {"size": size}), (shape[0], *size)
        if kind == "gap":
            return Layer("gap"), (shape[0], 1, 1)
        if kind == "flatten":
            return Layer("flatten"), (math.prod(shape),)
        return draw_shape_free(draw), shape
    kind = draw(st.sampled_from(["linear", "linear", "free", "flatten"]))
    if kind == "linear":
        n = draw(st.integers(1, 16))
        return Layer("linear", {"n": n, "bias": draw(st.booleans())}), (n,)
    if kind == "flatten":
        return Layer("flatten"), shape
    return draw_shape_free(draw), shape


@st.composite
def flat_archs(draw) -> Arch:
    if draw(st.integers(0, 9)) == 0:
        shape: tuple = (draw(st.integers(1, 24)),)
    else:
        shape = (draw(st.integers(1, 6)), draw(st.integers(1, 20)), draw(st.integers(1, 20)))
    arch = Arch(shape, [])
    for _ in range(draw(st.integers(1, 9))):
        layer, shape = valid_layer(draw, shape)
        arch.body.append(layer)
    return arch


# --------------------------------------------------------------------------- valid structured nets

def aligned_conv(draw, cin: int, cout: int, s: int, groups: bool = True) -> Layer:
    """A conv whose output is (H-1)//s + 1 for any H: odd kernel, padding d*(k-1)/2 (or `p same`)."""
    if s == 1 and draw(st.integers(0, 4)) == 0:
        k = draw_pair(draw, 1, 4)
        p: Any = "same"
        d = (draw(st.integers(1, 2)),) * 2
    else:
        k = (draw(st.sampled_from([1, 3, 5])), draw(st.sampled_from([1, 3, 5])))
        if draw(st.booleans()):
            k = (k[0], k[0])
        d = (draw(st.sampled_from([1, 1, 2])),) * 2
        p = (d[0] * (k[0] - 1) // 2, d[1] * (k[1] - 1) // 2)
    g = draw(st.sampled_from(divisors(math.gcd(cin, cout)))) if groups else 1
    return Layer("conv", {"c": cout, "k": k, "s": (s, s), "p": p, "d": d, "g": g, "bias": draw(st.booleans())})


def aligned_pool(draw, s: int) -> Layer:
    k = draw(st.sampled_from([1, 3, 3, 5]))
    return Layer(draw(st.sampled_from(POOLS)), {"k": (k, k), "s": (s, s), "p": (k // 2, k // 2)})


def aligned_chain(draw, cin: int, s: int, cout: int, groups: bool = True) -> list:
    """Plain layers mapping [cin, H, W] to [cout, (H-1)//s+1, ...]."""
    aligned_ops = [op for op, entry in ORACLE.items() if entry.aligned is not None]
    kinds = draw(st.lists(st.sampled_from(["conv", "conv", "pool", "free"] + (["op"] if aligned_ops else [])), max_size=4))
    if cin != cout and "conv" not in kinds:
        kinds.append("conv")
    if s > 1 and not ({"conv", "pool"} & set(kinds)):
        kinds.append(draw(st.sampled_from(["conv", "pool"])))
    strided = draw(st.sampled_from([i for i, k in enumerate(kinds) if k in ("conv", "pool")])) if s > 1 else -1
    last_conv = max((i for i, k in enumerate(kinds) if k == "conv"), default=-1)
    out, c = [], cin
    for i, kind in enumerate(kinds):
        stride = s if i == strided else 1
        if kind == "conv":
            co = cout if i == last_conv else draw(st.integers(1, 12))
            out.append(aligned_conv(draw, c, co, stride, groups))
            c = co
        elif kind == "pool":
            out.append(aligned_pool(draw, stride))
        elif kind == "op":  # an op from the registry that keeps [c, H, W]
            out += ORACLE[draw(st.sampled_from(aligned_ops))].aligned(draw, c)
            if out[-1].a.get("k") == (0, 0):  # a pool that undoes the upsampling before it: window F, stride F
                f = out[-2].a["f"]
                out[-1].a["k"] = (f, f)
        else:
            out.append(draw_shape_free(draw))
    return out


def structured_part(draw, cin: int, s: int, cout: int, depth: int) -> list:
    """Nodes mapping [cin, H, W] to [cout, (H-1)//s+1, ...], maybe a residual or branches."""
    kinds = ["chain"] + (["res", "project", "shortcut", "concat", "add"] if depth > 0 else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "res":  # identity residual: the body keeps the shape; then fix stride and channels
        return [Res(structured_seq(draw, cin, 1, cin, depth - 1))] + (aligned_chain(draw, cin, s, cout) if (s, cout) != (1, cin) else [])
    if kind == "project":
        return [Res(structured_seq(draw, cin, s, cout, depth - 1), project=True)]
    if kind == "shortcut":
        short = [] if (s, cout) == (1, cin) and draw(st.booleans()) else structured_seq(draw, cin, s, cout, depth - 1)
        return [Res(structured_seq(draw, cin, s, cout, depth - 1), shortcut=short)]
    if kind == "add":
        n = draw(st.integers(2, 3))
        branches = [[] if (s, cout) == (1, cin) and draw(st.integers(0, 2)) == 0 else structured_seq(draw, cin, s, cout, depth - 1)
                    for _ in range(n)]
        return [Branch("add", branches)]
    if kind == "concat":
        branches, total = [], 0
        for _ in range(draw(st.integers(2, 3))):
            if s == 1 and draw(st.integers(0, 3)) == 0:
                branches.append([])
                total += cin
            else:
                co = draw(st.integers(1, 8))
                branches.append(structured_seq(draw, cin, s, co, depth - 1))
                total += co
        return [Branch("concat", branches)] + (aligned_chain(draw, total, 1, cout) if total != cout else [])
    return aligned_chain(draw, cin, s, cout)


def structured_seq(draw, cin: int, s: int, cout: int, depth: int) -> list:
    parts = draw(st.integers(1, 2))
    at = draw(st.integers(0, parts - 1))
    items, c = [], cin
    for i in range(parts):
        co = cout if i == parts - 1 else draw(st.integers(1, 10))
        items += structured_part(draw, c, s if i == at else 1, co, depth)
        c = co
    return items


def block_template(draw, name: str) -> tuple[Block, str]:
    """A block `name(c, s=1)` valid for any input channels; returns it and its output-channel expression."""
    first = draw(st.sampled_from(["c", "c*2", "c+1"]))
    k = draw(st.sampled_from([1, 3, 5]))
    body: list = [Layer("conv", {"c": X(first), "k": (k, k), "s": X("s"), "p": (k // 2, k // 2), "bias": draw(st.booleans())})]
    cur = first
    for piece in draw(st.lists(st.sampled_from(["free", "free", "dw", "res", "project", "concat", "conv"]), max_size=4)):
        if piece == "free":
            body.append(draw_shape_free(draw))
        elif piece == "dw":  # depthwise: groups = channels, from the expression
            body.append(Layer("conv", {"c": X(cur), "k": (3, 3), "p": (1, 1), "g": X(cur), "bias": False}))
        elif piece == "res":
            body.append(Res([Layer("conv", {"c": X(cur), "k": (3, 3), "p": (1, 1), "bias": False}), Layer("bn")]))
        elif piece == "project":
            new = draw(st.sampled_from(["c", "c*2", "c+3"]))
            body.append(Res([Layer("conv", {"c": X(new), "k": (3, 3), "s": X("s"), "p": (1, 1), "bias": False}),
                             Layer("bn"), draw_activation(draw), Layer("conv", {"c": X(new), "k": (3, 3), "p": (1, 1)})],
                            project=True))
            cur = new
        elif piece == "concat":
            body.append(Branch("concat", [[Layer("conv", {"c": X("c"), "k": (1, 1)})], []]))
            cur = f"({cur})+c"
        else:
            new = draw(st.sampled_from(["c", "c*2", "c//2+1"]))
            body.append(Layer("conv", {"c": X(new), "k": (3, 3), "p": (1, 1)}))
            cur = new
    return Block(name, [("c", None), ("s", 1)], body), cur


@st.composite
def structured_archs(draw) -> Arch:
    c = draw(st.integers(1, 6))
    arch = Arch((c, draw(st.integers(1, 16)), draw(st.integers(1, 16))), [])
    templates = [block_template(draw, f"b{i + 1}") for i in range(draw(st.integers(0, 2)))]
    arch.blocks = [b for b, _ in templates]
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["part", "part", "part", "repeat"] + ["call"] * (2 if templates else 0)))
        if kind == "call":
            block, out = draw(st.sampled_from(templates))
            cc, s = draw(st.integers(1, 8)), draw(st.sampled_from([1, 1, 2]))
            form = draw(st.integers(0, 3))
            pos, kw = [((cc,), {}), ((cc, s), {}), ((cc,), {"s": s}), ((), {"c": cc, "s": s})][form]
            call = Call(block, pos, kw, times=draw(st.integers(1, 2)))
            if draw(st.integers(0, 3)) == 0:
                arch.body.append(Repeat(draw(st.integers(1, 2)), [call]))
            else:
                arch.body.append(call)
            c = X(out).ev({"c": cc, "s": s})
        elif kind == "repeat":
            c2 = draw(st.integers(1, 10))
            body = [aligned_conv(draw, c, c2, 1, groups=False)] + structured_seq(draw, c2, draw(st.sampled_from([1, 2])), c2, 1)
            arch.body.append(Repeat(draw(st.integers(1, 3)), body))
            c = c2
        else:
            co = draw(st.integers(1, 10))
            arch.body += structured_seq(draw, c, draw(st.sampled_from([1, 1, 2, 3])), co, 2)
            c = co
    if draw(st.booleans()):
        arch.body += ([Layer("gap")] if draw(st.booleans()) else []) + [Layer("flatten"), Layer("linear", {"n": draw(st.integers(1, 10))})]
    return arch


# --------------------------------------------------------------------------- invalid architectures

LEGACY_FAULTS = ["kernel_too_large", "pool_too_small", "pool_padding", "same_with_stride", "groups", "after_flatten",
                 "residual_mismatch", "branch_mismatch"]
# ...and one per op whose oracle entry knows how torch refuses it.
FAULTS = LEGACY_FAULTS + [op for op, entry in ORACLE.items() if entry.fault is not None]


def fault_layers(draw, kind: str, shape: tuple[int, int, int]) -> list:
    c, h, w = shape
    if kind in ORACLE:
        return ORACLE[kind].fault(draw, shape)
    if kind == "kernel_too_large":
        d = draw(st.sampled_from([1, 1, 2]))
        mode = draw(st.sampled_from(["int", "valid"]))
        p = draw(st.integers(0, 2)) if mode == "int" else 0
        k = (h + 2 * p - 1) // d + 2 + draw(st.integers(0, 2))
        kk = (k, draw(st.integers(1, 3))) if draw(st.booleans()) else (k, k)
        ww = draw(st.integers(1, 3))
        return [Layer("conv", {"c": draw(st.integers(1, 8)), "k": kk, "p": (p, p) if mode == "int" else "valid",
                               "d": (d, 1), "s": (draw(st.integers(1, 2)), ww)})]
    if kind == "pool_too_small":
        p = draw(st.integers(0, 2))
        k = h + 2 * p + 1 + draw(st.integers(0, 2))
        return [Layer(draw(st.sampled_from(POOLS)), {"k": (k, min(k, w)), "p": (p, 0), "ceil": draw(st.booleans()),
                                                       "s": draw(st.sampled_from([None, (1, 1), (2, 2)]))})]
    if kind == "pool_padding":
        k = draw_pair(draw, 1, 4)
        p = (k[0] // 2 + draw(st.integers(1, 2)), draw(st.integers(0, k[1] // 2 + 1)))
        return [Layer(draw(st.sampled_from(POOLS)), {"k": k, "p": p})]
    if kind == "same_with_stride":
        s = draw(st.sampled_from([(2, 2), (1, 2), (3, 1)]))
        return [Layer("conv", {"c": draw(st.integers(1, 8)), "k": draw_pair(draw, 1, 5), "s": s, "p": "same"})]
    if kind == "groups":
        out = draw(st.integers(1, 12))
        bad = [g for g in range(2, 9) if c % g or out % g]
        return [Layer("conv", {"c": out, "k": (1, 1), "g": draw(st.sampled_from(bad))})]
    if kind == "after_flatten":
        between = [draw_shape_free(draw) for _ in range(draw(st.integers(0, 2)))]
        op = draw(st.sampled_from(["conv", "conv", "maxpool", "avgpool", "adaptiveavgpool"]))  # not gap: see the top
        a = {"c": 4, "k": draw_pair(draw, 1, 3)} if op == "conv" else {"size": draw_pair(draw, 1, 3)} if op == "adaptiveavgpool" \
            else {"k": draw_pair(draw, 1, 3)}
        return [Layer("flatten")] + between + [Layer(op, a)]
    if kind == "residual_mismatch":
        co = draw(st.integers(1, 8))
        s = draw(st.sampled_from([1, 2]))
        body = [Layer("conv", {"c": co, "k": (3, 3), "s": (s, s), "p": (1, 1)}), draw_shape_free(draw)]
        if draw(st.booleans()):
            return [Res(body)]
        return [Res(body, shortcut=[Layer("conv", {"c": draw(st.integers(1, 8)), "k": (1, 1)})])]
    # branch_mismatch
    mode = draw(st.sampled_from(["concat", "add"]))
    a = [Layer("conv", {"c": draw(st.integers(1, 8)), "k": (3, 3), "p": (1, 1)})]
    b = [Layer("conv", {"c": draw(st.integers(1, 8)), "k": (3, 3), "s": (draw(st.sampled_from([1, 2])),) * 2, "p": (1, 1)})]
    return [Branch(mode, [a, b] if draw(st.booleans()) else [b, [], a])]


@st.composite
def invalid_archs(draw) -> Arch:
    shape: tuple = (draw(st.integers(1, 6)), draw(st.integers(1, 12)), draw(st.integers(1, 12)))
    arch = Arch(shape, [], fault=draw(st.sampled_from(FAULTS)))
    for _ in range(draw(st.integers(0, 4))):
        layer, new = valid_layer(draw, shape)
        if len(new) != 3:  # keep the prefix on images
            continue
        arch.body.append(layer)
        shape = new
    fault = fault_layers(draw, arch.fault, shape)
    if draw(st.integers(0, 3)) == 0 and arch.fault != "after_flatten":  # the fault inside a structure
        fault = [draw(st.sampled_from([Res(fault, project=True), Res(fault, shortcut=[]), Branch("concat", [fault, []])]))]
    arch.body += fault
    for _ in range(draw(st.integers(0, 2))):  # more layers after it: torch never gets there
        arch.body.append(draw(st.sampled_from([Layer("conv", {"c": 3, "k": (1, 1)}), Layer("relu"), Layer("bn"), Layer("flatten")])))
    return arch


# --------------------------------------------------------------------------- the tests

def constructs(arch: Arch) -> set[str]:
    """Which language constructs an architecture uses (for the coverage counts)."""
    found: set[str] = set()

    def walk(items: list) -> None:
        for n in items:
            if isinstance(n, Layer):
                found.add(n.op)
                if n.op == "conv" and any(isinstance(v, X) for v in n.a.values()):
                    found.add("conv with {expr}")
            elif isinstance(n, Res):
                found.add("residual project" if n.project else "residual shortcut" if n.shortcut is not None else "residual")
                walk(n.body)
                walk(n.shortcut or [])
            elif isinstance(n, Branch):
                found.add(n.mode + (" with identity" if [] in n.branches else ""))
                for b in n.branches:
                    walk(b)
            elif isinstance(n, Repeat):
                found.add("repeat")
                walk(n.body)
            elif isinstance(n, Call):
                found.add("block call")  # and each of its forms, counted on its own
                found.update(["block call * n"] * (n.times > 1) + ["block call kw"] * bool(n.kw))
                walk(n.block.body)

    walk(arch.body)
    return found


def run_property(strategy, n: int, stats: Counter, sep_choices=("nl", "pipe"), derandomize: bool = True,
                 build: bool = True, strict: bool = True, failures: list | None = None, seed: int | None = None) -> None:
    """Run `compare` on `n` generated architectures, counting; fail (strict) on any disagreement."""

    @settings(max_examples=n, deadline=None, derandomize=derandomize, database=None,
              suppress_health_check=list(HealthCheck))
    @given(arch=strategy, sep=st.sampled_from(sep_choices))
    def prop(arch: Arch, sep: str) -> None:
        out = compare(arch, sep=sep, build=build)
        stats["architectures"] += 1
        stats["layers"] += out.layers
        stats["torch runs" if out.torch_ok else "torch raises"] += 1
        if arch.fault:
            stats[f"fault {arch.fault}"] += 1
        for code in set(out.codes):
            stats[code] += 1
        for construct in constructs(arch):
            stats[construct] += 1
        if out.torch_ok and out.projections:
            stats["projection added"] += 1
        if out.problems:
            stats["disagreements"] += 1
            if out.known:
                stats[f"known: {out.known}"] += 1
            if failures is not None:
                failures.append((out.text, out.problems))
        if strict:
            assert not out.problems, f"{out.problems}\n--- architecture ---\n{out.text}"

    if seed is not None:
        prop = hypothesis.seed(seed)(prop)
    prop()


def test_random_flat_chains_agree_with_torch():
    stats: Counter = Counter()
    run_property(flat_archs(), 600, stats)
    print(dict(stats))
    assert stats["architectures"] >= 580 and stats["disagreements"] == 0
    assert stats["torch runs"] >= 550  # the generator makes valid ones; a few may not be
    assert stats["layers"] >= 2000
    for op in ORACLE:  # every registered op is generated (test_ops_registry: ORACLE covers the registry)
        assert op == "input" or stats[op] >= 3, op


def test_random_structured_nets_agree_with_torch():
    stats: Counter = Counter()
    run_property(structured_archs(), 300, stats)
    print(dict(stats))
    assert stats["architectures"] >= 290 and stats["disagreements"] == 0
    assert stats["torch runs"] == stats["architectures"]  # every structured one is valid by construction
    for construct in ("residual", "residual project", "projection added", "residual shortcut", "concat", "add",
                      "concat with identity", "add with identity", "repeat", "block call", "block call * n",
                      "block call kw", "conv with {expr}", "maxpool", "avgpool", "bn", "dropout", "linear", "upsample",
                      "convtranspose", "groupnorm", "dropout2d", "identity"):
        assert stats[construct] >= (8 if construct == "add with identity" else 12), construct


def test_random_invalid_nets_fail_where_torch_fails():
    stats: Counter = Counter()
    # 1200: every op's own fault codes keep ten cases each as the registry grows (40-odd ops share the draws)
    run_property(invalid_archs(), 1200, stats, sep_choices=("nl",), build=False)
    print(dict(stats))
    assert stats["architectures"] >= 1170 and stats["disagreements"] == 0
    assert stats["torch raises"] >= 975
    for fault in FAULTS:
        assert stats[f"fault {fault}"] >= 360 // len(FAULTS), fault  # at least 30% of its fair share of 1200
    for code in ("E101", "E102", "E103", "E104", "E105", "E106", "E107", "E108"):
        assert stats[code] >= 360 // len(FAULTS), code
    for op, entry in ORACLE.items():
        for code in entry.fault_codes:
            assert stats[code] >= 10, (op, code)


# --------------------------------------------------------------------------- W201 against coverage

_DROPS = re.compile(r"drops the last (?:(\d+) rows?)?(?: and )?(?:(\d+) columns?)?")


def trailing_uncovered(layer: Layer, h: int, w: int) -> tuple[int, int]:
    """Rows and columns at the end of the input that no window reads: torch's input gradient is
    zero there (all-ones conv weights; pools measured with an AvgPool2d of the same geometry)."""
    a = layer.a
    if layer.op == "conv":
        m = nn.Conv2d(1, 1, a["k"], stride=a.get("s", (1, 1)), padding=a.get("p", (0, 0)), dilation=a.get("d", (1, 1)), bias=False)
        nn.init.ones_(m.weight)
    else:
        m = nn.AvgPool2d(a["k"], stride=a.get("s") or a["k"], padding=a.get("p", (0, 0)), ceil_mode=a.get("ceil", False))
    x = torch.ones(1, 1, h, w, requires_grad=True)
    m(x).sum().backward()
    covered_rows = (x.grad[0, 0] != 0).any(dim=1).tolist()
    covered_cols = (x.grad[0, 0] != 0).any(dim=0).tolist()
    return (covered_rows[::-1].index(True) if True in covered_rows else h,
            covered_cols[::-1].index(True) if True in covered_cols else w)


@st.composite
def single_windows(draw) -> Arch:
    shape = (1, draw(st.integers(1, 20)), draw(st.integers(1, 20)))
    layer, _ = valid_conv(draw, shape) if draw(st.booleans()) else valid_pool(draw, shape)
    if layer.op == "conv":
        layer.a["g"], layer.a["c"] = 1, 1
    a = layer.a
    stride = a.get("s") or a["k"]
    dil = a.get("d", (1, 1))
    # Windows with holes (dilation) or gaps between them (kernel < stride) skip rows everywhere,
    # not just at the end: not W201's subject.
    assume(dil == (1, 1) and all(a["k"][i] >= stride[i] for i in (0, 1)))
    return Arch(shape, [layer])


def test_w201_names_exactly_the_rows_no_window_reads():
    """W201 ("drops the last N rows and M columns") fires exactly when torch's input gradient is
    zero on the last rows/columns of the input, and names how many (windows that overlap in the
    padding included; `ceil` pools keep their partial windows)."""
    stats: Counter = Counter()

    @settings(max_examples=300, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    @given(arch=single_windows())
    def prop(arch: Arch) -> None:
        layer = arch.body[0]
        report = archspec.check(Renderer().render(arch), classes=None)
        assert report.ok
        w201 = [d for d in report.diagnostics if d.code == "W201"]
        claimed = (0, 0)
        if w201:
            m = _DROPS.search(w201[0].message)
            claimed = (int(m[1] or 0), int(m[2] or 0))
        got = trailing_uncovered(layer, *arch.input[1:])
        stats["architectures"] += 1
        stats["W201"] += bool(w201)
        assert claimed == got, f"checker says {claimed} rows/columns dropped, torch reads all but the last {got}: {leaf_text(layer)} on {arch.input}"

    prop()
    print(dict(stats))
    assert stats["architectures"] >= 280 and stats["W201"] >= 30


# --------------------------------------------------------------------------- fixed cases

def conv(c, k, **a) -> Layer:
    return Layer("conv", {"c": c, "k": (k, k) if isinstance(k, int) else k, **a})


FIXED = {
    "asymmetric `p same` padding": Arch((3, 8, 8), [conv(4, 3, p="same", d=(2, 2)), conv(4, 2, p="same"),
                                                    conv(4, (4, 1), p="same", d=(1, 3))]),
    "TensorFlow SAME: pad right and bottom, then a strided conv": Arch((3, 7, 8), [
        Layer("pad", {"sides": (0, 1, 0, 1), "value": 0.0}), conv(4, 3, s=(2, 2)),
        Layer("pad", {"sides": (2, 0, 1, 3), "value": -1.5}), Layer("maxpool", {"k": (3, 3), "s": (2, 2)})]),
    "ceil windows": Arch((2, 5, 7), [Layer("maxpool", {"k": (2, 2), "s": (2, 2), "ceil": True}),
                                     Layer("avgpool", {"k": (3, 3), "s": (2, 2), "p": (1, 1), "ceil": True}),
                                     Layer("maxpool", {"k": (2, 2), "ceil": True})]),
    "ceil on 1x1 keeps 1x1": Arch((1, 1, 1), [Layer("maxpool", {"k": (2, 2), "ceil": True}), conv(2, 3, p=(1, 1))]),
    "grouped and depthwise": Arch((6, 9, 9), [conv(6, 3, g=6, s=(2, 2), bias=False), conv(12, 1, g=3), Layer("bn"),
                                              Layer("leakyrelu", {"slope": 0.3})]),
    "projection and identity branch": Arch((4, 6, 6), [
        Res([conv(8, 3, s=(2, 2), p=(1, 1)), Layer("bn"), Layer("relu")], project=True),
        Branch("concat", [[], [conv(2, 1)], [Layer("avgpool", {"k": (3, 3), "s": (1, 1), "p": (1, 1)})]])]),
    "features": Arch((12,), [Layer("linear", {"n": 5}), Layer("bn"), Layer("softmax"), Layer("flatten"),
                             Layer("linear", {"n": 3, "bias": False})]),
    "upsample, then pool back in a projected residual": Arch((2, 5, 3), [
        Layer("upsample", {"f": 3, "mode": "bilinear"}), conv(3, 2),
        Res([Layer("upsample", {"f": 2, "mode": "nearest"}), Layer("maxpool", {"k": (2, 2)}), conv(4, 3, s=(2, 2), p=(1, 1))],
            project=True)]),
    "empty residual body: x + x": Arch((3, 4, 4), [Res([]), Res([], shortcut=[conv(3, 1)])]),
    "ECA's channel conv at every pixel and after gap, its kernel wider than the channels": Arch((4, 3, 5), [
        Layer("chanconv", {"k": 3}), Layer("chanconv", {"k": 9}), Layer("gap"), Layer("chanconv", {"k": 5}), Layer("sigmoid")]),
    "ConvNeXt-V2's MLP: global response norm between the 1x1 convs": Arch((4, 5, 7), [
        Res([conv(4, 3, p=(1, 1), g=4), Layer("layernorm"), conv(16, 1), Layer("gelu", {"tanh": True}), Layer("grn"), conv(4, 1)]),
        Layer("grn", {"eps": 1e-3}), Layer("maxpool", {"k": (2, 2)}), Layer("grn")]),
    "timm's RMS-norm ConvNeXt: rmsnorm on images and on features": Arch((4, 5, 7), [
        conv(8, 2, s=(2, 2)), Layer("rmsnorm"), Res([conv(8, 3, p=(1, 1), g=8), Layer("rmsnorm", {"eps": 0.1}), conv(16, 1),
                                                     Layer("gelu"), conv(8, 1)]),
        Layer("gap"), Layer("flatten"), Layer("rmsnorm", {"eps": 1e-5}), Layer("linear", {"n": 3})]),
}


# DenseNet's transition halves whatever reaches it: `conv {in.c // 2} k1`, inside a block and out.
TRANSITION = Block("transition", [], [Layer("bn"), Layer("relu"), conv(X("in.c // 2"), 1, bias=False),
                                      Layer("avgpool", {"k": (2, 2), "s": (2, 2)})])
FIXED["in.* in a DenseNet transition"] = Arch(
    (3, 16, 16), [conv(24, 3, p=(1, 1)), Call(TRANSITION), conv(X("in.c * 3"), 3, p=(1, 1)), Call(TRANSITION),
                  conv(X("in.h + in.w"), 1), Layer("flatten"), Layer("linear", {"n": X("in.f // 4")})],
    blocks=[TRANSITION])
FIXED["in.* with bn and pool arguments"] = Arch(
    (4, 9, 9), [Layer("bn", {"eps": 0.001, "momentum": 0.01, "noaffine": True}), Layer("maxpool", {"k": (3, 3), "s": (1, 1), "p": (1, 1), "d": (2, 2)}),
                Layer("avgpool", {"k": (3, 3), "s": (2, 2), "p": (1, 1), "noinclude": True, "ceil": True}),
                conv(X("in.c * in.w"), 1), Layer("bn", {"eps": 0.001})])


@pytest.mark.parametrize("name", list(FIXED))
def test_fixed_corners_agree(name):
    out = compare(FIXED[name])
    assert out.torch_ok and out.checker_ok and not out.problems, (out.problems, out.text)


def test_gap_after_flatten_is_a_deliberate_error():
    """Why the generators leave it out: torch runs AdaptiveAvgPool2d(1) on [B, F] (as an unbatched
    HxW image, averaging the batch away), the checker reports E103 on purpose."""
    assert tuple(nn.AdaptiveAvgPool2d(1)(torch.randn(2, 5)).shape) == (1, 1)
    assert [d.code for d in archspec.check("input 3x4x4\nflatten\ngap\n", classes=None).errors] == ["E103"]


@pytest.mark.parametrize("eps", [None, 1e-3])
def test_grn_on_features_fails_where_torch_fails(eps):
    """`grn` after `flatten`: the oracle's GRN (a sum over H and W) raises on [B, F] where the checker reports E103. A fixed
    case rather than a random fault: each fault drawn among 800 networks takes a share from the others' codes."""
    out = compare(Arch((4, 5, 6), [conv(6, 3), Layer("flatten"), Layer("grn", {} if eps is None else {"eps": eps})]))
    assert not out.torch_ok and not out.checker_ok and out.codes == ["E103"] and not out.problems, (out.problems, out.text)


def test_projection_uses_the_body_stride():
    """`residual project { conv 8 k3 }` on 3x5x5: the body shrinks 5x5 -> 3x3 without striding."""
    out = compare(Arch((3, 5, 5), [Res([conv(8, 3)], project=True)]))
    assert not out.torch_ok
    assert "E107" in out.codes and not out.problems, out.problems


# --------------------------------------------------------------------------- joins
# Each join's meaning written here in torch, independently of archspec's runtime: a network using
# the join, and the torch expression its join must equal, over the built net's own bodies (`m`
# maps module paths to modules). tests/test_ops_registry.py requires an entry for every join.

@dataclass
class JoinOracle:
    text: str
    reference: Callable[[dict[str, nn.Module], "torch.Tensor"], "torch.Tensor"]
    join: str  # the module path of the join


JOIN_ORACLE: dict[str, JoinOracle] = {
    "concat": JoinOracle("input 3x8x8\nconcat {} { conv 4 k3 p1 } { maxpool 3 s1 p1 | conv 2 k1 }\n",
                         lambda m, x: torch.cat([x, m["concat1.branch2"](x), m["concat1.branch3"](x)], dim=1), "concat1"),
    "add": JoinOracle("input 3x8x8\nadd { conv 5 k3 p1 } { conv 5 k1 | bn }\n",
                      lambda m, x: m["add1.branch1"](x) + m["add1.branch2"](x), "add1"),
    "residual": JoinOracle("input 4x8x8\nresidual project { conv 6 k3 s2 p1 | bn | relu }\n",
                           # torchvision's downsample: a 1x1 conv with the body's stride, no bias, and bn
                           lambda m, x: m["res1.body"](x) + m["res1.shortcut.bn1"](nn.functional.conv2d(
                               x, m["res1.shortcut.conv1"].weight, stride=2)), "res1"),
    # torch's broadcasting: a [B, 4, 1, 1] gate (squeeze-and-excitation) and a [B, 4, 1, 6] one scale [B, 4, 6, 6]
    "mul": JoinOracle("input 4x6x6\nmul {} { gap | conv 2 k1 | relu | conv 4 k1 | sigmoid } { adaptiveavgpool 1x6 }\n",
                      lambda m, x: x * m["mul1.branch2"](x) * m["mul1.branch3"](x), "mul1"),
    # ShuffleNetV2's unit: half the channels as they are, the other half through the branch (torchvision's x.chunk(2, dim=1))
    "split": JoinOracle("input 6x6x6\nsplit {} { conv 3 k1 | bn | relu | conv 3 k3 p1 g3 | bn } { conv 5 k1 }\n",
                        lambda m, x: torch.cat([x[:, :2], m["split1.branch2"](x[:, 2:4]), m["split1.branch3"](x[:, 4:])], dim=1),
                        "split1"),
    # DeepLabV3's image pooling (torchvision's ASPPPooling) inside a head resized back to the input's size
    "resize": JoinOracle("input 3x13x10\nresize { conv 4 k3 s2 p1 | concat { conv 2 k1 } { resize { gap | conv 2 k1 nobias | bn | relu } } }\n",
                         lambda m, x: nn.functional.interpolate(_aspp(m, m["resize1.body.conv1"](x)), size=(13, 10),
                                                                mode="bilinear", align_corners=False), "resize1"),
    # GhostNetV2's attention gate: computed at half the size (7x9 -> 3x4), back to 7x9 by nearest neighbour (torch's
    # floor(i * in / out) picks rows 0,0,0,1,1,2,2), times the input
    "resize nearest": JoinOracle("input 3x7x9\nmul {} { resize nearest { avgpool 2 | conv 3 k1 | sigmoid } }\n",
                                 lambda m, x: x * nn.functional.interpolate(
                                     m["mul1.branch2.resize1.body.conv1"](nn.functional.avg_pool2d(x, 2)).sigmoid(),
                                     size=(7, 9), mode="nearest"), "mul1.branch2.resize1"),
    # the unpadded U-Net's skip: the 10x9 map center-cropped to the 6x4 path's size (an odd margin rounds the top down)
    "crop": JoinOracle("input 3x10x9\ncrop {} { conv 2 k4 | relu | conv 3 k1 }\n",
                       lambda m, x: torch.cat([x[:, :, 1:8, 1:7], m["crop1.branch2"](x)], dim=1), "crop1"),
    # an auxiliary head in eval: the identity on the main path (training mode: tests/test_aux.py)
    "aux": JoinOracle("input 4x6x6\naux 0.3 { conv 4 k3 p1 | bn }\n", lambda m, x: x, "aux1"),
    # SKNet / ResNeSt attention: 3 branches (one the input itself), weights in 2 cardinal groups as timm's rSoftMax
    "select": JoinOracle("input 4x6x6\nselect g2 { conv 4 k3 p1 | bn | relu } { conv 4 k3 p2 d2 } {} "
                         "attend { gap | conv 6 k1 | bn | relu | conv 12 k1 g2 }\n", lambda m, x: _select(m, x), "select1"),
}


def _aspp(m: dict[str, nn.Module], x: "torch.Tensor") -> "torch.Tensor":
    """torchvision's ASPPPooling next to a 1x1 branch: pool, conv, bn, relu, upsampled to the map's size."""
    pool = "resize1.body.concat1.branch2.resize1.body."
    pooled = m[pool + "bn1"](m[pool + "conv1"](nn.functional.adaptive_avg_pool2d(x, 1))).relu()
    pooled = nn.functional.interpolate(pooled, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return torch.cat([m["resize1.body.concat1.branch1"](x), pooled], dim=1)


def _select(m: dict[str, nn.Module], x: "torch.Tensor") -> "torch.Tensor":
    """timm's split attention (ResNeSt's rSoftMax with cardinality 2, radix 3) over three branches."""
    outs = [m["select1.branch1"](x), m["select1.branch2"](x), x]
    a = m["select1.attention"](outs[0] + outs[1] + outs[2])
    a = torch.softmax(a.view(x.shape[0], 2, 3, -1).transpose(1, 2), dim=1).reshape(x.shape[0], 3, -1, 1, 1)
    return sum(a[:, i] * outs[i] for i in range(3))


@pytest.mark.parametrize("word", list(JOIN_ORACLE))
def test_each_join_computes_what_torch_computes(word):
    """The checker's shape and params, the built module and the generated source, against the join written in torch."""
    from archspec.pytorch.codegen import generate

    entry = JOIN_ORACLE[word]
    report = archspec.check(entry.text, classes=None)
    assert report.ok, report.diagnostics
    torch.manual_seed(0)
    net = archspec.build(entry.text).eval()
    for module in net.modules():  # non-trivial batch-norm statistics, so that `bn` is not the identity
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1), module.running_var.uniform_(0.5, 2)
    x = torch.randn(2, *report.input_shape)
    modules = dict(net.named_modules())
    with torch.no_grad():
        expected = entry.reference(modules, x)
        got = net(x)
        join_row = next(n for n in report.nodes() if n.path == entry.join)
        assert tuple(expected.shape[1:]) == report.output_shape == join_row.out_shape
        assert sum(p.numel() for p in net.parameters()) == report.params
        assert torch.allclose(got, expected, atol=1e-6)
        namespace: dict[str, Any] = {}
        exec(compile(generate(entry.text), "<generated>", "exec"), namespace)
        generated = namespace["Net"]()
        generated.load_state_dict(net.state_dict())
        assert torch.allclose(generated.eval()(x), expected, atol=1e-6)


@pytest.mark.parametrize("gate", ["gap", "adaptiveavgpool 1x8", "adaptiveavgpool 8x1", "adaptiveavgpool 2x2",
                                  "gap | conv 4 k1", "gap | conv 1 k1", "maxpool 2", "flatten", "gap | flatten",
                                  "conv 8 k1", "conv 3 k3 p1"])
def test_mul_reports_e115_exactly_where_torch_cannot_broadcast(gate):
    """`mul {} { gate }` on [B, 8, 8, 8]: the checker's verdict against torch multiplying the two tensors."""
    report = archspec.check(f"input 8x8x8\nmul {{}} {{ {gate} }}\n", classes=None)
    x = torch.randn(2, 8, 8, 8)
    with torch.no_grad():
        g = archspec.build(f"input 8x8x8\n{gate}\n")(x)
        try:
            torch_ok, y = True, x * g
        except RuntimeError:
            torch_ok, y = False, None
    assert report.ok == torch_ok, (gate, report.diagnostics)
    if torch_ok:
        assert report.output_shape == tuple(y.shape[1:])
    else:
        assert [d.code for d in report.errors] == ["E115"]


@pytest.mark.parametrize("k, s, zeros", [(k, s, zeros) for k in (2, 3, 4, 5) for s in (1, 2, 3) for zeros in (False, True)])
def test_blurpool_reports_e122_or_e102_exactly_where_torch_refuses(k, s, zeros):
    """`blurpool` on every size from 1x1 to 6x5: the checker's verdict and shape against the oracle's blur pool in torch
    (reflect padding must be below the size: E122; the window must fit in the padded input: E102)."""
    for h, w in [(h, w) for h in range(1, 7) for w in (1, 2, 3, 5)]:
        text = f"input 2x{h}x{w}\n" + blurpool_text({"k": k, "s": s, "zeros": zeros}) + "\n"
        report = archspec.check(text, classes=None)
        try:
            with torch.no_grad():
                y = BlurPool(2, k, s, zeros)(torch.randn(1, 2, h, w))
        except RuntimeError:
            y = None
        assert report.ok == (y is not None), (text, report.diagnostics)
        if y is None:
            assert [d.code for d in report.errors] in (["E122"], ["E102"]), report.diagnostics
            assert (report.errors[0].code == "E122") == (not zeros and min(h, w) <= ((s - 1) + (k - 1)) // 2)
        else:
            assert report.output_shape == tuple(y.shape[1:])


@pytest.mark.parametrize("a, b", [(0, 8), (2, 6), (7, 8), (0, 9), (6, 12), (8, 9), (3, 3), (5, 2), (-2, 4)])
def test_slice_reports_e133_exactly_where_torch_gives_fewer_channels_than_written(a, b):
    """`slice A:B` on 8 channels: torch's x[:, A:B] clamps a range past the end (and gives nothing for an empty one)
    where the checker reports E133; elsewhere both give B - A channels."""
    report = archspec.check(f"input 8x4x4\nslice {a}:{b}\n", classes=None)
    y = torch.randn(2, 8, 4, 4)[:, a:b]
    exact = a >= 0 and y.shape[1] == b - a > 0
    assert report.ok == exact, report.diagnostics
    if exact:
        assert report.output_shape == tuple(y.shape[1:])
    else:
        assert [d.code for d in report.errors] == ["E133"]



@pytest.mark.parametrize("c, out, k, g", [(1, 4, 1, 1), (8, 8, 1, 8), (8, 16, 1, 8), (8, 8, 1, 4), (1, 4, 3, 1),
                                          (8, 8, 3, 8), (2, 4, 1, 1), (8, 8, (1, 2), 8)])
def test_stdconv_reports_e134_exactly_where_torch_refuses(c, out, k, g):
    """A filter standardised as timm's StdConv2d does (F.batch_norm over the filters, in training mode) is refused by
    torch when it has one weight; the checker reports E134 exactly there."""
    kernel = (k, k) if isinstance(k, int) else k
    weight = torch.randn(out, c // g, *kernel)
    try:
        nn.functional.batch_norm(weight.reshape(1, out, -1), None, None, training=True, momentum=0.0, eps=1e-6)
        torch_ok = True
    except ValueError:
        torch_ok = False
    text = "x".join(map(str, kernel)) if kernel[0] != kernel[1] else str(kernel[0])
    report = archspec.check(f"input {c}x8x8\nstdconv {out} k{text} g{g}\n", classes=None)
    assert [d.code for d in report.errors] == ([] if torch_ok else ["E134"])

@pytest.mark.parametrize("size", [12, 13, 16, 21])
def test_crop_unet_level_shapes_agree_with_torch_at_each_size(size):
    """An unpadded U-Net level: the checker's output shape (and E121's verdict) against the built network's."""
    text = f"input 1x{size}x{size}\ncrop {{}} {{ maxpool 2 | conv 4 k3 | relu | convtranspose 2 k2 s2 }}\n"
    report = archspec.check(text, classes=None)
    assert report.ok, report.diagnostics
    with torch.no_grad():
        y = archspec.build(text)(torch.randn(1, 1, size, size))
    assert tuple(y.shape[1:]) == report.output_shape == (3, 2 * (size // 2 - 2), 2 * (size // 2 - 2))
