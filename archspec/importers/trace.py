"""torch.nn.Module -> statements, through torch.fx.

The tracer is torch.fx's symbolic tracer (`torch.fx.symbolic_trace`): it records a module's forward
at the level of torch's layer modules (nn.Conv2d, nn.BatchNorm2d, ... stay single calls, with their
module paths and the modules around them in `nn_module_stack`), which is the level the language
writes at. torch.export and dynamo would lower the layers to aten operators and lose the module
paths; TorchScript keeps them but not as a dataflow graph one can walk. Python code that decides on a
tensor's size (timm's VGG head pools a map smaller than its kernel) stops the symbolic tracer; such a
module is traced again with tracers.SizedTracer, which runs each call on a real input of the import's
size: sizes are numbers and each `if` on one takes the branch that size takes. The symbolic trace comes
first because its graph holds at every size (and every import it can trace stays as it was); the sized
one's holds at the size imported, which the text's header says (Imported.notes). A forward that branches
on a tensor's values is refused by both.

The graph is read back from its output: a node with one tensor input is a layer in a chain; an add,
cat or mul is a join whose branches run from the join's immediate dominator (the fork where they
meet) to its inputs. DenseNet's `torch.cat(features)` over a growing list is read as a chain of
two-way concats, each extending the previous one.

A few torch idioms are read as the one layer they stand for: permute to channels-last, then
nn.LayerNorm / nn.Linear / activations, then permute back (ConvNeXt's block: `layernorm`, `pwlinear`);
a `[C, 1, 1]` parameter times the tensor (`layerscale`); view/transpose/view (`channelshuffle`);
`x.chunk(n, dim=1)` or `x.split(C // n, dim=1)` whose parts are concatenated back in order (`split`);
`F.pad` with a constant (`pad`); ECA's `x.mean((2, 3))` reshaped to [B, 1, C], `nn.Conv1d` across the channels,
the gate reshaped back and expanded (`mul {} { gap | chanconv kK | sigmoid }`); `F.interpolate` back to a size read
from the network (`resize`, `resize nearest`); a Python number times or over the tensor (`scale`). torchvision's LayerNorm2d and StochasticDepth, and timm's fused and
padded layers (BatchNormAct2d, Conv2dSame, ...: layers.LEAVES) are traced as leaves, whole; timm's
GlobalResponseNorm is `grn` on either layout (channels-last inside the permutes, channels first outside).
"""
from __future__ import annotations

import contextlib
import io
import math
import operator
from typing import Any

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from archspec.importers.attention import ATTENTION
from archspec.importers.layers import (
    Inexpressible,
    adaptive_size,
    grn_channels_last,
    last_dim_norm,
    layer_text,
    number,
    qualified,
)
from archspec.importers.statements import Imported, Join, Op, Refusal, Scope
from archspec.importers.tracers import LeafTracer, SizedTracer, ValueBranch
from archspec.language.errors import ArchspecError

_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
_ADD = {operator.add, operator.iadd, torch.add, "add", "add_"}
_MUL = {operator.mul, operator.imul, torch.mul, "mul", "mul_"}
_DIV = {operator.truediv, operator.itruediv, torch.div, torch.true_divide, "div", "div_", "true_divide"}
_CAT = {torch.cat, torch.concat}
_ACTIVATIONS = {
    torch.relu: "relu", torch.nn.functional.relu: "relu", "relu": "relu", "relu_": "relu",
    torch.nn.functional.relu6: "relu6", torch.sigmoid: "sigmoid", "sigmoid": "sigmoid",
    torch.nn.functional.silu: "silu", torch.nn.functional.hardswish: "hardswish", torch.tanh: "tanh",
    torch.nn.functional.gelu: "gelu", torch.nn.functional.hardsigmoid: "hardsigmoid",
}
_POOLS = {torch.nn.functional.max_pool2d: nn.MaxPool2d, torch.nn.functional.avg_pool2d: nn.AvgPool2d}
_TO_CHANNELS_LAST, _TO_CHANNELS_FIRST = [0, 2, 3, 1], [0, 3, 1, 2]
# What may run on a channels-last tensor: it acts on the last dimension (the channels) or elementwise.
_CHANNELS_LAST_OK = (nn.LayerNorm, nn.Linear, nn.GELU, nn.ReLU, nn.SiLU, nn.Dropout, nn.Identity, nn.ReLU6, nn.Sigmoid,
                     nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.LeakyReLU)


class NotNested(Exception):
    """A tensor is read by statements that the language's nested joins cannot reach."""

    def __init__(self, node: fx.Node) -> None:
        super().__init__(node.name)
        self.node = node


def trace(module: nn.Module, input_shape: tuple[int, ...]) -> Imported:
    """The statements of `module` (traced in eval mode) on inputs of `input_shape` (C, H, W or F)."""
    was_training = module.training
    module.eval()
    try:
        graph, notes = _traced(module, input_shape)
        _propagate_shapes(graph, input_shape)
        imported = GraphReader(graph).read(input_shape)
        imported.notes = notes
        return imported
    finally:
        module.train(was_training)


_TRACE_HELP = "archspec traces the forward with torch.fx, reading the input's sizes as numbers where it decides on them"


def _traced(module: nn.Module, input_shape: tuple[int, ...]) -> tuple[fx.GraphModule, list[str]]:
    """The module's graph, and what the text should say about how it was traced.

    The symbolic trace first (its graph holds at every size); where it fails, the sized trace."""
    try:
        return fx.GraphModule(module, LeafTracer().trace(module)), []
    except Exception as exc:  # noqa: BLE001 - fx raises many kinds: TraceError, TypeError, NotImplementedError...
        symbolic = _first_line(exc).split(". ")[0].rstrip(".")  # fx's first sentence; the rest is its advice
    tracer = SizedTracer(torch.zeros(1, *input_shape))
    name, shape = type(module).__name__, "x".join(map(str, input_shape))
    try:
        graph = fx.GraphModule(module, tracer.traced(module))
    except ValueBranch as exc:
        raise ArchspecError(f"`{exc.path or '(top)'}` ({exc.cls or name}) branches on a tensor's values: the layers it runs "
                            f"would depend on the input's data",
                            "archspec imports a forward that runs the same layers on every input; a branch on the input's "
                            "size is read at the size given with --input") from None
    except Exception as exc:  # noqa: BLE001 - as above, and the user's forward can raise anything
        if tracer.failed_to_run(exc):
            raise _does_not_run(input_shape, exc) from None
        raise ArchspecError(f"torch.fx cannot trace {name}: {_first_line(exc)}", _TRACE_HELP) from None
    return graph, [_sized_note(tracer.decisions, name, shape, symbolic)]


def _sized_note(decisions: dict[str, str], name: str, shape: str, symbolic: str) -> str:
    """What the text says when it was traced at its size: where the forward decided on the size, or why."""
    if not decisions:
        return f"traced at {shape} with the input's sizes as numbers (the symbolic trace stopped: {symbolic}); the text holds at this size"
    places = [f"`{path or '(top)'}` ({cls or name})" for path, cls in decisions.items()]
    where = ", ".join(places[:3]) + (f" and {len(places) - 3} more" if len(places) > 3 else "")
    return f"traced at {shape}: the forward branches on the input size in {where}; the text is the branch taken at this size"


def _propagate_shapes(graph: fx.GraphModule, input_shape: tuple[int, ...]) -> None:
    try:
        # ShapeProp prints the traceback of a failing node before raising: the message below says it
        with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):
            ShapeProp(graph).propagate(torch.zeros(1, *input_shape))
    except Exception as exc:  # noqa: BLE001 - the user's forward can raise anything
        raise _does_not_run(input_shape, exc.__cause__ or exc) from None  # ShapeProp wraps the layer's error in one naming the node


def _does_not_run(input_shape: tuple[int, ...], cause: BaseException) -> ArchspecError:
    shape = "x".join(map(str, input_shape))
    return ArchspecError(f"the module does not run on a {shape} input: {_first_line(cause)}",
                         "give the input size it takes with --input (e.g. --input 3x224x224)")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _is_tensor(node: Any) -> bool:
    return isinstance(node, fx.Node) and isinstance(node.meta.get("tensor_meta"), torch.fx.passes.shape_prop.TensorMetadata)


def _nodes_in(value: Any) -> list[fx.Node]:
    if isinstance(value, (list, tuple)):
        return [n for v in value for n in _nodes_in(v)]
    return [value] if _is_tensor(value) else []


def _shape(node: fx.Node) -> tuple[int, ...]:
    return tuple(node.meta["tensor_meta"].shape)


def call_name(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    """The torch call a node makes, as a person would name it: torch.nn.LayerNorm, torch.flatten, Tensor.view."""
    if node.op == "call_module":
        cls = type(modules[node.target])
        return f"torch.nn.{cls.__name__}" if getattr(nn, cls.__name__, None) is cls else f"{cls.__module__}.{cls.__qualname__}"
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    target = node.target
    module = getattr(target, "__module__", None) or "operator"
    module = {"torch._C._nn": "torch.nn.functional", "torch._C._VariableFunctions": "torch", "_operator": "operator"}.get(module, module)
    return f"{module}.{getattr(target, '__name__', str(target))}"


class GraphReader:
    """An fx graph (traced from torch, or lifted from ONNX) -> statements, rebuilding the nesting of its joins."""

    def __init__(self, graph: fx.GraphModule) -> None:
        self.graph = graph
        self.modules = dict(graph.named_modules())
        self.nodes = [n for n in graph.graph.nodes if n.op == "placeholder" or _is_tensor(n)]
        self.order = {n: i for i, n in enumerate(self.nodes)}
        self.cats: dict[tuple[fx.Node, ...], fx.Node] = {}
        self.absorbed: set[fx.Node] = set()  # inner nodes of an idiom read as one layer (channel shuffle)
        self.shuffles: dict[fx.Node, int] = {}  # the last view of a channel shuffle -> its groups
        self.parts: dict[fx.Node, tuple[int, int]] = {}  # x.chunk(n, dim=1)[i] -> (i, n)
        self.slices: dict[fx.Node, tuple[int, int]] = {}  # a part of an uneven split -> its channels (`slice a:b`)
        self.scales: dict[fx.Node, fx.Node] = {}  # param * x -> the parameter (layer scale)
        self.chanconvs: dict[fx.Node, str] = {}  # ECA's nn.Conv1d across the channels -> its text (`gap | chanconv k3`)
        self.passes: set[fx.Node] = set()  # read as nothing: ECA's view back to [B, C, 1, 1], an expand_as before a mul
        self.layout: dict[fx.Node, bool] = {}  # True where the tensor is channels-last (after a permute)
        self.inputs = {n: self._inputs(n) for n in self.nodes}
        for n in self.nodes:
            self.layout[n] = self._channels_last(n)
        self.dominators = self._dominators()
        self.refusals: list[Refusal] = []
        self.refused: set[fx.Node] = set()
        self.seen: set[fx.Node] = set()
        self.attentions: dict[fx.Node, list | None] = {}  # timm's attention modules, read once
        self._forward_order: dict[fx.Node, int] | None = None
        self.quiet = False

    def _inputs(self, node: fx.Node) -> list[fx.Node]:
        if node.op == "placeholder":
            return []
        if node.op == "call_function" and node.target in _CAT:
            parts = _nodes_in(node.args[0])
            self.cats[tuple(parts)] = node
            earlier = self.cats.get(tuple(parts[:-1]))
            if len(parts) > 2 and earlier is not None:  # DenseNet: cat(x0..xk) = cat(cat(x0..xk-1), xk)
                return [earlier, parts[-1]]
            return parts
        idiom = self._idiom_input(node)
        if idiom is not None:
            return [idiom]
        return _nodes_in(list(node.args) + list(node.kwargs.values()))

    def _idiom_input(self, node: fx.Node) -> fx.Node | None:
        """The input of a node that an idiom reads as one layer (recorded), or None."""
        shuffled = _channel_shuffle(node)
        if shuffled is not None:
            source, groups, inner = shuffled
            self.shuffles[node] = groups
            self.absorbed.update(inner)
            return source
        if node.op == "call_function" and node.target is operator.getitem and _chunks(node.args[0]):
            chunk = node.args[0]
            self.parts[node] = (node.args[1], _chunks(chunk))
            return chunk.args[0]
        if node.op == "call_function" and node.target is operator.getitem and isinstance(node.args[1], int):
            ranges = _split_ranges(node.args[0])
            if ranges is not None and -len(ranges) <= node.args[1] < len(ranges):  # MixNet's, FasterNet's parts
                self.slices[node] = ranges[node.args[1]]
                return node.args[0].args[0]
        scaled = _layer_scale(node)
        if scaled is not None:
            self.scales[node] = scaled[0]
            self.absorbed.update(scaled[2])
            return scaled[1]
        return self._eca_input(node)

    def _eca_input(self, node: fx.Node) -> fx.Node | None:
        """ECA's gate, `mul {} { gap | chanconv kK | sigmoid }`: its Conv1d reads the channels reshaped to [B, 1, C]
        (recorded, with the reshapes and the mean before it absorbed); the reshapes back to [B, C, 1, 1] and the
        expand_as(x) before the mul are read as nothing (the language's gate is [C, 1, 1] throughout, and mul broadcasts)."""
        conv = _channel_conv(node, self.modules)
        if conv is not None:
            source, text, inner = conv
            self.chanconvs[node] = text
            self.absorbed.update(inner)
            return source
        if _channel_reshape(node) is not None and len(_shape(node)) == 4:
            back = self._back_from_channel_conv(node)
            if back:
                self.passes.update(back)
                return node.args[0]
        if _expanded_for_mul(node):
            self.passes.add(node)
            return node.args[0]
        return None

    def _back_from_channel_conv(self, node: fx.Node) -> list[fx.Node]:
        """The reshapes from a channel conv's [B, 1, C] output to `node`'s [B, C, 1, 1], through layers that keep the
        shape (its gate); [] when `node` does not come from one."""
        reshapes = []
        while node not in self.chanconvs:
            inputs = [i for i in node.all_input_nodes if _is_tensor(i)]  # read before self.inputs is complete
            if _channel_reshape(node) is not None:
                reshapes.append(node)
            elif len(inputs) != 1 or _shape(inputs[0]) != _shape(node):
                return []
            node = inputs[0]
        return reshapes

    def _channels_last(self, node: fx.Node) -> bool:
        """Whether the node's tensor is a [B, C, H, W] network tensor permuted to [B, H, W, C]."""
        inputs = self.inputs[node]
        if len(inputs) != 1:
            return False
        if _permute(node) == _TO_CHANNELS_LAST and len(_shape(inputs[0])) == 4:
            return not self.layout[inputs[0]]
        if _permute(node) == _TO_CHANNELS_FIRST:
            return False
        return self.layout[inputs[0]] and self._runs_channels_last(node)

    def _runs_channels_last(self, node: fx.Node) -> bool:
        if node.op == "call_module":
            module = self.modules[node.target]
            return (isinstance(module, _CHANNELS_LAST_OK) or qualified(type(module)).startswith("timm.layers.activations.")
                    or grn_channels_last(module) or last_dim_norm(module))
        # F.gelu(x), x.relu(), x * 0.5
        return (node.op in ("call_function", "call_method") and node.target in _ACTIVATIONS) or _constant_factor(node) is not None

    def _dominators(self) -> dict[fx.Node, frozenset[fx.Node]]:
        dom: dict[fx.Node, frozenset[fx.Node]] = {}
        for node in self.nodes:
            preds = [dom[p] for p in self.inputs[node] if p in dom]
            dom[node] = (frozenset.intersection(*preds) if preds else frozenset()) | {node}
        return dom

    def idom(self, node: fx.Node) -> fx.Node:
        candidates = self.dominators[node] - {node}
        if not candidates:  # computed from something other than the input (a constant, a size)
            raise NotNested(node)
        return max(candidates, key=self.order.__getitem__)

    def scopes(self, node: fx.Node) -> tuple[Scope, ...]:
        stack = list((node.meta.get("nn_module_stack") or {}).values())
        if node.op == "call_module":
            stack = stack[:-1]  # the layer itself is the statement
        return tuple(Scope(path, cls.__name__ if isinstance(cls, type) else str(cls).rsplit(".", 1)[-1],
                           _is_container(cls)) for path, cls in stack)

    def path(self, node: fx.Node) -> str:
        if node.op == "call_module":
            return str(node.target)
        scopes = self.scopes(node)
        return scopes[-1].path if scopes else ""

    def read(self, input_shape: tuple[int, ...]) -> Imported:
        placeholders = [n for n in self.nodes if n.op == "placeholder"]
        output = next(n for n in self.graph.graph.nodes if n.op == "output")
        result = _main_output(output.args[0])
        if len(placeholders) == 1 and isinstance(result, dict):
            keys = ", ".join(repr(k) for k in result)
            raise ArchspecError(f"the module returns a dict with keys {keys}, not one tensor",
                                "archspec imports one output (a dict with only 'out' is read as it); build it without the others, "
                                "e.g. aux_loss=False")
        if len(placeholders) != 1 or not _is_tensor(result):
            raise ArchspecError(f"the module takes {len(placeholders)} inputs and returns {type(result).__name__}",
                                "archspec imports a network with one input tensor and one output tensor")
        first_bad = self.scan()
        try:
            statements = self.chain(placeholders[0], result)
        except NotNested as exc:
            named = None if self.refusals else _NamedReading(self).read(placeholders[0], result)
            if named is not None:  # branches that do not nest: the graph in order, with named tensors
                return Imported(tuple(input_shape), _shape(result)[1:], named, [], None)
            if not self.refusals:  # otherwise most often a consequence of those
                self.refusals.append(Refusal(self.path(exc.node), f"the result of `{exc.node.name}` in more than one place",
                                             "branches that do not nest (the language's joins run branches from one input to one join)"))
            first_bad = first_bad if first_bad is not None else exc.node
        stopped = None
        if self.refusals:
            statements = self.prefix(placeholders[0], first_bad or result)
            stopped = len(statements)
        return Imported(tuple(input_shape), _shape(result)[1:], statements, self.refusals, stopped)

    def scan(self) -> fx.Node | None:
        """Record every layer and call the language cannot write, in forward order; the first such node."""
        first = None
        for node in self.nodes:
            if self.changes_what_is_read_later(node):
                self.refuse(node, "an in-place change of a tensor that later code reads (the traced graph does not show "
                                  "the change)")
                first = first or node
                continue
            if node.op == "placeholder" or node in self.absorbed or self.join_word(node) is not None:
                continue
            if node.op in ("get_attr", "output"):
                continue
            if self.attention_of(node) is not None:
                if self.attention(node) is None and first is None:
                    first = node
                continue
            if self.op_text(node) is None and first is None:
                first = node
        self.quiet = True  # the walk below meets them again
        return first

    def changes_what_is_read_later(self, node: fx.Node) -> bool:
        """`x.mul_(g)` (an in-place method or function, named with a trailing `_`) where code after it reads `x`: fx
        records the call, but the later reads take `x` as it was (NF-Nets' `out.mul_(self.skipinit_gain)`)."""
        name = node.target if node.op == "call_method" else getattr(node.target, "__name__", "")
        if node.op not in ("call_method", "call_function") or not isinstance(name, str) or not name.endswith("_") \
                or name.startswith("_") or not node.args or not isinstance(node.args[0], fx.Node):
            return False
        order = self.forward_order()
        return any(order[user] > order[node] for user in node.args[0].users if user is not node)

    def forward_order(self) -> dict[fx.Node, int]:
        """Every node of the graph (tensors or not) -> its place in the forward, computed once."""
        if self._forward_order is None:
            self._forward_order = {n: i for i, n in enumerate(self.graph.graph.nodes)}
        return self._forward_order

    def prefix(self, start: fx.Node, bad: fx.Node) -> list:
        """The statements up to the last node before `bad` that every path to `bad` passes (--partial)."""
        node = bad
        while True:
            candidates = self.dominators.get(node, frozenset()) - {node}
            if not candidates:
                return []
            node = max(candidates, key=self.order.__getitem__)
            if node is start:
                return []
            self.seen.clear()
            try:
                statements = self.chain(start, node)
            except NotNested:
                continue
            if not any(_refused(s) for s in statements):
                return statements

    def chain(self, start: fx.Node, end: fx.Node) -> list:
        """The statements that compute `end` from `start`."""
        out: list = []
        node = end
        while node is not start:
            if node in self.seen or node.op == "placeholder":
                raise NotNested(node)
            self.seen.add(node)
            statement, node = self.statement(node)
            if isinstance(statement, list):  # a module read as several statements (timm's SplitAttn)
                out.extend(statement[::-1])
            elif statement is not None:
                out.append(statement)
        return out[::-1]

    def statement(self, node: fx.Node) -> tuple[Any, fx.Node]:
        """(the statement for `node` or None, the node its input comes from)."""
        inputs = self.inputs[node]
        if self.attention_of(node) is not None and len(inputs) == 1:
            return self.attention(node) or _Refused(self.scopes(node)), inputs[0]
        word = self.join_word(node)
        if word == "resize":
            return self.resize(node)
        if word is not None and inputs:
            fork = self.idom(node)
            return self.join(node, word, [self.chain(fork, i) for i in inputs]), fork
        text = self.op_text(node)
        if not inputs or (len(inputs) != 1 and text is not None):
            raise NotNested(node)
        if text is None:  # refused (recorded by the scan): keep walking from its input, for the other refusals
            return _Refused(self.scopes(node)), self.idom(node)
        if node in self.parts:
            return _Part(self.scopes(node), *self.parts[node]), inputs[0]
        if not text:  # a permute around channels-last layers (the layers say it), a place-holder
            return None, inputs[0]
        weights = str(node.target) if node.op == "call_module" and any(True for _ in self.modules[node.target].state_dict()) else None
        if node in self.scales:
            weights = str(self.scales[node].target)
        return Op(text, self.scopes(node), weights), inputs[0]

    def attention_of(self, node: fx.Node) -> Any:
        """The reader of timm's attention module (layers.ATTENTION_LEAVES) that the node calls, or None."""
        return ATTENTION.get(qualified(type(self.modules[node.target]))) if node.op == "call_module" else None

    def attention(self, node: fx.Node) -> list | None:
        """An attention module's statements (a `select` join and the layers before it), or None when refused (recorded)."""
        if node not in self.attentions:
            module, path = self.modules[node.target], str(node.target)
            try:
                self.attentions[node] = self.attention_of(node)(module, _shape(self.inputs[node][0])[1:], path,
                                                                self.scopes(node), self.sub_statements)
            except (Inexpressible, _SubRefused, ArchspecError) as exc:
                self.refuse(node, str(exc), walking=True)
                self.attentions[node] = None
        return self.attentions[node]

    def sub_statements(self, module: nn.Module, shape: tuple[int, ...], path: str, scopes: tuple[Scope, ...]) -> list:
        """A submodule's statements, traced as a network of its own, with its module paths put under `path`."""
        graph = fx.GraphModule(module, LeafTracer().trace(module))
        _propagate_shapes(graph, shape)
        imported = GraphReader(graph).read(shape)
        if imported.refusals:
            raise _SubRefused("; ".join(r.text() for r in imported.refusals))
        return [_rebased(s, path, scopes) for s in imported.statements]

    def join_word(self, node: fx.Node) -> str | None:
        target = node.target
        if node.op not in ("call_function", "call_method"):
            return None
        if target in _CAT:
            dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
            return "concat" if dim in (1, -3) else None
        if target in _ADD:
            return "add"
        if target in _MUL and node not in self.scales and _constant_factor(node) is None:
            return "mul"
        if _resized_to(node) is not None:
            return "resize"
        return None

    def join(self, node: fx.Node, word: str, branches: list[list]) -> Any:
        if word == "concat" and len(branches) == 1:  # cat of one tensor (branch empty: the fork is its input)
            return None
        operands = [a for a in node.args if isinstance(a, fx.Node) or not isinstance(a, (list, tuple))]
        constants = [a for a in operands if not isinstance(a, fx.Node)]
        if len(branches) == 1 and not node.kwargs and constants == [{"add": 0, "mul": 1}.get(word)]:
            return None  # x + 0 (MobileOne's missing identity branch), x * 1: the tensor as it is
        if word in ("add", "mul") and (len(node.args) != 2 or len(operands) != len(branches) or node.kwargs):
            self.refuse(node, f"{'adding' if word == 'add' else 'multiplying by'} a constant or with alpha", walking=True)
            return _Refused(self.scopes(node))
        inner = [s.scopes for b in branches for s in b]
        scopes = _common(self.scopes(node), *inner)
        if word == "concat" and _splits(branches):
            return Join("split", [b[1:] for b in branches], scopes)
        if any(b and isinstance(b[0], _Part) for b in branches):
            self.refuse(node, "parts of Tensor.chunk or Tensor.split that are not concatenated back in order (the language's `split`)",
                        walking=True)
            return _Refused(scopes)
        if word == "mul":  # the identity first: `mul {} { gate }` reads as squeeze-and-excitation does
            return Join(word, sorted(branches, key=bool), scopes)
        if word != "add":
            return Join(word, branches, scopes)
        return self.residual(node, branches, scopes)

    def resize(self, node: fx.Node) -> tuple[Any, fx.Node]:
        """`F.interpolate(x, size=t.shape[-2:])` with `t` an earlier tensor that x is computed from: `resize { t -> x }`.
        GhostNetV2 resizes to the size of a tensor computed beside x from the same fork, of the fork's height and width
        (stride-1 layers): that is the resize back to the fork's size, `resize nearest { fork -> x }`."""
        source, mode = _resized_to(node)  # type: ignore[misc]
        body = self.inputs[node][0]
        if source not in self.dominators[body]:
            fork = max(self.dominators[body] & self.dominators[source], key=self.order.__getitem__, default=None)
            if fork is None or _shape(fork)[-2:] != _shape(source)[-2:]:
                self.refuse(node, "resizing to the size of a tensor of another height and width than the fork the resized branch "
                            "starts from (the language's `resize` goes back to its body's input size)", walking=True)
                return _Refused(self.scopes(node)), body
            source = fork
        branch = self.chain(source, body)
        word = f"resize {mode}" if mode else "resize"
        return Join(word, [branch], _common(self.scopes(node), *[s.scopes for s in branch])), source

    def residual(self, node: fx.Node, branches: list[list], scopes: tuple[Scope, ...]) -> Join:
        if len(branches) == 2 and not all(branches):  # `project` is the identity here too, and lines blocks up
            return Join("residual project", [branches[0] or branches[1]], scopes)
        if len(branches) != 2 or _written(branches[0]) == _written(branches[1]):
            return Join("add", branches, scopes)  # two alike (RepViT's two heads): neither is the other's shortcut
        fork = self.idom(node)
        changes_shape = _shape(fork) != _shape(node)
        for body, shortcut in ((branches[0], branches[1]), (branches[1], branches[0])):
            if changes_shape and _is_projection(shortcut):
                return Join("residual project", [body], scopes, shortcut=shortcut)
        return Join("residual", [branches[0]], scopes, shortcut=branches[1])

    def op_text(self, node: fx.Node) -> str | None:
        """The layer's text; '' for a no-op; None when refused (recorded)."""
        inputs = self.inputs.get(node, [])
        if any(self.layout[i] for i in inputs) and not (self.layout[node] or _permute(node) == _TO_CHANNELS_FIRST):
            self.refuse(node, "a channels-last tensor (after a permute) that the language has no layer for")
            return None
        if node in self.shuffles:
            return f"channelshuffle {self.shuffles[node]}"
        if node in self.slices:
            return "slice {}:{}".format(*self.slices[node])
        if node in self.parts:
            return "split"
        if node in self.scales:
            return _layer_scale_text(self.scales[node], self.graph)
        if node in self.chanconvs:
            return self.chanconvs[node]
        if node in self.passes:
            return ""
        if _permute(node) in (_TO_CHANNELS_LAST, _TO_CHANNELS_FIRST) and (self.layout[node] or any(self.layout[i] for i in inputs)):
            return ""
        if node.op == "call_module":
            module = self.modules[node.target]
            try:
                text = layer_text(module, _shape(inputs[0])[1:] if inputs else None)
            except Inexpressible as exc:
                self.refuse(node, str(exc))
                return None
            if isinstance(module, nn.Identity) or (isinstance(module, nn.Dropout) and module.p == 0):
                return ""  # timm's place-holders (no attention, no drop): nothing a person would write
            if qualified(type(module)) == "timm.layers.grn.GlobalResponseNorm" and not self._grn_fits(node, module, inputs):
                return None
            if isinstance(module, nn.Linear) and inputs and self.layout[inputs[0]]:
                return "pw" + text  # nn.Linear over the channels: `pwlinear`, with nn.Linear's weight layout
            if last_dim_norm(module) and not (inputs and (self.layout[inputs[0]] or len(_shape(inputs[0])) == 2)):
                self.refuse(node, f"a {type(module).__name__} over other dimensions than the channels (or a vector's features)")
                return None
            return text
        target, args = node.target, node.args
        if target == "contiguous":
            return ""  # memory layout only
        if target is torch.nn.functional.dropout:
            return _dropout_text(args, node.kwargs)
        if target is torch.nn.functional.pad and _pad_text(args, node.kwargs):
            return _pad_text(args, node.kwargs)
        if target is torch.nn.functional.gelu and isinstance(node.kwargs.get("approximate", "none"), str):
            return self.op_text_of(node, nn.GELU(approximate=node.kwargs.get("approximate", "none")))
        if target in _ACTIVATIONS and not node.kwargs.get("approximate"):
            return _ACTIVATIONS[target]
        if target in (torch.flatten, "flatten") and _flattens_from_1(args, node.kwargs):
            return "flatten"
        if target == "mean" and _means_over_hw(args, node.kwargs):
            # x.mean([2, 3]): the global average, flattened; with keepdim=True (squeeze-and-excitation's) kept 1x1
            return "gap" if _keepdim(args, node.kwargs) else "gap | flatten"
        if target is torch.nn.functional.adaptive_avg_pool2d and len(args) == 2:
            return adaptive_size(args[1])
        if target in _POOLS and all(not isinstance(a, fx.Node) for a in list(args[1:]) + list(node.kwargs.values())):
            return self.op_text_of(node, _POOLS[target](*args[1:], **node.kwargs))  # F.max_pool2d(x, 3, 2): nn.MaxPool2d's text
        sliced = _channel_slice(node)
        if sliced is not None:
            return sliced
        factor = _constant_factor(node)
        if factor is not None:
            return factor
        self.refuse(node, "")
        return None

    def _grn_fits(self, node: fx.Node, module: nn.Module, inputs: list[fx.Node]) -> bool:
        """A GlobalResponseNorm reads H and W where its input has them: channels_last=True on a permuted tensor, False on
        [B, C, H, W] (refused, recorded, otherwise)."""
        if inputs and len(_shape(inputs[0])) == 4 and self.layout[inputs[0]] == grn_channels_last(module):
            return True
        rank = len(_shape(inputs[0])) if inputs else 0
        tensor = ("a channels-last [B, H, W, C]" if inputs and self.layout[inputs[0]] else "a [B, C, H, W]" if rank == 4
                  else f"a {rank}-D")
        self.refuse(node, f"a GlobalResponseNorm with channels_last={grn_channels_last(module)} on {tensor} tensor "
                          "(the language's grn normalises over H and W)")
        return False

    def op_text_of(self, node: fx.Node, module: nn.Module) -> str | None:
        try:
            return layer_text(module)
        except Inexpressible as exc:
            self.refuse(node, str(exc))
            return None

    def refuse(self, node: fx.Node, why: str, walking: bool = False) -> None:
        """Record a refusal: layers are recorded by the scan (quiet in the walk after it), joins in the walk, once each."""
        if (self.quiet and not walking) or node in self.refused:
            return
        self.refused.add(node)
        self.refusals.append(Refusal(self.path(node), self.construct(node), why))

    def construct(self, node: fx.Node) -> str:
        """What a refusal names as the call: the torch call here; the ONNX front end names the operator."""
        return call_name(node, self.modules)


class _SubRefused(Exception):
    """A layer inside an attention module's branch is refused: the message says which."""


def _rebased(statement: Any, path: str, scopes: tuple[Scope, ...]) -> Any:
    """A statement of a submodule traced alone, its module paths under `path` and its scopes under `scopes`."""
    def under(p: str) -> str:
        return f"{path}.{p}" if p else path

    inner = scopes + tuple(Scope(under(s.path), s.cls, s.container) for s in statement.scopes)
    if isinstance(statement, Op):
        return Op(statement.text, inner, under(statement.weights) if statement.weights is not None else None)
    return Join(statement.word, [[_rebased(s, path, scopes) for s in b] for b in statement.branches], inner,
                [_rebased(s, path, scopes) for s in statement.shortcut] if statement.shortcut is not None else None)


class _NamedReading:
    """A graph whose branches do not nest, read in forward order: each layer reads the running tensor, or starts with
    `from NAME` where it reads another; each join takes the running tensor as `{}` and the others as `{ from NAME }`;
    `as NAME` follows each statement whose tensor is read out of order. A run of layers that only feeds a join, from
    a tensor other than the running one, is written inside that join's branch (`{ from stem | maxpool 2 }`). The
    statements are flat (no module scopes): a block would not see the names around it."""

    def __init__(self, reader: GraphReader) -> None:
        self.reader = reader
        self.needed: dict[fx.Node, str] = {}
        self.same: dict[fx.Node, fx.Node] = {}  # a node that writes nothing (a permute the layers say) -> its input
        self.pending: dict[fx.Node, list] = {}  # a run of layers kept for the branch of the join it feeds
        self.users: dict[fx.Node, list[fx.Node]] = {}

    def name(self, node: fx.Node) -> str:
        node = self.same.get(node, node)
        return self.needed.setdefault(node, _tensor_name(node.name))

    def read(self, start: fx.Node, result: fx.Node) -> list | None:
        """The statements, or None when a node has no statement here (refused, or read in a way this does not write)."""
        reader, written = self.reader, []
        current, live = start, _ancestors(result)
        for node in reader.nodes:
            for i in reader.inputs[node] if node in live else []:
                self.users.setdefault(i, []).append(node)
        for node in reader.nodes:
            if node is start or node not in live or node in reader.absorbed:
                continue
            statements = self.statements(node, current)
            if statements is None:
                return None
            if node in self.pending:
                continue  # written in the branch of the join it feeds
            written.append((node, statements))
            current = node
        if self.same.get(current, current) is not self.same.get(result, result):
            written.append((result, [Op(f"from {self.name(result)}", ())]))
        out = [Op(f"as {self.needed[start]}", ())] if start in self.needed else []
        for node, statements in written:
            out += statements + ([Op(f"as {self.needed[node]}", ())] if node in self.needed else [])
        return out

    def statements(self, node: fx.Node, current: fx.Node) -> list | None:
        reader = self.reader
        inputs, word = reader.inputs[node], reader.join_word(node)
        running = self.same.get(current, current)
        if word is not None and len(inputs) >= 2 and not (word in ("add", "mul") and (len(node.args) != 2 or node.kwargs)):
            branches = [self.pending.pop(i) if i in self.pending else [] if self.same.get(i, i) is running
                        else [Op(f"from {self.name(i)}", ())] for i in inputs]
            return [Join(word, branches, ())]
        if len(inputs) != 1 or word is not None and word != "concat":
            return None
        text = _part_slice(node, reader.parts[node]) if node in reader.parts else reader.op_text(node)
        if text is None:
            return None
        source = inputs[0]
        if source in self.pending:  # the run goes on towards its join
            start = self.pending.pop(source)
        else:
            start = [] if self.same.get(source, source) is running else [Op(f"from {self.name(source)}", ())]
        if not text or (word == "concat"):  # a permute the layers around it say, a cat of one tensor
            self.same[node] = self.same.get(source, source)
            if start and self.feeds_a_join(node):
                self.pending[node] = start
            return start
        weights = str(node.target) if node.op == "call_module" and any(True for _ in reader.modules[node.target].state_dict()) else None
        if node in reader.scales:
            weights = str(reader.scales[node].target)
        out = start + [Op(text, (), weights)]
        if start and self.feeds_a_join(node):
            self.pending[node] = out
        return out

    def feeds_a_join(self, node: fx.Node) -> bool:
        """Whether the node's tensor goes, through layers each read once, into one join only."""
        while True:
            users = self.users.get(node, [])
            if len(users) != 1:
                return False
            user = users[0]
            if self.reader.join_word(user) is not None and len(self.reader.inputs[user]) >= 2:
                return True
            if len(self.reader.inputs[user]) != 1:
                return False
            node = user


def _tensor_name(name: str) -> str:
    """fx's node name as a tensor name: `layer1_relu_2`; one that the grammar reads as a keyword gets `_out`."""
    from archspec.language.joins import JOINS

    return f"{name}_out" if name in JOINS or name in ("shortcut", "repeat", "block", "use", "param", "budget") else name


def _ancestors(node: fx.Node) -> set[fx.Node]:
    """The nodes `node` is computed from, and itself."""
    seen, stack = {node}, [node]
    while stack:
        for parent in stack.pop().all_input_nodes:
            if parent not in seen:
                seen.add(parent)
                stack.append(parent)
    return seen


def _part_slice(node: fx.Node, part: tuple[int, int]) -> str:
    """`x.chunk(n, dim=1)[i]` as the slice of channels it is (torch.chunk's parts: ceil(C/n) channels each)."""
    index, count = part
    channels = _shape(node.args[0].args[0])[1]
    size = -(-channels // count)
    return f"slice {index * size}:{min(channels, (index + 1) * size)}"


def _channel_slice(node: fx.Node) -> str | None:
    """`x[:, a:b]` (or `x[:, a:b, :, :]`) on a [B, C, H, W] or [B, F] tensor: `slice a:b`; None for other indexing."""
    if not (node.op == "call_function" and node.target is operator.getitem and _is_tensor(node.args[0])):
        return None
    index = node.args[1]
    if not (isinstance(index, tuple) and len(index) >= 2 and index[0] == slice(None) and isinstance(index[1], slice)):
        return None
    if any(i not in (slice(None), Ellipsis) for i in index[2:]) or index[1].step not in (None, 1):
        return None
    channels = _shape(node.args[0])[1]
    first, stop = index[1].start, index[1].stop
    if not all(v is None or isinstance(v, int) for v in (first, stop)):
        return None
    first, stop, _ = slice(first, stop).indices(channels)
    return f"slice {first}:{stop}" if stop > first else None


class _Part(Op):
    """One part of `x.chunk(n, dim=1)`: it starts a branch of a `split` when the parts are concatenated back in order."""

    def __init__(self, scopes: tuple[Scope, ...], index: int, count: int) -> None:
        super().__init__("split", scopes, None)
        self.index, self.count = index, count


def _main_output(result: Any) -> Any:
    """The network's output: the tensor itself, or `out` of a dict with only that key (torchvision's segmentation models)."""
    if isinstance(result, dict) and list(result) == ["out"]:
        return result["out"]
    return result


# The `F.interpolate` options the `resize` join computes, by the join's mode word: bilinear (align_corners=False), nearest.
_RESIZE_MODES = {
    "": {"scale_factor": None, "mode": "bilinear", "align_corners": False, "recompute_scale_factor": None, "antialias": False},
    "nearest": {"scale_factor": None, "mode": "nearest", "align_corners": None, "recompute_scale_factor": None, "antialias": False},
}


def _resized_to(node: fx.Node) -> tuple[fx.Node, str] | None:
    """(the tensor `t`, the join's mode word) of `F.interpolate(x, size=t.shape[-2:], mode="bilinear", align_corners=False)`
    or of `mode="nearest"` (the size also written `(t.shape[-2], t.shape[-1])`), or None."""
    if not (node.op == "call_function" and node.target is torch.nn.functional.interpolate and len(node.args) == 1):
        return None
    options = dict(_RESIZE_MODES["nearest"])  # F.interpolate's defaults
    options.update(node.kwargs)
    size = options.pop("size", None)
    mode = next((word for word, written in _RESIZE_MODES.items() if options == written), None)
    if mode is None:
        return None
    if isinstance(size, fx.Node) and size.target is operator.getitem and size.args[1] == slice(-2, None, None):
        source = _shape_of(size.args[0])
    elif isinstance(size, (tuple, list)) and len(size) == 2 and all(isinstance(s, fx.Node) and s.target is operator.getitem for s in size):
        sources = {_shape_of(s.args[0]) for s in size}
        source = sources.pop() if len(sources) == 1 and [s.args[1] for s in size] in ([-2, -1], [2, 3]) else None
    else:
        return None
    return (source, mode) if source is not None and len(_shape(source)) == 4 else None


def _shape_of(node: Any) -> fx.Node | None:
    """The tensor `t` of `t.shape`, or None."""
    if isinstance(node, fx.Node) and node.target is getattr and node.args[1] == "shape" and _is_tensor(node.args[0]):
        return node.args[0]
    return None


def _splits(branches: list[list]) -> bool:
    return all(b and isinstance(b[0], _Part) and (b[0].index, b[0].count) == (i, len(branches)) for i, b in enumerate(branches))


_SPLITS = {"chunk": "chunks", "split": "split_size", torch.chunk: "chunks", torch.split: "split_size_or_sections"}


def _split_ranges(node: Any) -> list[tuple[int, int]] | None:
    """The channel ranges of the parts of `x.split(sizes, dim=1)`, `torch.split(x, n, 1)` or `x.chunk(n, 1)` on a
    [B, C, H, W] tensor, in torch's rules (a last smaller part; chunk's parts of ceil(C/n)); None for anything else."""
    if not (isinstance(node, fx.Node) and node.op in ("call_method", "call_function") and node.target in _SPLITS):
        return None
    dim = node.args[2] if len(node.args) > 2 else node.kwargs.get("dim", 0)
    if dim not in (1, -3) or not _is_tensor(node.args[0]) or len(_shape(node.args[0])) != 4:
        return None
    n = node.args[1] if len(node.args) > 1 else node.kwargs.get(_SPLITS[node.target])
    channels = _shape(node.args[0])[1]
    if isinstance(n, int) and n > 0:
        size = -(-channels // n) if _SPLITS[node.target] == "chunks" else n
        sizes = [min(size, channels - start) for start in range(0, channels, size)]
    elif isinstance(n, (list, tuple)) and all(isinstance(s, int) and s >= 0 for s in n) and sum(n) == channels:
        sizes = list(n)
    else:
        return None
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    return [(a, a + s) for a, s in zip(starts, sizes)]


def _chunks(node: Any) -> int:
    """n for `x.chunk(n, dim=1)`, or `x.split(C // n, dim=1)` (equal parts, as CSPNet's halves); 0 otherwise."""
    if not (isinstance(node, fx.Node) and node.op == "call_method" and node.target in ("chunk", "split")):
        return 0
    dim = node.args[2] if len(node.args) > 2 else node.kwargs.get("dim", 0)
    if dim not in (1, -3) or not _is_tensor(node.args[0]) or len(_shape(node.args[0])) != 4:
        return 0
    key = "chunks" if node.target == "chunk" else "split_size"
    n = node.args[1] if len(node.args) > 1 else node.kwargs.get(key)
    channels = _shape(node.args[0])[1]
    if node.target == "split":  # a part's size: equal parts only
        return channels // n if isinstance(n, int) and n > 0 and channels % n == 0 else 0
    return n if isinstance(n, int) and channels % n == 0 else 0


def _permute(node: fx.Node) -> list[int] | None:
    """The dims of a permute (x.permute(0, 2, 3, 1), torch.permute(x, [...])), or None."""
    if not ((node.op == "call_method" and node.target == "permute") or (node.op == "call_function" and node.target is torch.permute)):
        return None
    dims = node.args[1:] if len(node.args) > 2 else node.args[1] if len(node.args) > 1 else node.kwargs.get("dims")
    return list(dims) if isinstance(dims, (list, tuple)) and all(isinstance(d, int) for d in dims) else None


def _channel_shuffle(node: fx.Node) -> tuple[fx.Node, int, list[fx.Node]] | None:
    """ShuffleNet's view(B, g, C/g, H, W) -> transpose(1, 2) -> contiguous -> view(B, C, H, W): (input, g, inner nodes)."""
    if not (node.op == "call_method" and node.target in ("view", "reshape")) or not _is_tensor(node.args[0]):
        return None
    inner = [node.args[0]]
    if inner[-1].op == "call_method" and inner[-1].target == "contiguous":
        inner.append(inner[-1].args[0])
    swap = inner[-1]
    if not (swap.target in (torch.transpose, "transpose") and set(swap.args[1:3]) == {1, 2} and _is_tensor(swap.args[0])):
        return None
    grouped = swap.args[0]
    if not (grouped.op == "call_method" and grouped.target in ("view", "reshape") and _is_tensor(grouped.args[0])):
        return None
    source = grouped.args[0]
    wide, out = _shape(grouped), _shape(node)
    if len(wide) != 5 or _shape(source) != out or len(out) != 4 or wide[1] * wide[2] != out[1]:
        return None
    return source, wide[1], inner + [grouped]


def _constant_factor(node: fx.Node) -> str | None:
    """`x * c`, `c * x`, `x / c`, `x.mul(c)`, `x.div(c)` with a Python number c: `scale c` (Inception-ResNet's residual
    scale, RepViT's mean of two heads); '' for a factor of 1; None for anything else (a tensor operand, `c / x`)."""
    if node.op not in ("call_function", "call_method") or len(node.args) != 2 or node.kwargs:
        return None
    first, second = node.args
    if node.target in _MUL:
        x, c = (first, second) if _is_tensor(first) else (second, first)
    elif node.target in _DIV:
        x, c = first, second
    else:
        return None
    if not _is_tensor(x) or isinstance(c, bool) or not isinstance(c, (int, float)) or not math.isfinite(c) or c == 0:
        return None
    if c == 1:
        return ""
    if node.target in _MUL:
        return f"scale {_exact_text(c)}"
    quotient = _short_text(1 / c)  # x / 4: `scale 0.25`; x / 3: `scale {1/3}`, exact where 0.333333333333 would round
    return f"scale {quotient}" if quotient is not None else f"scale {{1/{_exact_text(c)}}}"


def _short_text(value: float) -> str | None:
    """A number in at most 12 digits (0.17, 2, 1e-5) where that reads back exactly; None where it does not (1/3)."""
    text = number(value)
    text = text[:-2] if text.endswith(".0") else text
    return text if float(text) == value else None


def _exact_text(value: float) -> str:
    """A number as short as it reads back exactly: Python's own repr where 12 digits are not enough."""
    short = _short_text(value)
    return short if short is not None else repr(float(value))


def _layer_scale(node: fx.Node) -> tuple[fx.Node, fx.Node, list[fx.Node]] | None:
    """`param * x` (or `x * param`) with a [C, 1, 1] parameter on a [B, C, H, W] tensor, or a [C] one
    reshaped to [1, C, 1, 1] (timm's ConvNeXt): (the parameter, x, the reshape if any)."""
    if not (node.target in _MUL and len(node.args) == 2 and not node.kwargs):
        return None
    for param, x in (node.args, node.args[::-1]):
        if not (isinstance(param, fx.Node) and _is_tensor(param) and _is_tensor(x) and len(_shape(x)) == 4):
            continue
        c = _shape(x)[1]
        if param.op == "get_attr" and _shape(param) == (c, 1, 1):
            return param, x, []
        source = param.args[0] if param.op == "call_method" and param.target in ("reshape", "view") else None
        if (isinstance(source, fx.Node) and source.op == "get_attr" and _is_tensor(source) and _shape(source) == (c,)
                and _shape(param) == (1, c, 1, 1)):
            return source, x, [param]
    return None


def _channel_conv(node: fx.Node, modules: dict[str, nn.Module]) -> tuple[fx.Node, str, list[fx.Node]] | None:
    """ECA's nn.Conv1d(1, 1, k, padding=(k-1)//2, bias=False) on a [B, C, 1, 1] tensor reshaped to [B, 1, C]
    (`chanconv kK`), or on x.mean((2, 3)) so reshaped (`gap | chanconv kK`): (its input, its text, the nodes it absorbs)."""
    module = modules.get(str(node.target)) if node.op == "call_module" else None
    if type(module) is not nn.Conv1d or not _is_tensor(node.args[0]) or len(_shape(node.args[0])) != 3 or _shape(node.args[0])[1] != 1:
        return None
    k = module.kernel_size[0]
    if (module.in_channels, module.out_channels, module.groups, module.stride, module.dilation, module.padding,
            module.padding_mode, module.bias) != (1, 1, 1, (1,), (1,), ((k - 1) // 2,), "zeros", None) or k % 2 == 0:
        return None
    inner, source = [], node.args[0]
    while _channel_reshape(source) is not None and len(source.users) == 1:  # timm: one view; ECA-Net: squeeze, transpose
        inner.append(source)
        source = source.args[0]
    channels = _shape(node.args[0])[2]
    if not inner:
        return None
    if _shape(source)[1:] == (channels, 1, 1):
        return source, f"chanconv k{k}", inner
    if (_shape(source)[1:] == (channels,) and source.op == "call_method" and source.target == "mean" and len(source.users) == 1
            and _means_over_hw(source.args, source.kwargs) and not _keepdim(source.args, source.kwargs)):
        return source.args[0], f"gap | chanconv k{k}", [*inner, source]
    return None


_RESHAPES = {"view", "reshape", "squeeze", "unsqueeze", "flatten", "transpose", "permute",
             torch.reshape, torch.squeeze, torch.unsqueeze, torch.flatten, torch.transpose, torch.permute}


def _channel_reshape(node: Any) -> fx.Node | None:
    """The input of a reshape, squeeze, unsqueeze or transpose between two shapes of one vector per sample (every size but
    the batch's and one other is 1: [B, C], [B, 1, C], [B, C, 1, 1]), which keeps the order of its values; else None."""
    if not (isinstance(node, fx.Node) and node.target in _RESHAPES and node.args and _is_tensor(node.args[0]) and _is_tensor(node)):
        return None
    source = node.args[0]
    before, after = _shape(source), _shape(node)
    if not (_one_vector(before) and _one_vector(after) and math.prod(before) == math.prod(after)):
        return None
    if node.target in ("transpose", torch.transpose):  # the batch dimension stays first
        swapped = node.args[1:3]
        return source if len(swapped) == 2 and all(isinstance(d, int) and d % len(before) for d in swapped) else None
    if node.target in ("permute", torch.permute):
        dims = _permute(node)
        return source if dims and dims[0] % len(before) == 0 else None
    return source


def _one_vector(shape: tuple[int, ...]) -> bool:
    return len(shape) >= 2 and sum(n != 1 for n in shape[1:]) <= 1


def _expanded_for_mul(node: fx.Node) -> bool:
    """`y.expand_as(x)` whose only readers multiply it: the product broadcasts y as the expand does."""
    if not (node.op == "call_method" and node.target == "expand_as" and _is_tensor(node.args[0]) and _is_tensor(node.args[1])):
        return False
    small, full = _shape(node.args[0]), _shape(node.args[1])
    return (len(small) == len(full) and all(a in (b, 1) for a, b in zip(small, full))
            and all(user.target in _MUL for user in node.users))


def _layer_scale_text(param: fx.Node, graph: fx.GraphModule) -> str:
    """`layerscale V` with the parameter's value when every channel has the same one (its initial value, to float32's 7 digits)."""
    value: Any = graph
    for name in str(param.target).split("."):
        value = getattr(value, name)
    values = value.detach().unique()
    return f"layerscale {number(float(f'{values[0].item():.7g}'))}" if len(values) == 1 else "layerscale"


class _Refused(Op):
    """A statement that could not be written: it keeps its place so --partial knows where to stop."""

    def __init__(self, scopes: tuple[Scope, ...]) -> None:
        super().__init__("", scopes, None)


def _dropout_text(args: tuple, kwargs: dict) -> str:
    """F.dropout(x, p, training=self.training) (timm's heads): `dropout p`, nothing when p is 0."""
    p = args[1] if len(args) > 1 else kwargs.get("p", 0.5)
    return f"dropout {number(p)}" if p else ""


def _pad_text(args: tuple, kwargs: dict) -> str | None:
    """F.pad(x, (l, r, t, b)) with a constant (HGNetV2's stem): `pad l r t b [value=v]`; None for other modes."""
    sides = args[1] if len(args) > 1 else kwargs.get("pad")
    mode = args[2] if len(args) > 2 else kwargs.get("mode", "constant")
    value = (args[3] if len(args) > 3 else kwargs.get("value")) or 0.0
    if mode != "constant" or not isinstance(sides, (list, tuple)) or len(sides) not in (2, 4):
        return None
    if not all(isinstance(v, int) and v >= 0 for v in sides) or not isinstance(value, (int, float)):
        return None
    l, r, t, b = (*sides, 0, 0)[:4]
    return f"pad {l} {r} {t} {b}" + ("" if value == 0 else f" value={number(value)}")


def _means_over_hw(args: tuple, kwargs: dict) -> bool:
    dims = args[1] if len(args) > 1 else kwargs.get("dim")
    return isinstance(dims, (list, tuple)) and sorted(d % 4 for d in dims) == [2, 3]


def _keepdim(args: tuple, kwargs: dict) -> bool:
    return bool(args[2] if len(args) > 2 else kwargs.get("keepdim", False))


def _flattens_from_1(args: tuple, kwargs: dict) -> bool:
    """torch.flatten(x, 1) or x.flatten(start_dim=1), to the last dim."""
    start = args[1] if len(args) > 1 else kwargs.get("start_dim", 0)
    end = args[2] if len(args) > 2 else kwargs.get("end_dim", -1)
    return start == 1 and end == -1


def _is_container(cls: Any) -> bool:
    """nn.Sequential, ModuleList, ModuleDict, or a subclass that keeps their forward (Conv2dNormActivation).

    A class named by a string (an ONNX file's module metadata, not importable here) counts by its name."""
    if isinstance(cls, str):
        return cls in ("torch.nn.modules.container.Sequential", "torch.nn.modules.container.ModuleList",
                       "torch.nn.modules.container.ModuleDict")
    if not isinstance(cls, type):
        return False
    if issubclass(cls, nn.Sequential):
        return cls.forward is nn.Sequential.forward
    return issubclass(cls, (nn.ModuleList, nn.ModuleDict)) and cls.forward is nn.Module.forward


def _refused(statement: Any) -> bool:
    if isinstance(statement, _Refused):
        return True
    if isinstance(statement, Join):
        return any(_refused(s) for b in statement.branches + ([statement.shortcut] if statement.shortcut else []) for s in b)
    return False


def _written(branch: list) -> list:
    """A branch as the language writes it: its layers' texts and joins, without the modules they came from."""
    return [s.text if isinstance(s, Op) else (s.word, [_written(b) for b in s.branches], _written(s.shortcut or []))
            for s in branch]


def _is_projection(branch: list) -> bool:
    """torchvision ResNet's downsample: a 1x1 conv without bias, any stride, then a plain bn."""
    if len(branch) != 2 or not all(isinstance(s, Op) for s in branch):
        return False
    words = branch[0].text.split()  # conv C k1 sS p0 d1 g1 nobias
    return (len(words) == 8 and words[0] == "conv" and words[2] == "k1" and words[4:] == ["p0", "d1", "g1", "nobias"]
            and branch[1].text == "bn")


def _common(*scopes: tuple[Scope, ...]) -> tuple[Scope, ...]:
    """The longest run of scopes every statement shares."""
    common = scopes[0]
    for other in scopes[1:]:
        n = 0
        while n < min(len(common), len(other)) and common[n].path == other[n].path:
            n += 1
        common = common[:n]
    return common
