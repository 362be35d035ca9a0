from __future__ import annotations

import io
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
CIFAR = REPO.parent / "shared" / "data" / "cifar10"


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run `archspec ARGS...` in this process (fast): exit code, stdout and stderr."""
    from archspec.cli import main

    def run(*args: str, stdin: str | None = None) -> SimpleNamespace:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin or ""))
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out, stderr=err)

    return run


def assert_golden(golden: Path, result: SimpleNamespace) -> None:
    """A `cli(...)` result's exit code and output equal the golden file (ARCHSPEC_REGEN=1 rewrites it)."""
    import os

    text = f"exit {result.returncode}\n{result.stdout}{result.stderr}"
    if os.environ.get("ARCHSPEC_REGEN"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text)
    assert text == golden.read_text()
