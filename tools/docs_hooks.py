"""MkDocs hook: the reference pages are generated from the registries and the parsers at build time.

A page asks for a generated part with an HTML comment on its own line:

    <!-- generate: ops -->        every op of archspec.language.ops.OPS, by family
    <!-- generate: codes -->      every code of archspec.language.codes.CODES, with a checked example
    <!-- generate: cli -->        every command and flag of archspec.cli.make_parser()
    <!-- include: PATH -->        a file of the repository (CONTRIBUTING.md, benchmarks/results/*.md)

so the reference cannot drift from the code: a new op, code or flag appears at the next build.
tests/test_docs.py builds the site with `mkdocs build --strict`.
"""
from __future__ import annotations

import argparse
import html
import io
import os
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # the checkout's archspec, also when mkdocs runs from another environment's PATH
    sys.path.insert(0, str(REPO))

_MARKER = re.compile(r"^<!-- (generate|include): (\S+) -->$", re.MULTILINE)
_EXPECT = re.compile(r"^# expect: (.+)$", re.MULTILINE)


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ARG001 - MkDocs' hook signature
    return _MARKER.sub(lambda m: _expand(m.group(1), m.group(2)), markdown)


def _expand(kind: str, name: str) -> str:
    if kind == "include":
        return include(name)
    return GENERATORS[name]()


def include(relative: str) -> str:
    """A repository file as part of a page; links to the README point at the docs' home page."""
    text = (REPO / relative).read_text(encoding="utf-8")
    return text.replace("](README.md)", "](index.md)")


def ops_reference() -> str:
    from archspec.language.ops import OPS

    families: dict[str, list[str]] = {}
    for name, spec in OPS.items():
        family = spec.__module__.rsplit(".", 1)[-1]
        families.setdefault(family, []).append(
            f"| `{name}` | {_code_cell(spec.usage)} | {_cell(spec.summary)} |")
    parts = [f"{len(OPS)} ops, as `archspec ops` lists them. Arguments in `[...]` are optional.\n"]
    for family, rows in families.items():
        parts.append(f"## {family.capitalize()}\n\n| op | usage | what it does |\n|---|---|---|\n" + "\n".join(rows) + "\n")
    return "\n".join(parts)


def codes_reference() -> str:
    from archspec.language.codes import CODES

    examples = _broken_examples()
    parts = [f"{len(CODES)} codes, as `archspec rule` explains them. `# noqa: CODE` on a line silences "
             "that code there; `--select` and `--ignore` filter by code or prefix.\n"]
    for code, info in CODES.items():
        parts.append(f"## {code} `{info.name}` ({info.severity})\n\n{info.summary}\n\n"
                     f"- In short: `{info.example}`\n- Fix: {info.fix}\n")
        if code in examples:
            path = examples[code]
            parts.append(f"`{path.relative_to(REPO).as_posix()}`:\n\n```arch\n{path.read_text()}```\n\n"
                         f"```text\n$ archspec check --quiet {path.relative_to(REPO).as_posix()}\n{_check_output(path)}```\n")
    return "\n".join(parts)


def _broken_examples() -> dict[str, Path]:
    """For each code, the example in examples/broken/ that shows it with the fewest other codes."""
    best: dict[str, tuple[int, Path]] = {}
    for path in sorted((REPO / "examples" / "broken").glob("*.arch")):
        found = _EXPECT.search(path.read_text())
        codes = found.group(1).split() if found else []
        for code in codes:
            if code not in best or len(set(codes)) < best[code][0]:
                best[code] = (len(set(codes)), path)
    return {code: path for code, (_, path) in best.items()}


def _check_output(path: Path) -> str:
    from archspec.cli import main

    out = io.StringIO()
    previous = os.getcwd()
    os.chdir(REPO)  # paths in the output as a user in the checkout sees them
    try:
        main(["check", "--quiet", path.relative_to(REPO).as_posix()], out=out)
    finally:
        os.chdir(previous)
    return out.getvalue()


def cli_reference() -> str:
    from archspec.cli import make_parser

    parser = make_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001
    helps = {choice.dest: choice.help for choice in commands._choices_actions}  # noqa: SLF001
    parts = ["Every command and flag, read from the command line's own parser "
             "(`archspec COMMAND --help` prints the same).\n"]
    for name, sub in commands.choices.items():
        parts.append(f"## `archspec {name}`\n\n{_cell(helps.get(name, ''))}\n\n```text\n{_usage(sub)}```\n")
        rows = [_flag_row(action) for action in sub._actions if not isinstance(action, argparse._HelpAction)]  # noqa: SLF001
        if rows:
            parts.append("| argument | what |\n|---|---|\n" + "\n".join(rows) + "\n")
    return "\n".join(parts)


def _usage(parser: argparse.ArgumentParser) -> str:
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"  # argparse wraps at the terminal's width: the page is the same everywhere
    try:
        return parser.format_usage().removeprefix("usage: ")
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous


def _flag_row(action: argparse.Action) -> str:
    if action.option_strings:
        metavar = "" if action.nargs == 0 else " " + (action.metavar or action.dest.upper())
        name = ", ".join(f"`{option}{metavar}`" for option in action.option_strings)
    else:
        name = f"`{action.metavar or action.dest}`"
    what = action.help or ""
    if action.choices and not isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
        what += f" (one of {', '.join(f'`{c}`' for c in action.choices)})"
    return f"| {name} | {_cell(what)} |"


def _code_cell(text: str) -> str:
    # A backslash-escaped `|` inside backticks stays a backslash in a table: an entity in an HTML <code> does not.
    return "<code>" + html.escape(text).replace("|", "&#124;") + "</code>"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


GENERATORS = {"ops": ops_reference, "codes": codes_reference, "cli": cli_reference}
