"""Rich display in notebooks for what the views return, without changing what they are.

`Text` is a `str` (explain's result), `DotGraph` a `str` (DOT), `RenderedGraph` `bytes` (SVG,
PNG, PDF): every str/bytes use keeps working, and Jupyter shows them as a monospace block, an
inline SVG (or the DOT with a one-line note when graphviz's `dot` is absent), or an image.
"""
from __future__ import annotations

from html import escape
from typing import Any


class Text(str):
    """Plain text that a notebook shows as a monospace block, not as an escaped string."""

    def _repr_html_(self) -> str:
        return f'<pre style="line-height:1.3">{escape(self)}</pre>'

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))


class DotGraph(str):
    """DOT text; in a notebook, the interactive view (`archspec view`'s page) and the rendered SVG."""

    report: Any = None  # the check report the DOT was made from: the interactive view is drawn from it

    def __new__(cls, text: str, report: Any = None) -> "DotGraph":
        obj = super().__new__(cls, text)
        obj.report = report
        return obj

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        from archspec.language.errors import ArchspecError
        from archspec.views.graph import render

        # Frontends that run HTML show the interactive view; the others fall back on the picture.
        bundle = {"text/html": self._view_html()} if self.report is not None else {}
        try:
            return {**bundle, "image/svg+xml": render(self, "svg").decode("utf-8")}
        except ArchspecError as exc:
            note = f"(graphviz's `dot` is not installed, so here is the DOT text: {exc.help})"
            return {**bundle, "text/plain": f"{note}\n{self}"}

    def _view_html(self) -> str:
        from archspec.views.interactive import view

        return view(self.report)._repr_html_()


class RenderedGraph(bytes):
    """Rendered graph bytes that a notebook shows as the image they are."""

    format: str = "svg"

    def __new__(cls, data: bytes, format: str) -> "RenderedGraph":
        obj = super().__new__(cls, data)
        obj.format = format
        return obj

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        if self.format == "svg":
            return {"image/svg+xml": self.decode("utf-8")}
        if self.format == "png":
            return {"image/png": bytes(self)}
        return {"text/plain": f"<{self.format.upper()} graph, {len(self):,} bytes>"}
