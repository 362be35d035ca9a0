"""torch.nn.Module -> statements, through torch.fx.

The tracer is torch.fx's symbolic tracer (`torch.fx.symbolic_trace`): it records a module's forward
at the level of torch's layer modules (nn.Conv2d, nn.BatchNorm2d, ... stay single calls, with their
module paths and the modules around them in `nn_module_stack`), which is the level the language
writes at. torch.export and dynamo would lower the layers to aten operators and lose the module
paths; TorchScript keeps them but not as a dataflow graph one can walk. Data-dependent Python control
flow cannot be traced symbolically, and is refused with fx's message.

The graph is read back from its output: a node with one tensor input is a layer in a chain; an add,
cat or mul is a join whose branches run from the join's immediate dominator (the fork where they
meet) to its inputs. DenseNet's `torch.cat(features)` over a growing list is read as a chain of
two-way concats, each extending the previous one.
"""
from __future__ import annotations

import operator
from typing import Any

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from archspec.importers.layers import Inexpressible, adaptive_size, layer_text
from archspec.importers.statements import Imported, Join, Op, Refusal, Scope
from archspec.language.errors import ArchspecError

_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
_ADD = {operator.add, operator.iadd, torch.add, "add", "add_"}
_MUL = {operator.mul, operator.imul, torch.mul, "mul", "mul_"}
_CAT = {torch.cat, torch.concat}
_ACTIVATIONS = {
    torch.relu: "relu", torch.nn.functional.relu: "relu", "relu": "relu", "relu_": "relu",
    torch.nn.functional.relu6: "relu6", torch.sigmoid: "sigmoid", "sigmoid": "sigmoid",
    torch.nn.functional.silu: "silu", torch.nn.functional.hardswish: "hardswish", torch.tanh: "tanh",
    torch.nn.functional.gelu: "gelu",
}


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
        graph = _traced(module)
        _propagate_shapes(graph, input_shape)
        return _Reader(graph).read(input_shape)
    finally:
        module.train(was_training)


def _traced(module: nn.Module) -> fx.GraphModule:
    try:
        return fx.symbolic_trace(module)
    except Exception as exc:  # noqa: BLE001 - fx raises many kinds: TraceError, TypeError, NotImplementedError...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ArchspecError(f"torch.fx cannot trace {type(module).__name__}: {first}",
                            "the forward must not branch on tensor values; archspec imports what torch.fx.symbolic_trace can trace") from None


def _propagate_shapes(graph: fx.GraphModule, input_shape: tuple[int, ...]) -> None:
    try:
        with torch.no_grad():
            ShapeProp(graph).propagate(torch.zeros(1, *input_shape))
    except Exception as exc:  # noqa: BLE001 - the user's forward can raise anything
        shape = "x".join(map(str, input_shape))
        raise ArchspecError(f"the module does not run on a {shape} input: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}",
                            "give the input size it takes with --input (e.g. --input 3x224x224)") from None


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


class _Reader:
    def __init__(self, graph: fx.GraphModule) -> None:
        self.graph = graph
        self.modules = dict(graph.named_modules())
        self.nodes = [n for n in graph.graph.nodes if n.op == "placeholder" or _is_tensor(n)]
        self.order = {n: i for i, n in enumerate(self.nodes)}
        self.cats: dict[tuple[fx.Node, ...], fx.Node] = {}
        self.inputs = {n: self._inputs(n) for n in self.nodes}
        self.dominators = self._dominators()
        self.refusals: list[Refusal] = []
        self.seen: set[fx.Node] = set()
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
        return _nodes_in(list(node.args) + list(node.kwargs.values()))

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
        result = output.args[0]
        if len(placeholders) != 1 or not _is_tensor(result):
            raise ArchspecError(f"the module takes {len(placeholders)} inputs and returns {type(result).__name__}",
                                "archspec imports a network with one input tensor and one output tensor")
        first_bad = self.scan()
        try:
            statements = self.chain(placeholders[0], result)
        except NotNested as exc:
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
            if node.op == "placeholder" or self.join_word(node) is not None:
                continue
            if node.op in ("get_attr", "output"):
                continue
            if self.op_text(node) is None and first is None:
                first = node
        self.quiet = True  # the walk below meets them again
        return first

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
            if statement is not None:
                out.append(statement)
        return out[::-1]

    def statement(self, node: fx.Node) -> tuple[Any, fx.Node]:
        """(the statement for `node` or None, the node its input comes from)."""
        inputs = self.inputs[node]
        word = self.join_word(node)
        if word is not None and inputs:
            fork = self.idom(node)
            return self.join(node, word, [self.chain(fork, i) for i in inputs]), fork
        text = self.op_text(node)
        if not inputs or (len(inputs) != 1 and text is not None):
            raise NotNested(node)
        if text is None:  # refused (recorded by the scan): keep walking from its input, for the other refusals
            return _Refused(self.scopes(node)), self.idom(node)
        weights = str(node.target) if node.op == "call_module" and any(True for _ in self.modules[node.target].state_dict()) else None
        return Op(text, self.scopes(node), weights), inputs[0]

    def join_word(self, node: fx.Node) -> str | None:
        target = node.target
        if node.op not in ("call_function", "call_method"):
            return None
        if target in _CAT:
            dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
            return "concat" if dim in (1, -3) else None
        if target in _ADD:
            return "add"
        if target in _MUL:
            return "mul"
        return None

    def join(self, node: fx.Node, word: str, branches: list[list]) -> Any:
        if word == "concat" and len(branches) == 1:  # cat of one tensor (branch empty: the fork is its input)
            return None
        operands = [a for a in node.args if isinstance(a, fx.Node) or not isinstance(a, (list, tuple))]
        if word in ("add", "mul") and (len(node.args) != 2 or len(operands) != len(branches) or node.kwargs):
            self.refuse(node, f"{'adding' if word == 'add' else 'multiplying by'} a constant or with alpha")
            return _Refused(self.scopes(node))
        inner = [s.scopes for b in branches for s in b]
        scopes = _common(self.scopes(node), *inner)
        if word != "add":
            return Join(word, branches, scopes)
        return self.residual(node, branches, scopes)

    def residual(self, node: fx.Node, branches: list[list], scopes: tuple[Scope, ...]) -> Join:
        if len(branches) == 2 and not all(branches):  # `project` is the identity here too, and lines blocks up
            return Join("residual project", [branches[0] or branches[1]], scopes)
        if len(branches) != 2:
            return Join("add", branches, scopes)
        fork = self.idom(node)
        changes_shape = _shape(fork) != _shape(node)
        for body, shortcut in ((branches[0], branches[1]), (branches[1], branches[0])):
            if changes_shape and _is_projection(shortcut):
                return Join("residual project", [body], scopes, shortcut=shortcut)
        return Join("residual", [branches[0]], scopes, shortcut=branches[1])

    def op_text(self, node: fx.Node) -> str | None:
        """The layer's text; '' for a no-op; None when refused (recorded)."""
        if node.op == "call_module":
            module = self.modules[node.target]
            try:
                return layer_text(module)
            except Inexpressible as exc:
                self.refuse(node, str(exc))
                return None
        target, args = node.target, node.args
        if target in _ACTIVATIONS and not node.kwargs.get("approximate"):
            return _ACTIVATIONS[target]
        if target in (torch.flatten, "flatten") and _flattens_from_1(args, node.kwargs):
            return "flatten"
        if target == "mean" and len(args) == 2 and list(args[1]) in ([2, 3], [-2, -1]) and not node.kwargs.get("keepdim"):
            return "gap | flatten"  # x.mean([2, 3]): the global average, flattened
        if target is torch.nn.functional.adaptive_avg_pool2d and len(args) == 2:
            return adaptive_size(args[1])
        self.refuse(node, "")
        return None

    def refuse(self, node: fx.Node, why: str) -> None:
        if self.quiet:
            return
        self.refusals.append(Refusal(self.path(node), call_name(node, self.modules), why))


class _Refused(Op):
    """A statement that could not be written: it keeps its place so --partial knows where to stop."""

    def __init__(self, scopes: tuple[Scope, ...]) -> None:
        super().__init__("", scopes, None)


def _flattens_from_1(args: tuple, kwargs: dict) -> bool:
    """torch.flatten(x, 1) or x.flatten(start_dim=1), to the last dim."""
    start = args[1] if len(args) > 1 else kwargs.get("start_dim", 0)
    end = args[2] if len(args) > 2 else kwargs.get("end_dim", -1)
    return start == 1 and end == -1


def _is_container(cls: Any) -> bool:
    """nn.Sequential, ModuleList, ModuleDict, or a subclass that keeps their forward (Conv2dNormActivation)."""
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
