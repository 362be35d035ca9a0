"""Diagnostics as plain data, the table of codes, filtering, and the text / JSON renderers.

A diagnostic knows its code, severity, message, primary span, notes and help. Rendering is a
separate step that resolves the span into `path:line:col`, the source line and a caret.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Iterable

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

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        # A layer spec's `span` and `trace` hold the Spans the parser made: an isinstance check is all they
        # need, and it spares pydantic a dataclass schema in every op model it builds (start-up time).
        from pydantic_core import core_schema

        return core_schema.is_instance_schema(cls)


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


_LONE_CR = re.compile(r"\r(?!\n)")


def normalize_newlines(text: str) -> str:
    """A lone CR (as old Mac editors end lines) as a line break, the way Python's universal newlines
    read it: written as `\n`, one character for one, so every offset into the text stays right.
    (Here, at the bottom of the language, for the parser, the files and the carets alike.)"""
    return _LONE_CR.sub("\n", text) if "\r" in text else text


@lru_cache(maxsize=16)
def source_lines(text: str) -> list[str]:
    """Split once per source (per diagnostic made rendering N diagnostics quadratic; callers must
    not mutate the list). The lines as the parser counts them: split on `\n`, `\r\n` and a lone `\r`
    (str.splitlines also splits on form feeds and other separators, which would put `# noqa` or a
    caret on another line)."""
    return [line[:-1] if line.endswith("\r") else line for line in normalize_newlines(text).split("\n")]


_STRING_OR_COMMENT = re.compile(r'"[^"\n]*"|#[^\n]*')


def is_continued(line: str) -> bool:
    """Whether the line goes on to the next with `\\` (the grammar joins them); a backslash that ends a
    comment or a string is none."""
    return _STRING_OR_COMMENT.sub("", line).endswith("\\")


@lru_cache(maxsize=4096)
def _line_noqa(text: str, line: int) -> set[str] | None:
    """`_noqa_codes` of line `line` of `text`, once per line (20,000 warnings on one long line
    searched it 20,000 times). None also when the line does not exist. A line continued with `\\`
    takes the `# noqa` that ends its continuation (a comment cannot come before a `\\`): the lines
    joined are one line of code, as `fmt` writes them."""
    lines = source_lines(text)
    if not 0 < line <= len(lines):
        return None
    last = line
    while last < len(lines) and is_continued(lines[last - 1]):
        last += 1
    own = _noqa_codes(lines[line - 1])
    return own if own is not None or last == line else _noqa_codes(lines[last - 1])


def filter_diagnostics(
    diagnostics: Iterable[Diagnostic],
    sources: dict[str, str],
    select: Iterable[str] = (),
    ignore: Iterable[str] = (),
) -> list[Diagnostic]:
    """Apply --select / --ignore (codes or prefixes) and `# noqa[: CODES]` on the flagged lines."""
    return partition_diagnostics(diagnostics, sources, select, ignore)[0]


def partition_diagnostics(
    diagnostics: Iterable[Diagnostic],
    sources: dict[str, str],
    select: Iterable[str] = (),
    ignore: Iterable[str] = (),
) -> tuple[list[Diagnostic], list[Diagnostic]]:
    """(kept, silenced): --select / --ignore and `# noqa[: CODES]` on the flagged lines decide."""
    select, ignore = list(select), list(ignore)
    kept: list[Diagnostic] = []
    silenced: list[Diagnostic] = []
    for d in diagnostics:
        chosen = not (select and not _matches(d.code, select)) and not (ignore and _matches(d.code, ignore))
        (kept if chosen and not _noqa_silences(d, sources) else silenced).append(d)
    return kept, silenced


def _noqa_silences(d: Diagnostic, sources: dict[str, str]) -> bool:
    """A `# noqa` (for this code, or for all) on the diagnostic's line or a line of its trace."""
    spans = [d.span] + [sp for _, sp in d.trace] if d.span else []
    for sp in spans:
        text = sources.get(sp.path)
        if text is None:
            continue
        codes = _line_noqa(text, sp.line)
        if codes is not None and (not codes or _matches(d.code, codes)):
            return True
    return False



Segments = list[tuple[str, "str | None"]]  # (text, rich style) pieces of a rendered diagnostic


def render_text(d: Diagnostic, sources: dict[str, str], color: bool = False) -> str:
    """rustc/ruff style: header, source line with a caret, notes, help."""
    sev = d.severity
    sev_style = "bold red" if sev == "error" else "bold yellow"
    out: Segments = []
    if d.span:
        out.append((f"{d.span.path}:{d.span.line}:{d.span.column}: ", "bold"))
    out.append((f"{sev}[{d.code}]", sev_style))
    out.append((f": {d.message}\n", "bold"))
    if d.span:
        out += _snippet(d.span, sources, sev_style)
    for name, sp in reversed(d.trace):
        out.append(("   = ", "bold blue"))
        out.append((f"note: in block `{name}`, called at {sp.path}:{sp.line}:{sp.column}\n", None))
        out += _snippet(sp, sources, "bold blue")
    for note in d.notes:
        out.append(("   = ", "bold blue"))
        out.append((f"note: {note}\n", None))
    if d.help:
        out.append(("   = ", "bold blue"))
        out.append(("help", "bold cyan"))
        out.append((f": {d.help}\n", None))
    if not color:  # plain text needs no rich (thousands of diagnostics render in linear time)
        return "".join(text for text, _ in out)
    from io import StringIO

    from rich.console import Console
    from rich.text import Text

    buf = StringIO()
    Console(file=buf, force_terminal=True, force_jupyter=False, width=10_000, highlight=False).print(Text.assemble(*out), end="")
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


def _snippet(span: Span, sources: dict[str, str], style: str) -> Segments:
    text = sources.get(span.path)
    if text is None:
        return []
    lines = source_lines(text)
    if not 0 < span.line <= len(lines):
        return []
    src = lines[span.line - 1]
    gutter = " " * len(str(span.line))
    end_col = span.end_column if span.end_line == span.line else len(src) + 1
    src, column, end_col = clip_line(src, span.column, end_col)
    return [
        (f"{gutter} |\n", "bold blue"),
        (f"{span.line} | ", "bold blue"),
        (src + "\n", None),
        (f"{gutter} | ", "bold blue"),
        (caret_line(src, column, end_col) + "\n", style),
    ]


# A source line longer than this is shown as a window around the span: printing a whole
# 100,000-character line under each of its 20,000 warnings would print gigabytes.
MAX_SNIPPET = 160
_CONTEXT = 60


def clip_line(src: str, column: int, end_column: int) -> tuple[str, int, int]:
    """(shown text, column, end column): src itself when short, else `...` + a window + `...`."""
    if len(src) <= MAX_SNIPPET:
        return src, column, end_column
    start = max(0, column - 1 - _CONTEXT)
    end = min(len(src), max(end_column - 1, column) + _CONTEXT, start + MAX_SNIPPET)
    lead = "..." if start > 0 else ""
    shown = lead + src[start:end] + ("..." if end < len(src) else "")
    shift = len(lead) - start
    return shown, column + shift, min(end_column, end + 1) + shift


def caret_line(src: str, column: int, end_column: int) -> str:
    """Carets under columns [column, end_column) of src: a tab before them stays a tab, so the
    carets line up with the source line however wide the terminal shows a tab."""
    lead = "".join(ch if ch == "\t" else " " for ch in src[: column - 1])
    covered = src[column - 1 : end_column - 1]
    marks = "".join("\t" if ch == "\t" else "^" for ch in covered.rstrip("\t"))
    return lead + (marks or "^")


def suggest(word: str, choices: list[str]) -> str | None:
    """The closest of `choices` to a mistyped word, for a `did you mean` help; None when none is close."""
    import difflib  # only a mistake needs it: kept off the import path of every run

    close = difflib.get_close_matches(word, choices, n=3, cutoff=0.6)
    # A first letter is rarely the typo: `hsigmod` means `hardsigmoid`, not `sigmoid` (a different function),
    # though `sigmoid` shares more letters with it.
    same_start = [c for c in close if word[:1] and c[:1] == word[:1]]
    return (same_start or close or [None])[0]


class Reporter:
    """Collects one parse's diagnostics and reads back the source under a span: the builder, the
    value evaluator and the binder share one, so a mistake found by any of them lands in one list."""

    def __init__(self, sources: dict[str, str], diagnostics: list[Diagnostic]) -> None:
        self.sources = sources
        self.diags = diagnostics  # swapped for a while to collect one deferred layer's diagnostics apart

    def error(self, code: str, message: str, span: Span, trace: tuple[tuple[str, Span], ...],
              help: str | None = None, notes: list[str] | None = None) -> None:
        self.diags.append(Diagnostic(code, message, span, help=help, notes=notes or [], trace=trace))

    def source_text(self, span: Span) -> str:
        return self.sources.get(span.path, "")[span.start:span.end]
