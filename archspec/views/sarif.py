"""SARIF 2.1.0 output for `archspec check --format sarif`, for code-scanning tools (GitHub, GitLab, IDEs).

One run for all files; the rules are the table of diagnostic codes; each diagnostic is a
result with its file, start and end line/column, its help and notes in the message, and the
block call sites that led to it as related locations.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable
from urllib.parse import quote

from archspec.language.diagnostics import CODES, Diagnostic, Span

if TYPE_CHECKING:
    from archspec.language.check import CheckReport

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_LEVEL = {"error": "error", "warning": "warning"}


def artifact_uri(path: str) -> str:
    """A relative URI for files under the working directory (what code scanning matches), else file:."""
    p = Path(path)
    if p.is_absolute():
        try:
            p = p.relative_to(Path.cwd())
        except ValueError:
            return p.as_uri()
    return quote(p.as_posix())


def _rules() -> list[dict[str, Any]]:
    return [
        {
            "id": info.code,
            "name": info.name,
            "shortDescription": {"text": info.summary},
            "fullDescription": {"text": f"{info.summary} Example: `{info.example}`."},
            "help": {"text": f"{info.fix} (example: `{info.example}`)", "markdown": f"{info.fix}\n\nExample: `{info.example}`"},
            "defaultConfiguration": {"level": _LEVEL[info.severity]},
            "properties": {"tags": [info.severity]},
        }
        for info in CODES.values()
    ]


def _location(span: Span, message: str | None = None) -> dict[str, Any]:
    loc: dict[str, Any] = {
        "physicalLocation": {
            "artifactLocation": {"uri": artifact_uri(span.path)},
            "region": {
                "startLine": span.line,
                "startColumn": span.column,
                "endLine": max(span.end_line, span.line),
                # SARIF's end column is exclusive, as lark's is; an empty span still covers one character.
                "endColumn": span.end_column if (span.end_line, span.end_column) > (span.line, span.column) else span.column + 1,
            },
        }
    }
    if message:
        loc["message"] = {"text": message}
    return loc


def _result(d: Diagnostic, index: dict[str, int]) -> dict[str, Any]:
    text = d.message
    if d.notes:
        text += "\n" + "\n".join(f"note: {n}" for n in d.notes)
    if d.help:
        text += f"\nhelp: {d.help}"
    result: dict[str, Any] = {
        "ruleId": d.code,
        "ruleIndex": index[d.code],
        "level": _LEVEL[d.severity],
        "message": {"text": text},
    }
    if d.span is not None:
        result["locations"] = [_location(d.span)]
    if d.trace:
        result["relatedLocations"] = [
            {"id": i, **_location(site, f"in block `{name}`, called here")} for i, (name, site) in enumerate(d.trace)
        ]
    return result


def to_sarif(reports: Iterable["CheckReport"]) -> dict[str, Any]:
    """A SARIF 2.1.0 log (as a dict, ready for json.dumps) of every report's diagnostics."""
    from archspec._version import VERSION as __version__

    reports = list(reports)
    rules = _rules()
    index = {r["id"]: i for i, r in enumerate(rules)}
    results = [_result(d, index) for r in reports for d in r.diagnostics]
    return {
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {"driver": {"name": "archspec", "version": __version__, "semanticVersion": __version__,
                                    "rules": rules}},
                "columnKind": "unicodeCodePoints",  # lark counts characters, not UTF-16 units
                "artifacts": [{"location": {"uri": artifact_uri(r.path)}} for r in reports],
                "results": results,
            }
        ],
    }
