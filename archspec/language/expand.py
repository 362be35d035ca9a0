"""From syntax tree to specs: bind each layer's words to its op's pydantic model, expand blocks,
repetition and `use`, and keep a source span (and block call trace) on every node.

Binding never stops at the first problem: every mistake becomes a diagnostic and the layer is
kept as an `Invalid` node, so the checker can go on with best-effort shapes.
"""
from __future__ import annotations

import difflib
import errno
import math
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from lark import Token, Tree
from pydantic import ValidationError

from archspec.language import codes
from archspec.language.diagnostics import Diagnostic, Span
from archspec.language.nodes import BlockCall, Branch, Deferred, Invalid, Model, Node, Residual, Seq, Trace, Value
from archspec.language.ops import OPS, LayerSpec, resolve_op_name, validate_layer, value_text
from archspec.language.gcpause import without_gc_pauses
from archspec.language.syntax import MAX_NESTING, ParseFailed, parse_tree, token_span, too_deep, tree_span

# --------------------------------------------------------------------------- resource limits
# Documented in the README (section "Limits"): past each, one diagnostic instead of the work.
MAX_FILE_BYTES = 1 << 20  # 1 MiB: a .arch file (main or `use`d); checked on the file's size before reading
MAX_LAYERS = 50_000  # layers after expanding repeats, block calls and `use` (structures count one each)
MAX_USE_DEPTH = 32  # files that `use` each other in a chain
MAX_ARGUMENTS = 256  # arguments of one layer or one block call
MAX_INT = (1 << 63) - 1  # torch's int64: a larger whole number cannot reach a layer


class Unreadable(Exception):
    """A file that is not read: not there, not a regular file, too large, not UTF-8; `reason` says which."""

    def __init__(self, reason: str, help: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.help = help


def read_arch_file(path: "str | Path") -> str:
    """The text of a .arch file, refused before reading when it is not a regular file (a FIFO, a
    device such as /dev/zero) or larger than MAX_FILE_BYTES (a sparse file too); a leading BOM dropped."""
    try:
        info = os.stat(path)  # follows links: the type and size of what would be read
    except ValueError:  # a NUL character in the path
        raise Unreadable("a file name cannot contain a NUL character", "remove the NUL character from the path") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise Unreadable("a loop of symbolic links", "point the link at a file") from None
        raise Unreadable(exc.strerror or str(exc)) from None
    if stat.S_ISDIR(info.st_mode):
        raise Unreadable("is a directory, not a .arch file")
    if not stat.S_ISREG(info.st_mode):
        raise Unreadable("not a regular file (a pipe, a device or a socket)", "pass a .arch file, or `-` for standard input")
    if info.st_size > MAX_FILE_BYTES:
        raise Unreadable(f"{info.st_size:,} bytes, over the limit of {MAX_FILE_BYTES:,} bytes for a .arch file",
                         "a .arch file is a few kilobytes; split it, or check that this is the right file")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)  # the size may have changed since stat
    except OSError as exc:
        raise Unreadable(exc.strerror or str(exc)) from None
    return decode_arch_bytes(data)


def decode_arch_bytes(data: bytes) -> str:
    """UTF-8 text with a leading byte order mark dropped; Unreadable when too large or not UTF-8."""
    if len(data) > MAX_FILE_BYTES:
        raise Unreadable(f"over the limit of {MAX_FILE_BYTES:,} bytes for a .arch file")
    try:
        return strip_bom(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise Unreadable(f"not UTF-8 text (byte {exc.start}); is it a .arch file?") from None


def strip_bom(text: str) -> str:
    """Editors on Windows start files with U+FEFF: invisible, and no part of the program."""
    return text[1:] if text.startswith("\ufeff") else text


class _Refused(Exception):
    """A resource limit was passed: the expansion stops with this one diagnostic."""

    def __init__(self, diagnostic: Diagnostic) -> None:
        super().__init__(diagnostic.message)
        self.diagnostic = diagnostic


if TYPE_CHECKING:
    from archspec.language.budget import Limit

# --------------------------------------------------------------------------- binding helpers

_GLUED = re.compile(r"^(?P<key>[a-z]+?)(?P<value>\d+(?:x\d+)+|\d+\.\d*|\d*\.\d+|\d+)$")
_WORD_VALUES = {"same", "valid", "whiten", "default"}


_INT = re.compile(r"-?\d+")  # compiled once: re's own cache lookup cost more than the match (per number)


def _number(text: str) -> int | float:
    # A whole number past int64 becomes an (infinite or huge) float: the range check refuses it,
    # and int() never sees thousands of digits (Python refuses those with ValueError).
    if _INT.fullmatch(text) and len(text) <= 20:
        return int(text)
    return float(text)


def out_of_range(value: Any) -> bool:
    """A number torch cannot take: not finite (inf, NaN) or a whole number past int64."""
    if isinstance(value, tuple):
        return any(out_of_range(v) for v in value)
    if isinstance(value, float):
        return not math.isfinite(value) or abs(value) > MAX_INT
    if isinstance(value, int) and not isinstance(value, bool):
        return abs(value) > MAX_INT
    return False


# A word that reads as dimensions with a symbol in them: `H`, `W`, `HxW`, `Cx32x32` (only `input 3xHxW` is right).
_SYMBOLIC_DIMS = re.compile(r"[A-Z](x([A-Z]|\d+))*|\d+(x([A-Z]|\d+))+")


def _glued_value(text: str) -> Value:
    if "x" in text:
        return tuple(_number(t) for t in text.split("x"))
    return _number(text)


def _suggest(word: str, choices: list[str]) -> str | None:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return close[0] if close else None


@dataclass
class _Arg:
    kind: str  # "word" | "value" | "kwarg"
    value: Value
    span: Span
    key: str = ""
    bound: Value | None = None  # the block parameter's value when the word names one


@dataclass
class _BlockDef:
    name: str
    params: list[tuple[str, Any]]  # (name, default expr tree or None)
    body: Tree
    span: Span
    path: str


class _Namer:
    """Module names inside one container: conv1, conv2, fc1, ... (what print(model) shows)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def __call__(self, prefix: str) -> str:
        self.counts[prefix] = self.counts.get(prefix, 0) + 1
        return f"{prefix}{self.counts[prefix]}"


class _Builder:
    def __init__(self, sources: dict[str, str], diagnostics: list[Diagnostic]) -> None:
        self.sources = sources
        self.diags = diagnostics
        self.blocks: dict[str, _BlockDef] = {}
        self.loading: list[str] = []
        self.loaded: set[str] = set()
        self.call_depth = 0
        self.nesting = 0  # bodies open right now (MAX_NESTING)
        self.expanded = 0  # nodes made so far (MAX_LAYERS)

    def grow(self, count: int, span: Span, trace: Trace, what: str = "") -> None:
        """Count `count` more nodes; past MAX_LAYERS stop the expansion, naming the number it would reach."""
        self.expanded += count
        self.refuse_past(self.expanded, span, trace, what)

    def refuse_past(self, total: int, span: Span, trace: Trace, what: str = "") -> None:
        if total > MAX_LAYERS:
            reach = f"{what} would make {total:,} layers, past" if what else "the network expands past"
            raise _Refused(Diagnostic(
                codes.TOO_LARGE, f"{reach} the limit of {MAX_LAYERS:,} layers",
                span, trace=trace, help="use fewer repeats or smaller counts; a network of that size cannot be trained anyway"))

    def number(self, value: Value, span: Span, trace: Trace) -> Value:
        """A number torch can take, or E004 at its span (and 1 in its place, so binding goes on)."""
        if not out_of_range(value):
            return value
        shown = self.source_text(span)
        shown = shown if 0 < len(shown) <= 40 else value_text(value)
        self.error(codes.INVALID_VALUE, f"`{shown[:40]}` is out of range: numbers must be finite and at most 2^63-1",
                   span, trace, help="write a number of a realistic size")
        return 1

    def error(self, code: str, message: str, span: Span, trace: Trace, help: str | None = None, notes: list[str] | None = None) -> None:
        self.diags.append(Diagnostic(code, message, span, help=help, notes=notes or [], trace=trace))

    # ---- files and `use`

    def load_file(self, path: str, text: str) -> Tree | None:
        text = strip_bom(text)
        self.sources[path] = text
        try:
            tree = parse_tree(text, path)
        except ParseFailed as failed:
            self.diags.extend(failed.diagnostics)
            if failed.tree is None:
                return None
            tree = failed.tree  # the statements that parse are still checked
        deep = too_deep(tree, path)
        if deep is not None:
            self.diags.append(deep)
            return None
        return tree

    def collect_defs(self, tree: Tree, path: str, top_level: bool) -> list[Tree]:
        """Register `block` definitions and `use` imports; return the remaining statements."""
        statements = []
        for stmt in tree.children:
            if not isinstance(stmt, Tree):
                continue
            if stmt.data == "block_def":
                self.define(stmt, path)
            elif stmt.data == "use":
                self.use(stmt, path)
            elif top_level:
                statements.append(stmt)
            else:
                self.error(codes.IMPORT_ERROR, f"a file brought in with `use` may only define blocks; found `{_stmt_head(stmt)}`",
                           tree_span(stmt, path), (), help="move the layers into the file that uses this one")
        return statements

    def define(self, stmt: Tree, path: str) -> None:
        name_tok, params_tree, body = stmt.children
        span = token_span(name_tok, path)
        if str(name_tok) in OPS:
            self.error(codes.UNDEFINED_NAME, f"block `{name_tok}` has the name of an op", span, (), help="rename the block")
            return
        if str(name_tok) in self.blocks:
            prev = self.blocks[str(name_tok)].span
            self.error(codes.UNDEFINED_NAME, f"block `{name_tok}` is defined twice", span, (),
                       notes=[f"first defined at {prev.path}:{prev.line}:{prev.column}"], help="rename one of them")
            return
        params = []
        for p in params_tree.children if params_tree is not None else []:
            pname, default = p.children
            params.append((str(pname), default))
        self.blocks[str(name_tok)] = _BlockDef(str(name_tok), params, body, span, path)

    def use(self, stmt: Tree, path: str) -> None:
        tok = stmt.children[0]
        span = token_span(tok, path)
        rel = str(tok)[1:-1]
        base = Path(path).parent if path not in ("<string>", "<stdin>", "-") else Path.cwd()
        if "\x00" in rel:  # no file name holds one: the OS calls raise ValueError, not OSError
            self.error(codes.IMPORT_ERROR, f"cannot read `{rel!r}`: a file name cannot contain a NUL character", span, (),
                       help="remove the NUL character from the path")
            return
        try:
            target = (base / rel).resolve()
        except (RuntimeError, OSError):  # a loop of symbolic links (RuntimeError before Python 3.13)
            self.error(codes.IMPORT_ERROR, f"cannot read `{rel}`: a loop of symbolic links", span, (),
                       help="point the link at a file")
            return
        key = str(target)
        if len(self.loading) > MAX_USE_DEPTH:
            self.error(codes.IMPORT_ERROR, f'`use "{rel}"` is {len(self.loading)} files deep, past the limit of {MAX_USE_DEPTH}',
                       span, (), help="bring the blocks in from fewer levels of files")
            return
        if key in self.loading:
            self.error(codes.IMPORT_ERROR, f'`use "{rel}"` makes a cycle of files', span, (),
                       notes=[" -> ".join(self.loading + [key])], help="remove one of the `use` lines")
            return
        if key in self.loaded:
            return  # already loaded: its blocks are defined
        self.loaded.add(key)
        try:
            text = read_arch_file(target)
        except Unreadable as exc:
            self.error(codes.IMPORT_ERROR, f"cannot read `{rel}`: {exc.reason}",
                       span, (), help=exc.help or f"the path is relative to the file that uses it: {base}")
            return
        tree = self.load_file(_display_path(target), text)
        if tree is None:
            return
        self.loading.append(key)
        self.collect_defs(tree, _display_path(target), top_level=False)
        self.loading.pop()

    # ---- statements

    def statements(self, stmts: list[Tree], path: str, env: dict[str, Value], trace: Trace, namer: _Namer) -> list[Node]:
        out: list[Node] = []
        for stmt in stmts:
            out.extend(self.statement(stmt, path, env, trace, namer))
        return out

    def body(self, body: Tree, path: str, env: dict[str, Value], trace: Trace) -> Seq:
        self.nesting += 1
        try:
            if self.nesting > MAX_NESTING:
                raise _Refused(Diagnostic(
                    codes.TOO_LARGE, f"nesting {self.nesting} levels deep once blocks are expanded, past the limit of {MAX_NESTING}",
                    tree_span(body, path), trace=trace, help="call blocks inside fewer levels of residuals, branches and blocks"))
            return self._body(body, path, env, trace)
        finally:
            self.nesting -= 1

    def _body(self, body: Tree, path: str, env: dict[str, Value], trace: Trace) -> Seq:
        stmts = [c for c in body.children if isinstance(c, Tree)]
        for s in stmts:
            if s.data in ("block_def", "use"):
                self.error(codes.UNDEFINED_NAME if s.data == "block_def" else codes.IMPORT_ERROR, f"`{s.data.split('_')[0]}` is only allowed at the top level of a file",
                           tree_span(s, path), trace)
        stmts = [s for s in stmts if s.data not in ("block_def", "use")]
        return Seq(self.statements(stmts, path, env, trace, _Namer()))

    def statement(self, stmt: Tree, path: str, env: dict[str, Value], trace: Trace, namer: _Namer) -> list[Node]:
        span = tree_span(stmt, path)
        kind = stmt.data
        if kind == "layer" and len(stmt.children) == 1 and str(stmt.children[0]) not in OPS and str(stmt.children[0]) in self.blocks:
            # A bare block name calls it without arguments, like `stem()`.
            return self.call(Tree("call", [stmt.children[0], None, None, None], stmt.meta), path, env, trace, namer)
        if kind == "layer":
            self.grow(1, span, trace)
            return [self.layer(stmt, path, env, trace, namer)]
        if kind in ("residual", "branch"):
            self.grow(1, span, trace)
        if kind == "residual":
            mode, body, _, shortcut = stmt.children
            if mode is not None and str(mode) != "project":
                self.error(codes.UNKNOWN_ARGUMENT, f"unknown residual option `{mode}`", token_span(mode, path), trace,
                           help="write `residual project { ... }` for an automatic 1x1 projection, or `residual { ... }`")
            node = Residual(
                body=self.body(body, path, env, trace),
                shortcut=self.body(shortcut, path, env, trace) if shortcut is not None else None,
                project=mode is not None and str(mode) == "project",
                span=_head_span(stmt, path, "residual"), trace=trace, name=namer("res"),
            )
            return [node]
        if kind == "branch":
            mode_tok, *bodies = stmt.children
            return [Branch(str(mode_tok), [self.body(b, path, env, trace) for b in bodies],
                           _head_span(stmt, path, str(mode_tok)), trace, namer(str(mode_tok)))]
        if kind == "repeat":
            count_tree, body = stmt.children
            count = self.count(count_tree, path, env, trace)
            items: list[Node] = []
            stmts = [c for c in body.children if isinstance(c, Tree)]
            for i in range(count):
                before = self.expanded
                items.extend(self.statements(stmts, path, env, trace, namer))
                if i == 0:  # refuse before making the other copies: one copy's size is known now
                    self.refuse_past(before + (self.expanded - before) * count, _head_span(stmt, path, "repeat"), trace,
                                     f"`repeat {count}`")
            return items
        if kind == "call":
            return self.call(stmt, path, env, trace, namer)
        if kind in ("block_def", "use", "budget"):
            self.error(codes.UNDEFINED_NAME, f"`{kind.split('_')[0]}` is only allowed at the top level of a file", span, trace)
            return []
        raise AssertionError(f"unhandled statement {kind}")  # the grammar has no other statement

    def budget(self, stmt: Tree, path: str) -> list["Limit"]:
        """The limits of a `budget` statement; a wrong one is reported (E003/E004) and left out."""
        from archspec.language.budget import BudgetError, make_limit

        limits = []
        for item in stmt.children:
            metric, op, quantity = item.children
            span = tree_span(item, path)
            try:
                limits.append(make_limit(str(metric), "max" if str(op) == "<=" else "min", str(quantity),
                                         f"{metric} {op} {quantity}", span))
            except BudgetError as exc:
                from archspec.language.budget import METRICS

                code = codes.INVALID_VALUE if str(metric) in METRICS else codes.UNKNOWN_ARGUMENT
                self.error(code, str(exc), span, (), help=exc.help)
        return limits

    def count(self, tree: Any, path: str, env: dict[str, Value], trace: Trace) -> int:
        value = self.value(tree, path, env, trace)
        span = _any_span(tree, path)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            self.error(codes.INVALID_VALUE, f"a repeat count must be a whole number of at least 1, got `{value}`", span, trace)
            return 0
        return value

    # ---- values and expressions

    def value(self, tree: Any, path: str, env: dict[str, Value], trace: Trace) -> Value:
        if isinstance(tree, Token):
            if tree.type == "NAME":
                return self.lookup(tree, path, env, trace)
            return self.number(_number(str(tree)), token_span(tree, path), trace)
        kind = tree.data
        if kind == "number":
            return self.number(_number(str(tree.children[0])), tree_span(tree, path), trace)
        if kind == "dims":  # `3xHxW`: a letter stands for any size (only `input` takes one)
            return self.number(tuple(t if t.isalpha() else _number(t) for t in str(tree.children[0]).split("x")),
                               tree_span(tree, path), trace)
        if kind == "word":
            tok = tree.children[0]
            return env[str(tok)] if str(tok) in env else str(tok)
        if kind == "string":
            return str(tree.children[0])[1:-1]
        if kind == "braced":
            return self.expr(tree.children[0], path, env, trace)
        return self.expr(tree, path, env, trace)

    def lookup(self, tok: Token, path: str, env: dict[str, Value], trace: Trace) -> Value:
        if str(tok) in env:
            return env[str(tok)]
        if str(tok).startswith("in."):
            self.error(codes.UNDEFINED_NAME, f"`{tok}` (the incoming shape) can only be read in a layer's arguments",
                       token_span(tok, path), trace,
                       help="use it in the layer inside the block, e.g. `conv {in.c // 2} k1`, not in a call or a count")
            return 1
        hint = _suggest(str(tok), list(env))
        self.error(codes.UNDEFINED_NAME, f"`{tok}` is not a block parameter here", token_span(tok, path), trace,
                   help=f"did you mean `{hint}`?" if hint else "only a block's parameters can be used in `{...}` and call arguments")
        return 1

    def expr(self, tree: Any, path: str, env: dict[str, Value], trace: Trace) -> Value:
        if isinstance(tree, Token):
            return self.value(tree, path, env, trace)
        kind = tree.data
        if kind == "number":
            return self.number(_number(str(tree.children[0])), tree_span(tree, path), trace)
        if kind == "word":
            return self.lookup(tree.children[0], path, env, trace)
        if kind == "neg":
            v = self.expr(tree.children[0], path, env, trace)
            return -v if isinstance(v, (int, float)) else v
        if kind == "binop":
            left, op, right = tree.children
            a, b = self.expr(left, path, env, trace), self.expr(right, path, env, trace)
            if not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
                self.error(codes.INVALID_VALUE, f"`{op}` needs numbers", tree_span(tree, path), trace)
                return 1
            if op in ("/", "//") and b == 0:
                self.error(codes.INVALID_VALUE, "division by zero", tree_span(tree, path), trace)
                return 1
            # Each result is range-checked, so repeated squaring never builds a huge number.
            return self.number(_arithmetic(str(op), a, b), tree_span(tree, path), trace)
        raise AssertionError(f"unhandled expression {kind}")

    # ---- layers

    def layer(self, stmt: Tree, path: str, env: dict[str, Value], trace: Trace, namer: _Namer) -> Node:
        op_tok, *arg_trees = stmt.children
        span = tree_span(stmt, path)
        op = str(op_tok)
        cls = OPS.get(op)
        if cls is None:
            if op in self.blocks:
                help = (f"call a block with its arguments in parentheses: `{op}(...)`" if self.blocks[op].params
                        else f"block `{op}` takes no arguments: write `{op}`")
            else:
                hint = resolve_op_name(op) or _suggest(op, list(OPS) + list(self.blocks))
                help = f"did you mean `{hint}`?" if hint else "run `archspec ops` to list the ops"
            self.error(codes.UNKNOWN_OP, f"unknown op `{op}`", token_span(op_tok, path), trace, help=help)
            return Invalid(op, span, trace, namer(op))
        if len(arg_trees) > MAX_ARGUMENTS:
            self.error(codes.UNKNOWN_ARGUMENT, f"`{op}` has {len(arg_trees):,} arguments, past the limit of {MAX_ARGUMENTS}",
                       span, trace, help=f"usage: `{cls.usage}`")
            return Invalid(op, span, trace, namer(op))
        reads = _shape_reads(arg_trees)
        if reads and not any(k in env for k in IN_SHAPE_NAMES):
            return self.deferred(stmt, op, reads, path, env, trace, namer(cls.name_prefix or op))
        args = [self.arg(t, path, env, trace) for t in arg_trees]
        name = namer(cls.name_prefix or op)
        if self.misplaced_symbol(op, args, trace):
            return Invalid(op, span, trace, name)
        if self.missing_separator(cls, op, args, span, trace) or self.torch_order(cls, op, args, span, trace):
            return Invalid(op, span, trace, name)
        data, ok = self.bind(cls, op, args, span, trace)
        if not ok:
            return Invalid(op, span, trace, name)
        try:
            spec = validate_layer({"op": op, **data, "span": span, "trace": trace, "name": name})
        except ValidationError as exc:
            for fld, errors in _errors_by_field(exc, op).items():
                where = next((a.span for a in args if a.key == fld), span)
                self.error(codes.INVALID_VALUE, f"`{op}` {_field_label(cls, fld)}: {_joined_msg(errors)}", where, trace,
                           help=f"usage: `{cls.usage}`")
            return Invalid(op, span, trace, name)
        # A word such as `inf` or `nan` becomes a float only in validation: refuse what torch cannot take.
        bad = [fld for fld in data if out_of_range(getattr(spec, fld, None))]
        for fld in bad:
            where = next((a.span for a in args if a.key == fld), span)
            self.error(codes.INVALID_VALUE, f"`{op}` {_field_label(cls, fld)}: must be finite and at most 2^63-1, "
                       f"got `{value_text(getattr(spec, fld))}`", where, trace, help=f"usage: `{cls.usage}`")
        return Invalid(op, span, trace, name) if bad else spec

    def misplaced_symbol(self, op: str, args: list[_Arg], trace: Trace) -> bool:
        """A symbolic size (`H`, `W`) anywhere but the height and width of `input`: one diagnostic each."""
        found = False
        for a in args:
            if a.kind == "word" and a.bound is None and _SYMBOLIC_DIMS.fullmatch(str(a.value)):
                if op == "input":
                    self.error(codes.INVALID_VALUE, f"`input {a.value}`: the channels must be a number; only the height "
                               "and width can be symbols", a.span, trace,
                               help="write the channels first as a number, e.g. `input 3xHxW` (H, W: any size)")
                else:
                    self.error(codes.INVALID_VALUE, f"`{op}` {a.value}: a symbolic size can only be the height or width "
                               "of `input`", a.span, trace, help=f"write a number here; usage: `{OPS[op].usage}`")
                found = True
            elif isinstance(a.value, tuple) and any(isinstance(d, str) for d in a.value) and op != "input":
                self.error(codes.INVALID_VALUE, f"`{op}` {value_text(a.value)}: a symbolic size can only be the height "
                           "or width of `input`", a.span, trace, help=f"write numbers here; usage: `{OPS[op].usage}`")
                found = True
        return found

    def deferred(self, stmt: Tree, op: str, reads: list[Token], path: str, env: dict[str, Value], trace: Trace,
                 name: str) -> Node:
        """A layer that reads the incoming shape: E007 for a name other than in.c/h/w/f, else bound later."""
        unknown = [t for t in reads if str(t) not in IN_SHAPE_NAMES]
        for tok in unknown:
            hint = _suggest(str(tok), list(IN_SHAPE_NAMES))
            self.error(codes.UNDEFINED_NAME, f"`{tok}` is not a size of the incoming shape", token_span(tok, path), trace,
                       help=f"did you mean `{hint}`?" if hint else "the incoming shape has `in.c`, `in.h`, `in.w` (images) and `in.f` (features)")
        if unknown:
            return Invalid(op, tree_span(stmt, path), trace, name)

        def resolve(sizes: dict[str, int]) -> tuple[Node, list[Diagnostic]]:
            mine: list[Diagnostic] = []
            saved, self.diags = self.diags, mine  # this layer's binding diagnostics go to the checker
            try:
                return self.layer(stmt, path, {**env, **sizes}, trace, lambda _prefix: name), mine
            finally:
                self.diags = saved

        return Deferred(op, tree_span(stmt, path), {str(t): token_span(t, path) for t in reads}, resolve, trace, name)

    def source_text(self, span: Span) -> str:
        return self.sources.get(span.path, "")[span.start:span.end]

    def missing_separator(self, cls: type[LayerSpec], op: str, args: list[_Arg], span: Span, trace: Trace) -> bool:
        """`conv 6 k5 relu maxpool 2`: one diagnostic at the first op name among the arguments."""
        starts = [a.span.start for a in args if _names_an_op(cls, a)]
        if not starts:
            return False
        word = next(str(a.value) for a in args if _names_an_op(cls, a))
        where = next(a.span for a in args if _names_an_op(cls, a))
        text = self.source_text(span)
        for start in reversed(starts):
            cut = start - span.start
            text = text[:cut].rstrip() + " | " + text[cut:]
        self.error(codes.UNKNOWN_ARGUMENT, f"missing `|` before `{word}`?", where, trace,
                   help=f"separate layers with `|` or a newline: `{text}`")
        return True

    def torch_order(self, cls: type[LayerSpec], op: str, args: list[_Arg], span: Span, trace: Trace) -> bool:
        """`conv 6 5`, `conv 3 6 5`, `linear 400 120`: PyTorch's positional arguments, one diagnostic with the form here."""
        numbers = [a for i, a in enumerate(args) if a.kind == "value" and not (i and _is_key(cls, args[i - 1]))]
        if not cls.torch_order or len(numbers) <= len(cls.positional):
            return False
        form = language_form(op, [self.source_text(a.span) for a in args])
        count = "one number" if len(cls.positional) == 1 else f"{len(cls.positional)} numbers"
        self.error(codes.UNKNOWN_ARGUMENT, f"`{op}` takes {count} here, got {len(numbers)}: {cls.torch_note}", span, trace,
                   help=f"write `{form}`")
        return True

    def arg(self, tree: Tree, path: str, env: dict[str, Value], trace: Trace) -> _Arg:
        span = tree_span(tree, path)
        if tree.data == "kwarg":
            key_tok, value_tree = tree.children
            return _Arg("kwarg", self.value(value_tree, path, env, trace), span, key=str(key_tok))
        if tree.data == "word":
            word = str(tree.children[0])
            return _Arg("word", word, span, bound=env.get(word))
        return _Arg("value", self.value(tree, path, env, trace), span)

    def bind(self, cls: type[LayerSpec], op: str, args: list[_Arg], span: Span, trace: Trace) -> tuple[dict[str, Any], bool]:
        """Map positional values, `k5` / `p same` / `init=whiten` keys and flags to the op's fields."""
        data: dict[str, Any] = {}
        ok = True
        model_fields = cls.model_fields  # one lookup: pydantic's class property is slow per access
        fields = [f for f in model_fields if f not in ("op", "span", "trace", "name")]
        vocabulary = list(cls.keys) + list(cls.flags) + [f"{k}=" for k in fields]

        def put(fld: str, value: Any, arg: _Arg) -> None:
            nonlocal ok
            if fld in data:
                self.error(codes.UNKNOWN_ARGUMENT, f"`{op}` gets {_field_label(cls, fld)} twice", arg.span, trace, help="keep one of them")
                ok = False
            data[fld] = value
            arg.key = fld

        positional = list(cls.positional)
        i = 0
        while i < len(args):
            arg = args[i]
            nxt = args[i + 1] if i + 1 < len(args) else None
            if arg.kind == "kwarg":
                fld = cls.keys.get(arg.key, arg.key)
                if fld in fields:
                    put(fld, arg.value, arg)
                else:
                    self._unknown(op, arg.key, arg.span, trace, vocabulary)
                    ok = False
            elif arg.kind == "word":
                word = str(arg.value)
                glued = _GLUED.match(word)
                if word in cls.flags:
                    fld, value = cls.flags[word]
                    put(fld, value, arg)
                elif word in cls.keys and nxt is not None and self._is_value(cls, nxt):
                    put(cls.keys[word], nxt.bound if nxt.bound is not None else nxt.value, arg)
                    nxt.key = cls.keys[word]
                    i += 1
                elif arg.bound is not None and positional:
                    put(positional.pop(0), arg.bound, arg)
                elif word in cls.keys:
                    self.error(codes.MISSING_ARGUMENT, f"`{op}` argument `{word}` needs a value", arg.span, trace,
                               help=f"write it glued, e.g. `{word}1`, or as `{word} VALUE`; usage: `{cls.usage}`")
                    ok = False
                elif glued and glued["key"] in cls.keys:
                    put(cls.keys[glued["key"]], _glued_value(glued["value"]), arg)
                elif word in _WORD_VALUES and positional:
                    put(positional.pop(0), word, arg)
                else:
                    self._unknown(op, word, arg.span, trace, vocabulary)
                    ok = False
            else:
                if positional:
                    put(positional.pop(0), arg.value, arg)
                else:
                    takes = f"takes {len(cls.positional)} positional argument(s)" if cls.positional else "takes no positional arguments"
                    self.error(codes.UNKNOWN_ARGUMENT, f"unexpected value `{value_text(arg.value)}`: `{op}` {takes}", arg.span, trace,
                               help=f"usage: `{cls.usage}`")
                    ok = False
            i += 1
        for fld in fields:
            if model_fields[fld].is_required() and fld not in data:
                self.error(codes.MISSING_ARGUMENT, f"`{op}` needs {_field_label(cls, fld)}", span, trace, help=f"usage: `{cls.usage}`")
                ok = False
        return data, ok

    @staticmethod
    def _is_value(cls: type[LayerSpec], arg: _Arg) -> bool:
        if arg.kind == "value" or arg.bound is not None:
            return True
        if arg.kind != "word":
            return False
        word = str(arg.value)
        glued = _GLUED.match(word)
        return word not in cls.keys and word not in cls.flags and not (glued and glued["key"] in cls.keys)

    def _unknown(self, op: str, word: str, span: Span, trace: Trace, vocabulary: list[str]) -> None:
        cls = OPS[op]
        stem = _GLUED.match(word)
        short = {fld: key for key, fld in cls.keys.items()}
        spaced = _key_glued_to_word(cls, word)
        if spaced:  # `psame` -> `p same`: a word value is written after a space
            hint: str | None = spaced
        elif stem and stem["key"] in short:  # `stride2` -> `s2`: the long name glued to a value
            hint = short[stem["key"]] + stem["value"]
        else:
            hint = _suggest(stem["key"] if stem else word, vocabulary)
            if hint and stem and not hint.endswith("="):
                hint += stem["value"]
        self.error(codes.UNKNOWN_ARGUMENT, f"unknown argument `{word}` for `{op}`", span, trace,
                   help=(f"did you mean `{hint}`? " if hint else "") + f"usage: `{cls.usage}`")

    # ---- blocks

    def call(self, stmt: Tree, path: str, env: dict[str, Value], trace: Trace, namer: _Namer) -> list[Node]:
        name_tok, args_tree, _, times_tree = stmt.children
        name = str(name_tok)
        span = tree_span(stmt, path)
        times = self.count(times_tree, path, env, trace) if times_tree is not None else 1
        block = self.blocks.get(name)
        op = resolve_op_name(name)
        if block is None and op is not None:
            words = [self.source_text(tree_span(a, path)) for a in (args_tree.children if args_tree is not None else [])]
            what = f"`{name}` is an op, not a block" if name == op else f"`{name}` is not a block: the op is `{op}`"
            self.error(codes.UNDEFINED_NAME, what, token_span(name_tok, path), trace,
                       help=f"write `{language_form(op, words)}`" + (f": {OPS[op].torch_note}" if name != op and OPS[op].torch_note else ""))
            return [Invalid(name, span, trace, namer(name))]
        if block is None:
            hint = _suggest(name, list(self.blocks))
            self.error(codes.UNDEFINED_NAME, f"no block named `{name}`", token_span(name_tok, path), trace,
                       help=f"did you mean `{hint}`?" if hint else "define it with `block NAME(params) { ... }` or bring it in with `use \"file.arch\"`")
            return [Invalid(name, span, trace, namer(name))]
        if any(name == t[0] for t in trace) or self.call_depth > 64:
            self.error(codes.UNDEFINED_NAME, f"block `{name}` calls itself", token_span(name_tok, path), trace, help="blocks cannot be recursive")
            return [Invalid(name, span, trace, namer(name))]
        if args_tree is not None and len(args_tree.children) > MAX_ARGUMENTS:
            self.error(codes.UNDEFINED_NAME, f"block `{name}` gets {len(args_tree.children):,} arguments, past the limit of {MAX_ARGUMENTS}",
                       span, trace)
            return [Invalid(name, span, trace, namer(name))]
        positional: list[Value] = []
        keyword: dict[str, tuple[Value, Span]] = {}
        for a in args_tree.children if args_tree is not None else []:
            if a.data == "call_kwarg":
                k, e = a.children
                keyword[str(k)] = (self.expr(e, path, env, trace), token_span(k, path))
            else:
                positional.append(self.expr(a.children[0], path, env, trace))
        params = [p for p, _ in block.params]
        if len(positional) > len(params):
            self.error(codes.UNDEFINED_NAME, f"block `{name}` takes {len(params)} argument(s), got {len(positional)}", span, trace,
                       notes=[f"defined at {block.span.path}:{block.span.line}:{block.span.column} as `{name}({', '.join(params)})`"])
            return [Invalid(name, span, trace, namer(name))]
        bound: dict[str, Value] = dict(zip(params, positional))
        for k, (v, kspan) in keyword.items():
            if k not in params:
                hint = _suggest(k, params)
                self.error(codes.UNDEFINED_NAME, f"block `{name}` has no parameter `{k}`", kspan, trace,
                           help=f"did you mean `{hint}`?" if hint else f"its parameters: {', '.join(params) or 'none'}")
                return [Invalid(name, span, trace, namer(name))]
            if k in bound:
                self.error(codes.UNDEFINED_NAME, f"block `{name}` gets `{k}` twice", kspan, trace)
                return [Invalid(name, span, trace, namer(name))]
            bound[k] = v
        for pname, default in block.params:
            if pname not in bound:
                if default is None:
                    self.error(codes.UNDEFINED_NAME, f"block `{name}` needs a value for `{pname}`", span, trace,
                               notes=[f"defined at {block.span.path}:{block.span.line}:{block.span.column} as `{name}({', '.join(params)})`"])
                    return [Invalid(name, span, trace, namer(name))]
                bound[pname] = self.expr(default, block.path, bound, trace)
        nodes: list[Node] = []
        self.call_depth += 1
        try:
            for i in range(times):
                before = self.expanded
                self.grow(1, span, trace)
                inner = trace + ((name, span),)
                body = self.body(block.body, block.path, bound, inner)
                nodes.append(BlockCall(name, dict(bound), body, span, block.span, trace, namer(name)))
                if i == 0:  # refuse before making the other copies: one call's size is known now
                    self.refuse_past(before + (self.expanded - before) * times, span, trace, f"`{name}(...) * {times}`")
        finally:
            self.call_depth -= 1
        return nodes


# The sizes of the shape flowing into a layer, as its arguments can read them.
IN_SHAPE_NAMES = ("in.c", "in.h", "in.w", "in.f")


def _shape_reads(arg_trees: list[Tree]) -> list[Token]:
    """The `in.*` names a layer's arguments read (in `{...}` expressions or as a bare word)."""
    return [tok for tree in arg_trees for tok in tree.scan_values(lambda v: isinstance(v, Token))
            if tok.type == "NAME" and str(tok).startswith("in.")]


def _arithmetic(op: str, a: int | float, b: int | float) -> int | float:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "//":
        return a // b
    q = a / b
    return int(q) if math.isfinite(q) and q == int(q) else q


def _display_path(target: Path) -> str:
    """A used file's path as diagnostics show it: relative to the working directory when inside it."""
    try:
        return str(target.relative_to(Path.cwd()))
    except ValueError:
        return str(target)


# PyTorch's keyword arguments as this language writes them ("" : the op's positional; "in": dropped).
_TORCH_KEYWORDS = {"in_channels": "in", "in_features": "in", "out_channels": "", "out_features": "",
                   "kernel_size": "k", "stride": "s", "padding": "p", "dilation": "d", "groups": "g"}


def _is_key(cls: type[LayerSpec], arg: _Arg) -> bool:
    """A bare key such as the `k` of `k 5`: the value after it is not positional."""
    return arg.kind == "word" and str(arg.value) in cls.keys


def _names_an_op(cls: type[LayerSpec], arg: _Arg) -> bool:
    """An argument that is the name of another op (a layer written without its `|` before it)."""
    word = str(arg.value)
    return (arg.kind == "word" and arg.bound is None and word in OPS and word not in cls.keys
            and word not in cls.flags and word not in _WORD_VALUES)


def language_form(op: str, words: list[str]) -> str:
    """A PyTorch-style argument list in this language: `conv` + [3, 6, 5] -> `conv 6 k5`,
    `linear` + [400, 120] -> `linear 120`, `conv` + [6, kernel_size=5] -> `conv 6 k5`."""
    cls = OPS[op]
    numbers = [w for w in words if re.fullmatch(r"\d+", w)]
    given = {key for key in cls.keys for w in words if re.match(rf"{key}\d", w)}
    given |= {_TORCH_KEYWORDS[w.partition("=")[0].strip()] for w in words if w.partition("=")[0].strip() in _TORCH_KEYWORDS}
    full = list(cls.torch_order) or [""]
    lead = len([key for key in full if key in ("in", "")])
    first_key = full[lead] if lead < len(full) else None
    needed = lead + (0 if first_key is None or first_key in given else 1)
    order = [key for key in full if key not in given or key in ("in", "")]
    if len(numbers) < needed:
        order = [key for key in order if key != "in"]  # `conv 6 5`: out-channels and kernel, no in-channels
    parts: dict[str, str] = {key: value for key, value in zip(order, numbers)}
    rest = []
    for word in words:
        key, sep, value = word.partition("=")
        if sep and key.strip() in _TORCH_KEYWORDS:
            parts[_TORCH_KEYWORDS[key.strip()]] = value.strip().strip("'\"")
        elif sep and key.strip() == "bias" and value.strip() == "False":
            rest.append("nobias")
        elif not re.fullmatch(r"\d+", word):
            rest.append(word)
    parts.pop("in", None)
    positional = [parts.pop("")] if "" in parts else []
    keyed = [f"{key}{value}" if re.fullmatch(r"[\dx]+", value) else f"{key} {value}" for key, value in parts.items()]
    return " ".join([op] + positional + keyed + rest)


def _key_glued_to_word(cls: type[LayerSpec], word: str) -> str | None:
    """`psame` -> `p same`, `initwhiten` -> `init whiten`; None when the word is not a key glued to a word value."""
    for key in cls.keys:
        rest = word[len(key):]
        if word.startswith(key) and rest in _WORD_VALUES:
            return f"{key} {rest}"
    return None


def _field_label(cls: type[LayerSpec], fld: str) -> str:
    keys = {v: k for k, v in cls.keys.items()}
    return f"{fld.replace('_', ' ')} (`{keys[fld]}`)" if fld in keys else fld.replace("_", " ")


def _errors_by_field(exc: ValidationError, op: str) -> dict[str, list[dict]]:
    """Pydantic's errors grouped by field: a union field (padding: N, NxM, same or valid) fails once per member."""
    grouped: dict[str, list[dict]] = {}
    for err in exc.errors():
        fld = str(err["loc"][0]) if err["loc"] else op
        grouped.setdefault(fld, []).append(err)
    return grouped


def _joined_msg(errors: list[dict]) -> str:
    """One sentence for one field: `must be N or NxM, or 'same' or 'valid', got `2.5`` for a union."""
    messages = [_clean_msg(err) for err in errors]
    if len(messages) == 1:
        return messages[0]
    got = value_text(errors[0].get("input"))
    wants = [m.removeprefix("must be ").rsplit(", got ", 1)[0] for m in messages if m.startswith("must be ")]
    if len(wants) != len(messages):
        return messages[0]
    return f"must be {', or '.join(dict.fromkeys(wants))}, got `{got}`"


def _clean_msg(err: dict) -> str:
    """A pydantic error as one plain sentence (never the raw dump)."""
    ctx = err.get("ctx") or {}
    kind = err["type"]
    got = err.get("input")
    if kind == "greater_than_equal":
        return f"must be at least {ctx.get('ge')}, got {value_text(got)}"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"must be a whole number, got `{value_text(got)}`"
    if kind in ("float_type", "float_parsing"):
        return f"must be a number, got `{value_text(got)}`"
    if kind == "literal_error":
        return f"must be {ctx.get('expected')}, got `{value_text(got)}`"
    if kind in ("tuple_type", "too_long", "too_short"):
        return f"must be N or NxM, got `{value_text(got)}`"
    if kind == "bool_type":
        return f"is a flag, got `{value_text(got)}`"
    return err["msg"][0].lower() + err["msg"][1:]




def _stmt_head(stmt: Tree) -> str:
    first = stmt.children[0] if stmt.children else stmt.data
    return str(first) if isinstance(first, Token) else stmt.data


def _head_span(stmt: Tree, path: str, keyword: str) -> Span:
    """The span of a structure's keyword (where a caret for the whole construct should point)."""
    s = tree_span(stmt, path)
    return Span(path, s.start, s.start + len(keyword), s.line, s.column, s.line, s.column + len(keyword))


def _any_span(tree: Any, path: str) -> Span:
    return token_span(tree, path) if isinstance(tree, Token) else tree_span(tree, path)


# --------------------------------------------------------------------------- entry points

@without_gc_pauses
def parse(text: str, path: str = "<string>") -> Model:
    """Parse and bind a .arch text. Never raises for a mistake in the text: see Model.diagnostics."""
    sources: dict[str, str] = {}
    diagnostics: list[Diagnostic] = []
    builder = _Builder(sources, diagnostics)
    tree = builder.load_file(path, text)
    if tree is None:
        return Model(path, Seq(), sources, diagnostics)
    builder.loading.append(_resolved(path))
    budgets = []
    try:
        stmts = builder.collect_defs(tree, path, top_level=True)
        budgets = [limit for s in stmts if s.data == "budget" for limit in builder.budget(s, path)]
        body = Seq(builder.statements([s for s in stmts if s.data != "budget"], path, {}, (), _Namer()))
    except _Refused as refused:
        diagnostics.append(refused.diagnostic)
        body = Seq()
    return Model(path, body, sources, dedupe(diagnostics), blocks=sorted(builder.blocks), budgets=budgets)


def _resolved(path: str) -> str:
    if path in ("<string>", "<stdin>"):
        return path
    try:
        return str(Path(path).resolve())
    except (RuntimeError, OSError):  # a loop of symbolic links: no file to be `use`d again
        return path


def dedupe(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    """Drop exact repeats (a block called `* 3` with a mistake inside reports it once)."""
    seen: set[tuple] = set()
    out = []
    for d in diagnostics:
        key = (d.code, d.message, d.span, d.trace)
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out


@without_gc_pauses
def load(path: str | Path) -> Model:
    """Read and parse a .arch file. Raises UsageError when the file cannot be read."""
    from archspec.language.errors import UsageError

    p = Path(path)
    if not p.exists() and not p.is_symlink():
        raise UsageError(f"{p}: no such file", "check the path")
    try:
        text = read_arch_file(p)
    except Unreadable as exc:
        raise UsageError(f"{p}: {exc.reason}", exc.help) from None
    return parse(text, str(path))
