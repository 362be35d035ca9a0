"""`archspec diff`: what changed between two versions of a network, layer by layer, without torch.

Both files are summarised (`archspec.views.summary.summarize`: the checked tree's shapes, params
and MACs, plus RF and activation memory), then their rows (layers and residual/branch joins) are
paired: first by module path (`conv2` with `conv2`, `basic1.res1.body.conv1` with the same), then
the rows left over by position, where the op agrees (an inserted `conv` renames the layers after
it, so path alone would miss them). Every row of either file lands in exactly one entry, so the
per-entry deltas sum to the difference of the totals.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Literal

from archspec.language.measure import has_stride
from archspec.language.ops import fmt_shape
from archspec.views.summary import Pair, Summary, SummaryRow, human_bytes, rf_text

Status = Literal["added", "removed", "changed", "same"]
_COMPARED = ("name", "op", "args", "output_shape", "params", "macs", "rf", "jump")


@dataclass
class RowChange:
    """One layer (or join) in the old file, the new one, or both."""

    old: SummaryRow | None
    new: SummaryRow | None

    @property
    def status(self) -> Status:
        if self.old is None:
            return "added"
        if self.new is None:
            return "removed"
        same = all(getattr(self.old, f) == getattr(self.new, f) for f in _COMPARED)
        return "same" if same else "changed"

    @property
    def name(self) -> str:
        row = self.new or self.old
        assert row is not None
        return row.name if self.old is None or self.new is None or self.old.name == self.new.name \
            else f"{self.old.name} -> {self.new.name}"

    @property
    def params_delta(self) -> int:
        return (self.new.params if self.new else 0) - (self.old.params if self.old else 0)

    @property
    def macs_delta(self) -> int:
        return (self.new.macs if self.new else 0) - (self.old.macs if self.old else 0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "name": self.name,
            "old": _row_dict(self.old),
            "new": _row_dict(self.new),
            "params_delta": self.params_delta,
            "macs_delta": self.macs_delta,
        }


def _row_dict(row: SummaryRow | None) -> dict[str, Any] | None:
    if row is None:
        return None
    d = row.to_dict()
    return {k: d[k] for k in ("name", "op", "args", "line", "output_shape", "params", "macs", "receptive_field", "jump")}


@dataclass
class Total:
    """One network-wide figure before and after."""

    name: str
    old: int | Pair | None
    new: int | Pair | None
    unit: Literal["count", "bytes", "pixels"] = "count"

    @property
    def delta(self) -> int | Pair | None:
        if self.old is None or self.new is None:
            return None
        if isinstance(self.old, tuple) or isinstance(self.new, tuple):
            a, b = _as_pair(self.old), _as_pair(self.new)
            return (b[0] - a[0], b[1] - a[1])
        return self.new - self.old

    def text(self, value: int | Pair | None, signed: bool = False) -> str:
        if value is None:
            return "--"
        if isinstance(value, tuple):
            return rf_text(value) if not signed else ("x".join(_signed(v) for v in value) if value[0] != value[1] else _signed(value[0]))
        if self.unit == "bytes":
            return ("+" if signed and value > 0 else "") + human_bytes(value)
        return _signed(value) if signed else f"{value:,}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "old": _json(self.old), "new": _json(self.new), "delta": _json(self.delta)}


def _as_pair(v: int | Pair) -> Pair:
    return v if isinstance(v, tuple) else (v, v)


def _json(v: int | Pair | None) -> int | list[int] | None:
    if isinstance(v, tuple):
        return v[0] if v[0] == v[1] else list(v)
    return v


def _signed(n: int) -> str:
    return f"{n:+,}" if n else "0"


@dataclass
class ArchDiff:
    """The diff of two summarised networks: paired rows and the totals."""

    old: Summary
    new: Summary
    old_label: str
    new_label: str
    entries: list[RowChange]

    @property
    def changes(self) -> list[RowChange]:
        return [e for e in self.entries if e.status != "same"]

    @property
    def totals(self) -> list[Total]:
        o, n = self.old, self.new
        return [
            Total("params", o.total_params, n.total_params),
            Total("MACs", o.total_macs, n.total_macs),
            Total("activations/sample", o.activation_bytes_per_sample, n.activation_bytes_per_sample, "bytes"),
            Total(f"training memory (batch {n.batch_size}, {n.optimizer})", o.estimated_training_bytes,
                  n.estimated_training_bytes, "bytes"),
            Total("receptive field", _final(o, "rf"), _final(n, "rf"), "pixels"),
            Total("output stride", _output_stride(o), _output_stride(n), "pixels"),
        ]

    @property
    def empty(self) -> bool:
        return not self.changes and all(t.delta in (0, (0, 0), None) for t in self.totals)

    def to_dict(self) -> dict[str, Any]:
        return {
            "old": self.old_label,
            "new": self.new_label,
            "input_shape": [_json_shape(self.old.report.input_shape), _json_shape(self.new.report.input_shape)],
            "output_shape": [_json_shape(self.old.report.output_shape), _json_shape(self.new.report.output_shape)],
            "changes": [e.to_dict() for e in self.changes],
            "totals": [t.to_dict() for t in self.totals],
        }

    # ---- text and markdown

    def _cells(self, e: RowChange) -> list[str]:
        o, n = e.old, e.new
        return [
            {"added": "+", "removed": "-", "changed": "~", "same": " "}[e.status],
            e.name,
            _before_after(_op(o), _op(n)),
            _before_after(fmt_shape(o.output_shape) if o else None, fmt_shape(n.output_shape) if n else None),
            _before_after(_count(o.params) if o else None, _count(n.params) if n else None) + _delta(e.params_delta),
            _before_after(_count(o.macs) if o else None, _count(n.macs) if n else None) + _delta(e.macs_delta),
            _before_after(rf_text(o.rf) if o else None, rf_text(n.rf) if n else None),
        ]

    def render(self, color: bool = False) -> str:
        from io import StringIO

        from rich.console import Console
        from rich.table import Table

        buf = StringIO()
        console = Console(file=buf, force_terminal=color, no_color=not color, width=10_000, highlight=False)
        console.print(f"--- {self.old_label}\n+++ {self.new_label}", markup=False, style="bold")
        if self.changes:
            table = Table(box=None, pad_edge=False, header_style="bold")
            for name, justify in (("", "left"), ("layer", "left"), ("op", "left"), ("output shape", "left"),
                                  ("params", "right"), ("MACs", "right"), ("RF", "right")):
                table.add_column(name, justify=justify)  # type: ignore[arg-type]
            for e in self.changes:
                table.add_row(*self._cells(e), style={"added": "green", "removed": "red", "changed": "yellow"}[e.status])
            console.print(table)
        else:
            console.print("no layer changed")
        console.print()
        totals = Table(box=None, pad_edge=False, header_style="bold")
        for name in ("total", "old", "new", "delta"):
            totals.add_column(name, justify="left" if name == "total" else "right")
        for t in self.totals:
            d = t.delta
            style = None if d in (0, (0, 0), None) else "bold"
            totals.add_row(t.name, t.text(t.old), t.text(t.new), t.text(d, signed=True), style=style)
        console.print(totals)
        return "\n".join(line.rstrip() for line in buf.getvalue().splitlines()) + "\n"

    def markdown(self) -> str:
        lines = [f"### archspec diff: `{self.old_label}` -> `{self.new_label}`", ""]
        if self.changes:
            lines += ["| | layer | op | output shape | params | MACs | RF |", "|---|---|---|---|--:|--:|--:|"]
            lines += ["| " + " | ".join(_md(c) for c in self._cells(e)) + " |" for e in self.changes]
        else:
            lines.append("No layer changed.")
        lines += ["", "| total | old | new | delta |", "|---|--:|--:|--:|"]
        lines += [f"| {t.name} | {t.text(t.old)} | {t.text(t.new)} | {t.text(t.delta, signed=True)} |" for t in self.totals]
        return "\n".join(lines) + "\n"


def _json_shape(shape: Any) -> list[int] | None:
    return None if shape is None or None in shape else list(shape)


def _md(cell: str) -> str:
    """A table cell: `|` would end it, and `[B, ...]` reads as code."""
    cell = cell.replace("|", "\\|")
    return cell if cell in ("+", "-", "~", "") else cell.replace("[", "`[").replace("]", "]`")


def _op(row: SummaryRow | None) -> str | None:
    if row is None:
        return None
    return f"= {row.args}" if row.kind == "join" else f"{row.op} {row.args}".rstrip()


def _before_after(old: str | None, new: str | None) -> str:
    if old is None:
        return new or ""
    if new is None or new == old:
        return old
    return f"{old} -> {new}"


def _count(n: int) -> str:
    return f"{n:,}" if n else "--"


def _delta(d: int) -> str:
    return f" ({d:+,})" if d else ""


def _final(summary: Summary, what: str) -> Pair | None:
    """The receptive field (or jump, the output stride) of the network's output."""
    rows = [r for r in summary.rows if r.kind != "group"]
    return getattr(rows[-1], what) if rows else None


def _output_stride(summary: Summary) -> Pair | None:
    """The largest jump of a feature map (what `--max-stride` limits): 32 for a 5-stage ResNet."""
    jumps = [r.jump for r in summary.rows if r.kind != "group" and r.jump is not None and has_stride(r.output_shape)]
    return (max(j[0] for j in jumps), max(j[1] for j in jumps)) if jumps else None


def pair_rows(old: list[SummaryRow], new: list[SummaryRow]) -> list[RowChange]:
    """Pair by module path, then the leftovers by position where the op agrees; keep execution order."""
    new_index = {(r.name, r.kind): j for j, r in enumerate(new)}
    partner: dict[int, int] = {}  # old index -> new index
    for i, r in enumerate(old):
        j = new_index.get((r.name, r.kind))
        if j is not None:
            partner[i] = j
    taken = set(partner.values())
    rest_old = [i for i in range(len(old)) if i not in partner]
    rest_new = [j for j in range(len(new)) if j not in taken]
    matcher = difflib.SequenceMatcher(None, [_key(old[i]) for i in rest_old], [_key(new[j]) for j in rest_new], autojunk=False)
    for a, b, size in matcher.get_matching_blocks():
        for k in range(size):
            partner[rest_old[a + k]] = rest_new[b + k]
    return _in_order(old, new, partner)


def _key(row: SummaryRow) -> tuple[str, str]:
    return (row.kind, row.op)


def _in_order(old: list[SummaryRow], new: list[SummaryRow], partner: dict[int, int]) -> list[RowChange]:
    """The new file's order, each removed row placed just before the next old row that survives."""
    by_new = {j: i for i, j in partner.items()}
    entries: list[RowChange] = []
    next_old = 0
    for j, row in enumerate(new):
        i = by_new.get(j)
        if i is not None:
            while next_old < i:
                if next_old not in partner:
                    entries.append(RowChange(old[next_old], None))
                next_old += 1
            next_old = max(next_old, i + 1)
            entries.append(RowChange(old[i], row))
        else:
            entries.append(RowChange(None, row))
    entries += [RowChange(old[i], None) for i in range(next_old, len(old)) if i not in partner]
    return entries


def diff(old: Summary, new: Summary, old_label: str | None = None, new_label: str | None = None) -> ArchDiff:
    """Diff two summaries (each from `summarize`, which refuses a file that does not check)."""
    rows_old = [r for r in old.rows if r.kind != "group"]
    rows_new = [r for r in new.rows if r.kind != "group"]
    return ArchDiff(old, new, old_label or old.report.path, new_label or new.report.path, pair_rows(rows_old, rows_new))
