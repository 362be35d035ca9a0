"""The torch.fx tracers the importer reads a module with.

`LeafTracer` is torch.fx's symbolic tracer, keeping the layers the language writes (layers.LEAVES) whole.
It records the forward without running it, so it cannot follow Python code that decides on a tensor's
size: timm's VGG head, `if x.shape[-2] < 7: x = F.adaptive_avg_pool2d(x, 7)`, stops it.

`SizedTracer` traces the same way while running each call on a real input of the import's size: every
traced value carries its value, sizes (`x.shape`, `x.size()`, `x.numel()`, `len(x)`) are numbers, and
`x.dim()`, `x.dtype` are answered from the value, so shape arithmetic folds into constants and an `if`
on a size takes the branch that size takes. Each comparison or test of a size is recorded with the module
that made it: the graph is the branch taken at that size. An `if` on a tensor's values (`if x.sum() > 0`)
is refused (ValueBranch), never specialised.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import fx, nn

from archspec.importers.layers import is_leaf

# Tensor methods and attributes answered from the value: sizes (recorded when they decide something), a
# layout that can follow from them (recorded when read), and what is the same at every size (rank, dtype, device).
_SIZE_METHODS = {"size", "numel", "nelement"}
_LAYOUT_METHODS = {"is_contiguous"}
_STATIC_METHODS = {"dim", "ndimension", "is_floating_point", "is_complex", "element_size", "get_device"}
_STATIC_ATTRIBUTES = {"ndim", "dtype", "device", "is_cuda", "layout", "requires_grad"}


class LeafTracer(fx.Tracer):
    """fx's tracer, keeping torchvision's and timm's layers that the language writes (layers.LEAVES) whole like torch.nn's."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return is_leaf(type(m)) or super().is_leaf_module(m, qualname)


class ValueBranch(Exception):
    """The forward converted a tensor's value to a bool (`if x.sum() > 0`): the graph would depend on the data."""

    def __init__(self, path: str, cls: str) -> None:
        super().__init__(path)
        self.path, self.cls = path, cls


class _Size(int):
    """A number read from a tensor's size: arithmetic on it stays one, and a comparison or truth test of it
    is recorded (through `decided`) as a decision the forward made on the input's size."""

    decided: Callable[[], None]
    __hash__ = int.__hash__

    def __bool__(self) -> bool:
        self.decided()
        return int(self) != 0


def _size(value: int, decided: Callable[[], None]) -> _Size:
    size = _Size(value)
    size.decided = decided
    return size


def _arithmetic(name: str) -> Callable[..., Any]:
    op = getattr(int, name)

    def method(self: _Size, *other: Any) -> Any:
        result = op(self, *other)
        return _size(result, self.decided) if type(result) is int else result

    return method


def _comparison(name: str) -> Callable[[_Size, Any], Any]:
    op = getattr(int, name)

    def method(self: _Size, other: Any) -> Any:
        result = op(self, other)
        if result is not NotImplemented:
            self.decided()
        return result

    return method


for _name in ("__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__floordiv__", "__rfloordiv__",
              "__mod__", "__rmod__", "__neg__", "__pos__", "__abs__"):
    setattr(_Size, _name, _arithmetic(_name))
for _name in ("__lt__", "__le__", "__gt__", "__ge__", "__eq__", "__ne__"):
    setattr(_Size, _name, _comparison(_name))


def _mapped(value: Any, fn: Callable[[Any], Any]) -> Any:
    """`value` with `fn` applied to each leaf inside tuples, lists, dicts and slices (their types kept)."""
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(_mapped(v, fn) for v in value)
    if isinstance(value, list):
        return [_mapped(v, fn) for v in value]
    if isinstance(value, dict):
        return {k: _mapped(v, fn) for k, v in value.items()}
    if isinstance(value, slice):
        return slice(_mapped(value.start, fn), _mapped(value.stop, fn), _mapped(value.step, fn))
    return fn(value)


def _plain(value: Any) -> Any:
    """Sizes as plain ints: what the graph records (a constant) and what torch's calls are given."""
    return _mapped(value, lambda v: int(v) if isinstance(v, _Size) else v)


class _SizedProxy(fx.Proxy):
    """A traced value that knows its value: sizes and static attributes are answered from it."""

    tracer: SizedTracer

    def __getattr__(self, k: str) -> Any:
        if k == "shape":
            return self.tracer.sizes(self.tracer.value(self).shape)
        if k in _STATIC_ATTRIBUTES:
            return getattr(self.tracer.value(self), k)
        return super().__getattr__(k)

    def __len__(self) -> int:
        value = self.tracer.value(self)
        if isinstance(value, torch.Tensor):
            self.tracer.decide()  # the length of a tensor is its first size
        return len(value)


class SizedTracer(LeafTracer):
    """LeafTracer on a real input: each call also runs on the values of its arguments (see the module's docstring)."""

    def __init__(self, example: torch.Tensor) -> None:
        super().__init__()
        self.example = example
        self.values: dict[fx.Node, Any] = {}
        self.decisions: dict[str, str] = {}  # module path -> class name, where a size decided something
        self.running = False  # inside a call run on values: modules run as themselves, attributes are themselves
        self.run_error: Exception | None = None  # the last call that failed on the real input (the module does not run)
        self.value_branch: ValueBranch | None = None  # the first branch on a tensor's values, even one the forward caught

    def traced(self, module: nn.Module) -> fx.Graph:
        """The module's graph at the example's size; ValueBranch where its forward tested a tensor's value."""
        try:
            graph = self.trace(module)
        except Exception:
            if self.value_branch is not None:  # what went wrong after the forward caught it is a consequence
                raise self.value_branch from None
            raise
        finally:
            self.values.clear()
        if self.value_branch is not None:  # caught by the forward, which went on down another path
            raise self.value_branch
        return graph

    def failed_to_run(self, exc: BaseException) -> bool:
        """Whether `exc` is (or was raised while handling) a call's failure on the real input."""
        while exc is not None:
            if exc is self.run_error:
                return True
            exc = exc.__cause__ or exc.__context__
        return False

    def proxy(self, node: fx.Node) -> fx.Proxy:
        return _SizedProxy(node, self)

    def value(self, proxy: fx.Proxy) -> Any:
        return self.values[proxy.node]

    def decide(self) -> None:
        self.decisions.setdefault(self.scope.module_path, self.scope.module_type.__name__ if self.scope.module_type else "")

    def sizes(self, shape: torch.Size) -> tuple[_Size, ...]:
        return tuple(_size(s, self.decide) for s in shape)

    def create_proxy(self, kind: str, target: Any, args: tuple, kwargs: dict, name: str | None = None,
                     type_expr: Any = None, proxy_factory_fn: Callable[[fx.Node], fx.Proxy] | None = None) -> Any:
        value = self._run(kind, target, args, kwargs)
        if isinstance(value, torch.Size):  # x.size(), and `x.T.shape` (fx's getattr of a value it made)
            return self.sizes(value)
        if kind == "call_method" and target in _SIZE_METHODS:
            return _size(value, self.decide)
        if kind == "call_method" and target in _LAYOUT_METHODS:
            self.decide()
        if kind == "call_method" and target in _STATIC_METHODS | _LAYOUT_METHODS:
            return value
        proxy = super().create_proxy(kind, target, _plain(args), _plain(kwargs), name, type_expr, proxy_factory_fn)
        self.values[proxy.node] = value
        return proxy

    def _run(self, kind: str, target: Any, args: tuple, kwargs: dict) -> Any:
        """The value a node has on the real input."""
        if kind == "placeholder":
            first = not any(n.op == "placeholder" for n in self.values)
            return self.example if first or not args else args[0]
        args, kwargs = self._values(args), self._values(kwargs)
        self.running = True
        try:
            with torch.no_grad():
                if kind == "get_attr":
                    return _attribute(self.root, target)
                if kind == "call_function":
                    return target(*args, **kwargs)
                if kind == "call_method":
                    return getattr(args[0], target)(*args[1:], **kwargs)
                return self.root.get_submodule(target)(*args, **kwargs)
        except Exception as exc:  # the user's forward can raise anything: raised as it is, for its own handlers
            self.run_error = exc
            raise
        finally:
            self.running = False

    def _values(self, value: Any) -> Any:
        return _mapped(value, lambda v: self.values[v.node] if isinstance(v, fx.Proxy) else int(v) if isinstance(v, _Size) else v)

    def call_module(self, m: nn.Module, forward: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        if self.running:
            return forward(*args, **kwargs)
        return super().call_module(m, forward, args, kwargs)

    def getattr(self, attr: str, attr_val: Any, parameter_proxy_cache: dict[str, fx.Proxy]) -> Any:
        if self.running:
            return attr_val
        return super().getattr(attr, attr_val, parameter_proxy_cache)

    def to_bool(self, obj: fx.Proxy) -> bool:
        """Sizes are numbers here: a proxy tested for truth is a tensor's value (or a number computed from one)."""
        branch = ValueBranch(self.scope.module_path, self.scope.module_type.__name__ if self.scope.module_type else "")
        self.value_branch = self.value_branch or branch
        raise branch

    def iter(self, obj: fx.Proxy) -> Iterator:
        value = self.value(obj)
        if isinstance(value, torch.Tensor):
            self.decide()  # as many steps as the tensor's first size
        return iter([obj[i] for i in range(len(value))])

    def keys(self, obj: fx.Proxy) -> Any:
        return self.value(obj).keys()


def _attribute(root: nn.Module, target: str) -> Any:
    value: Any = root
    for name in target.split("."):
        value = getattr(value, name)
    return value
