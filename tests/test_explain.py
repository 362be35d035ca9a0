"""`archspec explain`: golden texts (regenerate with ARCHSPEC_REGEN=1), `--layer` selection, and
the written-out arithmetic agreeing with the checker on random windows."""
from __future__ import annotations

import math
import os
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import archspec
from archspec.language.errors import ArchError, UsageError
from archspec.language.ops import window_line
from archspec.views.explain import explain, parse_layer
from conftest import REPO

GOLDEN = REPO / "tests" / "golden" / "explain"
CASES = sorted(p for p in GOLDEN.glob("*.arch") if not p.name.startswith("_"))  # _*.arch are `use`d libraries


def explained(path: Path, layer: int | str | None = None) -> str:
    # The display path is the bare file name, so the text does not depend on where the repo lives;
    # `use` is resolved relative to it, so parse from the golden folder.
    cwd = os.getcwd()
    os.chdir(GOLDEN)
    try:
        return explain(archspec.check(archspec.parse(path.read_text(), path.name)), layer=layer)
    finally:
        os.chdir(cwd)


@pytest.mark.parametrize("case", CASES, ids=[p.stem for p in CASES])
def test_golden(case):
    text = explained(case)
    golden = case.with_suffix(".txt")
    if os.environ.get("ARCHSPEC_REGEN") == "1":
        golden.write_text(text)
    assert golden.exists(), f"no golden text for {case.name}: run with ARCHSPEC_REGEN=1"
    assert text == golden.read_text()


def test_goldens_have_inputs():
    assert {p.stem for p in GOLDEN.glob("*.txt")} == {p.stem for p in CASES}
    assert {"lenet", "windows", "structures", "features"} <= {p.stem for p in CASES}


def test_lenet_style():
    text = explained(GOLDEN / "lenet.arch")
    for line in ("  H: (32 + 2*0 - 1*(5-1) - 1)/1 + 1 = 28",
                 "  [B, 16, 5, 5] -> [B, 400]: 16 * 5 * 5 = 400",
                 "  [B, 400] -> [B, 120]: every output is a weighted sum of all 400 inputs",
                 "  params: 400*120 + 120 = 48,120 (weights + biases)"):
        assert line in text.splitlines(), line


def test_layer_by_line_and_by_name():
    lenet = GOLDEN / "lenet.arch"
    by_line = explained(lenet, 4)
    assert re.findall(r"^(\w+) \(line", by_line, re.M) == ["conv2", "relu2", "pool2"]
    assert re.findall(r"^(\w+) \(line", explained(lenet, "fc1"), re.M) == ["fc1"]
    structures = GOLDEN / "structures.arch"
    call = explained(structures, 10)  # `basic(16, s=2)`: the whole call, nested
    assert call.splitlines()[3].startswith("basic2 (line 10): block basic(c=16, s=2)")
    assert "basic2.res1.shortcut.conv1" in call and "basic1" not in call
    prefix = explained(structures, "basic2.res1.shortcut")
    assert re.findall(r"^(\S+) \(", prefix, re.M) == ["basic2.res1.shortcut.conv1", "basic2.res1.shortcut.bn1"]
    with pytest.raises(UsageError) as err:
        explained(lenet, 1)  # the comment line
    assert "line" in err.value.help and "conv1" in err.value.help
    with pytest.raises(UsageError):
        explained(lenet, "conv9")


def test_nested_structures_by_module_path():
    text = "input 3x8x8\nresidual { concat { relu } { add { bn } { relu } } | conv 3 k1 }\nflatten | linear 10\n"
    out = explain(text, layer="res1.body.concat1.branch2")
    assert re.findall(r"^\s*(\S+) \(line", out, re.M) == [
        "res1.body.concat1.branch2.add1", "res1.body.concat1.branch2.add1.branch1.bn1", "res1.body.concat1.branch2.add1.branch2.relu1"]


def test_parse_layer():
    assert parse_layer("12") == 12 and parse_layer("basic1.res1") == "basic1.res1"
    with pytest.raises(UsageError):
        parse_layer(" ")


def test_refuses_a_model_that_does_not_check():
    with pytest.raises(ArchError):
        explain("input 3x4x4\nconv 6 k5\n")




def test_cli(cli):
    run = lambda *a: cli("explain", *a)
    out = run(str(GOLDEN / "lenet.arch"), "--layer", "5")
    assert out.returncode == 0 and "flatten1 (line 5): flatten" in out.stdout
    missing = run(str(GOLDEN / "lenet.arch"), "--layer", "99")
    assert missing.returncode == 2 and "no layer on line 99" in missing.stderr and "Traceback" not in missing.stderr


@settings(max_examples=150, deadline=None)
@given(size=st.integers(1, 40), k=st.integers(1, 7), s=st.integers(1, 4), p=st.integers(0, 3), d=st.integers(1, 3),
       pool=st.booleans(), ceil=st.booleans())
def test_written_arithmetic_reaches_the_checkers_size(size, k, s, p, d, pool, ceil):
    layer = f"maxpool {k} s{s} p{p}{' ceil' if ceil else ''}" if pool else f"conv 1 k{k} s{s} p{p} d{d}"
    report = archspec.check(f"input 1x{size}x{size}\n{layer}\n", classes=None)
    if not report.ok:
        return
    out = report.rows[1].out_shape[1]
    line = next(x for x in explain(report).splitlines() if x.startswith("  H: "))
    if "(the last window" in line:
        assert pool and ceil
    numbers = re.sub(r" \(.*\)$", "", line)  # drop the trailing remark
    assert numbers.endswith(f"= {out}"), line
    # The formula as written, evaluated, gives the checker's size.
    written = numbers[len("  H: "):].split(" = ")[0]
    value = eval(written, {"__builtins__": {}}, {"floor": math.floor, "ceil": math.ceil})  # digits and + - * / only
    if "(the last window" in line:
        value -= 1
    assert value == out, line
    assert line.strip() == window_line("H", size, k, s, p, 1 if pool else d, out, pool and ceil)


FAILING = sorted((GOLDEN / "failing").glob("*.arch"))


@pytest.mark.parametrize("case", FAILING, ids=[p.stem for p in FAILING])
def test_explain_stops_at_the_failing_layer(case, cli, monkeypatch):
    monkeypatch.chdir(case.parent)
    out = cli("explain", case.name)
    text = f"exit {out.returncode}\n{out.stdout}{out.stderr}"
    golden = case.with_suffix(".txt")
    if os.environ.get("ARCHSPEC_REGEN") == "1":
        golden.write_text(text)
    assert golden.exists(), f"no golden text for {case.name}: run with ARCHSPEC_REGEN=1"
    assert text == golden.read_text()


def test_explain_of_the_course_question_shows_the_failing_arithmetic(cli):
    out = cli("explain", "-", stdin="input 3x4x4\nconv 6 k5\n")
    assert out.returncode == 1
    assert ("  H: floor((4 + 2*0 - 1*(5-1) - 1)/1) + 1 = floor(-1) + 1 = 0: below 1, "
            "the 5-wide window does not fit in 4 + 2*0 = 4") in out.stdout.splitlines()
    assert "<stdin>:2:1: error[E101]" in out.stdout and "  | ^^^^^^^^^" in out.stdout


def test_summary_refusal_renders_each_diagnostic_with_its_source(cli):
    out = cli("summary", "-", stdin="input 3x4x4\nconv 6 k5\nflatten\nlinear 10\n")
    assert out.returncode == 1
    assert "<stdin>:2:1: error[E101]" in out.stderr
    assert "2 | conv 6 k5" in out.stderr and "  | ^^^^^^^^^" in out.stderr
