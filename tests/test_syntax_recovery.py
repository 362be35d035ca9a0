"""Every syntax error in a file, not the first only (LALR error recovery in syntax.recovering_parse)."""
from __future__ import annotations

from pathlib import Path

import pytest
from lark.exceptions import UnexpectedInput

import archspec
from archspec.language.joins import JOINS
from archspec.language.syntax import ParseFailed, _diagnostic, parser, parse_tree
from conftest import EXAMPLES

THREE_ERRORS = """\
input 3x32x32
conv 6 k5 | relu | maxpool 2
conv 16 k5 ) relu
repeat 2 conv 4 k1
linear 120 @ 3
conv 16 k99
flatten | linear 10
"""


def test_three_broken_lines_give_three_syntax_errors_and_the_rest_is_checked():
    report = archspec.check(THREE_ERRORS, classes=None)
    found = [(d.code, d.span.line) for d in report.errors]
    assert found == [("E001", 3), ("E001", 4), ("E001", 5), ("E101", 6)]
    assert not report.ok


def test_errors_inside_bodies_leave_out_only_the_broken_statement():
    text = "input 3x8x8\nblock b(c) {\n  conv c k3 p1 )\n  relu\n}\nb(4)\nb(4) |\nconv 4 k1 =\n"
    report = archspec.check(text, classes=None)
    assert [(d.code, d.span.line) for d in report.errors] == [("E001", 3), ("E001", 8)]
    (call1, call2) = [n for n in report.body if getattr(n, "block", None) == "b"]
    assert [r.op for r in call1.body] == ["relu"]  # the broken conv is left out, the block still exists


def test_the_first_diagnostic_is_the_one_the_plain_parse_reports():
    with pytest.raises(UnexpectedInput) as plain:
        parser().parse(THREE_ERRORS)
    with pytest.raises(ParseFailed) as failed:
        parse_tree(THREE_ERRORS)
    assert failed.value.diagnostic == _diagnostic(plain.value, "<string>", THREE_ERRORS)
    assert len(failed.value.diagnostics) == 3 and failed.value.tree is not None


def test_an_expression_brace_left_open_is_one_error():
    """`{` after a layer opens an expression, not a body: the lines after it are not each an error."""
    with pytest.raises(ParseFailed) as failed:
        parse_tree("input 3x8x8\nconv 16 k5 {\nlinear 120 | relu\nlinear 10\n")
    assert [d.span.line for d in failed.value.diagnostics] == [2]


def test_an_unclosed_brace_is_one_error_and_no_tree():
    with pytest.raises(ParseFailed) as failed:
        parse_tree("input 3x8x8\nrepeat 2 { conv 4 k1\nrelu\n")
    assert [d.message for d in failed.value.diagnostics] == ["this `{` is never closed"]
    assert failed.value.tree is None


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.arch")), ids=lambda p: p.stem)
def test_garbage_on_every_line_of_an_example_ends_with_one_error_per_line(path: Path):
    """Recovery always ends, and a stray `)` at the end of each statement line is one E001 each."""
    lines = path.read_text().splitlines()
    broken = [line + " )" if line.strip() and "#" not in line and not line.lstrip().startswith(("}", "{"))
              and not line.rstrip().endswith(("{", "|", "\\")) else line for line in lines]
    bad = sum(a != b for a, b in zip(lines, broken))
    with pytest.raises(ParseFailed) as failed:
        parse_tree("\n".join(broken) + "\n")
    assert len(failed.value.diagnostics) == bad
    assert all(d.code == "E001" for d in failed.value.diagnostics)


def test_recovery_ends_on_token_soup():
    """Random mixes of the language's tokens (stray braces, keywords, bad characters): recovery
    always ends, quickly, with E001s only (a stray `}` at the top once looped for ever)."""
    import random
    import time

    vocab = ["conv", "8", "k3", "{", "}", "(", ")", "|", "\n", "\n  ", "residual", "shortcut", "concat", "add", "repeat",
             "2", "block", "b", "=", ",", "*", "{c*2}", "use", '"x"', "budget", "params", "<=", "1M", "@", "#c\n", "-",
             "//", "in.c", "3x8x8", "input", "\\\n"]
    rng = random.Random(1)
    for _ in range(400):
        text = " ".join(rng.choice(vocab) for _ in range(rng.randint(1, 40)))
        start = time.perf_counter()
        try:
            parse_tree(text)
        except ParseFailed as failed:
            assert {d.code for d in failed.diagnostics} == {"E001"}, text
        assert time.perf_counter() - start < 2, text


def test_the_braces_of_a_broken_statement_are_its_own_not_unmatched():
    """`mu { conv 3 k3 }` and `gate {} { ... | ... }` used to add "unmatched `}`" at braces that are matched."""
    text = "input 3x8x8\nmu { conv 3 k3 }\ngate {} { gap | conv 3 k1 | sigmoid }\nconv {c k3}\nrelu | bogus 3\n"
    report = archspec.check(text, classes=None)
    assert [(d.code, d.span.line, d.message.split(";")[0]) for d in report.diagnostics] == [
        ("E001", 2, "unknown join `mu`"), ("E001", 3, "unknown join `gate`"),
        ("E001", 4, "unexpected name `k3`"), ("E002", 5, "unknown op `bogus`")]


def test_an_unknown_join_word_names_the_joins_and_the_closest():
    report = archspec.check("input 3x8x8\ncocnat { relu } { conv 3 k1 }\n", classes=None)
    (d,) = report.diagnostics
    assert d.message == f"unknown join `cocnat`; joins are {', '.join(JOINS)}"  # the registry's, in its order
    assert d.help == "did you mean `concat`?" and (d.span.column, d.span.end_column) == (1, 7)
