"""Output that stays linear and useful for big networks (issue 13): the plain table renderer lays
out the same cells as rich, `check` folds block calls (rows checked against the per-layer rows),
diagnostics on an over-long line show a window with the caret under the same text, and the op
models build their validators only when used."""
from __future__ import annotations

import re
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest

import archspec
from archspec.views.shape_table import shape_table
from archspec.language.diagnostics import clip_line, render_text
from archspec.views.summary import summarize
from archspec.views.table import Column, TableData, cell_text
from conftest import EXAMPLES, REPO

DENSENET = REPO / "benchmarks" / "data" / "densenet121.arch"
NETWORKS = [EXAMPLES / "lenet.arch", EXAMPLES / "resnet18.arch", EXAMPLES / "mobilenet_v2.arch",
            EXAMPLES / "fastcifar.arch", EXAMPLES / "uses_blocks.arch", DENSENET]


def rich_text(table: TableData) -> str:
    from rich.console import Console

    buf = StringIO()
    Console(file=buf, no_color=True, width=10_000, highlight=False).print(table.to_rich())
    return "\n".join(line.rstrip() for line in buf.getvalue().splitlines()) + "\n"


@pytest.mark.parametrize("path", NETWORKS, ids=lambda p: p.name)
def test_summary_plain_and_rich_renderers_give_the_same_text(path: Path):
    s = summarize(path, classes=None)
    assert s.render(plain=True) == s.render(plain=False)


@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("path", NETWORKS, ids=lambda p: p.name)
def test_check_table_plain_and_rich_renderers_give_the_same_text(path: Path, full: bool):
    table = shape_table(archspec.check(path, classes=None), title=path.name, full=full)
    assert table.render_plain() == rich_text(table)


def test_plain_renderer_matches_rich_on_awkward_cells():
    """Markup-like text stays text, wide characters take two columns, empty cells and styles."""
    table = TableData([Column("a", "right", "dim"), Column("b"), Column("c", "right")], title="t [bold]x[/bold]")
    table.add_row("1", "[bold]not markup[/bold]", "", style="bold")
    table.add_row("22", (("名前 ", None), ("path", "dim")), "3,000")
    table.add_row("", "", "--")
    assert table.render_plain() == rich_text(table)
    coloured = table.render_plain(color=True)
    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured) == table.render_plain()


def test_summary_of_a_big_network_is_plain_even_in_colour():
    s = summarize(DENSENET, classes=1000)
    assert len(s.rows) > 200
    coloured = s.render(color=True)
    assert "\x1b[" in coloured
    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured) == s.render()


def layer_rows_under(report, path: str):
    return [r for r in report.rows if r.path == path or r.path.startswith(path + ".")]


@pytest.mark.parametrize("path", NETWORKS, ids=lambda p: p.name)
def test_folded_rows_agree_with_the_per_layer_rows(path: Path):
    """Each folded row's params are the sum over the layers inside its calls, its shape is what the
    next layer takes in (the network's output after the last), and the rows cover every layer once."""
    from archspec.language.ops import fmt_shape

    report = archspec.check(path, classes=None)
    table = shape_table(report)
    covered = 0
    for row in table.rows:
        where, text = cell_text(row.cells[1]), cell_text(row.cells[2]).strip()
        label = f"{text}  {where}"
        first, _, last = where.partition("..")
        if "(" in text:  # a block call, or a run of them: dense1..dense6
            prefix, n_first = re.fullmatch(r"(.*?)(\d+)", first).groups()
            n_last = int(re.fullmatch(r".*?(\d+)", last).group(1)) if last else int(n_first)
            inside = [r for i in range(int(n_first), n_last + 1) for r in layer_rows_under(report, f"{prefix}{i}")]
            times = re.search(r"\* (\d+)$", text)
            assert (int(times.group(1)) if times else 1) == n_last - int(n_first) + 1
        else:
            inside = [r for r in report.rows if r.path == first]
        assert inside, label
        covered += len(inside)
        params = sum(r.params for r in inside)
        assert row.cells[4] == (f"{params:,}" if params else "--"), label
        after = report.rows.index(inside[-1]) + 1
        out_shape = report.rows[after].in_shape if after < len(report.rows) else report.output_shape
        assert row.cells[3] == fmt_shape(out_shape), label
    assert covered == len(report.rows)


def test_full_table_has_every_layer_and_the_folded_one_fits_a_screen(cli):
    report = archspec.check(DENSENET, classes=1000)
    assert len(shape_table(report, full=True).rows) == len(report.rows) == 370
    folded = cli("check", "--classes", "1000", str(DENSENET))
    assert folded.returncode == 0
    assert re.search(r"16  dense19\.\.dense42 +dense\(g=32\) \* 24 +\[B, 1024, 14, 14\]  2,837,760", folded.stdout)
    assert "(370 layers in 17 rows: a block call is one row; --full for every layer)" in folded.stdout
    assert len(folded.stdout.splitlines()) < 30
    full = cli("check", "--full", "--classes", "1000", str(DENSENET))
    assert "dense58.concat1.branch2.conv2" in full.stdout and "layers in" not in full.stdout
    assert len(full.stdout.splitlines()) > 370


def test_a_network_without_blocks_is_not_folded(cli):
    out = cli("check", str(EXAMPLES / "lenet.arch")).stdout
    assert "layers in" not in out and len(re.findall(r"  relu\d +relu ", out)) == 4


def test_a_long_source_line_shows_a_window_with_the_caret_under_the_span():
    src = "input 8x32x32\n" + " | ".join(["relu"] * 3000) + " | conv 8 k99 | relu\n"
    report = archspec.check(src, classes=0)
    err = report.errors[0]
    text = render_text(err, report.sources)
    source_line = next(line for line in text.splitlines() if line.startswith("2 | "))
    caret_line = next(line for line in text.splitlines() if line.strip().startswith("| ") and "^" in line)
    assert len(source_line) < 200 and source_line.startswith("2 | ...")
    start = caret_line.index("^")
    assert source_line[start:start + caret_line.count("^")] == "conv 8 k99"


@pytest.mark.parametrize("column, end", [(1, 5), (100, 110), (4990, 5001), (2500, 5001)])
def test_clip_line_keeps_the_span_text_under_the_same_columns(column: int, end: int):
    src = "".join(chr(ord("a") + i % 26) for i in range(5000))
    shown, c, e = clip_line(src, column, end)
    assert len(shown) <= 170
    covered = src[column - 1:end - 1]
    assert shown[c - 1:e - 1] == covered[: e - c]
    assert covered.startswith(shown[c - 1:e - 1]) and e > c


def test_coloured_diagnostics_have_the_plain_text():
    report = archspec.check(EXAMPLES / "broken" / "kernel_too_large.arch")
    d = report.diagnostics[0]
    coloured = render_text(d, report.sources, color=True)
    assert "\x1b[" in coloured
    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured) == render_text(d, report.sources)


def test_op_models_build_their_validators_on_first_use():
    code = ("import archspec.language.ops as ops\n"
            "assert not any(c.__pydantic_complete__ for c in ops.OPS.values())\n"
            "import archspec\n"
            "archspec.check('input 3x8x8\\nconv 4 k3\\nflatten\\nlinear 10')\n"
            "print(sorted(n for n, c in ops.OPS.items() if c.__pydantic_complete__))\n"
            "assert ops.LAYER_ADAPTER.validate_python({'op': 'relu'}).op == 'relu'\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["['conv',", "'flatten',", "'input',", "'linear']"]


def test_the_checking_guide_shows_the_real_folded_check_output(cli, monkeypatch):
    page = (REPO / "docs" / "guide" / "checking.md").read_text(encoding="utf-8")
    command = "$ archspec check --classes 1000 benchmarks/data/densenet121.arch"
    start = page.index(command)
    block = page[start:page.index("```", start)].rstrip().splitlines()[1:]
    monkeypatch.chdir(REPO)
    out = cli("check", "--classes", "1000", "benchmarks/data/densenet121.arch")
    assert [line[2:] for line in block] == out.stdout.splitlines()
