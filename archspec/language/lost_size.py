"""Where the map lost its size: a window too large for its input (E101, E102) is the symptom; the
cause is usually earlier, in convs or pools without padding that shrank the map a little each time.

For such a diagnostic this names the layers before it that shrank the map for want of padding
(stride 1 and an output smaller than the input), grouped by where they are written (a block's conv
called six times is one place), the ones that took the most first, and suggests padding there
rather than at the layer that fails (in the notes: a help's padding would read as a fix for that layer).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from archspec.language import codes
from archspec.language.diagnostics import Diagnostic, Span
from archspec.language.ops import pair_text
from archspec.language.tree import Layer


@dataclass
class _Source:
    """What the notes quote: the texts by path, and the main file (whose lines need no file name)."""

    texts: dict[str, str]
    path: str

# Ops whose output is smaller than their input at stride 1 only for want of padding.
_PADDABLE = ("conv", "maxpool", "avgpool")
_SHOWN = 2  # places named in notes


@dataclass
class _Place:
    """One written layer that shrank the map: how often it ran and what it took each time and in all."""

    row: Layer
    rows: int  # H lost by its first run
    columns: int  # W lost by its first run
    runs: int = 0
    total_rows: int = 0  # over every run
    total_columns: int = 0

    @property
    def lost(self) -> int:
        return self.total_rows + self.total_columns


def name_where_size_was_lost(rows: list[Layer], diagnostics: list[Diagnostic], texts: dict[str, str], path: str) -> None:
    """Notes (and a help) on each E101/E102 naming the earlier layers (`rows`: every layer in execution
    order) that shrank the map without padding; `texts` by path, `path` the main file."""
    source = _Source(texts, path)
    for d in diagnostics:
        if d.code not in (codes.KERNEL_TOO_LARGE, codes.OUTPUT_TOO_SMALL):
            continue
        at = next((i for i, r in enumerate(rows) if r.span == d.span and r.trace == d.trace), None)
        places = _places(rows[:at]) if at is not None else []
        if places:
            _explain(d, places, source)


def _places(rows: list[Layer]) -> list[_Place]:
    """The layers that lost rows or columns at stride 1, by where they are written, most lost first."""
    found: dict[tuple, _Place] = {}
    for r in rows:
        lost = _lost(r)
        if lost is None or r.span is None:
            continue
        # One place per line, op and window: `conv c k3` run by six calls, or `conv 8 k3` twice on one line, is one fix.
        place = found.setdefault((r.span.path, r.span.line, r.op, r.rf_step[0]), _Place(r, *lost))  # type: ignore[index]
        place.runs += 1
        place.total_rows += lost[0]
        place.total_columns += lost[1]
    return sorted(found.values(), key=lambda p: -p.lost)  # stable: the earlier place first on a tie


def _lost(r: Layer) -> tuple[int, int] | None:
    """(rows, columns) the layer took for want of padding, or None when it took none."""
    x, y = r.in_shape, r.out_shape
    if r.op not in _PADDABLE or r.rf_step is None or x is None or y is None or len(x) != 3 or len(y) != 3:
        return None
    if None in x or None in y:
        return None
    _, strides = r.rf_step
    lost = tuple(x[i] - y[i] if strides[i - 1] == 1 and y[i] < x[i] else 0 for i in (1, 2))  # type: ignore[operator]
    return lost if any(lost) else None  # type: ignore[return-value]


def _explain(d: Diagnostic, places: list[_Place], source: _Source) -> None:
    shown = places[:_SHOWN]
    d.notes += [_note(p, source) for p in shown]
    if len(places) > _SHOWN:
        d.notes.append(f"{len(places) - _SHOWN} more place{'s' if len(places) - _SHOWN > 1 else ''} shrank it less")
    # The padding is named in the notes, with the place: a help's `p1` reads as a fix for the layer the
    # diagnostic is on (the editor's quick fixes apply it there), which is what this is to avoid.
    which = "the note names the layer" if len(shown) == 1 else "the notes name the layers"
    d.help = f"pad where the size was lost ({which} and the padding), or downsample less before this layer"


def _note(p: _Place, source: _Source) -> str:
    row = p.row
    block = f" (in block `{row.trace[-1][0]}`)" if row.trace else ""
    times = f" each of the {p.runs} times it runs, {_amount(p.total_rows, p.total_columns)} in all" if p.runs > 1 else ""
    padding = _same_padding(row)
    keeps = f"; `{padding}` there keeps its size" if padding else ""
    return (f"the size was lost earlier, for want of padding: `{_text(row, source)}` at "  # type: ignore[arg-type]
            f"{_line(row.span, source)}{block} takes {_amount(p.rows, p.columns)}{times}{keeps}")  # type: ignore[arg-type]


def _amount(rows: int, columns: int) -> str:
    """`2 rows and columns`, `2 rows`, `2 rows and 4 columns`."""
    if rows == columns:
        return f"{rows} rows and columns"
    return " and ".join(f"{n} {what}" for n, what in ((rows, "rows"), (columns, "columns")) if n)


def _same_padding(row: Layer) -> str | None:
    """The padding that keeps the size at stride 1: (kernel - 1) / 2 per axis; None for an even kernel."""
    (kh, kw), _ = row.rf_step  # type: ignore[misc]
    if kh % 2 == 0 or kw % 2 == 0:
        return "p same" if row.op == "conv" else None
    return f"p{pair_text(((kh - 1) // 2, (kw - 1) // 2))}"


def _text(row: Layer, source: _Source) -> str:
    """The layer as the checker read it (`conv 16 k3`; in a block, at its first call): the same
    before and after `fmt`, unlike the text as written (`conv 16 k 3`)."""
    describe = getattr(row.layer, "describe", None)
    return f"{row.op} {describe()}".rstrip() if describe else row.op


def _line(span: Span, source: _Source) -> str:
    return f"line {span.line}" if span.path == source.path else f"{Path(span.path).name} line {span.line}"
