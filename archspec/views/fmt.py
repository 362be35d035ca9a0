"""`archspec fmt`: one canonical layout for .arch files, comments kept, meaning never changed.

The canonical form:
  * statements written on one line (a `|` chain) stay on one line, joined by ` | `; a line
    break between statements stays a line break; at most one blank line in a row, none at the
    start or end of a body or file;
  * single spaces between a layer's arguments; keys glued to their number (`k 5` -> `k5`,
    `s {s}` -> `s{s}`); `name=value` without spaces; expressions compact inside `{...}`
    (`{c*4}`) and spaced inside call parentheses (`cbr(c * 2, k=1)`);
  * a body written on one line stays inline, `{ conv c k3 | bn }`; a body written over several
    lines gets one statement line per line, indented by 2 spaces, with `}` on its own line;
  * a `concat`/`add` keeps its branches on one line when they were written so and fit in
    MAX_BRANCH_LINE columns; otherwise each branch body goes on its own line, indented by 2
    spaces (the grammar reads a line starting with `{` or `shortcut` as part of the one before);
    `shortcut` written on its own line stays there;
  * comments stay where they were: on their own line (indented like the code around them), or
    at the end of the line of the code they followed (so `# noqa` keeps applying to it), two
    spaces after the code; a comment set apart by two or more spaces on a line that keeps its
    start keeps its column too, if the code still ends two spaces before it (aligned comments
    stay aligned).

It works on the syntax tree of the language's own parser, whose lexer also collects the comments
(the language's grammar ignores them), and it refuses text that does not parse.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple, Union

from lark import Token, Transformer, Tree
from lark.visitors import Interpreter, Visitor

from archspec.language import codes
from archspec.language.diagnostics import Diagnostic, is_continued
from archspec.language.errors import ArchspecError
from archspec.language.ops import OPS
from archspec.language.syntax import ParseFailed, parse_with_comments, too_deep

_CONTINUATION = re.compile(r'("[^"\n]*"|#[^\n]*)|\\\r?\n')
_BLANK_LINE = re.compile(r"\n[ \t\f\r]*\n")
# What a key may be glued to and still lex as that key and value: `k5`, `k3x3`, `p-1` (NAME then
# NUMBER). A float stays apart: `k1e5` would be one word that is no key.
_GLUE_VALUE = re.compile(r"-?\d+|\d+(x\d+)+")
# A `concat`/`add` longer than this on one line gets one branch per line.
MAX_BRANCH_LINE = 100
_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2, "//": 2}


class FormatError(ArchspecError):
    """The text cannot be formatted: it does not parse (E001, E009), or formatting would change what
    a `# noqa` silences (E010). Carries the diagnostic."""

    def __init__(self, diagnostic: Diagnostic, sources: dict[str, str]) -> None:
        span = diagnostic.span
        where = f"{span.path}:{span.line}:{span.column}: " if span else ""
        help = diagnostic.help if diagnostic.code == codes.NOQA_WOULD_MOVE else \
            "fix the syntax error first; `archspec check` shows it in context"
        super().__init__(f"{where}{diagnostic.message}", help)
        self.diagnostic = diagnostic
        self.sources = sources


def _parse(text: str, path: str) -> tuple[Tree, list[Token]]:
    """The language's own parser, comments included; a syntax error or a structure too deep for
    the printer's recursion becomes a FormatError."""
    try:
        tree, comments = parse_with_comments(text, path)
    except ParseFailed as failed:
        raise FormatError(failed.diagnostic, {path: text}) from None
    deep = too_deep(tree, path)  # the printer recurses: refuse what would pass Python's stack
    if deep is not None:
        raise FormatError(deep, {path: text})
    return tree, comments


@dataclass
class _Comment:
    token: Token

    @property
    def start(self) -> int:
        return self.token.start_pos or 0

    @property
    def end(self) -> int:
        return self.token.end_pos or 0

    @property
    def text(self) -> str:
        return str(self.token).rstrip()


Item = Union[Tree, _Comment]


def _start(item: Item) -> int:
    return item.start if isinstance(item, _Comment) else item.meta.start_pos


def _end(item: Item) -> int:
    return item.end if isinstance(item, _Comment) else item.meta.end_pos


def _real_newlines(gap: str) -> str:
    """The gap without `\\`-newline continuations, which the grammar ignores. A comment or a string
    ending in a backslash is no continuation: the lexer reads the comment or string first."""
    return _CONTINUATION.sub(lambda m: m.group(1) or " ", gap)


def _line_of_code_start(text: str, pos: int) -> int:
    """Where the line holding pos starts, counting lines joined with a trailing `\\` as one (as `# noqa`
    does): a comment after a continuation follows the code before it, on the joined line."""
    start = text.rfind("\n", 0, pos) + 1
    while start > 0:
        prev = text.rfind("\n", 0, start - 1) + 1
        if not is_continued(text[prev:start - 1].removesuffix("\r")):
            break
        start = prev
    return start


class _Anchors(Visitor):
    """Where trailing comments can attach (the end of each statement, just after each body's `{`,
    just after a join's word when its bodies may go one per line), and the source spans of the
    statements and bodies: a lark Visitor, one method per rule that has some."""

    def __init__(self) -> None:
        self.anchors: list[int] = []
        self.statements: list[tuple[int, int]] = []
        self.bodies: list[tuple[int, int]] = []

    def body_braces(self, t: Tree) -> None:
        self.anchors.append(t.meta.start_pos + 1)  # just after `{`
        self.bodies.append((t.meta.start_pos, t.meta.end_pos))

    def statement(self, t: Tree) -> None:
        self.anchors.append(t.meta.end_pos)
        self.statements.append((t.meta.start_pos, t.meta.end_pos))

    layer = repeat = call = bare_call = block_def = use = budget = sweep_param = statement

    def join(self, t: Tree) -> None:
        self.statement(t)
        if len(_join_parts(t)[2]) > 1:
            self.anchors.append(t.children[0].end_pos)  # a comment after `concat` stays there


class _Printer(Interpreter):
    """The canonical text of a parse tree: a lark Interpreter, one method per statement rule
    (`layer`, `join`, `repeat`, ...) and `body_braces`; comments are placed as it writes."""

    def __init__(self, text: str, comments: list[Token]) -> None:
        self.text = text
        self.lines: list[str] = []
        self.cur: str | None = None  # None: at the start of a line, not yet indented
        self.line_src: int | None = None  # source position of what the current line starts with
        self.indent = 0
        self.pending: list[_Comment] = []  # trailing comments for the end of the current line
        self.own: list[_Comment] = []
        self.trailing: dict[int, list[_Comment]] = {}
        self.statements: list[tuple[int, int]] = []  # source spans, for comments inside a statement
        self.bodies: list[tuple[int, int]] = []
        self.placed = 0  # own-line comments given to a body so far
        self.comments = comments

    # ---- comments

    def classify(self, tree: Tree) -> None:
        """Own-line comments become items of the body they sit in; a trailing comment waits for
        the end of the output line that holds the code just before it (its anchor)."""
        found = _Anchors()
        found.visit(tree)
        anchors = sorted(found.anchors)
        self.statements, self.bodies = found.statements, found.bodies
        for tok in self.comments:
            c = _Comment(tok)
            line_start = _line_of_code_start(self.text, c.start)
            if not _real_newlines(self.text[line_start:c.start]).strip():
                self.own.append(c)
                continue
            before = [a for a in anchors if a <= c.start]
            after = [a for a in anchors if a > c.start]
            if before and before[-1] >= line_start:
                self.trailing.setdefault(before[-1], []).append(c)
            elif after and self.inside_a_statement(c.start):
                # Inside a statement that goes on over the next line (`repeat 2  # c` then `{`, `maxpool  # c`
                # then `{in.h}`): fmt joins what follows onto this line, and the comment ends the joined line.
                self.trailing.setdefault(after[0], []).append(c)
            else:  # after a leading `|` only: its code is on an earlier line (a `# noqa` must not move onto it)
                self.own.append(c)

    def inside_a_statement(self, pos: int) -> bool:
        """Whether pos is within a statement and not between the items of one of its bodies."""
        around = [(start, end) for start, end in self.statements if start < pos < end]
        if not around:
            return False
        innermost = max(start for start, _ in around)
        return not any(innermost < start < pos < end for start, end in self.bodies)

    def anchor(self, pos: int) -> None:
        self.pending += self.trailing.pop(pos, [])

    # ---- output

    def write(self, s: str) -> None:
        if self.cur is None:
            self.cur = "  " * self.indent
        self.cur += s

    def newline(self) -> None:
        line = (self.cur or "").rstrip() or "  " * self.indent
        for c in self.pending:
            line = line.ljust(self.column(c)) if len(line) + 2 <= self.column(c) else line + "  "
            line += c.text
        self.pending = []
        self.lines.append(line)
        self.cur = None
        self.line_src = None

    def column(self, c: _Comment) -> int:
        """Where a trailing comment goes: its own column (aligned comments stay aligned) when it
        was set apart by 2+ spaces on a line that starts the same way here; else 2 after the code."""
        before = self.text[self.text.rfind("\n", 0, c.start) + 1:c.start]
        line_code = c.start - len(before) + (len(before) - len(before.lstrip()))
        if len(before) - len(before.rstrip(" \t")) >= 2 and self.line_src == line_code:
            return (c.token.column or 1) - 1
        return 0

    def mark(self, pos: int) -> None:
        """Note the source position of what starts the current output line."""
        if self.cur is None and self.line_src is None:
            self.line_src = pos

    def blank(self) -> None:
        if self.lines and self.lines[-1] != "":
            self.lines.append("")

    # ---- sequences

    def items(self, stmts: list[Tree], lo: int, hi: int) -> list[Item]:
        """Statements plus the own-line comments between them (not those inside a statement)."""
        mine = [c for c in self.own if lo <= c.start < hi
                and not any(s.meta.start_pos <= c.start < s.meta.end_pos for s in stmts)]
        self.placed += len(mine)
        return sorted([*stmts, *mine], key=_start)

    def sequence(self, items: list[Item]) -> None:
        for i, item in enumerate(items):
            if i:
                prev = items[i - 1]
                gap = _real_newlines(self.text[_end(prev):_start(item)])
                if "\n" not in gap and not isinstance(item, _Comment) and not isinstance(prev, _Comment):
                    self.write(" | ")
                else:
                    self.newline()
                    if _BLANK_LINE.search(gap):
                        self.blank()
            if isinstance(item, _Comment):
                self.mark(item.start)
                self.write(item.text)
            else:
                self.statement(item)

    def body_braces(self, tree: Tree) -> None:
        stmts = [c for c in tree.children if isinstance(c, Tree)]
        lo, hi = tree.meta.start_pos + 1, tree.meta.end_pos - 1
        items = self.items(stmts, lo, hi)
        multiline = "\n" in _real_newlines(self.text[lo:hi])
        if not items:
            self.write("{}")
            self.anchor(lo)
            return
        if not multiline:
            saved, lines = self.snapshot(), len(self.lines)
            self.write("{ ")
            self.anchor(lo)  # a comment after the head before this `{` (see classify)
            self.sequence(items)
            self.write(" }")
            if len(self.lines) == lines:
                return
            # A branch inside went one body per line: this body is then no longer on one line, and
            # fmt must lay it out as the multi-line body it will read as next time (idempotence).
            self.restore(saved)
        self.write("{")
        self.anchor(lo)
        self.indent += 1
        self.newline()
        self.sequence(items)
        self.newline()
        self.indent -= 1
        self.mark(hi)
        self.write("}")

    # ---- statements

    def statement(self, t: Tree) -> None:
        self.mark(t.meta.start_pos)
        self.visit(t)  # by the statement's rule: layer, join, repeat, ...
        self.anchor(t.meta.end_pos)

    def layer(self, t: Tree) -> None:
        op, *args = t.children
        keys = OPS[str(op)].keys if str(op) in OPS else {}
        parts = [str(op)]
        i = 0
        while i < len(args):
            arg, nxt = args[i], args[i + 1] if i + 1 < len(args) else None
            if arg.data == "word" and str(arg.children[0]) in keys and nxt is not None and _gluable(nxt):
                parts.append(str(arg.children[0]) + value_text(nxt))
                i += 2
            else:
                parts.append(value_text(arg))
                i += 1
            while i < len(args) and _pair_piece(args[i - 1], args[i]):  # `k{kh}x{kw}`: one argument, kept glued
                parts[-1] += value_text(args[i])
                i += 1
        self.write(" ".join(parts))

    def join(self, t: Tree) -> None:
        """A join with one body (`residual`) stays on its line; with several, `branches` lays them out."""
        word, option, bodies, keyword, shortcut = _join_parts(t)
        if len(bodies) > 1:
            self.branches(word, option, bodies)
        else:
            self.write(f"{word} " + (f"{option} " if option is not None else ""))
            self.body_braces(bodies[0])
        if shortcut is not None:
            body = bodies[-1]
            if "\n" in _real_newlines(self.text[body.meta.end_pos:keyword.start_pos]):
                self.newline()  # `shortcut` written on the next line stays there
                self.mark(keyword.start_pos)
            else:
                self.write(" ")
            self.write(f"{keyword} ")  # `shortcut`, or `select`'s `attend`
            self.body_braces(shortcut)

    def branches(self, word: Token, option: Token | None, bodies: list[Tree]) -> None:
        mode = option if option is not None else word  # (an option here is reported by the check; fmt keeps it)
        self.write(f"{word} {option}" if option is not None else str(word))
        self.anchor(mode.end_pos)
        starts = [mode.end_pos, *(b.meta.end_pos for b in bodies[:-1])]
        one_per_line = any("\n" in _real_newlines(self.text[a:b.meta.start_pos]) for a, b in zip(starts, bodies))
        if not one_per_line:
            saved = self.snapshot()
            lines = len(self.lines)
            for b in bodies:
                self.write(" ")
                self.body_braces(b)
            if max(len(line) for line in [*self.lines[lines:], self.cur or ""]) <= MAX_BRANCH_LINE:
                return
            self.restore(saved)  # too long on one line: one body per line
        self.indent += 1
        for a, b in zip(starts, bodies):
            for c in [c for c in self.own if a <= c.start < b.meta.start_pos]:  # own-line comments between branches
                self.newline()
                self.mark(c.start)
                self.write(c.text)
                self.placed += 1
            self.newline()
            self.mark(b.meta.start_pos)
            self.body_braces(b)
        self.indent -= 1

    def snapshot(self) -> tuple:
        return (list(self.lines), self.cur, self.line_src, list(self.pending),
                {k: list(v) for k, v in self.trailing.items()}, self.placed)

    def restore(self, saved: tuple) -> None:
        lines, self.cur, self.line_src, pending, trailing, self.placed = saved
        self.lines, self.pending, self.trailing = list(lines), list(pending), dict(trailing)

    def repeat(self, t: Tree) -> None:
        count, body = t.children
        self.write(f"repeat {value_text(count)} ")
        self.body_braces(body)

    def call(self, t: Tree) -> None:
        name, args, _, times = t.children
        parts = []
        for a in args.children if args is not None else []:
            if a.data == "call_kwarg":
                parts.append(f"{a.children[0]}={expr_text(a.children[1], compact=False)}")
            else:
                parts.append(expr_text(a.children[0], compact=False))
        self.write(f"{name}({', '.join(parts)})" + (f" * {value_text(times)}" if times is not None else ""))

    def bare_call(self, t: Tree) -> None:
        name, _, times = t.children
        self.write(f"{name} * {value_text(times)}")

    def block_def(self, t: Tree) -> None:
        name, params, body = t.children
        parts = []
        for p in params.children if params is not None else []:
            pname, default = p.children
            parts.append(str(pname) + (f"={expr_text(default, compact=False)}" if default is not None else ""))
        self.write(f"block {name}({', '.join(parts)}) " if parts else f"block {name} ")
        self.body_braces(body)

    def use(self, t: Tree) -> None:
        self.write(f"use {t.children[0]}")

    def budget(self, t: Tree) -> None:
        self.write("budget " + ", ".join(" ".join(str(tok) for tok in item.children) for item in t.children))

    def sweep_param(self, t: Tree) -> None:
        self.write(f"param {t.children[0]} = {expr_text(t.children[1], compact=False)}")

    def run(self, tree: Tree) -> str:
        self.classify(tree)
        stmts = [c for c in tree.children if isinstance(c, Tree)]
        items = self.items(stmts, 0, len(self.text))
        if not items:
            return ""
        self.sequence(items)
        self.newline()
        # Every comment must come out: each anchor is a printed position, each own-line comment in one body.
        leftover = [c for cs in self.trailing.values() for c in cs]
        assert not leftover and self.placed == len(self.own), f"comments not placed: {leftover}"
        return "\n".join(self.lines) + "\n"


def _pair_piece(before: Tree, after: Tree) -> bool:
    """`after` continues a pair written glued to `before` (`k{kh}` `x` `{kw}`, `k{kh}` `x7`, `k1x` `{kw}`), as binding reads it."""
    if before.meta.end_pos != after.meta.start_pos:
        return False
    return ((before.data == "braced" and re.fullmatch(r"x\d*", _word_of(after)) is not None)
            or (after.data == "braced" and _word_of(before).endswith("x")))


def _word_of(t: Tree) -> str:
    return str(t.children[0]) if t.data == "word" else ""


def _gluable(value: Tree) -> bool:
    """A key's value that can be glued to it and still read as that key: `k5`, `k3x3`, `s{s}`."""
    if value.data == "braced":
        return True
    return value.data in ("number", "dims") and bool(_GLUE_VALUE.fullmatch(str(value.children[0])))


class _Text(NamedTuple):
    text: str
    precedence: int  # of its outermost operator; 9 for an operand


class _ExprText(Transformer):
    """An argument's or an expression's text, bottom up, one method per rule: with the parentheses its
    precedence needs (the tree does not keep them).

    A right operand of the same precedence keeps its parentheses too: `a - (b - c)`, and
    `a * (b // c)`, whose integer result differs from `a * b // c`.
    """

    def __init__(self, compact: bool) -> None:
        super().__init__()
        self.sep = "" if compact else " "

    def number(self, children: list[Token]) -> _Text:
        return _Text(str(children[0]), 9)

    word = dims = string = number

    def neg(self, children: list[_Text]) -> _Text:
        (inner,) = children
        return _Text("-" + (f"({inner.text})" if inner.precedence < 9 else inner.text), 9)

    def binop(self, children: list) -> _Text:
        left, op, right = children
        prec = _PRECEDENCE[str(op)]
        lt = f"({left.text})" if left.precedence < prec else left.text
        rt = f"({right.text})" if right.precedence <= prec else right.text
        return _Text(f"{lt}{self.sep}{op}{self.sep}{rt}", prec)

    def braced(self, children: list[_Text]) -> _Text:
        return _Text("{" + children[0].text + "}", 9)

    def kwarg(self, children: list) -> _Text:
        key, value = children
        return _Text(f"{key}={value.text}", 9)

    def range(self, children: list[_Text]) -> _Text:  # `slice 0:64`
        return _Text(":".join(end.text for end in children), 9)


_COMPACT, _SPACED = _ExprText(compact=True), _ExprText(compact=False)


def value_text(t: Tree | Token) -> str:
    """An argument as fmt writes it: `k5`'s parts, `name=value`, `{c*4}` (compact inside braces)."""
    return str(t) if isinstance(t, Token) else _COMPACT.transform(t).text


def expr_text(t: Tree | Token, compact: bool) -> str:
    """An expression, compact (`{c*4}`) or spaced (`cbr(c * 2)`)."""
    return str(t) if isinstance(t, Token) else (_COMPACT if compact else _SPACED).transform(t).text


def format_text(text: str, path: str = "<string>") -> str:
    """The canonical form of .arch text; FormatError (an ArchspecError) when it does not parse."""
    from archspec.language.files import source_text

    text = source_text(text)  # the canonical form has no byte order mark, and `\n` line ends
    tree, comments = _parse(text, path)
    formatted = _Printer(text, comments).run(tree)
    if any("noqa" in c for c in comments):
        moved = _noqa_moved(text, formatted, path)
        if moved is not None:
            raise FormatError(moved, {path: text})
    return formatted


def _noqa_moved(text: str, formatted: str, path: str) -> Diagnostic | None:
    """E010 at a diagnostic that a `# noqa` silences in one of `text` and `formatted` but not the other.

    `# noqa` covers its whole source line, and fmt puts one statement on each line: where a line held
    a body's `{` and its first statement, fmt splits it and the comment can follow only one part; where
    an empty body spans lines, fmt joins them onto the line of the comment after its `}`. Comparing
    what `check` reports before and after is the definition of keeping the meaning."""
    from collections import Counter

    from archspec.language.pipeline import CheckOptions, checked

    def kept_and_all(source: str) -> tuple[Counter[str], list[Diagnostic]]:
        report = checked(source, CheckOptions(classes=None), name=path)
        everything = sorted(report.diagnostics + report.silenced, key=lambda d: d.span.start if d.span else -1)
        return Counter(d.code for d in report.diagnostics), everything

    (before, diagnostics), (after, _) = kept_and_all(text), kept_and_all(formatted)
    split = ("split line {line} and its `# noqa` would no longer silence",
             "put each statement on its own line, with the `# noqa` on the line it silences, then run fmt again")
    join = ("join line {line} to a line ending in `# noqa`, which would silence",
            "write the empty body as `{}` on one line, or move the `# noqa` to the line it is meant for, then run fmt again")
    for changed, (what, help) in ((after - before, split), (before - after, join)):
        hit = [d for d in diagnostics if d.code in changed and d.span is not None and d.span.path == path]
        if hit:
            d = hit[0]
            return Diagnostic(codes.NOQA_WOULD_MOVE, f"formatting would {what.format(line=d.span.line)} the {d.code} here",
                              d.span, help=help)
    return None


def _join_parts(t: Tree) -> tuple[Token, Token | None, list[Tree], Token | None, Tree | None]:
    """A `join` statement's word, option word, bodies, `shortcut` keyword and shortcut body."""
    word, option, *bodies, keyword, shortcut = t.children
    return word, option, bodies, keyword, shortcut
