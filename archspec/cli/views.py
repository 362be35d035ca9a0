"""The view commands: `summary`, `graph`, `view`, `explain`, `fmt` and `diff` (none of them imports torch).

`archspec.cli.make_parser` calls `add_parsers`; each command is `f(args, out) -> exit code`.
"""
from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path
from typing import TextIO

from archspec.language.errors import UsageError


def _report(path: str, classes: int | None):
    """Read, parse and check one file argument (`-` is standard input)."""
    from archspec.cli import read_source
    from archspec.language.pipeline import CheckOptions, checked

    display, text = read_source(path)
    return checked(text, CheckOptions(classes=classes), name=display)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return value


def _size_limit(text: str) -> int:
    """`sizes --max`: a whole number from 1 to sizes.MAX_LIMIT."""
    from archspec.views.sizes import limit_error

    refused = limit_error(text)
    if refused is not None:
        raise refused
    return _positive(text)


def _color(out: TextIO) -> bool:
    return hasattr(out, "isatty") and out.isatty()


# --------------------------------------------------------------------------- summary

def cmd_summary(args: argparse.Namespace, out: TextIO) -> int:
    from archspec.views.summary import summarize

    summary = summarize(_report(args.file, args.classes), batch_size=args.batch_size, optimizer=args.optimizer,
                        input_size=args.input_size)
    if args.format == "json":
        out.write(json.dumps(summary.to_dict(), indent=2) + "\n")
    else:
        out.write(summary.render(color=_color(out)))
    return 0


# --------------------------------------------------------------------------- graph

def cmd_graph(args: argparse.Namespace, out: TextIO) -> int:
    from archspec.views.graph import chosen_format, render, to_dot

    fmt = chosen_format(args.output, args.format)
    dot = to_dot(_report(args.file, args.classes))
    data: str | bytes = dot if fmt == "dot" else render(dot, fmt)
    if args.output in (None, "-"):
        if isinstance(data, bytes):
            if _color(out) or not hasattr(out, "buffer"):
                raise UsageError(f"cannot write {fmt.upper()} to this output", f"pass a file name: -o model.{fmt}")
            out.flush()
            out.buffer.write(data)
        else:
            out.write(data)
        return 0
    target = Path(args.output)
    try:
        target.write_bytes(data) if isinstance(data, bytes) else target.write_text(data, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{target}: cannot write ({exc.strerror})", "check that the folder exists and is writable") from None
    print(f"wrote {target}", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------- view

def cmd_view(args: argparse.Namespace, out: TextIO) -> int:
    from archspec.views.interactive import view

    if args.output is None and args.file == "-":
        raise UsageError("standard input has no file name to put the view beside", "pass one: -o view.html (or -o - for standard output)")
    report = _report(args.file, args.classes)
    if args.output == "-":
        out.write(view(report).html)
        return 0 if report.ok else 1
    target = Path(args.output) if args.output is not None else Path(args.file).with_suffix(".html")
    view(report, output=target)
    errors = len(report.errors)
    marked = f" ({errors} error{'s' if errors != 1 else ''} marked on the graph)" if errors else ""
    print(f"wrote {target}{marked}", file=sys.stderr)
    if args.open:
        _open_in_browser(target)
    return 0 if report.ok else 1


def _open_in_browser(target: Path) -> None:
    import webbrowser

    try:
        opened = webbrowser.open(target.resolve().as_uri())
    except webbrowser.Error:
        opened = False
    if not opened:
        print(f"error: no web browser could be started\nhelp: open {target} in a browser", file=sys.stderr)


# --------------------------------------------------------------------------- explain

def cmd_explain(args: argparse.Namespace, out: TextIO) -> int:
    from archspec.views.explain import explain, parse_layer

    layer = parse_layer(args.layer) if args.layer is not None else None
    report = _report(args.file, args.classes)
    if not report.ok:
        return _explain_until_error(report, out)
    out.write(explain(report, layer=layer))
    return 0


def _explain_until_error(report, out: TextIO) -> int:
    """Each layer up to the one that fails, then its diagnostics; exit 1."""
    from archspec.language.diagnostics import render_text
    from archspec.views.explain import explain_failure

    text, failed = explain_failure(report)
    out.write(text + "\n")
    for d in failed:
        out.write(render_text(d, report.model.sources, color=_color(out)) + "\n")
    more = len(report.errors) - len(failed)
    if more > 0:
        out.write(f"{more} more error{'s' if more != 1 else ''}: run `archspec check {report.path}` to see every one\n")
    return 1


# --------------------------------------------------------------------------- fmt

def _format_one(path: str, args: argparse.Namespace, out: TextIO) -> str:
    """`changed`, `unchanged` or `error` for one file; writes it, or its diff, as asked."""
    from archspec.cli import read_source
    from archspec.language.diagnostics import render_text
    from archspec.views.fmt import FormatError, format_text

    display, text = read_source(path)
    try:
        formatted = format_text(text, display)
    except FormatError as exc:
        sys.stderr.write(render_text(exc.diagnostic, exc.sources, color=_color(sys.stderr)) + "\n")
        return "error"
    if path == "-" and not (args.check or args.diff):
        out.write(formatted)
        return "unchanged" if formatted == text else "changed"
    if formatted == text:
        return "unchanged"
    if args.diff:
        out.writelines(difflib.unified_diff(text.splitlines(keepends=True), formatted.splitlines(keepends=True),
                                            f"{display} (original)", f"{display} (formatted)"))
    if args.check or args.diff:
        print(f"would reformat {display}", file=sys.stderr)
    else:
        try:
            Path(path).write_text(formatted, encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"{path}: cannot write ({exc.strerror})") from None
        print(f"reformatted {display}", file=sys.stderr)
    return "changed"


def cmd_fmt(args: argparse.Namespace, out: TextIO) -> int:
    if args.files.count("-") > 1:
        raise UsageError("standard input (`-`) can be given only once")
    counts = {"changed": 0, "unchanged": 0, "error": 0}
    unreadable = False
    for path in args.files:
        try:
            counts[_format_one(path, args, out)] += 1
        except UsageError as exc:
            print(f"error: {exc.message}", file=sys.stderr)
            unreadable = True
    if args.files != ["-"]:
        verb = "would be reformatted" if args.check or args.diff else "reformatted"
        parts = [f"{counts['changed']} file{'s' if counts['changed'] != 1 else ''} {verb}", f"{counts['unchanged']} unchanged"]
        if counts["error"]:
            parts.append(f"{counts['error']} could not be formatted")
        print(", ".join(parts), file=sys.stderr)
    if unreadable:
        return 2
    if counts["error"] or ((args.check or args.diff) and counts["changed"]):
        return 1
    return 0


# --------------------------------------------------------------------------- diff

def cmd_diff(args: argparse.Namespace, out: TextIO) -> int:
    from archspec.language.expand import parse
    from archspec.language.pipeline import CheckOptions, checked
    from archspec.views.diff import diff
    from archspec.views.summary import summarize

    if args.git is not None:
        if len(args.files) != 1:
            raise UsageError("--git REV takes one file: the working copy to compare with its version at REV",
                             "e.g. `archspec diff --git HEAD~1 examples/lenet.arch`")
        path = args.files[0]
        old_label, old_text = f"{path}@{args.git}", _git_show(args.git, path)
        new_label, new_text = _read(path)
        # the old text is parsed under the file's own path so that its `use` lines resolve
        old_model, new_model = parse(old_text, path), parse(new_text, new_label)
    else:
        if len(args.files) != 2:
            raise UsageError(f"diff takes two files (OLD NEW), got {len(args.files)}",
                             "e.g. `archspec diff old.arch new.arch`, or `archspec diff --git HEAD file.arch`")
        (old_label, old_text), (new_label, new_text) = _read(args.files[0]), _read(args.files[1])
        old_model, new_model = parse(old_text, old_label), parse(new_text, new_label)
    # raise_for_errors first: a symbolic input is refused here (diff compares numbers at one size)
    summaries = [summarize(checked(m, CheckOptions(classes=args.classes)).raise_for_errors(), batch_size=args.batch_size, optimizer=args.optimizer)
                 for m in (old_model, new_model)]
    result = diff(*summaries, old_label=old_label, new_label=new_label)
    if args.format == "json":
        out.write(json.dumps(result.to_dict(), indent=2) + "\n")
    elif args.format == "markdown":
        out.write(result.markdown())
    else:
        out.write(result.render(color=_color(out)))
    return 1 if args.exit_code and not result.empty else 0


def _read(path: str) -> tuple[str, str]:
    from archspec.cli import read_source

    return read_source(path)


def _git_show(rev: str, path: str) -> str:
    """The file's text at a git revision (`git show REV:./path`, relative to the current folder)."""
    import subprocess

    try:
        done = subprocess.run(["git", "show", f"{rev}:./{path}"], capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise UsageError("--git needs the `git` program, which is not installed",
                         "install git, or write the old version to a file and run `archspec diff OLD NEW`") from None
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["git show failed"])[-1]
        raise UsageError(f"cannot read {path} at {rev}: {reason}",
                         "give a revision where the file exists (e.g. HEAD, HEAD~1, main), from inside the repository")
    return done.stdout


# --------------------------------------------------------------------------- sizes

def cmd_sizes(args: argparse.Namespace, out: TextIO) -> int:
    from archspec.cli import read_source
    from archspec.language.expand import parse
    from archspec.views.sizes import input_sizes

    display, text = read_source(args.file)
    model = parse(text, display)
    if any(d.severity == "error" for d in model.diagnostics):
        from archspec.language.pipeline import CheckOptions, checked

        checked(model, CheckOptions(classes=None)).raise_for_errors()  # a file that does not parse or bind: its diagnostics
    sizes = input_sizes(model, args.max)
    out.write(json.dumps(sizes.to_dict(), indent=2) + "\n" if args.format == "json" else sizes.render())
    return 0


# --------------------------------------------------------------------------- parsers

def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("summary", help="a per-layer table: shapes, params, MACs, receptive field, memory (no torch)")
    p.add_argument("file", metavar="FILE", help="a .arch file, or - for standard input")
    p.add_argument("--batch-size", type=_positive, default=1, metavar="N", help="batch size for the training-memory estimate (default 1)")
    p.add_argument("--optimizer", choices=["sgd", "adam", "none"], default="sgd",
                   help="optimizer state in the memory estimate: sgd (momentum, default), adam, none")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.add_argument("--classes", type=int, default=10, help="number of classes the output should have (default 10)")
    p.add_argument("--input-size", metavar="CxHxW",
                   help="for `input 3xHxW`: the accepted size the params, MACs, RF and memory are at "
                        "(default: the size `check` shows them at, e.g. 3x32x32)")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("graph", help="a graphviz diagram of the network: DOT text, or SVG/PNG/PDF with graphviz's `dot`")
    p.add_argument("file", metavar="FILE", help="a .arch file, or - for standard input")
    p.add_argument("-o", "--output", metavar="OUT", help="model.dot, model.svg, model.png or model.pdf (default: DOT to standard output)")
    p.add_argument("--format", choices=["dot", "svg", "png", "pdf"], help="the format to write (default: the one the output name implies; a name implying another format is refused)")
    p.add_argument("--classes", type=int, default=10, help="number of classes the output should have (default 10)")
    p.set_defaults(func=cmd_graph)

    p = sub.add_parser("view", help="an interactive view of the network in one HTML file: collapse, search, shapes, source (offline)")
    p.add_argument("file", metavar="FILE", help="a .arch file, or - for standard input (then give -o)")
    p.add_argument("-o", "--output", metavar="OUT", help="the HTML file to write (default: FILE with .html), or - for standard output")
    p.add_argument("--open", action="store_true", help="open the written file in the default web browser")
    p.add_argument("--classes", type=int, default=10, help="number of classes the output should have (default 10)")
    p.set_defaults(func=cmd_view)

    p = sub.add_parser("explain", help="each layer's shape arithmetic written out, for learning")
    p.add_argument("file", metavar="FILE", help="a .arch file, or - for standard input")
    p.add_argument("--layer", metavar="LINE|NAME",
                   help="only the layers written on source line LINE, or the module NAME (e.g. conv2, basic1.res1)")
    p.add_argument("--classes", type=int, default=10, help="number of classes the output should have (default 10)")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("fmt", help="rewrite .arch files in the canonical layout (comments kept, meaning unchanged)")
    p.add_argument("files", nargs="+", metavar="FILE", help=".arch files, or - to format standard input to standard output")
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file would be reformatted")
    p.add_argument("--diff", action="store_true", help="change nothing; print a unified diff of what would change (exit 1 if any)")
    p.set_defaults(func=cmd_fmt)

    p = sub.add_parser("diff", help="what changed between two networks: layers, shapes, params, MACs, memory, RF (no torch)")
    p.add_argument("files", nargs="+", metavar="FILE", help="OLD NEW, or one FILE with --git REV")
    p.add_argument("--git", metavar="REV", help="compare FILE at git revision REV (e.g. HEAD) with the working copy")
    p.add_argument("--format", choices=["text", "json", "markdown"], default="text",
                   help="text (coloured on a terminal), json, or markdown (for a pull-request comment)")
    p.add_argument("--batch-size", type=_positive, default=1, metavar="N", help="batch size for the training-memory total (default 1)")
    p.add_argument("--optimizer", choices=["sgd", "adam", "none"], default="sgd", help="optimizer state in the memory total")
    p.add_argument("--exit-code", action="store_true", help="exit 1 when anything changed (as `git diff --exit-code`)")
    p.add_argument("--classes", type=int, default=10, help="number of classes the output should have (default 10)")
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser("sizes", help="which input heights and widths the network accepts, and where no floor drops pixels")
    p.add_argument("file", metavar="FILE", help="a .arch file, or - for standard input (its channels are kept)")
    p.add_argument("--max", type=_size_limit, default=128, metavar="N",
                   help="list the accepted H and W in 1..N (default 128, at most 10,000)")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_sizes)

