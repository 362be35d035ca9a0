"""The layouts of issue 15, each parsed, formatted (golden text, idempotent) and checked.

Shapes and parameter counts of the checked networks are compared with torch in tests/test_oracle.py
(FIXED: the DenseNet transition with `{in.c // 2}`, the bn and pool arguments); here the
language's own behaviour: what parses, what `fmt` writes, and the shape the checker reaches.
"""
from __future__ import annotations

import pytest

import archspec
from archspec.language.syntax import ParseFailed, parse_tree
from archspec.views.fmt import MAX_BRANCH_LINE, format_text

INCEPTION = """\
input 192x28x28
concat
  { conv 64 k1 | bn | relu }
  { conv 96 k1 | bn | relu | conv 128 k3 p1 | bn | relu }
  { maxpool 3 s1 p1 ceil | conv 32 k1 | bn | relu }
"""

ADD = """\
input 16x8x8
add  # two paths, one per line
  { conv 16 k3 p1 | bn }

  # the identity
  {}
relu
"""
ADD_FORMATTED = """\
input 16x8x8
add  # two paths, one per line
  { conv 16 k3 p1 | bn }
  # the identity
  {}
relu
"""

SHORTCUT = """\
input 16x8x8
residual { conv 32 k3 s2 p1 | bn | relu | conv 32 k3 p1 | bn }
shortcut { conv 32 k1 s2 | bn }
relu
"""

STEM = """\
input 3x32x32
block stem() { conv 16 k3 p1 | bn | relu }
stem
stem()
"""
STEM_FORMATTED = STEM.replace("block stem()", "block stem")

TRANSITION = """\
input 64x16x16
block transition { bn | relu | conv {in.c // 2} k1 nobias | avgpool 2 }
transition
transition
flatten | linear {in.f // 16}
"""

TORCH_ARGUMENTS = """\
input 3x32x32
conv 8 k3 p1 | bn eps=0.001 momentum=0.01 | relu
maxpool 3 s1 p1 d2 | bn noaffine
avgpool 3 s2 p1 ceil noinclude
"""

LAYOUTS = {
    # name: (text, what fmt writes, the output shape, params)
    "concat one branch per line": (INCEPTION, INCEPTION, (224, 28, 28), None),
    "add with comments between branches": (ADD, ADD_FORMATTED, (16, 8, 8), None),
    "residual, then shortcut on the next line": (SHORTCUT, SHORTCUT, (32, 4, 4), None),
    "parameterless block": (STEM, STEM_FORMATTED, (16, 32, 32), (3 * 9 * 16 + 16) + 2 * 16 + (16 * 9 * 16 + 16) + 2 * 16),
    "incoming shape": (TRANSITION, TRANSITION.replace(" // ", "//"), (16,), None),  # compact inside `{...}`
    "torch arguments": (TORCH_ARGUMENTS, TORCH_ARGUMENTS, (8, 16, 16), None),
}


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_layout_parses_formats_and_checks(name):
    text, formatted, shape, params = LAYOUTS[name]
    parse_tree(text)
    assert format_text(text) == formatted
    assert format_text(formatted) == formatted  # idempotent
    report = archspec.check(text, classes=None)
    assert report.ok, [d.message for d in report.diagnostics]
    assert tuple(report.body[-1].out_shape) == shape
    if params is not None:
        assert report.params == params
    assert archspec.check(formatted, classes=None).params == report.params  # fmt never changes the meaning


def test_transition_reads_the_channels_reaching_each_call():
    rows = [r for r in archspec.check(TRANSITION, classes=None).rows if r.op == "conv"]
    assert [(r.in_shape[0], r.out_shape[0]) for r in rows] == [(64, 32), (32, 16)]


def test_long_branch_lists_go_one_per_line_and_short_ones_stay():
    short = "input 8x8x8\nconcat { conv 4 k1 } { conv 4 k1 }\n"
    assert format_text(short) == short
    body = " | ".join(["conv 8 k3 p1 | bn | relu"] * 3)
    long = f"input 8x8x8\nconcat {{ {body} }} {{ {body} }}\n"
    assert len(long.splitlines()[1]) > MAX_BRANCH_LINE
    out = format_text(long)
    assert out == f"input 8x8x8\nconcat\n  {{ {body} }}\n  {{ {body} }}\n"
    assert format_text(out) == out


@pytest.mark.parametrize("text, message, help", [
    ("input 3x8x8\nrepeat 2 conv 4 k1\n", "unexpected name `conv`; expected `{`", "write `repeat 2 { conv 4 k1 }`"),
    ("input 3x8x8\nrepeat 2\nconv 4 k1\n", "unexpected end of line; expected `{`", "write `repeat 2 { ... }`"),
    ("input 3x8x8\nconcat\nconv 4 k1\n", "unexpected end of line; expected `{`", "a body goes in braces"),
])
def test_syntax_errors_read_without_articles_or_raw_newlines(text, message, help):
    with pytest.raises(ParseFailed) as failed:
        parse_tree(text)
    d = failed.value.diagnostic
    assert d.message == message and "\n" not in d.message and " a newline" not in d.message
    assert d.help and d.help.startswith(help)


def test_a_block_without_parameters_refuses_arguments():
    report = archspec.check("input 3x8x8\nblock stem { relu }\nstem 3\n", classes=None)
    (d,) = report.errors
    assert d.code == "E002" and d.help == "block `stem` takes no arguments: write `stem`"
