"""`archspec summary` on `input 3xHxW`: the checker's shapes in H and W, the numbers at one accepted
size. The oracle is the concrete path: the same file written with numbers (`input 3x64x64`)."""
from __future__ import annotations

import json
import math
import os
import re

import pytest

from archspec.views.summary import summarize
from conftest import REPO

GOLDEN = REPO / "tests" / "golden" / "symbolic"
LENET = GOLDEN / "lenet.arch"
# A join that pins H (H % 4 in {0, 3}) and a concrete W.
PINNED = "input 3xHx32\nconv 8 k3 s2 p1\nadd { maxpool 2 } { conv 8 k3 s2 p1 }\nflatten | linear 10\n"


def written_with_numbers(text: str, size: str) -> str:
    """The same file with its `input` line's symbols replaced by numbers, as a user would write it."""
    c, h, w = size.split("x")
    written, n = re.subn(r"input (\d+)x(H|\d+)x(W|\d+)", lambda m: f"input {c}x{h}x{w}", text, count=1)
    assert n == 1
    return written


def evaluate(expr: str, h: int, w: int) -> int:
    """One dimension of a symbolic shape (`floor(H/2) - 2`) at H=h, W=w."""
    return eval(expr, {"__builtins__": {}}, {"floor": math.floor, "ceil": math.ceil, "H": h, "W": w})


def test_golden_summary_text(cli):
    """Regenerate with ARCHSPEC_REGEN=1."""
    result = cli("summary", str(LENET))
    text = result.stdout.replace(str(REPO) + "/", "")
    golden = GOLDEN / "lenet_summary.txt"
    if os.environ.get("ARCHSPEC_REGEN") == "1":
        golden.write_text(text)
    assert result.returncode == 0 and text == golden.read_text()


@pytest.mark.parametrize("source, size", [
    (LENET.read_text(), None), (LENET.read_text(), "3x64x64"), (LENET.read_text(), "3x40x24"),
    ((GOLDEN / "resnet18.arch").read_text(), "3x64x48"), (PINNED, "3x7x32"), (PINNED, None),
])
def test_numbers_equal_the_same_file_written_with_numbers(source, size):
    symbolic = summarize(source, input_size=size)
    at = size or symbolic.evaluated_at
    assert size is not None or at == "3x32x32"  # the checker's representative size
    concrete = summarize(written_with_numbers(source, at))
    assert concrete.symbolic is None and symbolic.evaluated_at == at
    assert symbolic.total_params == concrete.total_params and symbolic.total_macs == concrete.total_macs
    assert symbolic.activation_bytes_per_sample == concrete.activation_bytes_per_sample
    assert symbolic.estimated_training_bytes == concrete.estimated_training_bytes
    assert len(symbolic.rows) == len(concrete.rows)
    _, h, w = map(int, at.split("x"))
    for s, c in zip(symbolic.rows, concrete.rows):
        assert (s.name, s.kind, s.params, s.macs, s.rf, s.jump, s.output_shape) == \
            (c.name, c.kind, c.params, c.macs, c.rf, c.jump, c.output_shape)
        if s.kind != "group":  # the expression in H and W gives the concrete shape at this size
            assert tuple(evaluate(e, h, w) for e in s.shape_text) == c.output_shape, s.name


def test_params_depend_on_the_size_and_the_footer_says_where(cli):
    small = cli("summary", str(LENET))
    large = cli("summary", str(LENET), "--input-size", "3x64x64")
    assert small.returncode == large.returncode == 0
    assert "; params, MACs, RF and memory at 3x32x32\n" in small.stdout
    assert "At input 3x32x32 (accepted: H >= 16, W >= 16; --input-size CxHxW for another size):\nTotal params: 62,006\n" in small.stdout
    assert "At input 3x64x64 (" in large.stdout and "Total params: 338,486\n" in large.stdout
    assert "[B, 16*(floor(H/4) - 3)*(floor(W/4) - 3)]" in large.stdout  # the shapes stay symbolic


def test_json_has_symbolic_shapes_and_concrete_json_is_unchanged(cli):
    data = json.loads(cli("summary", str(LENET), "--format", "json", "--input-size", "3x64x64").stdout)
    assert data["input_shape_symbolic"] == ["3", "H", "W"] and data["output_shape_symbolic"] == ["10"]
    assert data["evaluated_at"] == [3, 64, 64] and data["input_shape"] == [3, 64, 64]
    assert data["accepted"] == {"H": "H >= 16", "W": "W >= 16"}
    pool2 = next(r for r in data["layers"] if r["name"] == "pool2")
    assert pool2["output_shape_symbolic"] == ["16", "floor(H/4) - 3", "floor(W/4) - 3"] and pool2["output_shape"] == [16, 13, 13]
    plain = json.loads(cli("summary", str(REPO / "examples" / "lenet.arch"), "--format", "json").stdout)
    assert not {k for k in plain if "symbolic" in k or k in ("evaluated_at", "accepted")}
    assert not any("output_shape_symbolic" in r for r in plain["layers"])


@pytest.mark.parametrize("args, message, help", [
    (["--input-size", "3x15x64"], "--input-size 3x15x64: ", "accepts H >= 16, W >= 16 (channels 3), e.g. --input-size 3x32x32"),
    (["--input-size", "1x32x32"], "the input has 3 channels, not 1", "accepts H >= 16, W >= 16"),
    (["--input-size", "3x32"], "--input-size: `3x32` is not CxHxW", "e.g. --input-size 3x64x64"),
])
def test_a_size_the_network_does_not_accept_is_a_usage_error(cli, args, message, help):
    result = cli("summary", str(LENET), *args)
    assert result.returncode == 2 and result.stdout == ""
    error, hint = result.stderr.splitlines()
    assert error.startswith("error: ") and message in error and hint.startswith("help: ") and help in hint
    assert "does not accept H = 15" in cli("summary", str(LENET), "--input-size", "3x15x64").stderr


def test_pinned_and_concrete_axes(cli):
    ok = cli("summary", "-", "--input-size", "3x7x32", stdin=PINNED)
    assert ok.returncode == 0 and "[B, 8, floor((H + 1)/4), 8]" in ok.stdout
    bad_h = cli("summary", "-", "--input-size", "3x6x32", stdin=PINNED)
    assert bad_h.returncode == 2 and "does not accept H = 6" in bad_h.stderr and "H % 4 in {0, 3}, W = 32" in bad_h.stderr
    bad_w = cli("summary", "-", "--input-size", "3x8x64", stdin=PINNED)
    assert bad_w.returncode == 2 and "does not accept W = 64" in bad_w.stderr


def test_sizes_checked_one_by_one_are_decided_by_the_checker(cli, tmp_path):
    """A layer reading in.h: no expressions, so the title says the shapes are at the size too."""
    path = tmp_path / "reads.arch"
    path.write_text("input 3xHxW\nconv 8 k3\nmaxpool {in.h}\nflatten | linear 10\n")
    result = cli("summary", str(path), "--input-size", "3x9x9")
    assert result.returncode == 0 and "shapes, params, MACs, RF and memory at 3x9x9" in result.stdout
    assert summarize(path, input_size="3x9x9").total_params == summarize(written_with_numbers(path.read_text(), "3x9x9")).total_params
    bad = cli("summary", str(path), "--input-size", "3x2x40")
    assert bad.returncode == 2 and "does not check at this size (kernel 3" in bad.stderr


def test_input_size_on_a_concrete_file_is_refused(cli):
    result = cli("summary", str(REPO / "examples" / "lenet.arch"), "--input-size", "3x64x64")
    assert result.returncode == 2 and "--input-size needs a symbolic input" in result.stderr
    assert "help: write `input 3xHxW`" in result.stderr


@pytest.mark.parametrize("command, listed", [("build", "building"), ("compile", "compiling"), ("graph", "graph")])
def test_the_other_views_still_need_numbers(cli, command, listed):
    result = cli(command, str(LENET))
    assert result.returncode == 1 and "has a symbolic size; this needs numbers" in result.stderr
    needs = result.stderr.split("(", 1)[1].split(":", 1)[0]  # the list before "only `check`, ... read H and W"
    assert listed in needs and "summary" not in needs and "explain" not in needs


def test_diff_still_needs_numbers(cli):
    result = cli("diff", str(LENET), str(REPO / "examples" / "lenet.arch"))
    assert result.returncode == 1 and "has a symbolic size; this needs numbers" in result.stderr
