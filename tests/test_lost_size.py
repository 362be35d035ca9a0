"""A window too large for its input (E101/E102) names where the map lost its size, and the padding
it suggests there works: written in, the network checks, and torch runs it with the checker's shapes."""
from __future__ import annotations

import re

import pytest

import archspec
from archspec.language.diagnostics import filter_diagnostics
from conftest import EXAMPLES

CASES = {
    "block": (EXAMPLES / "broken" / "padding_lost.arch").read_text(),
    "lenet at 8x8": (EXAMPLES / "lenet.arch").read_text().replace("input 3x32x32", "input 3x8x8"),
    "one axis": "input 3x20x40\nconv 8 k3x5 | conv 8 k3x5\nconv 8 k5 p1 | maxpool 3 s1\nconv 8 k19\nflatten | linear 10\n",
}


def _apply_help(text: str, report) -> str:
    """The padding the note names written into the layer it names, found from the note's line (every copy of it
    on that line), or into the layer that fails when nothing was lost earlier."""
    d = report.errors[0]
    note = next((n for n in d.notes if "size was lost" in n), None)
    if note is not None:  # at the layer where the size was lost, with the padding the note names
        described, line, padding = re.search(r"`([^`]*)` at line (\d+).*`(p[^`]*)` there keeps its size", note).groups()
        line = int(line)
        row = next(r for r in report.rows if r.line == line and f"{r.op} {r.layer.describe()}".rstrip() == described)
        layer = report.sources["<string>"][row.span.start:row.span.end]
    else:  # nothing lost earlier: the layer that fails, padded (`pad the input (e.g. `p1`)`)
        padding = re.search(r"e\.g\. `(p[^`]*)`", d.help).group(1)
        layer, line = report.sources["<string>"][d.span.start:d.span.end], d.span.line
    lines = text.split("\n")
    stripped = re.sub(r" p\S*", "", layer)  # the layer's own padding is replaced
    lines[line - 1] = lines[line - 1].replace(layer, f"{stripped} {padding}")
    return "\n".join(lines)


@pytest.mark.parametrize("name", CASES)
def test_the_padding_suggested_where_the_size_was_lost_works(name):
    torch = pytest.importorskip("torch")
    text = CASES[name]
    report = archspec.check(text)
    d = report.errors[0]
    assert d.code in ("E101", "E102") and any(n.startswith("the size was lost earlier") for n in d.notes)
    fixed, fixed_report = text, report
    for _ in range(4):  # following the help, one place at a time, makes the network check
        fixed = _apply_help(fixed, fixed_report)
        fixed_report = archspec.check(fixed)
        if fixed_report.ok:
            break
    assert fixed_report.ok, filter_diagnostics(fixed_report.diagnostics, fixed_report.sources)
    net = archspec.build(fixed)
    with torch.no_grad():
        y = net.eval()(torch.zeros(2, *fixed_report.input_shape))
    assert tuple(y.shape[1:]) == fixed_report.output_shape


def test_no_note_when_nothing_was_lost_for_want_of_padding():
    """Pools that downsample on purpose are no padding mistake: the help stays as it was."""
    report = archspec.check((EXAMPLES / "broken" / "pool_too_small.arch").read_text())
    d = report.errors[0]
    assert not any("size was lost" in n for n in d.notes) and d.help.startswith("pad the input")


def test_the_notes_read_the_same_after_fmt():
    """Found by test_fmt's random programs: the notes quoted the layer as written (`conv 1 k 3`), so fmt
    changed a diagnostic; they quote it as the checker reads it, and the help names no line."""
    text = ("block blk0(c, s=1) { conv 1 k3 | conv 1 k 1 }\nblock blk1(c, s=1) { maxpool 2 | blk0(8) }\n"
            "input 3x16x16\nconv 1 k 3 | blk1(8) * 2")
    before, after = (archspec.check(t).errors[0] for t in (text, archspec.fmt(text)))
    assert (before.notes, before.help) == (after.notes, after.help)
    assert "`conv 1 k3` at line 4 takes 2 rows and columns" in before.notes[-1]
