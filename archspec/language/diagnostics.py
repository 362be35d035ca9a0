"""Diagnostics as plain data, the table of codes, filtering, and the text / JSON renderers.

A diagnostic knows its code, severity, message, primary span, notes and help. Rendering is a
separate step that resolves the span into `path:line:col`, the source line and a caret.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable

from archspec.language.codes import CODES, CodeInfo, Severity  # noqa: F401 (CodeInfo re-exported)


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


@dataclass
class Diagnostic:
    code: str
    message: str
    span: Span | None
    help: str | None = None
    notes: list[str] = field(default_factory=list)
    # Call sites of the blocks this diagnostic is inside, outermost first (a template backtrace).
    trace: tuple[tuple[str, Span], ...] = ()

    def __post_init__(self) -> None:
        if self.code not in CODES:  # a code that is not in the table fails where it is made, not when rendered
            raise ValueError(f"unknown diagnostic code {self.code!r}; define it in archspec/language/codes.py")

    @property
    def severity(self) -> Severity:
        return CODES[self.code].severity

    def __repr__(self) -> str:
        where = f" at {self.span.path}:{self.span.line}:{self.span.column}" if self.span else ""
        return f"<{self.severity}[{self.code}]{where}: {self.message}>"

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


def source_lines(text: str) -> list[str]:
    """The lines as the parser counts them: split on `\n` only (str.splitlines also splits on form
    feeds and other separators, which would put `# noqa` or a caret on another line); a CR before
    the newline dropped."""
    return [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]


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
            lines = source_lines(text)
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
    # force_jupyter=False: inside Jupyter rich would display the text instead of writing it to buf.
    Console(file=buf, force_terminal=True, force_jupyter=False, width=10_000, highlight=False).print(out, end="")
    return buf.getvalue()


_HTML_COLORS = {"error": "#c62828", "warning": "#b26a00"}


def render_html(diagnostics: Iterable[Diagnostic], sources: dict[str, str]) -> str:
    """The text rendering (caret and all) in a monospace block, each header coloured by severity:
    how a notebook shows diagnostics (one renderer for the content, HTML only for the frame)."""
    from html import escape

    blocks = []
    for d in diagnostics:
        header, _, rest = render_text(d, sources).partition("\n")
        blocks.append(f'<span style="color:{_HTML_COLORS[d.severity]};font-weight:bold">{escape(header)}</span>\n'
                      f"{escape(rest)}")
    return '<pre style="line-height:1.3">' + "\n".join(blocks) + "</pre>" if blocks else ""


def _snippet(span: Span, sources: dict[str, str], style: str):
    from rich.text import Text

    text = sources.get(span.path)
    snippet = Text()
    if text is None:
        return snippet
    lines = source_lines(text)
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
