"""`archspec import model.onnx`: an ONNX graph lifted into the torch.fx graph that trace.py reads.

Each ONNX node the language has becomes the torch layer it stands for (Conv -> nn.Conv2d with the
initializers as its weights, Add -> `+`, Concat -> torch.cat, Split -> Tensor.chunk, ...), so the
same reader rebuilds the nesting of the joins and the same renderer writes the text, and `--weights`
maps the lifted layers' tensors as it maps a torch module's. Computations on constants alone (shape
arithmetic, `Constant` nodes) are folded with onnx's reference evaluator. The module paths and class
names that torch.onnx's exporter writes into each node's metadata become the scopes, so a graph
exported from torch reads back with its blocks; a graph without them reads back flat.

A few ONNX idioms are read as the one layer they stand for: `Mul(x, Sigmoid(x))` is `silu`,
`Mul(x, HardSigmoid(x))` `hardswish`, `MatMul` then `Add` of a constant a `linear`, a `Reshape` or
`Squeeze` to `[B, F]` a `flatten`, a zero `Pad` before a `Conv` that conv's padding, `Slice`s
that cut the channels into equal parts the parts of `Tensor.chunk`, and Reshape, Transpose, Reshape
back ShuffleNet's `channelshuffle`.
"""
from __future__ import annotations

import ast
import math
import operator
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from archspec.importers.layers import LEAVES, Unreadable
from archspec.importers.statements import Imported
from archspec.importers.trace import _CHANNELS_LAST_OK, _TO_CHANNELS_FIRST, _TO_CHANNELS_LAST, GraphReader, _permute
from archspec.language.errors import ArchspecError

_FLOAT = 1  # onnx.TensorProto.FLOAT
_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "Relu": nn.ReLU, "Sigmoid": nn.Sigmoid, "Tanh": nn.Tanh, "HardSwish": nn.Hardswish,
}


def require_onnx() -> Any:
    """The onnx package (the `onnx` extra), or one clear line saying how to install it."""
    try:
        import onnx
    except ImportError:
        raise ArchspecError("`archspec import MODEL.onnx` needs onnx, which is not installed",
                            "install the extras: pip install 'archspec-cnn[torch,onnx]'") from None
    return onnx


def is_onnx_path(spec: str) -> bool:
    return spec.lower().endswith(".onnx")


def load_model(path: Path) -> Any:
    """The checked ModelProto at `path`; a clear error for a missing, unreadable, truncated or non-ONNX file."""
    onnx = require_onnx()
    if not path.is_file():
        raise ArchspecError(f"{path}: no such file", "give the path of a .onnx model, e.g. one `archspec export` wrote")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError, OSError, onnx's own errors
        raise ArchspecError(f"{path}: not an ONNX model ({_first_line(exc)})",
                            "the file is truncated or of another format; export it again") from None
    if not model.graph.node or not model.graph.output:
        raise ArchspecError(f"{path}: not an ONNX model (no graph in it)", "the file is truncated or of another format; export it again")
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # noqa: BLE001 - ValidationError, or any checker failure
        raise ArchspecError(f"{path}: not a valid ONNX model ({_first_line(exc)})",
                            "the file is truncated or of another format; export it again") from None
    return model


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def lift(model: Any, input_shape: tuple[int, ...] | None) -> tuple[fx.GraphModule, Imported]:
    """(the lifted module holding the weights, its statements) for an ONNX model at `input_shape` (C, H, W or F)."""
    lifter = _Lifter(model, input_shape)
    module = lifter.run()
    batch = lifter.batch
    with torch.no_grad():
        ShapeProp(module).propagate(torch.zeros(batch, *lifter.shape))
    return module, _OnnxReader(module).read(lifter.shape)


class _Lost(Exception):
    """A tensor computed by a node that could not be lifted, whose shape onnx cannot infer: nothing after it can be read."""


class _Lifter:
    def __init__(self, model: Any, input_shape: tuple[int, ...] | None) -> None:
        import onnx
        from onnx import numpy_helper

        self.model = model
        self.onnx = onnx
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
        graph = model.graph
        self.consts: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        inputs = [i for i in graph.input if i.name not in self.consts]
        if len(inputs) != 1 or len(graph.output) != 1:
            raise ArchspecError(f"the model takes {len(inputs)} inputs and returns {len(graph.output)} outputs",
                                "archspec imports a network with one input tensor and one output tensor")
        self.input = inputs[0]
        self.batch, self.shape = _input_shape(self.input, input_shape)
        self.nodes = _topological(graph, set(self.consts) | {self.input.name})
        self.users: dict[str, list[Any]] = {}
        for node in self.nodes:
            for name in node.input:
                self.users.setdefault(name, []).append(node)
        self.output = graph.output[0].name
        self.users.setdefault(self.output, []).append(None)  # the graph's output is read too
        self.producer = {out: node for node in self.nodes for out in node.output}
        self.graph = fx.Graph()
        self.root = nn.Module()
        self.values: dict[str, tuple[fx.Node, torch.Tensor]] = {}
        self.lost: set[str] = set()
        self.absorbed: set[str] = set()  # nodes read as part of another (the Add of a MatMul), by their first output's name (unique in a graph)
        # Outputs whose node is read with the next ones (a zero Pad with the conv after it, a channel shuffle's
        # Reshape and Transpose with the Reshape back): lifted there, or refused if something else reads them.
        self.pending: dict[str, _Pending] = {}
        self.chunks: dict[tuple[str, int], fx.Node] = {}
        self.inferred: dict[str, list[int | None]] | None = None
        self.names: set[str] = set()

    def run(self) -> fx.GraphModule:
        x = self.graph.placeholder("x")
        self.values[self.input.name] = (x, torch.zeros(self.batch, *self.shape))
        for node in self.nodes:
            if node.output[0] not in self.absorbed:
                self.lift(node)
        if self.output in self.pending:
            self.network(self.output)  # a Pad at the very end: refused there
        if self.output in self.lost or self.output not in self.values:
            from archspec.importers.api import ImportRefused

            refusals = self.refusals_so_far()
            if not refusals:
                raise ArchspecError(f"the model's output `{self.output}` is not computed from its input",
                                    "archspec imports a network whose output is computed from its one input")
            raise ImportRefused(refusals)
        self.graph.output(self.values[self.output][0])
        return fx.GraphModule(self.root, self.graph)

    def refusals_so_far(self) -> list:
        """The refusals of the lifted part, when the rest cannot be read (the reader would find them later)."""
        from archspec.importers.statements import Refusal

        out = []
        for n in self.graph.nodes:
            if n.op == "call_module" and isinstance(self.root.get_submodule(n.target), Unreadable):
                name, op_type = n.meta["onnx"]
                out.append(Refusal(name, f"ONNX {op_type}", self.root.get_submodule(n.target).why))
        return out

    # --- values ---------------------------------------------------------------------------------------

    def const(self, name: str) -> np.ndarray | None:
        return self.consts.get(name) if name else None

    def network(self, name: str) -> tuple[fx.Node, torch.Tensor]:
        """A tensor the network computes; a pending Pad that no conv took is refused here."""
        if name in self.pending and name not in self.values:
            pending = self.pending.pop(name)
            self.unreadable(pending.node, [pending.source], pending.why)
        if name in self.lost:
            raise _Lost(name)
        return self.values[name]

    def is_network(self, name: str) -> bool:
        return bool(name) and (name in self.values or name in self.pending or name in self.lost)

    # --- lifting ---------------------------------------------------------------------------------------

    def lift(self, node: Any) -> None:
        try:
            if not any(self.is_network(n) for n in node.input):
                self.fold(node)
                return
            if node.domain not in ("", "ai.onnx"):
                self.unreadable(node, self.network_inputs(node), "an operator outside the ONNX standard")
                return
            handler = getattr(self, f"_{node.op_type.lower()}", None)
            if handler is None:
                self.unreadable(node, self.network_inputs(node), "")
            else:
                handler(node)
        except _Lost:
            self.lost.update(node.output)

    def network_inputs(self, node: Any) -> list[str]:
        return [n for n in node.input if self.is_network(n)]

    def fold(self, node: Any) -> None:
        """A node of constants only: computed once here (shape arithmetic, Constant)."""
        from onnx.reference import ReferenceEvaluator

        try:
            outputs = ReferenceEvaluator(node).run(None, {n: self.consts[n] for n in node.input if n})
        except Exception as exc:  # noqa: BLE001 - the reference evaluator raises many kinds
            raise ArchspecError(f"the constant node `{node.name}` ({node.op_type}) cannot be computed: {_first_line(exc)}",
                                "check the model with onnx.checker, or export it again") from None
        for name, value in zip(node.output, outputs):
            self.consts[name] = np.asarray(value)

    def emit(self, node: Any, module: nn.Module, source: str, output: str | None = None) -> None:
        """`module` applied to the network tensor `source`, as the node's (first) output."""
        x, value = self.network(source)
        module.eval()
        try:
            with torch.no_grad():
                result = module(value)
        except RuntimeError as exc:  # settings torch refuses (a pool's padding over half its window)
            self.unreadable(node, [source], f"torch's {type(module).__name__} cannot run it: {_first_line(exc)}")
            return
        target = self.module_name(node)
        self.root.add_module(target, module)
        self.bind(node, self.graph.call_module(target, (x,)), result, output, layer=True)

    def call(self, node: Any, function: Any, args: tuple, example: torch.Tensor, method: bool = False) -> fx.Node:
        fx_node = (self.graph.call_method if method else self.graph.call_function)(function, args)
        self.bind(node, fx_node, example, None, layer=False)
        return fx_node

    def bind(self, node: Any, fx_node: fx.Node, value: torch.Tensor, output: str | None, layer: bool) -> None:
        fx_node.meta["onnx"] = (node.name or node.op_type, _operator(node))
        fx_node.meta["nn_module_stack"] = self.scopes(node, layer)
        self.values[output or node.output[0]] = (fx_node, value)

    def alias(self, node: Any) -> None:
        """Identity, Dropout in inference: the output is the input."""
        self.values[node.output[0]] = self.network(node.input[0])

    def module_name(self, node: Any) -> str:
        base = re.sub(r"\W+", "_", node.name or node.op_type).strip("_") or "node"
        base = base if not base[0].isdigit() else f"n{base}"
        name, n = base, 2
        while name in self.names:
            name, n = f"{base}_{n}", n + 1
        self.names.add(name)
        return name

    def unreadable(self, node: Any, sources: list[str], why: str) -> None:
        """A node the language cannot write: recorded, with a stand-in of the right shape so the rest is read too."""
        values = [self.network(s) for s in sources]
        for i, output in enumerate(node.output):
            if not output or not self.users.get(output):
                continue
            shape = self.inferred_shape(output)
            if shape is None:
                self.lost.add(output)
                self.record_lost(node, values, why)
                continue
            module = Unreadable(why, shape)
            target = self.module_name(node)
            self.root.add_module(target, module)
            fx_node = self.graph.call_module(target, tuple(v[0] for v in values))
            with torch.no_grad():
                self.bind(node, fx_node, module(*[v[1] for v in values]), output, layer=True)

    def record_lost(self, node: Any, values: list, why: str) -> None:
        """A refusal even when nothing after the node can be read (its output's shape is unknown)."""
        module = Unreadable(why, [1])
        target = self.module_name(node)
        self.root.add_module(target, module)
        fx_node = self.graph.call_module(target, tuple(v[0] for v in values))
        fx_node.meta["onnx"] = (node.name or node.op_type, _operator(node))

    def inferred_shape(self, name: str) -> list[int] | None:
        """The output's shape at the input size, from onnx's shape inference (batch as the lifted input's)."""
        if self.inferred is None:
            self.inferred = self.infer_shapes()
        dims = self.inferred.get(name)
        if dims is None or any(d is None for d in dims) or not dims:
            return None
        return [self.batch] + list(dims[1:])

    def infer_shapes(self) -> dict[str, list[int | None]]:
        model = self.onnx.ModelProto()
        model.CopyFrom(self.model)
        dims = model.graph.input[[i.name for i in model.graph.input].index(self.input.name)].type.tensor_type.shape.dim
        for d, size in zip(dims, (self.batch, *self.shape)):
            d.Clear()
            d.dim_value = size
        try:
            inferred = self.onnx.shape_inference.infer_shapes(model)
        except Exception:  # noqa: BLE001 - inference can fail on custom ops: those shapes stay unknown
            return {}
        out = {}
        for info in list(inferred.graph.value_info) + list(inferred.graph.output):
            shape = info.type.tensor_type.shape
            out[info.name] = [d.dim_value if d.HasField("dim_value") else None for d in shape.dim]
        return out

    def scopes(self, node: Any, layer: bool) -> dict[str, tuple[str, Any]]:
        """fx's nn_module_stack from torch.onnx's metadata: the modules around the node (and the layer itself)."""
        meta = _metadata(node)
        if "pkg.torch.onnx.name_scopes" not in meta:  # a node an optimiser made (a Split from two Slices): its reader's
            user = next((u for o in node.output for u in self.users.get(o, []) if u is not None
                         and "pkg.torch.onnx.name_scopes" in _metadata(u)), None)
            meta = _metadata(user) if user is not None else meta
        try:
            paths = ast.literal_eval(meta.get("pkg.torch.onnx.name_scopes", "[]"))
            classes = ast.literal_eval(meta.get("pkg.torch.onnx.class_hierarchy", "[]"))
        except (ValueError, SyntaxError):
            paths, classes = [], []
        stack = [(p, c) for p, c in zip(paths[1:-1], classes[1:-1]) if isinstance(p, str) and isinstance(c, str)]
        if classes[:1] == [_ARCHSPEC_NET]:
            stack = [(p, _block_call(p, c)) for p, c in stack]
        if stack and _is_layer_class(stack[-1][1]) and not stack[-1][1].startswith("torch.nn.") and not layer:
            stack = stack[:-1]  # a permute inside a layer torch.nn has no class for (LayerNorm2d, PointwiseLinear): part of it
        if layer and not (stack and _is_layer_class(stack[-1][1])):
            stack.append((node.name, node.op_type))  # the reader drops a layer's own entry
        return {f"{i}:{p}": (p, _resolved(c)) for i, (p, c) in enumerate(stack)}

    # --- attributes -------------------------------------------------------------------------------------

    def attrs(self, node: Any) -> dict[str, Any]:
        return {a.name: self.onnx.helper.get_attribute_value(a) for a in node.attribute}

    def spatial_pads(self, node: Any, source: str, kernel: tuple[int, ...], strides: list[int], dilations: list[int]) -> tuple[int, int] | str:
        """(ph, pw), or why the padding cannot be written (asymmetric, or SAME at an odd total)."""
        a = self.attrs(node)
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            size = self.network(source)[1].shape[2:]
            totals = [max((math.ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0) for n, s, k, d in zip(size, strides, kernel, dilations)]
            if any(t % 2 for t in totals):
                return f"auto_pad={auto} that pads one side more at this size ({'x'.join(map(str, size))})"
            return totals[0] // 2, totals[1] // 2
        if auto == "VALID":
            return 0, 0
        pads = list(a.get("pads", [0, 0, 0, 0]))
        if pads[:2] != pads[2:]:
            return f"pads={pads} that pad one side more (the language pads both sides alike)"
        return pads[0], pads[1]

    # --- the operators ------------------------------------------------------------------------------------

    def _conv(self, node: Any) -> None:
        a = self.attrs(node)
        w, b = self.const(node.input[1]), self.const(node.input[2]) if len(node.input) > 2 else None
        source = node.input[0]
        if w is None or w.ndim != 4:
            self.unreadable(node, self.network_inputs(node), "a weight computed in the graph" if w is None
                            else f"a {w.ndim - 2}-D convolution (the language's convs are 2-D)")
            return
        strides, dilations = list(a.get("strides", [1, 1])), list(a.get("dilations", [1, 1]))
        extra = (0, 0)
        if source in self.pending and self.pending[source].kind == "pad":  # Pad then Conv: the conv's padding
            pending = self.pending[source]
            source, extra = pending.source, pending.detail
        pads = self.spatial_pads(node, source, w.shape[2:], strides, dilations)
        if isinstance(pads, str):
            self.unreadable(node, [source], pads)
            return
        groups = int(a.get("group", 1))
        conv = nn.Conv2d(w.shape[1] * groups, w.shape[0], tuple(w.shape[2:]), tuple(strides),
                         (pads[0] + extra[0], pads[1] + extra[1]), tuple(dilations), groups, bias=_has_bias(b))
        _load(conv, w, b)
        self.emit(node, conv, source)

    def _convtranspose(self, node: Any) -> None:
        a = self.attrs(node)
        w, b = self.const(node.input[1]), self.const(node.input[2]) if len(node.input) > 2 else None
        if w is None or w.ndim != 4:
            self.unreadable(node, self.network_inputs(node), "a weight computed in the graph" if w is None
                            else f"a {w.ndim - 2}-D transposed convolution (the language's are 2-D)")
            return
        if "output_shape" in a or _text(a.get("auto_pad", b"NOTSET")) != "NOTSET":
            self.unreadable(node, [node.input[0]], "output_shape or auto_pad (the language's convtranspose is given its padding)")
            return
        pads = list(a.get("pads", [0, 0, 0, 0]))
        if pads[:2] != pads[2:]:
            self.unreadable(node, [node.input[0]], f"pads={pads} that pad one side more (the language pads both sides alike)")
            return
        groups = int(a.get("group", 1))
        conv = nn.ConvTranspose2d(w.shape[0], w.shape[1] * groups, tuple(w.shape[2:]), tuple(a.get("strides", [1, 1])),
                                  tuple(pads[:2]), tuple(a.get("output_padding", [0, 0])), groups, bias=_has_bias(b),
                                  dilation=tuple(a.get("dilations", [1, 1])))
        _load(conv, w, b)
        self.emit(node, conv, node.input[0])

    def _batchnormalization(self, node: Any) -> None:
        a = self.attrs(node)
        scale, bias, mean, var = (self.const(n) for n in node.input[1:5])
        rank = self.network(node.input[0])[1].dim()
        if any(v is None for v in (scale, bias, mean, var)) or a.get("training_mode", 0) or rank not in (2, 4):
            self.unreadable(node, [node.input[0]], "training mode, statistics computed in the graph, or a tensor that is not [B, C, H, W] or [B, F]")
            return
        bn = (nn.BatchNorm2d if rank == 4 else nn.BatchNorm1d)(len(scale), eps=_float32(a.get("epsilon", 1e-5)),
                                                                momentum=_float32(1 - a.get("momentum", 0.9)))
        with torch.no_grad():
            for tensor, value in ((bn.weight, scale), (bn.bias, bias), (bn.running_mean, mean), (bn.running_var, var)):
                tensor.copy_(torch.from_numpy(np.array(value, dtype=np.float32)))
        self.emit(node, bn, node.input[0])

    def _relu(self, node: Any) -> None:
        self.emit(node, _ACTIVATIONS[node.op_type](), node.input[0])

    _sigmoid = _tanh = _hardswish = _relu

    def _shape(self, node: Any) -> None:
        """Shape(x) of a network tensor: a constant at the size imported (the batch as run)."""
        a = self.attrs(node)
        dims = np.array(self.network(node.input[0])[1].shape, dtype=np.int64)
        self.consts[node.output[0]] = dims[a.get("start", 0):a.get("end", None)]

    def _hardsigmoid(self, node: Any) -> None:
        a = self.attrs(node)
        if not _is_torch_hardsigmoid(a):
            self.unreadable(node, [node.input[0]], f"alpha={a.get('alpha', 0.2):.6g}, beta={a.get('beta', 0.5):.6g} "
                                                   "(the language's hardsigmoid is relu6(x + 3) / 6)")
            return
        self.emit(node, nn.Hardsigmoid(), node.input[0])

    def _leakyrelu(self, node: Any) -> None:
        self.emit(node, nn.LeakyReLU(_float32(self.attrs(node).get("alpha", 0.01))), node.input[0])

    def _gelu(self, node: Any) -> None:
        approximate = self.attrs(node).get("approximate", b"none")
        approximate = approximate.decode() if isinstance(approximate, bytes) else approximate
        if approximate not in ("none", "tanh"):
            self.unreadable(node, [node.input[0]], f"approximate={approximate!r} (the language's gelu is exact or `tanh`)")
            return
        self.emit(node, nn.GELU(approximate=approximate), node.input[0])

    def _softmax(self, node: Any) -> None:
        rank = self.network(node.input[0])[1].dim()
        axis = self.attrs(node).get("axis", 1 if self.opset < 13 else -1) % rank
        if axis != 1 or (rank != 2 and self.opset < 13):
            self.unreadable(node, [node.input[0]], "a softmax over other dimensions than the channels")
            return
        self.emit(node, nn.Softmax(dim=1), node.input[0])

    def _clip(self, node: Any) -> None:
        a = self.attrs(node)
        low = self.const(node.input[1]) if len(node.input) > 1 else a.get("min")
        high = self.const(node.input[2]) if len(node.input) > 2 else a.get("max")
        low = None if low is None else float(low)
        high = None if high is None or not math.isfinite(float(high)) else float(high)
        if low == 0 and high in (None, 6):
            self.emit(node, nn.ReLU() if high is None else nn.ReLU6(), node.input[0])
            return
        self.unreadable(node, [node.input[0]], f"Clip({low}, {high}) (the language has relu and relu6)")

    def _identity(self, node: Any) -> None:
        self.alias(node)

    _dropout = _identity

    def _maxpool(self, node: Any) -> None:
        if len(node.output) > 1 and self.users.get(node.output[1]):
            self.unreadable(node, [node.input[0]], "the indices output")
            return
        self.pool(node, lambda k, s, p, d, ceil, a: nn.MaxPool2d(k, s, p, d, ceil_mode=ceil))

    def _averagepool(self, node: Any) -> None:
        def make(k: int, s: tuple, p: tuple, d: tuple, ceil: bool, a: dict) -> nn.Module:
            if d != (1, 1):
                raise ValueError("dilations (the language's avgpool has none)")
            include = bool(a.get("count_include_pad", 0)) or p == (0, 0)  # without padding both count the same
            return nn.AvgPool2d(k, s, p, ceil_mode=ceil, count_include_pad=include)
        self.pool(node, make)

    def pool(self, node: Any, make: Callable[..., nn.Module]) -> None:
        a = self.attrs(node)
        kernel = list(a.get("kernel_shape", []))
        strides, dilations = list(a.get("strides", [1] * len(kernel))), list(a.get("dilations", [1] * len(kernel)))
        if len(kernel) != 2 or kernel[0] != kernel[1]:
            self.unreadable(node, [node.input[0]], f"a {'x'.join(map(str, kernel))} window (the language's pools are square and 2-D)")
            return
        pads = self.spatial_pads(node, node.input[0], tuple(kernel), strides, dilations)
        if isinstance(pads, str):
            self.unreadable(node, [node.input[0]], pads)
            return
        try:
            module = make(kernel[0], tuple(strides), pads, tuple(dilations), bool(a.get("ceil_mode", 0)), a)
        except ValueError as exc:
            self.unreadable(node, [node.input[0]], str(exc))
            return
        self.emit(node, module, node.input[0])

    def _globalaveragepool(self, node: Any) -> None:
        self.emit(node, nn.AdaptiveAvgPool2d(1), node.input[0])

    def _reducemean(self, node: Any) -> None:
        a = self.attrs(node)
        x, value = self.network(node.input[0])
        axes = self.const(node.input[1]) if len(node.input) > 1 else a.get("axes")
        axes = sorted(int(i) % value.dim() for i in np.ravel(axes)) if axes is not None else None
        if value.dim() != 4 or axes != [2, 3]:
            self.unreadable(node, [node.input[0]], "a mean over other dimensions than height and width")
        elif a.get("keepdims", 1):
            self.emit(node, nn.AdaptiveAvgPool2d(1), node.input[0])
        else:  # x.mean([2, 3]): the reader writes `gap | flatten`
            self.call(node, "mean", (x, [2, 3]), value.mean([2, 3]), method=True)

    def _flatten(self, node: Any) -> None:
        value = self.network(node.input[0])[1]
        if self.attrs(node).get("axis", 1) % max(value.dim(), 1) != 1:
            self.unreadable(node, [node.input[0]], "a Flatten at another axis than 1 (the language flattens from the channels on)")
        elif value.dim() == 2:
            self.alias(node)
        else:
            self.emit(node, nn.Flatten(), node.input[0])

    def _reshape(self, node: Any) -> None:
        source = node.input[0]
        pending = self.pending.get(source)
        value = pending.detail[1] if pending is not None and pending.kind == "swapped" else self.network(source)[1]
        try:
            shape = tuple(value.reshape(_reshape_dims(value.shape, self.const(node.input[1]), self.attrs(node).get("allowzero", 0))).shape)
        except (RuntimeError, TypeError, ValueError):
            shape = None
        if pending is not None and pending.kind == "swapped":
            groups, _, origin = pending.detail
            if shape == tuple(self.network(origin)[1].shape):  # ShuffleNet's reshape back: the whole shuffle is one layer
                del self.pending[source]
                self.emit(node, nn.ChannelShuffle(groups), origin)
                return
            value = self.network(source)[1]
        if shape is not None and len(shape) == 5 and value.dim() == 4 and shape[1] * shape[2] == value.shape[1]:
            why = f"a reshape to {list(shape)} that is not a channel shuffle (the language's `channelshuffle`)"
            self.pending[node.output[0]] = _Pending("grouped", node, source, (shape[1], value.reshape(shape), source), why)
            return
        users = self.users.get(node.output[0], [])
        if shape is not None and len(shape) == 1 and users and all(u is not None and u.op_type == "Gather" for u in users):
            self.pending[node.output[0]] = _Pending("flat", node, source, value, f"a reshape to {list(shape)}")
            return
        self.reshaped(node, value, shape)

    def _gather(self, node: Any) -> None:
        """A Gather of fixed indices from a flattened tensor (torch.onnx writes as_strided so) that gives the tensor
        back as it was (the pooled [B, C, 1, 1] before ConvNeXt's head), or only reorders its dimensions (a permute)."""
        pending, indices = self.pending.get(node.input[0]), self.const(node.input[1])
        if pending is None or pending.kind != "flat" or indices is None or self.attrs(node).get("axis", 0) != 0:
            self.unreadable(node, self.network_inputs(node), "")
            return
        value, ids = pending.detail, torch.arange(pending.detail.numel()).reshape(pending.detail.shape)
        gathered = ids.reshape(-1)[torch.from_numpy(np.array(indices, dtype=np.int64))]  # a copy: onnx's arrays are read-only
        if torch.equal(gathered, ids):  # every element where it was: the tensor itself
            self.values[node.output[0]] = self.network(pending.source)
            return
        perm = next((p for p in (_TO_CHANNELS_LAST, _TO_CHANNELS_FIRST)
                     if value.dim() == 4 and torch.equal(gathered, ids.permute(*p))), None)
        if perm is None:
            self.unreadable(node, [pending.source], "a gather that is not a permute of the channels")
            return
        x = self.network(pending.source)[0]
        self.call(node, "permute", (x, *perm), value.permute(*perm), method=True)

    def _transpose(self, node: Any) -> None:
        pending = self.pending.get(node.input[0])
        if pending is not None and pending.kind == "grouped" and list(self.attrs(node).get("perm", [])) == [0, 2, 1, 3, 4]:
            groups, grouped, origin = pending.detail
            self.pending[node.output[0]] = _Pending("swapped", node, node.input[0], (groups, grouped.transpose(1, 2), origin),
                                                    "a transpose that is not a channel shuffle (the language's `channelshuffle`)")
            return
        perm, (x, value) = list(self.attrs(node).get("perm", [])), self.network(node.input[0])
        if value.dim() == 4 and perm in (_TO_CHANNELS_LAST, _TO_CHANNELS_FIRST):
            # the torch importer's reader takes permute -> layers on the channels -> permute back as those layers
            self.call(node, "permute", (x, *perm), value.permute(*perm), method=True)
            return
        self.unreadable(node, [node.input[0]], "")

    def channels_last(self, node: fx.Node) -> bool:
        """Whether a lifted 4-D tensor is an image permuted to [B, H, W, C] (layers on its last axis since)."""
        while node.op == "call_module" and isinstance(self.root.get_submodule(node.target), _CHANNELS_LAST_OK):
            node = node.args[0]
        return _permute(node) == _TO_CHANNELS_LAST

    def _layernormalization(self, node: Any) -> None:
        """LayerNormalization over the last axis (the channels of a permuted image, or features): nn.LayerNorm."""
        a = self.attrs(node)
        value = self.network(node.input[0])[1]
        scale, bias = self.const(node.input[1]), self.const(node.input[2]) if len(node.input) > 2 else None
        if a.get("axis", -1) % value.dim() != value.dim() - 1 or scale is None or bias is None or scale.ndim != 1:
            self.unreadable(node, [node.input[0]], "a layer norm over more than the last axis, or without a constant scale and bias")
            return
        norm = nn.LayerNorm(len(scale), eps=_float32(a.get("epsilon", 1e-5)))
        with torch.no_grad():
            norm.weight.copy_(torch.from_numpy(np.array(scale, dtype=np.float32)))
            norm.bias.copy_(torch.from_numpy(np.array(bias, dtype=np.float32)))
        self.emit(node, norm, node.input[0])

    def only_user(self, node: Any, op_type: str) -> Any:
        users = self.users.get(node.output[0], [])
        return users[0] if len(users) == 1 and users[0] is not None and users[0].op_type == op_type else None

    def _squeeze(self, node: Any) -> None:
        value = self.network(node.input[0])[1]
        axes = self.const(node.input[1]) if len(node.input) > 1 else self.attrs(node).get("axes")
        axes = [int(i) % value.dim() for i in np.ravel(axes)] if axes is not None else [i for i, n in enumerate(value.shape) if n == 1]
        shape = tuple(n for i, n in enumerate(value.shape) if i not in axes) if all(value.shape[i] == 1 for i in axes) else None
        self.reshaped(node, value, shape)

    def reshaped(self, node: Any, value: torch.Tensor, shape: tuple[int, ...] | None) -> None:
        """A Reshape or Squeeze: `flatten` when it gives [B, C*H*W], nothing when the shape stays."""
        if shape == tuple(value.shape):
            self.alias(node)
        elif shape is not None and len(shape) == 2 and shape[0] == value.shape[0] and value.dim() > 2:
            self.emit(node, nn.Flatten(), node.input[0])
        else:
            self.unreadable(node, [node.input[0]], f"a reshape to {list(shape) if shape else 'another shape'} "
                                                   "(the language reshapes only by `flatten` to [B, F])")

    def _gemm(self, node: Any) -> None:
        a = self.attrs(node)
        w, c = self.const(node.input[1]), self.const(node.input[2]) if len(node.input) > 2 else None
        if w is None or a.get("transA", 0) or self.network(node.input[0])[1].dim() != 2:
            self.unreadable(node, self.network_inputs(node), "a product that is not features times a constant weight")
            return
        weight = (w if a.get("transB", 0) else w.T) * a.get("alpha", 1.0)
        bias = None if c is None else np.broadcast_to(np.asarray(c) * a.get("beta", 1.0), (weight.shape[0],))
        self.linear(node, weight, bias, node.input[0], node.output[0])

    def _matmul(self, node: Any) -> None:
        w, x = self.const(node.input[1]), self.network(node.input[0])
        # features, or the channels of a permuted [B, H, W, C] image (ConvNeXt's pointwise linear)
        channels_last = x[1].dim() == 4 and self.channels_last(x[0])
        if w is None or w.ndim != 2 or not (x[1].dim() == 2 or channels_last):
            self.unreadable(node, self.network_inputs(node), "a product that is not features times a constant weight")
            return
        output, bias = node.output[0], None
        add = self.bias_add(node)
        if add is not None:  # MatMul then Add of a constant: one linear
            self.absorbed.add(add.output[0])
            bias, output = self.const(next(n for n in add.input if n != node.output[0])), add.output[0]
        self.linear(node, w.T, None if bias is None else np.broadcast_to(bias, (w.shape[1],)), node.input[0], output)

    def bias_add(self, node: Any) -> Any:
        add = self.only_user(node, "Add")
        if add is None:
            return None
        other = next((n for n in add.input if n != node.output[0]), None)
        value = self.const(other) if other else None
        return add if value is not None and value.size == self.const(node.input[1]).shape[1] else None

    def linear(self, node: Any, weight: np.ndarray, bias: np.ndarray | None, source: str, output: str) -> None:
        layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
        _load(layer, weight, bias)
        self.emit(node, layer, source, output)

    def _add(self, node: Any) -> None:
        self.binary(node, operator.add, "adding a constant")

    def _mul(self, node: Any) -> None:
        gated = self.self_gate(node)
        if gated is not None:  # x * sigmoid(x) is silu, x * hardsigmoid(x) hardswish
            source, module = gated
            self.emit(node, module, source)
            return
        names = node.input
        if len(names) == 2 and sum(self.is_network(n) for n in names) == 1:
            scale = self.const(names[0]) if self.is_network(names[1]) else self.const(names[1])
            source = names[1] if self.is_network(names[1]) else names[0]
            if self.layer_scale(node, source, scale) or self.constant_factor(node, operator.mul, source, scale):
                return
        self.binary(node, operator.mul, "multiplying by a constant")

    def _div(self, node: Any) -> None:
        if not (len(node.input) == 2 and self.is_network(node.input[0])
                and self.constant_factor(node, operator.truediv, node.input[0], self.const(node.input[1]))):
            self.unreadable(node, self.network_inputs(node), "a quotient other than the network's tensor over a number")

    def constant_factor(self, node: Any, op: Any, source: str, constant: np.ndarray | None) -> bool:
        """The tensor times or over one number (a scalar constant): `x * c`, `x / c` as torch wrote them, read as `scale`."""
        if constant is None or constant.size != 1 or not np.issubdtype(constant.dtype, np.number):
            return False
        c = float(str(np.float32(constant.item())))  # float32's shortest decimal: 0.17, not 0.17000000178813934
        if not math.isfinite(c) or c == 0:
            return False
        x, value = self.network(source)
        self.call(node, op, (x, c), op(value, c))
        return True

    def self_gate(self, node: Any) -> tuple[str, nn.Module] | None:
        for gate, other in ((node.input[0], node.input[1]), (node.input[1], node.input[0])):
            producer = self.producer.get(gate)
            if (producer is not None and producer.input and producer.input[0] == other and len(self.users.get(gate, [])) == 1
                    and (producer.op_type == "Sigmoid" or (producer.op_type == "HardSigmoid" and _is_torch_hardsigmoid(self.attrs(producer))))):
                if gate in self.values and self.values[gate][0].users:
                    return None
                self.drop(gate)
                return other, (nn.SiLU() if producer.op_type == "Sigmoid" else nn.Hardswish())
        return None

    def drop(self, name: str) -> None:
        """Forget the lifted node computing `name` (the gate of a silu): the product takes its place."""
        fx_node, _ = self.values.pop(name)
        if fx_node.op == "call_module":
            delattr(self.root, str(fx_node.target))
        self.graph.erase_node(fx_node)

    def layer_scale(self, node: Any, source: str, scale: np.ndarray | None) -> bool:
        """`x * gamma` with one value per channel (a [C, 1, 1] constant): the language's `layerscale`."""
        x, value = self.network(source)
        if scale is None or value.dim() != 4 or scale.size != value.shape[1] or scale.shape[-2:] not in ((1, 1),):
            return False
        name = f"scale_{len(self.names)}"
        self.names.add(name)
        self.root.register_parameter(name, nn.Parameter(torch.from_numpy(np.array(scale, dtype=np.float32).reshape(-1, 1, 1))))
        param = self.graph.get_attr(name)
        self.call(node, operator.mul, (param, x), value * getattr(self.root, name))
        return True

    def binary(self, node: Any, op: Any, constant: str) -> None:
        if len(node.input) != 2 or not all(self.is_network(n) for n in node.input):
            self.unreadable(node, self.network_inputs(node), f"{constant} (the language's joins combine the network's own tensors)")
            return
        (a, va), (b, vb) = self.network(node.input[0]), self.network(node.input[1])
        self.call(node, op, (a, b), op(va, vb))

    def _concat(self, node: Any) -> None:
        values = [self.network(n) for n in node.input if self.is_network(n)]
        axis = self.attrs(node).get("axis", 1) % values[0][1].dim() if values else None
        if len(values) != len(node.input) or axis != 1:
            self.unreadable(node, self.network_inputs(node), "a concatenation that is not of the network's tensors on the channels")
            return
        self.call(node, torch.cat, ([v[0] for v in values], 1), torch.cat([v[1] for v in values], 1))

    def _resize(self, node: Any) -> None:
        a = self.attrs(node)
        value = self.network(node.input[0])[1]
        factor, why = _resize_factor(node, a, value, self.const, self.opset)
        if factor is None:
            self.unreadable(node, [node.input[0]], why)
            return
        mode = "nearest" if _text(a.get("mode", b"nearest")) == "nearest" else "bilinear"
        self.emit(node, nn.Upsample(scale_factor=factor, mode=mode), node.input[0])

    def _split(self, node: Any) -> None:
        a = self.attrs(node)
        value = self.network(node.input[0])[1]
        sizes = self.const(node.input[1]) if len(node.input) > 1 and node.input[1] else a.get("split")
        n = len(node.output)
        if a.get("axis", 0) % value.dim() != 1 or value.dim() != 4 or (sizes is not None and len(set(np.ravel(sizes).tolist())) != 1) \
                or value.shape[1] % n:
            self.unreadable(node, [node.input[0]], "a split that is not into equal parts of the channels (the language's `split`)")
            return
        for i, output in enumerate(node.output):
            self.part(node, node.input[0], i, n, output)

    def _slice(self, node: Any) -> None:
        value = self.network(node.input[0])[1]
        starts, ends = self.const(node.input[1]), self.const(node.input[2])
        axes = self.const(node.input[3]) if len(node.input) > 3 and node.input[3] else np.arange(len(np.ravel(starts)))
        steps = self.const(node.input[4]) if len(node.input) > 4 and node.input[4] else np.ones_like(np.ravel(starts))
        channels = value.shape[1] if value.dim() == 4 else 0
        if any(v is None for v in (starts, ends, axes, steps)) or [int(i) % max(value.dim(), 1) for i in np.ravel(axes)] != [1] \
                or int(np.ravel(steps)[0]) != 1 or not channels:
            self.unreadable(node, [node.input[0]], "a slice that is not an equal part of the channels (the language's `split`)")
            return
        start, end = int(np.ravel(starts)[0]), min(int(np.ravel(ends)[0]), channels)
        width = end - start
        if width <= 0 or channels % width or start % width:
            self.unreadable(node, [node.input[0]], "a slice that is not an equal part of the channels (the language's `split`)")
            return
        self.part(node, node.input[0], start // width, channels // width, node.output[0])

    def part(self, node: Any, source: str, index: int, count: int, output: str) -> None:
        """Part `index` of `source.chunk(count, dim=1)` (one chunk node per source and count)."""
        x, value = self.network(source)
        key = (source, count)
        if key not in self.chunks:
            self.chunks[key] = self.graph.call_method("chunk", (x, count, 1))
        fx_node = self.graph.call_function(operator.getitem, (self.chunks[key], index))
        self.bind(node, fx_node, value.chunk(count, 1)[index], output, layer=False)

    def _pad(self, node: Any) -> None:
        a = self.attrs(node)
        mode = _text(a.get("mode", b"constant"))
        pads = self.const(node.input[1]) if len(node.input) > 1 else np.array(a.get("pads", []))
        fill = self.const(node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros(1)
        value = self.network(node.input[0])[1]
        pads = None if pads is None else [int(p) for p in np.ravel(pads)]
        if (mode == "constant" and fill is not None and not np.any(fill) and value.dim() == 4 and pads is not None
                and len(pads) == 8 and pads[:2] == pads[4:6] == [0, 0] and pads[2:4] == pads[6:8]):
            self.pending[node.output[0]] = _Pending("pad", node, node.input[0], (pads[2], pads[3]), _PAD)
            return
        self.unreadable(node, [node.input[0]], _PAD)


_PAD = "a Pad the language can write only as a conv's padding (zeros, the same on each side)"


@dataclass
class _Pending:
    """A node read together with the ones after it: `pad` (detail: (ph, pw)), or a channel shuffle's
    `grouped` Reshape and `swapped` Transpose (detail: (groups, the example tensor, the shuffled input))."""

    kind: str
    node: Any
    source: str
    detail: Any
    why: str


class _OnnxReader(GraphReader):
    """The fx reader, naming the ONNX node and operator where it refuses something."""

    def path(self, node: fx.Node) -> str:
        return node.meta.get("onnx", ("", ""))[0] or super().path(node)

    def construct(self, node: fx.Node) -> str:
        return f"ONNX {node.meta['onnx'][1]}" if "onnx" in node.meta else super().construct(node)


def _input_shape(value_info: Any, given: tuple[int, ...] | None) -> tuple[int, tuple[int, ...]]:
    """(the batch to run at, C x H x W or F) from the graph's input and --input."""
    tensor = value_info.type.tensor_type
    if tensor.elem_type != _FLOAT:
        raise ArchspecError(f"the model's input `{value_info.name}` is not float32 (ONNX element type {tensor.elem_type})",
                            "archspec imports a network that takes float32 [B, C, H, W] or [B, F]")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
    if len(dims) not in (2, 4):
        raise ArchspecError(f"the model's input `{value_info.name}` has {len(dims)} dimensions",
                            "archspec imports a network that takes [B, C, H, W] or [B, F]")
    fixed = "x".join(str(d) if d is not None else "?" for d in dims[1:])
    if given is not None:
        if len(given) != len(dims) - 1 or any(d is not None and d != g for d, g in zip(dims[1:], given)):
            raise ArchspecError(f"--input {'x'.join(map(str, given))} does not fit the model's input {fixed}",
                                "leave --input out where the file gives the size, or give one of the same rank")
        return dims[0] or 1, tuple(given)
    if any(d is None for d in dims[1:]):
        raise ArchspecError(f"the model's input size {fixed} is not fixed", "give the size to import at with --input, e.g. --input 3x224x224")
    return dims[0] or 1, tuple(int(d) for d in dims[1:])


def _topological(graph: Any, known: set[str]) -> list[Any]:
    """The nodes in an order where each comes after its inputs (the ONNX standard asks for it; not every file keeps it)."""
    known, order, pending = set(known), [], list(graph.node)
    while pending:
        rest = []
        for n in pending:
            if all(not i or i in known for i in n.input):
                known.update(n.output)
                order.append(n)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            raise ArchspecError(f"the graph reads tensors nothing computes (first: node `{rest[0].name}` {rest[0].op_type})",
                                "check the model with onnx.checker, or export it again")
        pending = rest
    return order


def _reshape_dims(shape: torch.Size, target: np.ndarray | None, allowzero: int) -> list[int]:
    if target is None:
        raise ValueError("a shape computed in the graph")
    dims = [int(d) for d in np.ravel(target)]
    return [shape[i] if d == 0 and not allowzero else d for i, d in enumerate(dims)]


def _resize_factor(node: Any, a: dict, value: torch.Tensor, const: Callable, opset: int) -> tuple[int | None, str]:
    """(the whole factor both sides grow by, '') or (None, why)."""
    mode, transform = _text(a.get("mode", b"nearest")), _text(a.get("coordinate_transformation_mode", b"half_pixel"))
    scales = const(node.input[1] if opset < 11 else node.input[2]) if len(node.input) > (1 if opset < 11 else 2) else None
    sizes = const(node.input[3]) if len(node.input) > 3 and node.input[3] else None
    if scales is not None and np.size(scales):
        factors = [float(s) for s in np.ravel(scales)[-2:]]
    elif sizes is not None and value.dim() == 4:
        factors = [int(s) / n for s, n in zip(np.ravel(sizes)[-2:], value.shape[2:])]
    else:
        return None, "a size computed in the graph"
    nearest = mode == "nearest" and ((transform == "asymmetric" and _text(a.get("nearest_mode", b"round_prefer_floor")) == "floor")
                                     or (transform in ("half_pixel", "pytorch_half_pixel")
                                         and _text(a.get("nearest_mode", b"round_prefer_floor")) != "ceil"))
    bilinear = mode == "linear" and transform in ("half_pixel", "pytorch_half_pixel") and not a.get("antialias", 0)
    if value.dim() != 4 or len(set(factors)) != 1 or factors[0] != int(factors[0]) or factors[0] < 1 or not (nearest or bilinear):
        return None, (f"mode={mode!r} coordinate_transformation_mode={transform!r} by {factors} "
                      "(the language's upsample grows both sides by one whole factor, nearest or bilinear)")
    return int(factors[0]), ""


def _metadata(node: Any) -> dict[str, str]:
    return {p.key: p.value for p in node.metadata_props}


def _operator(node: Any) -> str:
    """The operator as a refusal names it: `Elu`, or `com.example.Frobnicate` outside the standard's domain."""
    return node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _float32(x: float) -> float:
    """An attribute stored as float32 (1e-05 reads back as 9.99999974738e-06), to the 7 digits it holds."""
    return float(f"{x:.7g}")


def _has_bias(b: np.ndarray | None) -> bool:
    """torch.onnx writes a conv without bias with an all-zero bias input: that is `nobias`."""
    return b is not None and bool(np.any(b))


def _load(layer: nn.Module, weight: np.ndarray, bias: np.ndarray | None) -> None:
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(np.array(weight, dtype=np.float32)))
        if layer.bias is not None and bias is not None:
            layer.bias.copy_(torch.from_numpy(np.array(bias, dtype=np.float32)))


def _is_torch_hardsigmoid(a: dict) -> bool:
    return math.isclose(a.get("alpha", 0.2), 1 / 6, rel_tol=1e-6) and math.isclose(a.get("beta", 0.5), 0.5)


_ARCHSPEC_NET = "archspec.pytorch.build.Net"
_SEQUENTIAL = "torch.nn.modules.container.Sequential"
_ARCHSPEC_LAYERS = "archspec.pytorch.layers."  # the layers torch.nn has no class for (LayerNorm2d, LayerScale, ...)
_JOIN_BODIES = ("body", "shortcut", "branch")


def _block_call(path: str, cls: str) -> str:
    """In a network `archspec export` wrote, a block call is an nn.Sequential named after the block
    (`basic1`, `basic2`): read back as a module of class `basic`, so the renderer names the block so."""
    name = re.fullmatch(r"([a-z_][a-z0-9_]*?)(\d+)", path.rsplit(".", 1)[-1])
    if cls != _SEQUENTIAL or name is None or name[1] in _JOIN_BODIES:
        return cls
    return f"{_ARCHSPEC_NET}.{name[1]}"


def _is_layer_class(name: str) -> bool:
    """A torch.nn layer (Conv2d, ReLU, ...), one of archspec's own, or one the torch importer keeps whole
    (torchvision's LayerNorm2d: layers.LEAVES), not a container: the node is that layer."""
    return ((name.startswith("torch.nn.modules.") and ".container." not in name) or name.startswith(_ARCHSPEC_LAYERS)
            or name in LEAVES)


def _resolved(name: str) -> Any:
    """The class a metadata name names when its module is already imported (so torchvision's
    Conv2dNormActivation counts as a container, as in the torch importer), else the name."""
    module, _, attr = name.rpartition(".")
    found = getattr(sys.modules.get(module), attr, None) if module else None
    return found if isinstance(found, type) else name
