"""The `archspec` command: parse arguments, call the library, render, return an exit code.

Exit codes: 0 no errors; 1 errors (warnings too with --strict), or a failed command;
2 bad usage or an unreadable file.
"""
from __future__ import annotations

import argparse
import keyword
import os
import sys
import tempfile
from pathlib import Path
from typing import Iterator, Sequence, TextIO

from archspec.language.errors import ArchError, ArchspecError, UsageError
from archspec.language.files import new_file_mode


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2 with usage, as a linter should
        self.print_usage(sys.stderr)
        raise UsageError(message, f"see `{self.prog} --help`")


def _codes(values: list[str] | None) -> list[str]:
    return [c.strip().upper() for v in values or [] for c in v.split(",") if c.strip()]


def _console(stream: TextIO):
    from rich.console import Console

    return Console(file=stream, highlight=False, soft_wrap=True)


def _may_be_terminal(stream: TextIO) -> bool:
    """A tty, or an environment that asks rich for colour anyway (FORCE_COLOR, TTY_COMPATIBLE)."""
    isatty = getattr(stream, "isatty", None)
    return bool((isatty and isatty()) or os.environ.get("FORCE_COLOR") or os.environ.get("TTY_COMPATIBLE"))


def read_source(path: str) -> tuple[str, str]:
    """(display path, text) for a file argument; `-` reads standard input."""
    from archspec.language.files import MAX_FILE_BYTES, Unreadable, read_arch_file

    if path == "-":
        return "<stdin>", read_stdin(MAX_FILE_BYTES)
    p = Path(path)
    if not p.exists() and not p.is_symlink() and _is_import_spec(path):
        return path, imported_text(path)
    if not p.exists() and not p.is_symlink():
        raise UsageError(f"{path}: no such file", _missing_file_help(p))
    if p.is_dir():
        raise UsageError(f"{path}: is a directory", "pass .arch files, e.g. `archspec check examples/*.arch`")
    try:
        return path, read_arch_file(p)
    except Unreadable as exc:
        raise UsageError(f"{path}: {exc.reason}", exc.help) from None


def _is_import_spec(path: str) -> bool:
    import re

    return re.match(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", path) is not None


def imported_text(spec: str) -> str:
    """`MODULE:CALLABLE` as a file argument: the network it builds, imported (`archspec import`) at 3x224x224."""
    from archspec.pytorch.extra import require_torch

    require_torch()
    from archspec.importers.api import import_module, load_spec

    return import_module(load_spec(spec), (3, 224, 224), title=f"{spec}, imported by `archspec import`").text


def read_stdin(limit: int) -> str:
    """Standard input as UTF-8 text, at most `limit` bytes (bytes, so invalid UTF-8 is an error, not a crash)."""
    from archspec.language.files import Unreadable, decode_arch_bytes

    stream = getattr(sys.stdin, "buffer", None)
    data = stream.read(limit + 1) if stream is not None else sys.stdin.read(limit + 1).encode("utf-8", "surrogateescape")
    try:
        return decode_arch_bytes(data)
    except Unreadable as exc:
        raise UsageError(f"standard input: {exc.reason}", exc.help) from None


def _missing_file_help(path: Path) -> str:
    """`check the path`, with the closest .arch file of that folder when one is close."""
    import difflib

    folder = path.parent
    if not folder.is_dir():
        return f"check the path: there is no folder {folder}"
    names = sorted(f.name for f in folder.glob("*.arch"))
    close = difflib.get_close_matches(path.name, names, n=1, cutoff=0.6)
    if close:
        return f"check the path: did you mean {folder / close[0]}?"
    return f"check the path; {folder} has {len(names)} .arch file{'s' if len(names) != 1 else ''}"


def arch_files(paths: list[str]) -> list[str]:
    """The file arguments with each folder replaced by the .arch files under it (recursively, sorted)."""
    files: list[str] = []
    for path in paths:
        folder = Path(path)
        if path == "-" or not folder.is_dir():
            files.append(path)
            continue
        found = sorted(str(f) for f in folder.rglob("*.arch") if f.is_file())
        if not found:
            raise UsageError(f"{path}: a folder with no .arch files in it",
                             "pass .arch files, or a folder that has some, e.g. `archspec check examples`")
        files.extend(found)
    return files


def _check_title(display: str, report) -> str:
    """`file: [B, 3, 32, 32] -> [B, 10], 62,006 params`; for `input 3xHxW` the shapes in H and W, the
    params (and the table's) at the size named."""
    from archspec.language.ops import fmt_shape

    d = report.symbolic
    if d is None:
        return f"{display}: {fmt_shape(report.input_shape)} -> {fmt_shape(report.output_shape)}, {report.params:,} params"
    last = report.body[-1] if report.body else None  # the last node: a join's shape is not its last layer's
    out = (last.symbolic_shape or report.output_shape) if last is not None else report.output_shape
    return (f"{display}: {fmt_shape(d.dims)} -> {fmt_shape(out)}, {report.params:,} params "
            f"at {d.at[0]}x{d.at[1]}")


def cmd_check(args: argparse.Namespace, out: TextIO) -> int:
    from dataclasses import replace

    from archspec.language.diagnostics import render_text
    from archspec.language.pipeline import CheckOptions, checked

    # rich only for a terminal: to a pipe or a file, check writes plain text (and never imports rich).
    console = _console(out) if _may_be_terminal(out) else None
    color = console is not None and console.is_terminal and not console.no_color
    options = CheckOptions(classes=args.classes, limits=tuple(_budget_flags(args)), batch_size=args.batch_size,
                           select=tuple(_codes(args.select)), ignore=tuple(_codes(args.ignore)))
    reports, status = [], 0
    n_err = n_warn = 0
    sizes = _input_sizes(args)
    for source, dims in _each_source_at_each_size(arch_files(args.files), sizes):
        if isinstance(source, UsageError):
            print(f"error: {source.message}", file=sys.stderr)
            if source.help:
                print(f"help: {source.help}", file=sys.stderr)
            status = 2
            continue
        display, text = source
        report = checked(text, replace(options, input_size=dims), name=display)
        for d in report.diagnostics if dims is not None else []:
            d.notes.insert(0, f"at input size {'x'.join(map(str, dims))} (--input-sizes)")
        reports.append(report)
        n_err += len(report.errors)
        n_warn += len(report.warnings)
        if args.format == "text":
            for d in report.diagnostics:
                out.write(render_text(d, report.model.sources, color=color) + "\n")
            if report.ok and not args.quiet:
                from archspec.views.shape_table import shape_table
                from archspec.views.table import print_table

                table = shape_table(report, title=_check_title(display, report), full=args.full)
                print_table(table, out, console, color)
                if len(table.rows) < len(report.rows):
                    out.write(f"({len(report.rows):,} layers in {len(table.rows):,} rows: a block call is one row; --full for every layer)\n")
                if report.symbolic is not None:
                    out.write("\n".join(report.symbolic.lines()) + "\n")
                out.write("\n")
    if args.format in ("json", "sarif"):
        out.write(_json_document(reports, args.format) + "\n")
    else:
        ok = sum(r.ok for r in reports)
        summary = f"{len(reports)} file{'s' if len(reports) != 1 else ''} checked: {ok} ok, {n_err} error{'s' if n_err != 1 else ''}, {n_warn} warning{'s' if n_warn != 1 else ''}"
        if console is not None:
            console.print(summary, style="bold red" if n_err else ("bold yellow" if n_warn else "bold green"))
        else:
            out.write(summary + "\n")
    if status:
        return status
    if n_err or (args.strict and n_warn):
        return 1
    return 0


def _json_document(reports: list, kind: str) -> str:
    """The reports as `--format json` or SARIF (json is imported here: text output never needs it)."""
    import json

    if kind == "sarif":
        from archspec.views.sarif import to_sarif

        return json.dumps(to_sarif(reports), indent=2)
    return json.dumps({"files": [r.to_dict() for r in reports]}, indent=2)


def _each_source_at_each_size(paths: list[str], sizes: list) -> Iterator[tuple[tuple[str, str] | UsageError, tuple | None]]:
    """((display, text), dims) for each file at each size, each file read once (standard input can
    be read only once); an unreadable file once, as its UsageError."""
    if paths.count("-") > 1:
        raise UsageError("standard input (`-`) can be given only once", "pass `-` once, or save the text to a file")
    for path in paths:
        try:
            source = read_source(path)
        except UsageError as exc:
            yield exc, None
            continue
        for dims in sizes:
            yield source, dims


_BUDGET_FLAGS = (("max_params", "params", "max"), ("max_macs", "macs", "max"), ("max_activations", "activations", "max"),
                 ("min_rf", "rf", "min"), ("max_rf", "rf", "max"), ("max_stride", "stride", "max"))


def _budget_flags(args: argparse.Namespace) -> list:
    """The limits given as `--max-params 1.5M` etc. (a wrong one is a usage error)."""
    limits = []
    for attr, metric, bound in _BUDGET_FLAGS:
        text = getattr(args, attr)
        if text is None:
            continue
        from archspec.language.limits import BudgetError, make_limit

        flag = "--" + attr.replace("_", "-")
        try:
            limits.append(make_limit(metric, bound, text, f"{flag} {text}"))  # type: ignore[arg-type]
        except BudgetError as exc:
            raise UsageError(f"{flag}: {exc}", exc.help) from None
    return limits


def _batch_size(text: str) -> int:
    from archspec.language.limits import MAX_INT

    if text.isascii() and text.isdigit() and (len(text) > 19 or int(text) > MAX_INT):  # the language's cap on numbers
        raise argparse.ArgumentTypeError(f"{text[:40]}{'...' if len(text) > 40 else ''} is out of range: numbers must be at most 2^63-1")
    value = int(text) if text.isascii() and text.isdigit() else 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return value


def _input_sizes(args: argparse.Namespace) -> list:
    """`--input-sizes 3x32x32,3x64x64` as shapes; [None] (the file's own input) without it."""
    if not args.input_sizes:
        return [None]
    from archspec.views.sizes import parse_sizes

    return parse_sizes(args.input_sizes)


def cmd_rule(args: argparse.Namespace, out: TextIO) -> int:
    from archspec.language.diagnostics import CODES

    codes = _codes(args.codes) or list(CODES)
    for code in codes:
        info = CODES.get(code)
        if info is None:
            raise UsageError(f"no diagnostic code {code}", f"known codes: {', '.join(CODES)}")
        out.write(f"{info.code} ({info.name}, {info.severity})\n  {info.summary}\n  example: {info.example}\n  fix: {info.fix}\n\n")
    return 0


def cmd_ops(args: argparse.Namespace, out: TextIO) -> int:
    from archspec.language.ops import OPS

    for name, cls in OPS.items():
        out.write(f"{name:<16} {cls.usage:<44} {cls.summary}\n")
    return 0


def cmd_compile(args: argparse.Namespace, out: TextIO) -> int:
    """Generate, make sure the result is valid Python, then print it or write it atomically."""
    from archspec.language.expand import parse
    from archspec.pytorch import codegen

    if not args.class_name.isidentifier() or keyword.iskeyword(args.class_name):
        raise UsageError(f"--class-name {args.class_name!r} is not a Python class name", "e.g. --class-name ResNet18")
    display, text = read_source(args.file)
    source = codegen.generate(parse(text, display), class_name=args.class_name)
    codegen.ensure_valid_python(source, display)
    if args.output in (None, "-"):
        out.write(source)
    else:
        write_atomically(Path(args.output), source)
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


def write_atomically(target: Path, text: str) -> None:
    """Write via a temporary file in the same folder renamed over `target`: never a partial file.
    A target that exists and is not a regular file (/dev/null, /dev/full, a pipe) is written
    directly: renaming over it would replace the device with a file."""
    if target.exists() and not target.is_file() and not target.is_dir():
        try:
            with open(target, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as exc:
            raise ArchspecError(f"{target}: cannot write ({exc.strerror})") from None
        return
    if target.is_dir():
        raise ArchspecError(f"{target}: is a directory", "give a file name, e.g. -o net.py")
    try:
        mode = target.stat().st_mode & 0o777 if target.exists() else new_file_mode()
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise ArchspecError(f"{target}: cannot write ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise ArchspecError(f"{target}: cannot write ({exc.strerror})") from None
        raise


def cmd_build(args: argparse.Namespace, out: TextIO) -> int:
    """Build with torch, run one forward pass, and show the module: proof that it really runs."""
    from archspec.pytorch.extra import require_torch

    require_torch()
    import torch

    from archspec.pytorch.build import build
    from archspec.language.ops import fmt_shape
    from archspec.language.expand import parse

    display, text = read_source(args.file)
    net = build(parse(text, display))
    with torch.no_grad():
        y = net.eval()(torch.zeros(2, *net.input_shape))
    console = _console(out)
    console.print(str(net), markup=False)
    params = sum(p.numel() for p in net.parameters())
    same = tuple(y.shape[1:]) == net.output_shape
    console.print(f"{params:,} parameters; forward {fmt_shape(net.input_shape)} -> {fmt_shape(tuple(y.shape[1:]))}"
                  + (" (as the checker said)" if same else f" but the checker said {fmt_shape(net.output_shape)}"))
    return 0 if same else 1


def cmd_lsp(args: argparse.Namespace, out: TextIO) -> int:
    """Serve the Language Server Protocol over stdio until the editor closes it (needs the lsp extra)."""
    try:
        from archspec.lsp.server import serve
    except ImportError as exc:
        if exc.name not in ("pygls", "lsprotocol") and not (exc.name or "").startswith(("pygls.", "lsprotocol.")):
            raise
        raise ArchspecError("the language server needs pygls and lsprotocol, which are not installed",
                            "install the extra: pip install 'archspec-cnn[lsp]'") from None
    serve()
    return 0


# The commands defined in this file; the others come from the modules in _EXTENSIONS.
_CORE_COMMANDS = frozenset({"check", "rule", "ops", "compile", "build", "lsp"})
_EXTENSIONS = ("archspec.cli.views", "archspec.cli.train", "archspec.cli.deploy", "archspec.cli.sweep", "archspec.cli.importer")


def make_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; given one of this file's own commands, only what that command needs
    (`archspec check` then never imports the training CLI: start-up time)."""
    from archspec._version import VERSION as __version__

    parser = _Parser(prog="archspec", description="A small language for CNN architectures: check, explain, compile and train.")
    parser.add_argument("--version", action="version", version=f"archspec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("check", help="check .arch files: every shape and every mistake, without torch")
    p.add_argument("files", nargs="+", metavar="FILE", help=".arch files, folders (every .arch file under them), or - for standard input")
    p.add_argument("--classes", type=int, default=10, help="number of classes the output should have (default 10)")
    p.add_argument("--strict", action="store_true", help="warnings fail too (exit 1)")
    p.add_argument("--format", choices=["text", "json", "sarif"], default="text")
    p.add_argument("--select", action="append", metavar="CODES", help="only these codes or prefixes, e.g. E1,W201")
    p.add_argument("--ignore", action="append", metavar="CODES", help="drop these codes or prefixes")
    p.add_argument("-q", "--quiet", action="store_true", help="no shape table, only diagnostics and the summary line")
    p.add_argument("--input-sizes", metavar="CxHxW,...", help="check at each of these input shapes instead of the file's, e.g. 3x32x32,3x64x64")
    budget = p.add_argument_group("budgets (each broken limit is an error, E301-E305; also `budget ...` in the file)")
    budget.add_argument("--max-params", metavar="N", help="most parameters, e.g. 1.5M (k, M, G: thousands, millions, billions)")
    budget.add_argument("--max-macs", metavar="N", help="most multiply-accumulates per sample, e.g. 600M")
    budget.add_argument("--max-activations", metavar="BYTES", help="most activation memory at --batch-size, e.g. 20MB")
    budget.add_argument("--batch-size", type=_batch_size, default=1, metavar="N", help="batch size for --max-activations (default 1)")
    budget.add_argument("--min-rf", metavar="N", help="least receptive field of the output, in input pixels")
    budget.add_argument("--max-rf", metavar="N", help="most receptive field of any layer, in input pixels")
    budget.add_argument("--max-stride", metavar="N", help="most output stride (jump) of any layer, e.g. 32")
    p.add_argument("--full", action="store_true", help="every layer in the shape table (default: one row per block call)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("rule", help="explain diagnostic codes (all of them when none given)")
    p.add_argument("codes", nargs="*", metavar="CODE")
    p.set_defaults(func=cmd_rule)

    p = sub.add_parser("ops", help="list the ops of the language")
    p.set_defaults(func=cmd_ops)

    p = sub.add_parser("compile", help="write equivalent, readable PyTorch source (no torch needed to generate it)")
    p.add_argument("file", metavar="FILE")
    p.add_argument("-o", "--output", metavar="NET.PY", help="output file (default: standard output)")
    p.add_argument("--class-name", default="Net", help="name of the generated nn.Module class (default Net)")
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("build", help="build the nn.Module with torch, run a forward pass and print it (needs archspec-cnn[torch])")
    p.add_argument("file", metavar="FILE")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("lsp", help="run the language server over stdio, for editors (needs archspec-cnn[lsp])")
    p.add_argument("--stdio", action="store_true", help="accepted for editors that pass it; stdio is the only transport")
    p.set_defaults(func=cmd_lsp)

    for name in _EXTENSIONS if command not in _CORE_COMMANDS else ():
        try:
            module = __import__(name, fromlist=["add_parsers"])
        except ImportError as exc:
            if exc.name != name:
                raise
            continue
        module.add_parsers(sub)
    return parser


def _tolerant_streams() -> None:
    """A terminal whose encoding cannot show a character (a Latin-1 locale and a `²`) gets `?`, not a traceback."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="replace")
            except (ValueError, OSError):  # pragma: no cover - a stream already written in some modes
                pass


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    _tolerant_streams()
    out = out or sys.stdout
    _fewer_collections()
    if argv is None:  # this process is the `archspec` command
        _no_pydantic_plugins()
    try:
        parser = make_parser(_command_word(sys.argv[1:] if argv is None else argv))
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help(out)
            return 2
        return args.func(args, out)
    except ArchError as exc:
        from archspec.language.diagnostics import render_text

        for d in exc.diagnostics:
            sys.stderr.write(render_text(d, exc.sources) + "\n")
        print(f"error: {exc.summary_line}", file=sys.stderr)
        return exc.exit_code
    except ArchspecError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.help:
            print(f"help: {exc.help}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


def _command_word(argv: Sequence[str]) -> str | None:
    """The subcommand named on the command line (None when an option such as --help comes first)."""
    return argv[0] if argv and not argv[0].startswith("-") else None


def _fewer_collections() -> None:
    """Run the cyclic garbage collector less often: a parse allocates many small objects that
    reference counting frees anyway, and with the default thresholds collecting took ~40% of
    parsing a 10,000-layer file. (The library leaves the interpreter's settings alone.)

    At exit, gc.freeze(): the interpreter's shutdown otherwise runs full collections over every
    object the imports made (pydantic's and lark's tables), ~30 ms of a 0.2 s `check` that frees
    nothing the operating system is not about to take back. Objects are still freed by reference
    counting during shutdown; only the cycle search is skipped."""
    import atexit
    import gc

    if gc.get_threshold()[0] < 50_000:
        gc.set_threshold(50_000, 20, 20)
        atexit.register(gc.freeze)


def _no_pydantic_plugins() -> None:
    """The command validates only archspec's own op models: skip pydantic's plugin discovery (it
    reads the entry points of every installed distribution, ~10 ms of start-up), unless the user
    chose otherwise by setting PYDANTIC_DISABLE_PLUGINS themselves."""
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")


if __name__ == "__main__":
    sys.exit(main())
