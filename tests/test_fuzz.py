"""A small-budget fuzz test through the public API (the long campaign is benchmarks/fuzz.py).

Grammar-aware text from hypothesis.extra.lark.from_lark over grammar/archspec.lark (NAME drawn from
the op list and argument words) and token/byte mutations of examples/*.arch, with in-process oracles:
archspec.check never raises for any text (it returns a report with diagnostics); archspec.fmt is
idempotent on text that parses; archspec.build succeeds exactly when check has no errors and gives
the checker's output shape (small nets only, needs torch). Every property runs derandomized (a fixed
seed), so a strict xfail below is stable: each marks a bug the campaign found, with its reproducer;
when the bug is fixed the test XPASSes, fails as strict, and tells you to remove the xfail.

Run: pytest -m fuzz tests/test_fuzz.py
"""
from __future__ import annotations

import math
import random
import re
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
lark = pytest.importorskip("lark")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra.lark import from_lark  # noqa: E402

import archspec  # noqa: E402
from archspec.language.joins import JOINS  # noqa: E402

pytestmark = pytest.mark.fuzz

ROOT = Path(__file__).resolve().parents[1]
GRAMMAR = ROOT / "grammar" / "archspec.lark"
EXAMPLES = sorted((ROOT / "examples").glob("*.arch")) + sorted((ROOT / "examples" / "broken").glob("*.arch"))
OPS = ["input", "conv", "maxpool", "avgpool", "adaptiveavgpool", "gap", "relu", "relu6", "gelu", "silu", "sigmoid",
       "tanh", "hardswish", "leakyrelu", "softmax", "bn", "dropout", "flatten", "linear"]
ARGS = ["k1", "k3", "k5", "s1", "s2", "p0", "p1", "same", "valid", "nobias", "ceil", "d2", "g2", "c", "s", "k"]

FUZZ = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))
FUZZ_BUILD = settings(FUZZ, max_examples=25)


def _sp(s):
    return st.tuples(s, st.sampled_from([" ", " ", "\t"])).map("".join)


def _programs():
    g = lark.Lark(GRAMMAR.read_text(), start="start")
    explicit = {
        "NAME": _sp(st.sampled_from(OPS + OPS + ARGS)),
        "NUMBER": _sp(st.one_of(st.integers(0, 64).map(str), st.sampled_from(["0.5", "-1", "1e3"]))),
        "DIMS": _sp(st.lists(st.integers(1, 40).map(str), min_size=2, max_size=3).map("x".join)),
        "STRING": _sp(st.just('"missing.arch"')),
        "COMMENT": st.just("# c"),
        "_NL": st.just("\n"),
        "REPEAT": _sp(st.just("repeat")), "BLOCK": _sp(st.just("block")),
        "USE": _sp(st.just("use")), "SHORTCUT": _sp(st.sampled_from(["shortcut", "attend"])),
        "JOIN_WORD": _sp(st.sampled_from(sorted(JOINS))),  # the join registry's words
    }
    prefix = st.sampled_from(["input 3x16x16\n", "input 8x8x8\n", "input 10\n", ""])
    return st.tuples(prefix, from_lark(g, start="start", explicit=explicit)).map("".join)


TOKEN_RE = re.compile(r"\s+|[A-Za-z_][A-Za-z0-9_.]*|\d+(?:x\d+)+|-?\d+\.?\d*|\"[^\"\n]*\"|#[^\n]*|.", re.S)
_POOL = sorted({t for p in EXAMPLES for t in TOKEN_RE.findall(p.read_text()) if t.strip()})


@st.composite
def _mutants(draw):
    src = draw(st.sampled_from(EXAMPLES)).read_text()
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    toks = TOKEN_RE.findall(src)
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(toks))
        k = rng.random()
        if k < 0.4:
            toks[i] = rng.choice(_POOL)
        elif k < 0.6:
            del toks[i]
        elif k < 0.8:
            toks.insert(i, rng.choice(["{", "}", "|", "\n", "(", ")", "*", "-", "0", "residual {"]))
        else:
            j = rng.randrange(len(toks))
            toks[i], toks[j] = toks[j], toks[i]
    return "".join(toks)


def _check_never_raises(text: str) -> None:
    report = archspec.check(text)
    assert isinstance(report, archspec.CheckReport)
    assert report.ok == (not report.errors)


def _fmt_idempotent(text: str) -> None:
    try:
        once = archspec.fmt(text)
    except archspec.ArchspecError:
        return  # does not parse: nothing to format
    assert archspec.fmt(once) == once


def _small(report) -> bool:
    layers = report.to_dict()["layers"]
    return (report.ok and report.input_shape is not None and report.params < 1_000_000 and len(layers) < 400
            and all(x["output_shape"] is None or math.prod(x["output_shape"]) < 500_000 for x in layers))


def _build_iff_check(text: str) -> None:
    torch = pytest.importorskip("torch")
    report = archspec.check(text, classes=None)
    if report.buildable and not _small(report):
        return
    try:
        model = archspec.build(text, classes=None)
    except archspec.ArchError:
        assert not report.buildable, "build() raised although check() has no errors (silenced or not)"
        return
    assert report.buildable, f"build() succeeded although check() reports {[d.code for d in report.errors + report.silenced_errors]}"
    model.eval()
    with torch.no_grad():
        y = model(torch.zeros(2, *report.input_shape))
    assert tuple(y.shape[1:]) == tuple(report.output_shape)


# --- grammar-aware ---------------------------------------------------------------------------------
@FUZZ
@given(_programs())
def test_grammar_check_never_raises(text):
    _check_never_raises(text)


@FUZZ
@given(_programs())
def test_grammar_fmt_idempotent(text):
    _fmt_idempotent(text)


@FUZZ_BUILD
@given(_programs())
def test_grammar_build_iff_check(text):
    _build_iff_check(text)


# --- mutations of the examples --------------------------------------------------------------------
@FUZZ
@given(_mutants())
def test_mutant_check_never_raises(text):
    _check_never_raises(text)


@FUZZ
@given(_mutants())
def test_mutant_fmt_idempotent(text):
    _fmt_idempotent(text)


@FUZZ_BUILD
@given(_mutants())
def test_mutant_build_iff_check(text):
    _build_iff_check(text)


# --- failure classes found by benchmarks/fuzz.py (see benchmarks/results/fuzz.md) ------------------
# They were strict xfails; fixed (issue 14), they stay as regression tests. tests/test_hostile.py has more.
def _check_reports(text: str) -> None:
    report = archspec.check(text)
    assert report.errors, "expected an error diagnostic"


def test_known_infinite_expression():
    _check_reports("input 3x32x32\nconv {1e400/1} k3\n")


def test_known_deep_residual_check():
    _check_reports("input 3x32x32\n" + "residual {" * 10000 + " relu " + "}" * 10000 + "\n")


def test_known_deep_residual_fmt():
    with pytest.raises(archspec.ArchspecError, match="nesting 10000 levels deep, past the limit of 64"):
        archspec.fmt("input 3x32x32\n" + "residual {" * 10000 + " relu " + "}" * 10000 + "\n")


def test_known_long_negation():
    archspec.check("block b(c) { conv {" + "-" * 10000 + "1} k3 }\ninput 3x32x32\nb(1)\n")


def test_known_fmt_not_idempotent_backslash_comment():
    once = archspec.fmt('  block\t  softmax (){\n|\\\n\n}#\\\n\r\nuse "blocks.arch" |')
    assert archspec.fmt(once) == once
