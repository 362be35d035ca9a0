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
