"""Numbers and `{...}` expressions: the value of an argument, a call argument or a repeat count
under a block's parameters, with every number kept in the range torch can take."""
from __future__ import annotations

import math
import re
from typing import Any

from lark import Token, Tree
from lark.visitors import Interpreter

from archspec.language import codes
from archspec.language.diagnostics import Reporter, Span, suggest
from archspec.language.limits import MAX_INT
from archspec.language.nodes import Trace, Value
from archspec.language.ops import value_text
from archspec.language.syntax import token_span, tree_span


_INT = re.compile(r"-?\d+")  # compiled once: re's own cache lookup cost more than the match (per number)


def to_number(text: str) -> int | float:
    # A whole number past int64 becomes an (infinite or huge) float: the range check refuses it,
    # and int() never sees thousands of digits (Python refuses those with ValueError).
    if _INT.fullmatch(text) and len(text) <= 20:
        return int(text)
    return float(text)


def glued_value(text: str) -> Value:
    """The value glued to a key: `5` of `k5` is 5, `3x5` of `k3x5` is (3, 5)."""
    if "x" in text:
        return tuple(to_number(t) for t in text.split("x"))
    return to_number(text)


def out_of_range(value: Any) -> bool:
    """A number torch cannot take: not finite (inf, NaN) or a whole number past int64."""
    if isinstance(value, tuple):
        return any(out_of_range(v) for v in value)
    if isinstance(value, float):
        return not math.isfinite(value) or abs(value) > MAX_INT
    if isinstance(value, int) and not isinstance(value, bool):
        return abs(value) > MAX_INT
    return False


def arithmetic(op: str, a: int | float, b: int | float) -> int | float:
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


def _any_span(tree: Any, path: str) -> Span:
    return token_span(tree, path) if isinstance(tree, Token) else tree_span(tree, path)


class Evaluator:
    """Values of syntax trees under `env` (a block's parameters); each mistake is reported and
    replaced by a harmless value (1, or a count of 0) so the expansion goes on."""

    def __init__(self, report: Reporter) -> None:
        self.report = report

    def number(self, value: Value, span: Span, trace: Trace) -> Value:
        """A number torch can take, or E004 at its span (and 1 in its place, so binding goes on)."""
        if not out_of_range(value):
            return value
        shown = self.report.source_text(span)
        shown = shown if 0 < len(shown) <= 40 else value_text(value)
        self.report.error(codes.INVALID_VALUE, f"`{shown[:40]}` is out of range: numbers must be finite and at most 2^63-1",
                   span, trace, help="write a number of a realistic size")
        return 1

    def count(self, tree: Any, path: str, env: dict[str, Value], trace: Trace) -> int:
        """A repeat count (`* 3`, `repeat 3`): a whole number, 0 for none (a stage a variant leaves out); else an error and 0."""
        value = self.value(tree, path, env, trace)
        span = _any_span(tree, path)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            self.report.error(codes.INVALID_VALUE, f"a repeat count must be a whole number of at least 0, got `{value}`", span, trace)
            return 0
        return value

    def value(self, tree: Any, path: str, env: dict[str, Value], trace: Trace) -> Value:
        """A layer's argument or a repeat count: a bare word is a parameter's value or the word itself."""
        if isinstance(tree, Token):
            return self.token(tree, path, env, trace)
        return _Argument(self, path, env, trace).visit(tree)

    def expr(self, tree: Any, path: str, env: dict[str, Value], trace: Trace) -> Value:
        """An expression (inside `{...}`, a call's argument, a default): a bare word must be a parameter."""
        if isinstance(tree, Token):
            return self.token(tree, path, env, trace)
        return _Expression(self, path, env, trace).visit(tree)

    def token(self, tok: Token, path: str, env: dict[str, Value], trace: Trace) -> Value:
        if tok.type == "NAME":
            return self.lookup(tok, path, env, trace)
        return self.number(to_number(str(tok)), token_span(tok, path), trace)

    def lookup(self, tok: Token, path: str, env: dict[str, Value], trace: Trace) -> Value:
        if str(tok) in env:
            return env[str(tok)]
        if str(tok).startswith("in."):
            self.report.error(codes.UNDEFINED_NAME, f"`{tok}` (the incoming shape) can only be read in a layer's arguments",
                       token_span(tok, path), trace,
                       help="use it in the layer inside the block, e.g. `conv {in.c // 2} k1`, not in a call or a count")
            return 1
        hint = suggest(str(tok), list(env))
        self.report.error(codes.UNDEFINED_NAME, f"`{tok}` is not a block parameter here", token_span(tok, path), trace,
                   help=f"did you mean `{hint}`?" if hint else "only a block's parameters can be used in `{...}` and call arguments")
        return 1


class _Expression(Interpreter):
    """The value of an expression under a block's parameters: a lark Interpreter, one method per rule."""

    def __init__(self, evaluator: Evaluator, path: str, env: dict[str, Value], trace: Trace) -> None:
        self.evaluator, self.path, self.env, self.trace = evaluator, path, env, trace

    def number(self, tree: Tree) -> Value:
        return self.evaluator.number(to_number(str(tree.children[0])), tree_span(tree, self.path), self.trace)

    def dims(self, tree: Tree) -> Value:
        """`3xHxW`: a letter stands for any size (only `input` takes one); `1x7` as a call argument: a block's rectangular kernel."""
        sizes = tuple(t if t.isalpha() else to_number(t) for t in str(tree.children[0]).split("x"))
        return self.evaluator.number(sizes, tree_span(tree, self.path), self.trace)

    def word(self, tree: Tree) -> Value:
        return self.evaluator.lookup(tree.children[0], self.path, self.env, self.trace)

    def neg(self, tree: Tree) -> Value:
        v = self.visit(tree.children[0])
        return -v if isinstance(v, (int, float)) else v

    def binop(self, tree: Tree) -> Value:
        left, op, right = tree.children
        a, b = self.visit(left), self.visit(right)
        report = self.evaluator.report
        if not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
            report.error(codes.INVALID_VALUE, f"`{op}` needs numbers", tree_span(tree, self.path), self.trace)
            return 1
        if op in ("/", "//") and b == 0:
            report.error(codes.INVALID_VALUE, "division by zero", tree_span(tree, self.path), self.trace)
            return 1
        # Each result is range-checked, so repeated squaring never builds a huge number.
        return self.evaluator.number(arithmetic(str(op), a, b), tree_span(tree, self.path), self.trace)


class _Argument(_Expression):
    """A layer's argument or a count: a bare word is a parameter's value or itself (`same`, `whiten`), a string its
    text, `{...}` an expression; an operator's operands are expressions (a bare word there must be a parameter)."""

    def word(self, tree: Tree) -> Value:
        word = str(tree.children[0])
        return self.env[word] if word in self.env else word

    def string(self, tree: Tree) -> Value:
        return str(tree.children[0])[1:-1]

    def braced(self, tree: Tree) -> Value:
        return self.evaluator.expr(tree.children[0], self.path, self.env, self.trace)

    def range(self, tree: Tree) -> Value:
        """`0:64` (`slice`): a pair of channel numbers, each end an argument."""
        return tuple(self.evaluator.value(end, self.path, self.env, self.trace) for end in tree.children)

    def neg(self, tree: Tree) -> Value:
        return self.evaluator.expr(tree, self.path, self.env, self.trace)

    binop = neg
