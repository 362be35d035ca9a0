"""Exceptions that carry a message meant for a user (never a traceback)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from archspec.language.diagnostics import Diagnostic


class ArchspecError(Exception):
    """A mistake in the user's input: a file, an argument, data or a checkpoint.

    The CLI prints `error: {message}` and `help: {help}` and exits with `exit_code`.
    """

    exit_code = 1

    def __init__(self, message: str, help: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.help = help

    def _render_traceback_(self) -> list[str]:
        """What IPython shows instead of a traceback: the message and its help, as the CLI prints them."""
        return [f"error: {self.message}"] + ([f"help: {self.help}"] if self.help else [])


class UsageError(ArchspecError):
    """Bad command-line arguments or an unreadable file (exit status 2)."""

    exit_code = 2


class ArchError(ArchspecError):
    """A .arch source that does not check: carries every diagnostic (errors and warnings).

    Raised only by `CheckReport.raise_for_errors()`, the one rule for "does not check".
    `str()` renders the diagnostics with their source lines and carets, as `archspec check` does.
    """

    def __init__(self, diagnostics: Sequence["Diagnostic"], path: str = "<string>", sources: dict[str, str] | None = None) -> None:
        self.errors = [d for d in diagnostics if d.severity == "error"]
        first = self.errors[0].message if self.errors else "invalid architecture"
        super().__init__(f"{path}: {len(self.errors)} error(s); first: {first}", "run `archspec check` on the file to see every diagnostic")
        self.diagnostics = list(diagnostics)
        self.path = path
        self.sources = sources or {}

    @property
    def summary_line(self) -> str:
        return f"{self.path} does not check ({len(self.errors)} error(s))"

    def render(self, color: bool = False) -> str:
        """Every diagnostic with its snippet, then the one-line verdict."""
        from archspec.language.diagnostics import render_text

        return "\n".join(render_text(d, self.sources, color) for d in self.diagnostics) + f"\n{self.summary_line}"

    def __str__(self) -> str:
        return self.render()

    def _render_traceback_(self) -> list[str]:
        return self.render().splitlines()
