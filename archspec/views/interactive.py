"""`archspec view`: an interactive, self-contained HTML view of a checked network (no torch).

The checked tree becomes JSON (`view_data`): one entry per layer, block call, residual, branch
and join, with its shapes, params, MACs, receptive field, explain arithmetic, source place and
the diagnostics that belong to it. `to_html` puts that JSON into one HTML page together with
the view's own script and style and the layout library (dagre), all read from `web/` inside
the package: the page works offline and fetches nothing. The same page is a notebook's display
of `archspec.graph(...)` and, fed by the language server's `archspec/view` request, the VS
Code webview.
"""
from __future__ import annotations

import contextlib
import html
import json
import os
from dataclasses import dataclass
from itertools import islice, zip_longest
from pathlib import Path
from typing import Any

from archspec.language.check import CheckReport
from archspec.language.diagnostics import Diagnostic, render_text
from archspec.language.errors import UsageError
from archspec.language.nodes import Model
from archspec.language.ops import fmt_shape, value_text
from archspec.language.pipeline import CheckOptions, checked
from archspec.language.tree import Branch, Call, CheckedNode, Join, Layer, Visitor
from archspec.views.explain import Entry, _Explainer
from archspec.views.summary import rf_text

WEB = Path(__file__).parent / "web"
# The page's parts, inlined in this order; web/THIRD_PARTY.md says where the vendored one comes from.
SCRIPTS = ("vendor/dagre.min.js", "view.js")
STYLES = ("view.css",)
NOTEBOOK_HEIGHT = 640  # pixels: the notebook's frame around the view


def _belongs_to(d: Diagnostic, node: CheckedNode) -> bool:
    """A diagnostic belongs to the innermost node written where it points, in the same block call."""
    span = node.span
    return (d.span is not None and span is not None and d.trace == node.trace and d.span.path == span.path
            and span.start <= d.span.start and d.span.end <= span.end)


class _Collector(Visitor[dict]):
    """One JSON object per node; structures hold their children in source order.

    Each node is visited with explain's entry for it (None past the node the explanation stops at),
    and `placed` pairs every node with its JSON, structures before their children (`tree.walk`'s order),
    for the diagnostics to find the node they belong to."""

    def __init__(self, report: CheckReport) -> None:
        self.report = report
        self.ids = 0
        self.placed: list[tuple[CheckedNode, dict]] = []

    def visit(self, node: CheckedNode, entry: Entry | None = None) -> dict:  # type: ignore[override]
        place = len(self.placed)
        self.placed.append((node, {}))  # its place before its children's; its JSON once made
        data = super().visit(node, entry)
        self.placed[place] = (node, data)
        return data

    def seq(self, nodes: list[CheckedNode], entries: list[Entry]) -> list[dict]:
        """The JSON of a sequence; `entries`: explain's for its first nodes (it stops at the first that fails)."""
        return [self.visit(n, e) for n, e in zip_longest(nodes, entries)]

    def common(self, node: CheckedNode, entry: Entry | None, label: str, **extra: Any) -> dict:
        self.ids += 1
        span = node.span
        rf = node.rf
        symbolic = node.symbolic_shape
        return {
            "id": f"n{self.ids}", "kind": node.kind, "name": node.name, "path": node.path, "label": label,
            "in": fmt_shape(node.in_shape) if node.in_shape is not None else None,
            "out": fmt_shape(symbolic if symbolic is not None else node.out_shape) if node.out_shape is not None else None,
            "params": node.params, "macs": node.macs,
            "rf": rf_text(rf[0]) if rf else None, "jump": rf_text(rf[1]) if rf else None,
            "explain": entry.lines + entry.after if entry is not None else [],
            "file": span.path if span else None, "line": span.line if span else None,
            "call_line": self.call_line(node),
            **extra,
        }

    def call_line(self, node: CheckedNode) -> int | None:
        """The line in the viewed file a node comes from: its own, or the outermost call it is inside."""
        for _, site in node.trace:
            if site.path == self.report.path:
                return site.line
        return None

    def visit_layer(self, node: Layer, entry: Entry | None) -> dict:
        desc = node.layer.describe() if node.valid else ""  # type: ignore[union-attr]
        return self.common(node, entry, f"{node.op} {desc}".strip(), op=node.op, valid=node.valid)

    def visit_join(self, node: Join, entry: Entry | None) -> dict:
        return self.common(node, entry, node.mode, op=node.mode)

    def visit_call(self, node: Call, entry: Entry | None) -> dict:
        args = ", ".join(f"{k}={value_text(v)}" for k, v in node.args.items())
        body = self.seq(node.body, entry.children if entry is not None else [])
        return self.common(node, entry, f"{node.block}({args})", op=node.block, body=body)

    def visit_branch(self, node: Branch, entry: Entry | None) -> dict:
        rule = node.rule
        # explain's entries for the bodies come one after another, as far as the explanation went
        written = iter(entry.children if entry is not None else [])
        entries = [list(islice(written, len(b))) for b in node.branches]
        seqs: list[list[dict]] = [[] for _ in node.branches]
        for i in rule.view_order(node):
            seqs[i] = self.seq(node.branches[i], entries[i])
        label = rule.title(node) if rule.view_kind == "residual" else f"{node.mode} of {len(node.branches)}"
        data = self.common(node, entry, label, op=node.mode, **rule.view_parts(node, seqs), join=self.join_of(node))
        data["kind"] = rule.view_kind  # the page draws a residual's body and shortcut apart
        return data

    def join_of(self, node: Branch) -> dict | None:
        if node.join is None:
            return None
        data = self.visit(node.join)
        rf = node.rf  # a structure's RF is the one after its join
        data.update(rf=rf_text(rf[0]) if rf else None, jump=rf_text(rf[1]) if rf else None)
        return data


def _diagnostics(report: CheckReport, placed: list[tuple[CheckedNode, dict]]) -> list[dict]:
    """Each diagnostic, with the id of the innermost node it belongs to (None: the file as a whole)."""
    out = []
    for d in report.diagnostics:
        owners = [(n, data) for n, data in placed if _belongs_to(d, n)]
        owner = min(owners, key=lambda pair: pair[0].span.end - pair[0].span.start) if owners else None  # type: ignore[union-attr]
        out.append({"severity": d.severity, "code": d.code, "message": d.message, "help": d.help,
                    "file": d.span.path if d.span else None, "line": d.span.line if d.span else None,
                    "node": owner[1]["id"] if owner is not None else None,
                    "text": render_text(d, report.sources)})
    return out


def view_data(source: "CheckReport | Model | str | Path", classes: int | None = 10) -> dict[str, Any]:
    """The view's JSON: the checked tree, totals, sources and diagnostics (also for a file with errors)."""
    report = checked(source, CheckOptions(classes=classes))
    collector = _Collector(report)
    body = collector.seq(report.body, _Explainer(report).seq(report.body))
    return {
        "version": 1,
        "path": report.path,
        "input": fmt_shape(report.input_shape) if report.input_shape is not None else None,
        "output": fmt_shape(report.output_shape) if report.output_shape is not None else None,
        "params": sum(n.params for n in report.body), "macs": sum(n.macs for n in report.body),
        "ok": report.ok,
        "body": body,
        "diagnostics": _diagnostics(report, collector.placed),
        "sources": dict(report.sources),
    }


def _read(name: str) -> str:
    try:
        return (WEB / name).read_text(encoding="utf-8")
    except OSError as exc:  # a broken install: say what is missing rather than write half a page
        raise UsageError(f"the view's file {name} is missing from the archspec package ({exc.strerror})",
                         "reinstall archspec-cnn: pip install --force-reinstall archspec-cnn") from None


def _script_json(data: dict[str, Any]) -> str:
    """JSON that is safe inside <script>: no `</script>`, `<!--` or U+2028/9 can end or break it."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def page(data: dict[str, Any] | None, title: str = "archspec view") -> str:
    """The whole HTML document. With `data` None the page waits for a `{type: "data"}` message (VS Code)."""
    styles = "\n".join(_read(name) for name in STYLES)
    scripts = "\n".join(f"<script>\n{_read(name)}\n</script>" for name in SCRIPTS)
    payload = "null" if data is None else _script_json(data)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        # Nothing may be fetched: the page carries all it needs (scripts and styles inline only).
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
        "script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:\">\n"
        f"<title>{html.escape(title)}</title>\n<style>\n{styles}\n</style>\n</head>\n<body>\n"
        f"<script id=\"archspec-data\" type=\"application/json\">{payload}</script>\n"
        f"{scripts}\n</body>\n</html>\n"
    )


@dataclass
class InteractiveView:
    """A view's HTML; in a notebook it shows in a frame of its own (its script and style stay inside)."""

    html: str

    def _repr_html_(self) -> str:
        return iframe(self.html)

    def __str__(self) -> str:
        return self.html


def iframe(document: str, height: int = NOTEBOOK_HEIGHT) -> str:
    return (f'<iframe srcdoc="{html.escape(document, quote=True)}" style="width:100%;height:{height}px;'
            'border:1px solid #ddd;border-radius:4px" sandbox="allow-scripts"></iframe>')


def view(source: "CheckReport | Model | str | Path", output: str | Path | None = None,
         classes: int | None = 10) -> InteractiveView:
    """The interactive view of a network (diagnostics marked on it when it does not check); writes `output`."""
    data = view_data(source, classes)
    result = InteractiveView(page(data, f"{Path(data['path']).name} - archspec view"))
    if output is not None:
        write_page(Path(output), result.html)
    return result


def write_page(target: Path, text: str) -> None:
    """Write through a temporary file and a rename: an old page is replaced whole or not at all."""
    temp = target.with_name(f".{target.name}.tmp")
    try:
        temp.write_text(text, encoding="utf-8")
        os.replace(temp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise UsageError(f"{target}: cannot write ({exc.strerror})", "check that the folder exists and is writable") from None
