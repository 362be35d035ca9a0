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
