"""Tables for `check` and `summary`: one description, two renderers with the same cells.

rich lays a table out in time that grows faster than its rows (a 4,000-row table took ~10 s),
so long tables, and tables written to a file or a pipe, go through `render_plain`: a linear
fixed-width layout that reproduces rich's (`box=None, pad_edge=False`: columns two spaces apart,
the title on its own line above). Short tables on a terminal still go through rich.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, TextIO, Union

if TYPE_CHECKING:
    from rich.table import Table as RichTable

# Past this many rows a table is rendered plainly even on a terminal (rich: ~2 ms a row).
PLAIN_AFTER_ROWS = 200

Justify = Literal["left", "right"]
# A cell: plain text, or segments of (text, style) such as a layer and its dimmed module path.
Cell = Union[str, tuple[tuple[str, Union[str, None]], ...]]

_SGR = {"bold": "1", "dim": "2"}


@dataclass
class Column:
    name: str
    justify: Justify = "left"
    style: str | None = None


@dataclass
class Row:
    cells: list[Cell]
    style: str | None = None


@dataclass
class TableData:
    """Columns and rows of a table, rendered by `to_rich` or `render_plain`."""

    columns: list[Column]
    title: str | None = None
    rows: list[Row] = field(default_factory=list)

    def add_row(self, *cells: Cell, style: str | None = None) -> None:
        self.rows.append(Row(list(cells), style))

    def to_rich(self) -> "RichTable":
        from rich.table import Table
        from rich.text import Text

        title = Text(self.title) if self.title is not None else None  # a path with `[` in it is text too
        table = Table(title=title, title_justify="left", box=None, pad_edge=False, header_style="bold")
        for col in self.columns:
            table.add_column(col.name, justify=col.justify, style=col.style)
        for row in self.rows:
            # Text objects, never markup: a `[` in a cell is text.
            table.add_row(*(Text(c) if isinstance(c, str) else Text.assemble(*c) for c in row.cells), style=row.style)
        return table

    def render_plain(self, color: bool = False) -> str:
        """The same layout as rich's, in one pass over the cells; ANSI bold/dim only when `color`."""
        texts = [[cell_text(c) for c in row.cells] for row in self.rows]
        widths = [_width(col.name) for col in self.columns]
        for cells in texts:
            for i, text in enumerate(cells):
                widths[i] = max(widths[i], _width(text))
        lines = []
        if self.title:
            lines.append(self.title)
        header = [_pad(col.name, widths[i], col.justify) for i, col in enumerate(self.columns)]
        lines.append(_styled("  ".join(header).rstrip(), "bold", color))
        for row, cells in zip(self.rows, texts):
            parts = []
            for i, col in enumerate(self.columns):
                padded = _pad(cells[i], widths[i], col.justify)
                parts.append(_styled_cell(row.cells[i], padded, cells[i], col.style, color) if color else padded)
            line = "  ".join(parts).rstrip()
            lines.append(_styled(line, row.style, color))
        return "\n".join(lines) + "\n"


def cell_text(cell: Cell) -> str:
    return cell if isinstance(cell, str) else "".join(text for text, _ in cell)


def _width(text: str) -> int:
    if text.isascii():
        return len(text)
    from rich.cells import cell_len  # wide characters take two columns, as rich counts them

    return cell_len(text)


def _pad(text: str, width: int, justify: Justify) -> str:
    gap = " " * (width - _width(text))
    return gap + text if justify == "right" else text + gap


def _styled(text: str, style: str | None, color: bool) -> str:
    if not color or not style or style not in _SGR:
        return text
    return f"\x1b[{_SGR[style]}m{text}\x1b[0m"


def _styled_cell(cell: Cell, padded: str, text: str, col_style: str | None, color: bool) -> str:
    """A padded cell with its column style, or each segment's style."""
    if isinstance(cell, str):
        return _styled(padded, col_style, color)
    lead = padded[: len(padded) - len(padded.lstrip(" "))] if padded.startswith(" ") else ""
    trail = " " * (len(padded) - len(lead) - len(text))
    return lead + "".join(_styled(t, s or col_style, color) for t, s in cell) + trail


def print_table(table: TableData, out: TextIO, console=None, color: bool = False) -> None:
    """Rich on a terminal for a short table; the plain renderer for a long one or a file/pipe."""
    if console is not None and console.is_terminal and len(table.rows) <= PLAIN_AFTER_ROWS:
        console.print(table.to_rich())
        return
    out.write(table.render_plain(color=color))
