"""Diagnostics as plain data, the table of codes, filtering, and the text / JSON renderers.

A diagnostic knows its code, severity, message, primary span, notes and help. Rendering is a
separate step that resolves the span into `path:line:col`, the source line and a caret.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Span:
    """A region of one source file: offsets plus the 1-based line/column lark gives."""

    path: str
    start: int
    end: int
    line: int
    column: int
    end_line: int
    end_column: int


@dataclass(frozen=True)
class CodeInfo:
    code: str
    name: str
    severity: Severity
    summary: str
    example: str
    fix: str


# One table of codes, grouped by prefix: E0 syntax and arguments, E1 shapes, W2 warnings.
CODES: dict[str, CodeInfo] = {
    c.code: c
    for c in [
        CodeInfo("E001", "syntax-error", "error", "The text does not parse.", "conv 6 k5 |", "Complete or remove the layer."),
        CodeInfo("E002", "unknown-op", "error", "A layer names an op that does not exist.", "cnv 6 k5", "Use one of the ops listed by `archspec ops`."),
        CodeInfo("E003", "unknown-argument", "error", "A layer has an argument its op does not take.", "conv 6 k5 x2", "Remove it or use the suggested spelling."),
        CodeInfo("E004", "invalid-value", "error", "An argument has a value the op cannot use (zero channels, negative padding, dropout outside [0, 1), ...).", "conv 0 k3", "Use a value in the range the message gives."),
        CodeInfo("E005", "missing-argument", "error", "A required argument is missing.", "conv 6", "Add it, e.g. `conv 6 k3`."),
        CodeInfo("E006", "input", "error", "The file has no `input` layer, or it is not the first layer, or there are several.", "conv 6 k5", "Start the file with `input CxHxW`, e.g. `input 3x32x32`."),
        CodeInfo("E007", "undefined-name", "error", "A block or block parameter is not defined, or a block is called with the wrong arguments.", "basic(64) with no `block basic`", "Define the block, `use` the file that defines it, or fix the call."),
        CodeInfo("E008", "import-error", "error", "A `use` file cannot be read or parsed, or files use each other in a cycle.", 'use "missing.arch"', "Fix the path (relative to the file that uses it)."),
        CodeInfo("E101", "kernel-too-large", "error", "A convolution kernel (with dilation) is larger than its padded input, as PyTorch refuses.", "input 3x4x4 | conv 6 k5", "Pad the input, use a smaller kernel, or downsample less before it."),
        CodeInfo("E102", "output-too-small", "error", "A pooling window leaves an output size below 1, as PyTorch refuses.", "input 3x1x1 | maxpool 2", "Pool less, or remove the layer."),
        CodeInfo("E103", "wrong-rank", "error", "A layer gets a tensor of the wrong rank: a conv or pool after `flatten`, a `linear` on a 4-D tensor.", "flatten | conv 6 k3", "Add `flatten` before `linear`; move convs before `flatten`."),
        CodeInfo("E104", "groups-mismatch", "error", "A grouped convolution's groups do not divide its input or output channels.", "input 3x32x32 | conv 8 k3 g2", "Choose groups that divide both channel counts."),
        CodeInfo("E105", "pool-padding", "error", "Pooling padding is more than half the kernel, as PyTorch refuses.", "maxpool 2 p2", "Use padding at most kernel // 2."),
        CodeInfo("E106", "same-with-stride", "error", "`p same` with a stride above 1, which PyTorch refuses.", "conv 8 k3 s2 p same", "Use explicit padding, e.g. `p1` for k3."),
        CodeInfo("E107", "residual-mismatch", "error", "A residual's body output cannot be added to its input.", "residual { conv 8 k3 }", "Keep the shape, or add `project` / a `shortcut { ... }`."),
        CodeInfo("E108", "branch-mismatch", "error", "Parallel branches produce shapes that cannot be joined.", "concat { maxpool 2 } { conv 8 k3 p1 }", "Make the branches agree on batch and spatial size (concat) or on the whole shape (add)."),
        CodeInfo("W201", "floor-drops-pixels", "warning", "The floor in the size formula drops input rows or columns that no window covers.", "input 3x15x15 | maxpool 2", "Pad, change the stride, or use `ceil` on a pool."),
        CodeInfo("W202", "spatial-collapsed", "warning", "The spatial size is 1x1 before a later convolution, which then only mixes channels.", "input 3x8x8 | maxpool 8 | conv 8 k3 p1", "Downsample less before the last conv, or use a 1x1 conv / linear deliberately."),
        CodeInfo("W203", "consecutive-activations", "warning", "Two activations in a row; the second is usually a mistake.", "relu | relu", "Remove one of them."),
        CodeInfo("W204", "classes-mismatch", "warning", "The network's output features differ from the number of classes (`--classes`, default 10).", "linear 100 with --classes 10", "Make the last layer `linear N` with N classes."),
        CodeInfo("W205", "softmax-before-loss", "warning", "The network ends with `softmax`; cross-entropy applies log-softmax itself, so training squashes the scores twice and stalls near chance.", "linear 10 | softmax", "Remove it; apply softmax at inference."),
    ]
}


@dataclass
class Diagnostic:
    code: str
    message: str
    span: Span | None
    help: str | None = None
    notes: list[str] = field(default_factory=list)
    # Call sites of the blocks this diagnostic is inside, outermost first (a template backtrace).
    trace: tuple[tuple[str, Span], ...] = ()

    @property
    def severity(self) -> Severity:
        return CODES[self.code].severity

    def to_dict(self) -> dict:
        s = self.span
        return {
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
            "path": s.path if s else None,
            "line": s.line if s else None,
            "column": s.column if s else None,
            "end_line": s.end_line if s else None,
            "end_column": s.end_column if s else None,
            "help": self.help,
            "notes": list(self.notes),
            "trace": [
                {"block": name, "path": sp.path, "line": sp.line, "column": sp.column} for name, sp in self.trace
            ],
        }


def _matches(code: str, patterns: Iterable[str]) -> bool:
    return any(code.startswith(p.upper()) for p in patterns)


_NOQA = re.compile(r"#\s*noqa(?::\s*(?P<codes>[A-Za-z0-9, ]+))?", re.IGNORECASE)


def _noqa_codes(line: str) -> set[str] | None:
    """None: no noqa on the line; empty set: bare `# noqa` (everything); else the codes."""
    m = _NOQA.search(line)
    if not m:
        return None
    codes = m.group("codes")
    return {c.strip().upper() for c in codes.split(",") if c.strip()} if codes else set()


def filter_diagnostics(
    diagnostics: Iterable[Diagnostic],
    sources: dict[str, str],
    select: Iterable[str] = (),
    ignore: Iterable[str] = (),
) -> list[Diagnostic]:
    """Apply --select / --ignore (codes or prefixes) and `# noqa[: CODES]` on the flagged lines."""
    select, ignore = list(select), list(ignore)
    kept = []
    for d in diagnostics:
        if select and not _matches(d.code, select):
            continue
        if ignore and _matches(d.code, ignore):
            continue
        spans = [d.span] + [sp for _, sp in d.trace] if d.span else []
        suppressed = False
        for sp in spans:
            text = sources.get(sp.path)
            if text is None:
                continue
            lines = text.splitlines()
            if 0 < sp.line <= len(lines):
                codes = _noqa_codes(lines[sp.line - 1])
                if codes is not None and (not codes or _matches(d.code, codes)):
                    suppressed = True
        if not suppressed:
            kept.append(d)
    return kept


def render_text(d: Diagnostic, sources: dict[str, str], color: bool = False) -> str:
    """rustc/ruff style: header, source line with a caret, notes, help."""
    from rich.text import Text  # rich only for styling; plain text when color is False

    sev = d.severity
    sev_style = "bold red" if sev == "error" else "bold yellow"
    out = Text()
    if d.span:
        out.append(f"{d.span.path}:{d.span.line}:{d.span.column}: ", style="bold")
    out.append(f"{sev}[{d.code}]", style=sev_style)
    out.append(f": {d.message}\n", style="bold")
    if d.span:
        out.append_text(_snippet(d.span, sources, sev_style))
    for name, sp in reversed(d.trace):
        out.append("   = ", style="bold blue")
        out.append(f"note: in block `{name}`, called at {sp.path}:{sp.line}:{sp.column}\n")
        out.append_text(_snippet(sp, sources, "bold blue"))
    for note in d.notes:
        out.append("   = ", style="bold blue")
        out.append(f"note: {note}\n")
    if d.help:
        out.append("   = ", style="bold blue")
        out.append("help", style="bold cyan")
        out.append(f": {d.help}\n")
    if not color:
        return out.plain
    from io import StringIO

    from rich.console import Console

    buf = StringIO()
    Console(file=buf, force_terminal=True, width=10_000, highlight=False).print(out, end="")
    return buf.getvalue()


def _snippet(span: Span, sources: dict[str, str], style: str):
    from rich.text import Text

    text = sources.get(span.path)
    snippet = Text()
    if text is None:
        return snippet
    lines = text.splitlines()
    if not 0 < span.line <= len(lines):
        return snippet
    src = lines[span.line - 1]
    gutter = " " * len(str(span.line))
    end_col = span.end_column if span.end_line == span.line else len(src) + 1
    snippet.append(f"{gutter} |\n", style="bold blue")
    snippet.append(f"{span.line} | ", style="bold blue")
    snippet.append(src + "\n")
    snippet.append(f"{gutter} | ", style="bold blue")
    snippet.append(caret_line(src, span.column, end_col) + "\n", style=style)
    return snippet


def caret_line(src: str, column: int, end_column: int) -> str:
    """Carets under columns [column, end_column) of src: a tab before them stays a tab, so the
    carets line up with the source line however wide the terminal shows a tab."""
    lead = "".join(ch if ch == "\t" else " " for ch in src[: column - 1])
    covered = src[column - 1 : end_column - 1]
    marks = "".join("\t" if ch == "\t" else "^" for ch in covered.rstrip("\t"))
    return lead + (marks or "^")
