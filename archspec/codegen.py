"""Checked specs -> readable PyTorch source: a `class Net(nn.Module)` as a person would write it.

Generating needs no torch. The module names and nesting equal `archspec.build()`'s, so the
generated class loads a built model's state_dict as is.
"""
from __future__ import annotations

from archspec.errors import ArchError, ArchspecError
from archspec.ops import Input, LayerSpec, fmt_shape
from archspec.shapes import CheckReport, check
from archspec.specs import BlockCall, Branch, Model, Node, Residual, Seq

_HELPERS = {
    "Residual": '''class Residual(nn.Module):
    """body(x) + shortcut(x); the shortcut is the identity when not given."""

    def __init__(self, body: nn.Module, shortcut: nn.Module | None = None) -> None:
        super().__init__()
        self.body = body
        self.shortcut = shortcut if shortcut is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)
''',
    "Concat": '''class Concat(nn.Module):
    """Parallel branches on one input, concatenated on the channel dimension."""

    def __init__(self, *branches: nn.Module) -> None:
        super().__init__()
        for i, branch in enumerate(branches):
            self.add_module(f"branch{i + 1}", branch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.children()], dim=1)
''',
    "Add": '''class Add(nn.Module):
    """Parallel branches on one input, summed elementwise."""

    def __init__(self, *branches: nn.Module) -> None:
        super().__init__()
        for i, branch in enumerate(branches):
            self.add_module(f"branch{i + 1}", branch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(branch(x) for branch in self.children())
''',
}


class _Writer:
    def __init__(self, report: CheckReport) -> None:
        self.report = report
        self.helpers: set[str] = set()

    def module_expr(self, node: Node, indent: int) -> str:
        """A Python expression constructing the module for a node (nested structures span lines)."""
        x, y = self.report.shapes_of(node)
        if isinstance(node, LayerSpec):
            return node.torch_call(x).source()
        pad = " " * indent
        if isinstance(node, BlockCall):
            return self.sequential(node.body, indent)
        if isinstance(node, Residual):
            self.helpers.add("Residual")
            shortcut = node.shortcut or self.report.projections.get(id(node))
            inner = f"\n{pad}    {self.sequential(node.body, indent + 4)},"
            if shortcut:
                inner += f"\n{pad}    {self.sequential(shortcut, indent + 4)},"
            return f"Residual({inner}\n{pad})"
        if isinstance(node, Branch):
            cls = "Concat" if node.mode == "concat" else "Add"
            self.helpers.add(cls)
            inner = "".join(f"\n{pad}    {self.sequential(b, indent + 4)}," for b in node.branches)
            return f"{cls}({inner}\n{pad})"
        raise AssertionError(type(node).__name__)

    def sequential(self, seq: Seq, indent: int) -> str:
        items = [n for n in seq.items if not isinstance(n, Input)]
        if not items:
            return "nn.Sequential()"
        pad = " " * indent
        lines = [f"{pad}    {line}" for n in items for line in self.entry_lines(n, f'("{n.name}", ', "),", indent + 4)]
        return "nn.Sequential(OrderedDict([\n" + "\n".join(lines) + f"\n{pad}]))"

    def entry_lines(self, node: Node, before: str, after: str, indent: int) -> list[str]:
        """`before + expression + after`, preceded by a `# block(args)` line for a block call.

        The comment gets a line of its own: after the expression it would swallow `after`."""
        entry = f"{before}{self.module_expr(node, indent)}{after}"
        return [block_call_comment(node), entry] if isinstance(node, BlockCall) else [entry]

    def init_and_forward(self) -> tuple[list[str], list[str]]:
        init, forward = [], []
        for node in self.report.model.body.items:
            if isinstance(node, Input):
                continue
            _, y = self.report.shapes_of(node)
            if isinstance(node, LayerSpec) and node.functional and not node.torch_call(self.report.shapes_of(node)[0]).args:
                forward.append(f"x = {node.functional.format(x='x')}  # {fmt_shape(y)}")
                continue
            init += self.entry_lines(node, f"self.{node.name} = ", "", 8)
            if getattr(node, "init", "default") != "default":
                init.append(f'self.{node.name}.archspec_init = "{node.init}"  # data-dependent init, applied by `archspec train`')
            forward.append(f"x = self.{node.name}(x)  # {fmt_shape(y)}")
        return init, forward


def block_call_comment(call: BlockCall) -> str:
    """`# basic(c=64, s=1)`: which block, with which arguments, a nested Sequential came from."""
    args = ", ".join(f"{k}={v!r}" for k, v in call.args.items())
    return f"# {call.block}({args})"


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


def generate(model: Model | CheckReport, class_name: str = "Net") -> str:
    """PyTorch source for a checked model. Raises ArchError if it has errors."""
    report = model if isinstance(model, CheckReport) else check(model, classes=None)
    if not report.ok:
        raise ArchError(report.errors, report.path, report.model.sources)
    writer = _Writer(report)
    init, forward = writer.init_and_forward()
    uses_f = any("F." in line for line in forward)
    nested = any("OrderedDict" in line for line in init)

    out = [
        f'"""PyTorch source generated by archspec from {report.path}.',
        "",
        f"{fmt_shape(report.input_shape)} -> {fmt_shape(report.output_shape)}, {report.params:,} parameters.",
        '"""',
        "from __future__ import annotations",
        "",
    ]

    if nested:
        out.append("from collections import OrderedDict")
        out.append("")
    out.append("import torch")
    if uses_f:
        out.append("import torch.nn.functional as F")
    out.append("from torch import nn")
    out.append("")
    for name in ("Residual", "Concat", "Add"):
        if name in writer.helpers:
            out += ["", _HELPERS[name]]
    out += [
        "",
        f"class {class_name}(nn.Module):",
        "    def __init__(self) -> None:",
        "        super().__init__()",
        *[f"        {line}" for line in init],
        "",
        "    def forward(self, x: torch.Tensor) -> torch.Tensor:",
        f"        # x: {fmt_shape(report.input_shape)}",
        *[f"        {line}" for line in forward],
        "        return x",
        "",
    ]
    return "\n".join(out)
