"""`archspec fmt`: the canonical layout, idempotence, comments kept, and meaning never changed:
the checker gives the same rows, params and diagnostics before and after, on every example and
on random programs (hypothesis) written with messy spacing, separators and comments."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import archspec
from archspec.language.diagnostics import filter_diagnostics
from archspec.language.errors import ArchspecError
from archspec.language.joins import JOINS
from archspec.views.fmt import FormatError, format_text
from conftest import EXAMPLES

ALL_EXAMPLES = sorted(EXAMPLES.glob("*.arch")) + sorted((EXAMPLES / "broken").glob("*.arch"))


def comments(text: str) -> list[str]:
    """Comment texts in order, from the lexer (a `#` inside a string is no comment)."""
    from archspec.views.fmt import _parse

    return [str(t).rstrip() for t in _parse(text, "<string>")[1]]


def meaning(text: str, path: str = "<string>") -> tuple:
    """What fmt must not change: every row of the check, the output, and the diagnostics
    (line and column numbers masked: moving a layer to its own line is allowed)."""
    report = archspec.check(archspec.parse(text, path), classes=10)
    rows = [(r.path, r.op, getattr(r.layer, "describe", lambda: "")(), r.in_shape, r.out_shape, r.params, r.macs, r.depth)
            for r in report.rows]
    mask = lambda s: re.sub(r"line \d+|:\d+:\d+", "#", s)
    diags = [(d.code, mask(d.message), tuple(mask(n) for n in d.notes), d.help) for d in report.diagnostics]
    return rows, report.output_shape, report.params, sorted(diags)


def assert_same_meaning(text: str, path: str = "<string>") -> str:
    out = format_text(text, path)
    assert format_text(out, path) == out, "not idempotent"
    assert meaning(out, path) == meaning(text, path)
    assert comments(out) == comments(text)
    return out


# --------------------------------------------------------------------------- examples

@pytest.mark.parametrize("path", ALL_EXAMPLES, ids=[str(p.relative_to(EXAMPLES)) for p in ALL_EXAMPLES])
def test_examples_keep_their_meaning(path):
    text = path.read_text()
    try:
        format_text(text, str(path))
    except FormatError:
        assert archspec.parse(text, str(path)).diagnostics[0].code == "E001"
        pytest.skip("does not parse (a syntax-error example)")
    assert_same_meaning(text, str(path))


def test_examples_are_formatted():
    """The examples are written in the canonical layout (comment columns included)."""
    changed = [p.name for p in ALL_EXAMPLES if _formats(p) not in (None, p.read_text())]
    assert changed == [], "run `archspec fmt examples/*.arch examples/broken/*.arch`"


def _formats(p: Path) -> str | None:
    try:
        return format_text(p.read_text(), str(p))
    except FormatError:
        return None


# --------------------------------------------------------------------------- the canonical layout

CASES = [
    # spacing, glued keys, `name=value`
    ("conv  6   k 5 s 1\tp 0\n", "conv 6 k5 s1 p0\n"),
    ("conv 6 k 3x3 p same | maxpool 2 s 2 ceil\n", "conv 6 k3x3 p same | maxpool 2 s2 ceil\n"),
    ("conv 6 k3 init = whiten\n", "conv 6 k3 init=whiten\n"),
    ("conv 6 k 0.5\n", "conv 6 k 0.5\n"),  # a float stays apart: `k0.5` would be one word
    ("conv 8 k3 p -1\n", "conv 8 k3 p-1\n"),
    ("leakyrelu   0.2|dropout 0.5\n", "leakyrelu 0.2 | dropout 0.5\n"),
    # line structure: chains stay chains, blank lines collapse to one, continuations join
    ("input 3x8x8\n\n\n\nrelu|relu\n\n", "input 3x8x8\n\nrelu | relu\n"),
    ("\n\nconv 6 \\\n  k3 | \\\n relu\n", "conv 6 k3 | relu\n"),
    ("relu |\nbn\n", "relu\nbn\n"),
    # bodies: inline stays inline, multi-line gets 2-space indentation
    ("residual {conv 8 k3 p1|bn}\n", "residual { conv 8 k3 p1 | bn }\n"),
    ("residual {\nconv 8 k3 p1 | bn\n\n\nrelu\n}\n", "residual {\n  conv 8 k3 p1 | bn\n\n  relu\n}\n"),
    ("residual { conv 8 k3\n bn }\n", "residual {\n  conv 8 k3\n  bn\n}\n"),
    ("concat {conv 4 k1} {  } {\nrelu\n}\n", "concat { conv 4 k1 } {} {\n  relu\n}\n"),
    ("residual project {relu} shortcut {bn}\n", "residual project { relu } shortcut { bn }\n"),
    # blocks, calls and expressions
    ("block b( c , s = 1 ) { conv { c * 4 } k3 s { s } }\nb( 8 , s = 2 )*2\n",
     "block b(c, s=1) { conv {c*4} k3 s{s} }\nb(8, s=2) * 2\n"),
    ("block b(c) { conv {(c + 1) * 2} k1 | conv {c - (c - 1)} k1 | conv {c * (c // 2)} k1 | conv {-(c+1)} k1 }\n",
     "block b(c) { conv {(c+1)*2} k1 | conv {c-(c-1)} k1 | conv {c*(c//2)} k1 | conv {-(c+1)} k1 }\n"),
    ("block b(c, k=c*2+1) { relu }\nb(3 + 1*2, k = (2+3)*4)\n", "block b(c, k=c * 2 + 1) { relu }\nb(3 + 1 * 2, k=(2 + 3) * 4)\n"),
    ("repeat {2 * 2} {relu}\nrepeat 2 {\nbn\n}\n", "repeat {2*2} { relu }\nrepeat 2 {\n  bn\n}\n"),
    ('use   "blocks.arch"\n', 'use "blocks.arch"\n'),
    # comments: own-line (indented with the code), trailing (column kept when the code fits)
    ("# top\n\n\n# second\ninput 3x8x8   # the input\n", "# top\n\n# second\ninput 3x8x8   # the input\n"),
    ("conv   6   k 5 # c\n", "conv 6 k5  # c\n"),
    ("block b(c) {  # why\n     # inside\n  relu   # r\n# last\n}\n", "block b(c) {  # why\n  # inside\n  relu   # r\n  # last\n}\n"),
    ("residual { conv 8 k3  # first\n  bn }  # after\n", "residual {\n  conv 8 k3  # first\n  bn\n}  # after\n"),
    ("relu | # after the bar\nbn\n", "relu  # after the bar\nbn\n"),
    ("| # leading bar\nrelu\n", "# leading bar\nrelu\n"),
    ("conv 6 k5 | maxpool 2  # noqa: W201\n", "conv 6 k5 | maxpool 2  # noqa: W201\n"),
    ("", ""),
    ("\n\n# only a comment\n\n", "# only a comment\n"),
]


@pytest.mark.parametrize("source, expected", CASES)
def test_canonical_layout(source, expected):
    assert format_text(source) == expected
    assert format_text(expected) == expected
    assert meaning(expected) == meaning(source)
    assert comments(expected) == comments(source)


def test_syntax_error_is_a_user_error():
    with pytest.raises(FormatError) as err:
        format_text("conv 6 k5 |\nresidual { relu\n", "bad.arch")
    assert isinstance(err.value, ArchspecError) and err.value.help
    assert err.value.diagnostic.code == "E001" and err.value.message.startswith("bad.arch:")


def test_api():
    assert archspec.fmt("relu|bn") == "relu | bn\n"
    assert archspec.fmt(EXAMPLES / "lenet.arch") == (EXAMPLES / "lenet.arch").read_text()


# --------------------------------------------------------------------------- random programs

WS = st.sampled_from([" ", " ", " ", "  ", "\t", " \\\n  "])
SEP = st.sampled_from([" | ", " | ", "|", "\n", "\n", "\n\n", "\n\n\n", " |\n", "\n  ", " | \\\n "])
COMMENT = st.sampled_from(["# c", "#x", "# noqa: W201", "#  spaced  ", "# { } | \" '"])


@st.composite
def layer(draw, params: tuple[str, ...]) -> str:
    """One layer, its arguments spaced at random; inside a block, sizes may be parameters."""
    def size(lo: int = 1, hi: int = 16) -> str:
        if params and draw(st.booleans()):
            p = draw(st.sampled_from(params))
            return draw(st.sampled_from([p, f"{{{p}}}", f"{{{p}*2}}", f"{{({p}+1)//2}}", f"{{{p}-{p}+1}}"]))
        return str(draw(st.integers(lo, hi)))

    def key(k: str, value: str) -> str:
        return k + value if draw(st.booleans()) and not value[0].isalpha() else f"{k}{draw(WS)}{value}"

    kind = draw(st.sampled_from(["conv", "conv", "pool", "act", "act", "bn", "dropout", "linear", "flatten", "gap", "bad"]))
    if kind == "conv":
        args = [size()] + [key("k", draw(st.sampled_from(["1", "3", "5", "1x3", "3x1"])))]
        if draw(st.booleans()):
            args.append(key("s", size(1, 2)))
        args.append(draw(st.sampled_from(["", key("p", size(0, 2)), "p same", "p valid", "p0x1"])))
        args.append(draw(st.sampled_from(["", "", "nobias", "init=whiten", f"init{draw(WS)}={draw(WS)}whiten", key("d", "2")])))
        words = ["conv"] + [a for a in args if a]
    elif kind == "pool":
        words = [draw(st.sampled_from(["maxpool", "avgpool"])), draw(st.sampled_from(["2", "3"]))]
        words += [w for w in (draw(st.sampled_from(["", key("s", "1"), key("s", "2")])), draw(st.sampled_from(["", "ceil"]))) if w]
    elif kind == "act":
        words = [draw(st.sampled_from(["relu", "gelu", "silu", "relu6", "leakyrelu 0.2", "tanh"]))]
    elif kind == "dropout":
        words = ["dropout", draw(st.sampled_from(["0.1", "0.5", ".25"]))]
    elif kind == "linear":
        words = ["linear", size(1, 20)] + (["nobias"] if draw(st.booleans()) else [])
    elif kind == "bad":  # mistakes must survive formatting too
        words = [draw(st.sampled_from(["cnv 6 k3", "conv 6", "conv 0 k3", "maxpool 2 p2", "conv 6 k3 q1", "relu 3"]))]
    else:
        words = [kind]
    return "".join(w + draw(WS) for w in words[:-1]) + words[-1]


@st.composite
def sequence(draw, params: tuple[str, ...], depth: int, calls: tuple[str, ...], min_size: int = 1) -> str:
    """Statements joined by random separators, with trailing and own-line comments where newlines are."""
    n = draw(st.integers(min_size, 4))
    out = ""
    for i in range(n):
        out += draw(statement(params, depth, calls))
        if i < n - 1:
            sep = draw(SEP)
            if "\n" in sep and "\\" not in sep and draw(st.integers(0, 3)) == 0:  # no comment after a `\`
                at = sep.index("\n")
                sep = sep[:at] + draw(st.sampled_from([" ", "   "])) + draw(COMMENT) + sep[at:]
            if sep.endswith("\n") and draw(st.integers(0, 4)) == 0:
                sep += draw(st.sampled_from(["", "  "])) + draw(COMMENT) + "\n"
            out += sep
    return out


@st.composite
def body(draw, params: tuple[str, ...], depth: int, calls: tuple[str, ...]) -> str:
    if draw(st.integers(0, 6)) == 0:
        return "{" + draw(st.sampled_from(["", " ", "\n"])) + "}"
    multiline = draw(st.booleans())
    inner = draw(sequence(params, depth + 1, calls))
    if multiline:
        lead = draw(st.sampled_from(["\n", "\n\n", f"  {draw(COMMENT)}\n", "\n  "]))
        return "{" + lead + inner + draw(st.sampled_from(["\n", "\n\n", f"  {draw(COMMENT)}\n"])) + "}"
    return "{" + draw(st.sampled_from([" ", "", "  "])) + inner + draw(st.sampled_from([" ", "", "  "])) + "}"


@st.composite
def statement(draw, params: tuple[str, ...], depth: int, calls: tuple[str, ...]) -> str:
    kinds = ["layer"] * 4 + (["residual", "branch", "repeat"] if depth < 2 else []) + (["call"] if calls else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "layer":
        return draw(layer(params))
    if kind == "residual":
        head = draw(st.sampled_from(["residual ", "residual project ", "residual  "]))
        text = head + draw(body(params, depth, calls))
        if draw(st.integers(0, 3)) == 0:
            text += " shortcut " + draw(body(params, depth, calls))
        return text
    if kind == "branch":
        n = draw(st.integers(2, 3))
        return draw(st.sampled_from(["concat", "add"])) + "".join(" " + draw(body(params, depth, calls)) for _ in range(n))
    if kind == "repeat":
        count = draw(st.sampled_from(["2", "{1+1}", "{ 3 - 1 }"] + ([f"{{{params[0]}}}"] if params else [])))
        return f"repeat {count} " + draw(body(params, depth, calls))
    name = draw(st.sampled_from(calls))
    args = draw(st.sampled_from(["(8)", "( 4 , s=2 )", "(2*3, s = 1)", "((1+2)*2)", "(4)"]))
    return name + args + draw(st.sampled_from(["", " * 2", "*2"]))


@st.composite
def program(draw) -> str:
    head = draw(st.sampled_from(["", "# header\n", "\n\n# header\n\n", "# a\n# b\n"]))
    blocks, defs = [], ""
    for i in range(draw(st.integers(0, 2))):
        name = f"blk{i}"
        defs += f"block {name}(c, s=1) " + draw(body(("c", "s"), 1, tuple(blocks))) + draw(st.sampled_from(["\n", "\n\n", "  # def\n"]))
        blocks.append(name)
    shape = draw(st.sampled_from(["3x16x16", "1x8x8", "3x32x32", "20"]))
    main = f"input {shape}" + draw(st.sampled_from(["\n", " | ", "  # in\n"])) + draw(sequence((), 0, tuple(blocks)))
    return head + defs + main + draw(st.sampled_from(["", "\n", "\n\n", "  # end", "\n# end\n"]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(program())
def test_random_programs_keep_their_meaning(text):
    model = archspec.parse(text)
    assert not [d for d in model.diagnostics if d.code == "E001"], (text, model.diagnostics)
    assert_same_meaning(text)


# --------------------------------------------------------------------------- fmt(fmt(x)) == fmt(x)
# For every text fmt accepts, at every width where a `concat`/`add` goes one branch per line.

def _terminals() -> dict:
    """from_lark's terminals drawn from short lists (its regex strategies are slow and rarely valid)."""
    def spaced(*words: str):
        return st.tuples(st.sampled_from(words), st.sampled_from([" ", " ", "\t", "  "])).map("".join)

    ops = ["conv", "maxpool", "relu", "bn", "hardswish", "flatten", "linear", "input", "dropout", "gap", "k3", "p1",
           "s2", "same", "c", "noqa"]
    return {
        "NAME": spaced(*ops), "NUMBER": spaced("1", "2", "8", "16", "0.5", "-1"), "DIMS": spaced("3x8x8", "3x3", "4x4x4"),
        "STRING": spaced('"missing.arch"'), "COMMENT": st.sampled_from(["# c", "# noqa", "# noqa: W201"]),
        "_NL": st.sampled_from(["\n", "\n  ", "\n\n", "\r\n", "\r"]), "_CONTINUATION": st.sampled_from(["\n", "\n  "]),
        "SHORTCUT": spaced("shortcut", "attend"), "JOIN_WORD": spaced(*sorted(JOINS)), "BUDGET_OP": st.sampled_from(["<=", ">="]),
        "QUANTITY": spaced("1.5M", "32", "600M"), "STAR": spaced("*"), "ADD_OP": spaced("+", "-"),
        "MUL_OP": spaced("*", "//", "/"), "EQUAL": st.just("="), "LBRACE": spaced("{"), "RBRACE": spaced("}"),
        "LPAR": st.just("("), "RPAR": st.just(")"), "COMMA": spaced(","),
        "REPEAT": spaced("repeat"), "BLOCK": spaced("block"), "USE": spaced("use"), "BUDGET": spaced("budget"),
        "MINUS": st.just("-"), "VBAR": spaced("|", "|"),
    }


def grammar_programs():
    """Text drawn from grammar/archspec.lark itself (hypothesis.extra.lark), as tests/test_fuzz.py does."""
    import lark
    from hypothesis.extra.lark import from_lark

    grammar = lark.Lark((Path(__file__).resolve().parents[1] / "grammar" / "archspec.lark").read_text(), start="start")
    return from_lark(grammar, start="start", explicit=_terminals())


LEAF = st.sampled_from(["relu", "bn", "conv 8 k3 p1", "maxpool 2", "hardswish", "conv 16 k3 s2 p1 nobias", "b(8)"])
NEST_SEP = st.sampled_from([" | ", " | ", " | ", "\n", " |\n"])


def _chain(inner):
    return st.lists(st.tuples(inner, NEST_SEP), min_size=1, max_size=3).map(
        lambda parts: "".join(s + sep for s, sep in parts[:-1]) + parts[-1][0])


def _nest(inner):
    """Residuals, branches and repeats around chains of the inner statements, mostly on one line."""
    chain = _chain(inner)
    braced = st.tuples(chain, st.sampled_from([" ", " ", "\n"])).map(lambda t: f"{{{t[1]}{t[0]}{t[1]}}}")
    branch = st.tuples(st.sampled_from(["add", "concat"]), st.lists(braced, min_size=2, max_size=3),
                       st.sampled_from([" ", " ", "\n  "]))
    return st.one_of(
        st.tuples(st.sampled_from(["residual", "residual project"]), braced).map(" ".join),
        braced.map(lambda b: f"residual {b} shortcut {{ conv 8 k1 }}"),
        branch.map(lambda t: t[0] + "".join(t[2] + b for b in t[1])),
        braced.map(lambda b: f"repeat 2 {b}"),
    )


def nested_programs():
    """Networks of residuals, branches and repeats nested a few deep, chained on long lines."""
    statements = st.recursive(LEAF, _nest, max_leaves=14)
    return _chain(statements).map(lambda main: f"block b(c) {{ conv c k3 p1 | bn }}\ninput 3x8x8\n{main}\nflatten | linear 10\n")


def assert_fmt_idempotent(text: str, width: int) -> None:
    from unittest import mock

    with mock.patch("archspec.views.fmt.MAX_BRANCH_LINE", width):
        try:
            once = format_text(text)
        except FormatError:
            return  # not accepted (a syntax error, a `# noqa` that would move): nothing to format
        assert format_text(once) == once, (text, once)


WIDTHS = st.sampled_from([12, 30, 60, 100])


# from_lark draws slowly (~0.1 s a program): few examples here; the nested programs below are the fast, many ones.
@settings(max_examples=25, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(grammar_programs(), WIDTHS)
def test_fmt_twice_is_fmt_once_on_grammar_programs(text, width):
    assert_fmt_idempotent(text, width)


@settings(max_examples=150, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(nested_programs(), WIDTHS)
def test_fmt_twice_is_fmt_once_on_nested_programs(text, width):
    assert_fmt_idempotent(text, width)


@pytest.mark.parametrize("text", [
    "input 3x8x8\nresidual project { residual project { hardswish | residual project { maxpool 2 } | "
    "add { conv 8 k3 p1 } { conv 8 k3 p1 } } } | bn\nflatten | linear 10\n",
    "conv 6k5|adaptiveavgpool 2x2|residual project{ conv 4 k1 p same | concat { conv 4 k1 } { conv } | }",
], ids=["valid", "broken"])
def test_a_branch_split_inside_a_one_line_body_formats_once(text):
    """Found by benchmarks/fuzz.py: a `concat`/`add` too long for one line went one branch per line
    inside a body left on one line, and the next fmt laid that body out over several lines."""
    once = format_text(text)
    assert format_text(once) == once
    assert "{\n" in once and meaning(once) == meaning(text)


# --------------------------------------------------------------------------- CLI



def test_cli_check_diff_write_and_stdin(tmp_path, cli):
    run_cli = lambda *a, **k: cli("fmt", *a, **k)
    messy, clean = tmp_path / "messy.arch", tmp_path / "clean.arch"
    messy.write_text("input 3x8x8\nconv  4 k 3|relu\n")
    clean.write_text("input 3x8x8\nconv 4 k3 | relu\n")

    check = run_cli("--check", str(messy), str(clean))
    assert check.returncode == 1 and f"would reformat {messy}" in check.stderr and str(clean) not in check.stderr.split("\n")[0]
    assert messy.read_text() == "input 3x8x8\nconv  4 k 3|relu\n"  # --check changes nothing

    diff = run_cli("--diff", str(messy))
    assert diff.returncode == 1 and "-conv  4 k 3|relu" in diff.stdout and "+conv 4 k3 | relu" in diff.stdout
    assert messy.read_text() == "input 3x8x8\nconv  4 k 3|relu\n"

    write = run_cli(str(messy), str(clean))
    assert write.returncode == 0 and messy.read_text() == clean.read_text()
    assert "1 file reformatted, 1 unchanged" in write.stderr
    assert run_cli("--check", str(messy), str(clean)).returncode == 0

    stdin = run_cli("-", stdin="relu|bn")
    assert stdin.returncode == 0 and stdin.stdout == "relu | bn\n"
    assert run_cli("--check", "-", stdin="relu|bn").returncode == 1
    assert run_cli("--check", "-", stdin="relu | bn\n").returncode == 0


def test_cli_errors(tmp_path, cli):
    run_cli = lambda *a, **k: cli("fmt", *a, **k)
    broken = tmp_path / "broken.arch"
    broken.write_text("conv 6 k5 |\nresidual { relu\n")
    out = run_cli(str(broken))
    assert out.returncode == 1 and "error[E001]" in out.stderr and "Traceback" not in out.stderr
    assert broken.read_text() == "conv 6 k5 |\nresidual { relu\n"  # untouched
    missing = run_cli(str(tmp_path / "nope.arch"))
    assert missing.returncode == 2 and "no such file" in missing.stderr and "Traceback" not in missing.stderr


def test_a_comment_after_a_leading_bar_keeps_its_own_line():
    """Found by benchmarks/fuzz.py: `|# noqa` on its own line was moved onto the line before it,
    where the noqa then silenced that line's diagnostics (fmt changed what `check` reports)."""
    text = "input 16x8x8\n|# noqa\n"
    out = format_text(text)
    assert out == "input 16x8x8\n# noqa\n"
    assert [d.code for d in filter_diagnostics(archspec.check(out).diagnostics, {"<string>": out})] == \
        [d.code for d in filter_diagnostics(archspec.check(text).diagnostics, {"<string>": text})]
    assert format_text(out) == out


@pytest.mark.parametrize("text, expected", [
    ("input 3x32x32\nrepeat 2 # c\n{ relu }\n", "input 3x32x32\nrepeat 2 { relu }  # c\n"),
    ("input 3x32x32\nresidual # noqa: W203\n{ relu }\nshortcut # d\n{ relu }\n",
     "input 3x32x32\nresidual { relu }  # noqa: W203\nshortcut { relu }  # d\n"),
    ("input 3x32x32\nrepeat 2 # c\\\n{ relu\nrelu }\n", "input 3x32x32\nrepeat 2 {  # c\\\n  relu\n  relu\n}\n"),
    ("input 3x32x32\nrepeat 2 # c\n{}\n", "input 3x32x32\nrepeat 2 {}  # c\n"),
    ("input 3x8x8\nmaxpool # c\n {in.h}\n", "input 3x8x8\nmaxpool {in.h}  # c\n"),
    ("block b(c) # x\n{ conv c k3 }\ninput 3x32x32\nb(4)\n", "block b(c) { conv c k3 }  # x\ninput 3x32x32\nb(4)\n"),
], ids=["repeat", "residual-and-shortcut", "multi-line-body", "empty-body", "layer-argument", "block-definition"])
def test_a_comment_after_a_head_whose_brace_opens_the_next_line(text, expected):
    """Found by benchmarks/fuzz.py: fmt stopped with `comments not placed` (a traceback) when a comment
    followed `repeat N`, `residual`, `shortcut` or an op name and the rest of the statement (a `{` body,
    a `{in.h}` argument) opened the next line. The `{` joins the
    head and the comment ends that line, so a `# noqa` stays on the statement it was written on."""
    out = format_text(text)
    assert out == expected
    assert format_text(out) == out
    assert [d.code for d in filter_diagnostics(archspec.check(out).diagnostics, {"<string>": out})] == \
        [d.code for d in filter_diagnostics(archspec.check(text).diagnostics, {"<string>": text})]


def test_fmt_refuses_to_move_code_away_from_its_noqa():
    """Found by benchmarks/fuzz.py: `residual conv {use ...  # noqa` with `}` on the next line: the
    `# noqa` silenced E003 (`conv` is no residual option) on its line, and fmt, putting the body's
    statement on a line of its own, left `residual conv {` uncovered. fmt now refuses with E010."""
    text = 'input 3x32x32\nresidual conv { relu  # noqa\n}\n'
    assert [d.code for d in filter_diagnostics(archspec.check(text).diagnostics, {"<string>": text})] == []  # E003 and W204 sit on the noqa line
    with pytest.raises(FormatError) as refused:
        format_text(text)
    d = refused.value.diagnostic
    assert d.code == "E010" and (d.span.line, d.span.column) == (2, 10) and "split line 2" in d.message
    assert "own line" in refused.value.help
    # The same file with the statement already on its own line formats and keeps its meaning.
    fixed = 'input 3x32x32\nresidual conv {  # noqa\n  relu\n}\n'
    assert format_text(fixed) == fixed


def test_fmt_cli_leaves_a_refused_file_unchanged(tmp_path, capsys):
    from archspec.cli import main

    path = tmp_path / "net.arch"
    path.write_text('input 3x32x32\nresidual conv { relu  # noqa\n}\n')
    before = path.read_bytes()
    assert main(["fmt", str(path)]) == 1
    err = capsys.readouterr().err
    assert "error[E010]" in err and "1 could not be formatted" in err and path.read_bytes() == before


def test_fmt_refuses_to_join_a_line_onto_a_noqa():
    """Found by benchmarks/fuzz.py: an empty body over two lines with `# noqa` after its `}`: fmt writes
    `{}` on the head's line, where the noqa would then silence the head's E004."""
    text = "input 3x32x32\nrepeat -1 {\n}  # noqa\nflatten | linear 10\n"
    assert [d.code for d in filter_diagnostics(archspec.check(text).diagnostics, {"<string>": text})] == ["E004"]
    with pytest.raises(FormatError) as refused:
        format_text(text)
    d = refused.value.diagnostic
    assert d.code == "E010" and (d.span.line, d.span.column) == (2, 8) and "join line 2" in d.message
    assert "`{}`" in refused.value.help
