"""Checked tree -> readable PyTorch source: a `class Net(nn.Module)` as a person would write it.

Generating needs no torch: the join modules (Residual, Concat, Add, ...) are copied as source text
from `runtime.py`, read as a file. The module names and nesting equal `archspec.build()`'s, so
the generated class loads a built model's state_dict as is.
"""
from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

from archspec.language.check import CheckReport
from archspec.language.pipeline import CheckOptions, checked
from archspec.language.errors import ArchspecError
from archspec.language.nodes import Model
from archspec.language.ops import Input, fmt_shape
from archspec.language.tree import Branch, Call, CheckedNode, Layer, Visitor

_RUNTIME = Path(__file__).with_name("runtime.py")
_LAYERS = Path(__file__).with_name("layers.py")


@lru_cache(maxsize=None)
def runtime_source(class_name: str, module: Path = _RUNTIME) -> str:
    """The source text of one class of runtime.py, or of `module` (so the generated file needs no archspec)."""
    text = module.read_text(encoding="utf-8")
    for node in ast.parse(text).body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            return ast.get_source_segment(text, node) + "\n"  # type: ignore[operator]
    raise KeyError(class_name)


@lru_cache(maxsize=None)
def runtime_classes() -> tuple[str, ...]:
    """The classes of runtime.py, in its order."""
    return tuple(n.name for n in ast.parse(_RUNTIME.read_text(encoding="utf-8")).body if isinstance(n, ast.ClassDef))


def _is_input(node: CheckedNode) -> bool:
    return isinstance(node, Layer) and isinstance(node.layer, Input)


def _call_comment(node: CheckedNode) -> str | None:
    """`# basic(c=64, s=2)` above a block call: which block, with which arguments."""
    if isinstance(node, Call):
        return f"# {node.block}({', '.join(f'{k}={v!r}' for k, v in node.args.items())})"
    return None


class _SourceWriter(Visitor[str]):
    """A Python expression constructing each node's module; nested structures span lines."""

    def __init__(self) -> None:
        self.helpers: set[str] = set()
        self.layer_classes: set[tuple[str, str]] = set()  # (home, class) of layers not in torch.nn

    def visit_layer(self, node: Layer, indent: int) -> str:
        call = node.layer.torch_call(node.in_shape)  # type: ignore[union-attr]
        if call.home != "nn":
            self.layer_classes.add((call.home, call.cls))
        return call.source()

    def visit_call(self, node: Call, indent: int) -> str:
        return self.sequential(node.body, indent)

    def visit_branch(self, node: Branch, indent: int) -> str:
        name = node.rule.runtime_class
        self.helpers.update({name, *node.rule.runtime_needs})  # with the classes it derives from (Add is a Concat)
        return self.join_call(name, node.branches, indent, node.rule.runtime_args(node))

    def join_call(self, name: str, parts: list[list[CheckedNode]], indent: int, args: tuple = ()) -> str:
        pad = " " * indent
        inner = "".join(f"\n{pad}    {self.sequential(p, indent + 4)}," for p in parts)
        inner += "".join(f"\n{pad}    {a!r}," for a in args)
        return f"{name}({inner}\n{pad})"

    def sequential(self, nodes: list[CheckedNode], indent: int) -> str:
        items = [n for n in nodes if not _is_input(n)]
        if not items:
            return "nn.Sequential()"
        pad = " " * (indent + 4)
        lines: list[str] = []
        for n in items:
            comment = _call_comment(n)
            if comment:
                lines.append(f"{pad}{comment}")
            lines.append(f'{pad}("{n.name}", {self.visit(n, indent + 4)}),')
        return "nn.Sequential(OrderedDict([\n" + "\n".join(lines) + f"\n{' ' * indent}]))"


def _inline(node: CheckedNode) -> str | None:
    """`F.relu(x)` for a parameter-free layer at the top level, written inline in forward()."""
    if not isinstance(node, Layer) or not node.valid:
        return None
    layer = node.layer
    if layer.functional and not layer.torch_call(node.in_shape).args:  # type: ignore[union-attr]
        return layer.functional.format(x="x")  # type: ignore[union-attr]
    return None


def _layer_imports(classes: set[tuple[str, str]]) -> list[str]:
    """`from torchvision.ops import StochasticDepth` for the torchvision layers a network uses."""
    names = sorted(cls for home, cls in classes if home == "torchvision.ops")
    return [f"from torchvision.ops import {', '.join(names)}"] if names else []


def _init_and_forward(report: CheckReport, writer: _SourceWriter) -> tuple[list[str], list[str]]:
    init, forward = [], []
    for node in report.body:
        if _is_input(node):
            continue
        inline = _inline(node)
        if inline:
            forward.append(f"x = {inline}  # {fmt_shape(node.out_shape)}")
            continue
        comment = _call_comment(node)
        if comment:
            init.append(comment)
        init.append(f"self.{node.name} = {writer.visit(node, 8)}")
        forward.append(f"x = self.{node.name}(x)  # {fmt_shape(node.out_shape)}")
    if ("layers", "Keep") in writer.layer_classes:  # `as NAME`: one dict of named tensors per forward, emptied after it
        forward.insert(0, "Keep.share(self)")
        forward.append("Keep.release(self)")
    return init, forward


def ensure_valid_python(source: str, origin: str) -> None:
    """Raise ArchspecError (an internal error: a bug in codegen) unless `source` compiles as Python."""
    try:
        compile(source, f"<generated from {origin}>", "exec", dont_inherit=True)
    except SyntaxError as exc:
        problem = f"line {exc.lineno}: {exc.msg}"
    except ValueError as exc:  # e.g. a null byte
        problem = str(exc)
    else:
        return
    raise ArchspecError(
        f"internal error: the PyTorch source generated from {origin} is not valid Python ({problem})",
        "this is a bug in archspec's compiler; please report it with the .arch file",
    )


def generate(source: "CheckReport | Model | str", class_name: str = "Net") -> str:
    """PyTorch source for a checked model. Raises ArchError if it has errors."""
    report = checked(source, CheckOptions(classes=None)).raise_for_errors()
    if not class_name.isidentifier():
        raise ArchspecError(f"`{class_name}` is not a Python class name", "use letters, digits and `_`, e.g. --class-name Net")
    writer = _SourceWriter()
    init, forward = _init_and_forward(report, writer)
    hints = {r.path: r.layer.init_mode() for r in report.rows if r.valid and r.layer.init_mode()}  # type: ignore[union-attr]
    out = [
        f'"""PyTorch source generated by archspec from {report.path}.',
        "",
        f"{fmt_shape(report.input_shape)} -> {fmt_shape(report.output_shape)}, {report.params:,} parameters.",
        '"""',
        "from __future__ import annotations",
        "",
    ]
    aux = "Aux" in writer.helpers  # `aux` heads: forward returns torchvision's (logits, aux_logits...) in training
    collections = [n for n, used in (("OrderedDict", any("OrderedDict" in line for line in init)), ("namedtuple", aux)) if used]
    if collections:
        out += [f"from collections import {', '.join(collections)}", *(["from typing import Any"] if aux else []), ""]
    out.append("import torch")
    if any("F." in line for line in forward):
        out.append("import torch.nn.functional as F")
    out += ["from torch import nn", *_layer_imports(writer.layer_classes), ""]
    for name in runtime_classes():  # in runtime.py's order: a base class before the classes derived from it
        if name in writer.helpers:
            out += ["", runtime_source(name)]
    out += [part for home, cls in sorted(writer.layer_classes) if home == "layers" for part in ("", runtime_source(cls, _LAYERS))]
    out += ["", f"class {class_name}(nn.Module):"]
    if hints:
        out += ["    # Data-dependent initialisers by module path, applied by `archspec train`.",
                f"    init_hints = {hints!r}", ""]
    out += [
        "    def __init__(self) -> None:",
        "        super().__init__()",
        *[f"        {line}" for line in init],
        "",
        f"    def forward(self, x: torch.Tensor) -> {'Any' if aux else 'torch.Tensor'}:",
        f"        # x: {fmt_shape(report.input_shape)}",
        *[f"        {line}" for line in forward],
        "        return Aux.outputs(self, x)" if aux else "        return x",
        "",
    ]
    return "\n".join(out)
