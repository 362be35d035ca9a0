"""The CLI on inputs that used to go wrong: standard input with several --input-sizes, CR-only line
endings, huge numbers on the command line (--layer, --max, budget flags). Each runs the real console
script in a subprocess; messages are compared with golden text in tests/golden/cli/.

Regenerate after an intended change with: ARCHSPEC_REGEN=1 python -m pytest tests/test_cli_inputs.py
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import EXAMPLES, REPO

GOLDEN = REPO / "tests" / "golden" / "cli"
LENET = (EXAMPLES / "lenet.arch").read_text()


def run(*args: str, stdin: str | bytes | None = None) -> subprocess.CompletedProcess:
    data = stdin.encode() if isinstance(stdin, str) else stdin
    cp = subprocess.run([sys.executable, "-m", "archspec.cli", *args], input=data, capture_output=True, cwd=REPO,
                        env={**os.environ, "NO_COLOR": "1", "TERM": "dumb"}, timeout=60)
    assert b"Traceback" not in cp.stderr, cp.stderr.decode()
    return cp


def text_of(cp: subprocess.CompletedProcess) -> str:
    return f"exit {cp.returncode}\n{cp.stdout.decode()}{cp.stderr.decode()}"


def assert_golden(name: str, text: str) -> None:
    golden = GOLDEN / f"{name}.txt"
    if os.environ.get("ARCHSPEC_REGEN"):
        golden.write_text(text)
    assert golden.exists(), f"no golden file; run with ARCHSPEC_REGEN=1 to create {golden}"
    assert text == golden.read_text()


# --------------------------------------------------------------------------- standard input, read once

def test_stdin_is_checked_at_every_input_size():
    """Standard input was read again for each size after the first, and found empty (E006)."""
    from_stdin = run("check", "--input-sizes", "3x32x32,3x8x8,3x36x36", "-q", "--format", "json", "-", stdin=LENET)
    from_file = run("check", "--input-sizes", "3x32x32,3x8x8,3x36x36", "-q", "--format", "json", "examples/lenet.arch")
    assert from_stdin.stdout.decode().replace("<stdin>", "examples/lenet.arch") == from_file.stdout.decode()
    assert from_stdin.returncode == from_file.returncode == 1
    assert_golden("stdin_input_sizes", text_of(run("check", "--input-sizes", "3x32x32,3x8x8", "-q", "-", stdin=LENET)))


def test_stdin_given_twice_is_a_usage_error():
    cp = run("check", "-", "-", stdin=LENET)
    assert cp.returncode == 2 and cp.stdout == b""
    assert_golden("stdin_twice", text_of(cp))


# --------------------------------------------------------------------------- CR-only line endings

BROKEN = sorted((EXAMPLES / "broken").glob("*.arch"))


def _cr_copy(tmp_path, path):
    """The file with every line ending a lone CR, under the same name (diagnostics name the file)."""
    copy = tmp_path / path.name
    copy.write_bytes(path.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r"))
    return copy


@pytest.mark.parametrize("path", [EXAMPLES / "lenet.arch", EXAMPLES / "fastcifar.arch", *BROKEN],
                         ids=lambda p: p.stem)
def test_cr_line_endings_check_like_newlines(tmp_path, path, cli):
    """A file saved with CR-only line endings (as Python's universal newlines read it) gets the same
    diagnostics, line numbers, carets and `# noqa` as the same file with `\\n` (in-process: fast)."""
    lf, cr = tmp_path / "lf", tmp_path / "cr"
    lf.mkdir(), cr.mkdir()
    (lf / path.name).write_bytes(path.read_bytes())
    _cr_copy(cr, path)
    with open(cr / path.name, encoding="utf-8", newline=None) as f:  # the oracle: Python's reading of the file
        assert f.read() == path.read_text()
    lf_out, cr_out = (cli("check", "-q", str(d / path.name)) for d in (lf, cr))
    assert (cr_out.returncode, cr_out.stdout.replace(str(cr), str(lf))) == (lf_out.returncode, lf_out.stdout)


def test_cr_lenet_golden(tmp_path):
    lenet = _cr_copy(tmp_path, EXAMPLES / "lenet.arch")
    broken = tmp_path / "broken.arch"
    broken.write_bytes(b"input 3x32x32\rconv 6 k5 | relu\rflatten\rmaxpool 2  # noqa: E103\rcnov 3\r")
    out = text_of(run("check", str(lenet))) + text_of(run("check", "-q", str(broken)))
    assert_golden("cr_line_endings", out.replace(str(tmp_path), "TMP"))


def test_fmt_writes_cr_only_files_with_newlines(tmp_path):
    """fmt normalises line endings to `\\n` (as it does CRLF): the result is the LF file's format."""
    cr = _cr_copy(tmp_path, EXAMPLES / "resnet18.arch")
    assert run("fmt", str(cr)).returncode == 0
    assert cr.read_text() == (EXAMPLES / "resnet18.arch").read_text()
    messy = b"input 3x8x8\rconv  4 k 3|relu   # r\r\r\rresidual {\rbn\r}\r"
    cp = run("fmt", "-", stdin=messy)
    assert cp.stdout == run("fmt", "-", stdin=messy.replace(b"\r", b"\n")).stdout
    assert cp.stdout.decode() == "input 3x8x8\nconv 4 k3 | relu   # r\n\nresidual {\n  bn\n}\n"


def test_cr_line_endings_through_the_api():
    import archspec

    text = "input 3x32x32\rconv 6 k5\rcnov 8 k3\r"
    report = archspec.check(text)
    assert [(d.code, d.span.line, d.span.column) for d in report.errors] == [("E002", 3, 1)]
    assert archspec.fmt(text) == "input 3x32x32\nconv 6 k5\ncnov 8 k3\n"


# --------------------------------------------------------------------------- explain --layer

def test_explain_layer_with_thousands_of_digits_is_a_usage_error():
    cp = run("explain", "examples/lenet.arch", "--layer", "9" * 5000)
    assert cp.returncode == 2 and cp.stdout == b""
    assert_golden("explain_huge_layer", text_of(cp))


def test_explain_layer_help_lists_block_call_lines_that_work(cli):
    cp = run("explain", "examples/resnet18.arch", "--layer", "99")
    assert cp.returncode == 2
    assert_golden("explain_layer_help", text_of(cp))
    listed = cp.stderr.decode().split("block call (")[1].split(")")[0].split(", ")
    assert {"13", "14", "15", "16"} <= set(listed)  # `stage(64, 1)` etc.: block calls
    for line in listed:  # every line offered works (in-process: fast)
        assert cli("explain", str(EXAMPLES / "resnet18.arch"), "--layer", line).returncode == 0, line


# --------------------------------------------------------------------------- budget numbers past 2^63-1

def test_budget_limits_are_capped_like_the_languages_numbers():
    """--max-params 99999999999999999999999999 was accepted (and 5,000 digits a traceback): the CLI
    and `budget` take numbers up to 2^63-1, as the language does (E004), exactly (no float rounding)."""
    at_cap = run("check", "-q", "examples/lenet.arch", "--max-params", "9223372036854775807", "--max-macs", "9223372036854775.807k")
    assert at_cap.returncode == 0
    cases = [("--max-params", "99999999999999999999999999"), ("--max-params", "9223372036854775808"),
             ("--max-macs", "9" * 5000), ("--max-params", "0.0000000001G"),
             ("--max-activations", "20MB@99999999999999999999999"), ("--batch-size", "9" * 5000)]
    out = ""
    for flag, value in cases:
        cp = run("check", "-q", "examples/lenet.arch", flag, value, *(["--max-activations", "1MB"] if flag == "--batch-size" else []))
        assert cp.returncode == 2 and cp.stdout == b""
        message = [line for line in cp.stderr.decode().splitlines() if line.startswith(("error:", "help:"))]  # not argparse's usage
        out += f"$ check {flag} {value[:50]}\nexit {cp.returncode}\n" + "\n".join(message) + "\n"
    in_file = run("check", "-q", "-", stdin="budget params <= 99999999999999999999999999\ninput 3x32x32\nflatten | linear 10\n")
    assert in_file.returncode == 1
    assert_golden("budget_out_of_range", out + "$ check - (budget in the file)\n" + text_of(in_file))


# --------------------------------------------------------------------------- PyTorch keyword names

def test_torch_keywords_get_the_form_here_and_it_checks():
    """`linear in_features=1024 out_features=10` suggested `out_features=`; now it says why (the checker
    infers in_features) and gives `linear 10`, which, written in, checks as torch builds it."""
    import re

    import archspec

    text = (EXAMPLES / "broken" / "torch_keywords.arch").read_text()
    report = archspec.check(text)
    assert [d.code for d in report.errors] == ["E003", "E003"]
    lines = text.splitlines()
    for d in report.errors:
        lines[d.span.line - 1] = lines[d.span.line - 1].replace(report.sources["<string>"][d.span.start:d.span.end],
                                                                re.search(r"write `([^`]*)`", d.help).group(1))
    fixed = archspec.check("\n".join(lines))
    assert fixed.ok, fixed.diagnostics
    torch = pytest.importorskip("torch")
    reference = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                                    torch.nn.Linear(1176, 10))  # what the PyTorch keywords said
    assert fixed.params == sum(p.numel() for p in reference.parameters())
    assert tuple(reference(torch.zeros(1, 3, 32, 32)).shape[1:]) == fixed.output_shape


# --------------------------------------------------------------------------- sizes --max

SYMBOLIC = "input 3xHxW\nconv 8 k3 | maxpool 2\nconv 16 k3 | gap | flatten | linear 10\n"


def test_sizes_max_is_bounded():
    """`sizes --max 1000000000` grew memory until a MemoryError: past 10,000 it is refused at once,
    and the largest --max lists every size in bounded time and memory."""
    import json
    import time

    out = ""
    for value in ("1000000000", "9" * 5000, "10001"):
        start = time.perf_counter()
        cp = run("sizes", "-", "--max", value, stdin=SYMBOLIC)
        assert cp.returncode == 2 and cp.stdout == b"" and time.perf_counter() - start < 30
        out += f"$ sizes --max {value[:20]}\n" + text_of(cp)
    assert_golden("sizes_max", out)
    largest = run("sizes", "-", "--max", "10000", "--format", "json", stdin=SYMBOLIC)
    axes = json.loads(largest.stdout)["axes"]
    assert largest.returncode == 0 and axes[0]["valid"] == list(range(8, 10_001)) and axes[0]["valid_rule"] == "H >= 8"
