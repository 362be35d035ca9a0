"""Golden tests: the exact text `archspec check` prints for each file in examples/broken/.

Regenerate after an intended change with: ARCHSPEC_REGEN=1 python -m pytest tests/test_diagnostics_golden.py
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from archspec.language.diagnostics import CODES
from conftest import EXAMPLES, REPO

GOLDEN = REPO / "tests" / "golden" / "diagnostics"
BROKEN = sorted((EXAMPLES / "broken").glob("*.arch"))
FMT_REFUSED = sorted((REPO / "tests" / "golden" / "fmt").glob("*.arch"))  # files `archspec fmt` leaves alone


def render(path, *command: str) -> str:
    cp = subprocess.run(
        [sys.executable, "-m", "archspec.cli", *(command or ("check", "--quiet")), str(path.relative_to(REPO))],
        capture_output=True, text=True, cwd=REPO, env={**os.environ, "NO_COLOR": "1", "TERM": "dumb"},
    )
    assert "Traceback" not in cp.stderr
    return f"exit {cp.returncode}\n{cp.stdout}{cp.stderr}"


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: p.stem)
def test_rendered_diagnostics_match_golden(path):
    golden = GOLDEN / f"{path.stem}.txt"
    text = render(path)
    if os.environ.get("ARCHSPEC_REGEN"):
        golden.write_text(text)
    assert golden.exists(), f"no golden file; run with ARCHSPEC_REGEN=1 to create {golden}"
    assert text == golden.read_text()


@pytest.mark.parametrize("path", FMT_REFUSED, ids=lambda p: p.stem)
def test_fmt_refusals_match_golden(path):
    golden = GOLDEN / f"fmt_{path.stem}.txt"
    before = path.read_bytes()
    text = render(path, "fmt")
    assert path.read_bytes() == before  # refused: the file is left as it was
    if os.environ.get("ARCHSPEC_REGEN"):
        golden.write_text(text)
    assert text == golden.read_text()


def test_every_code_has_a_golden_example():
    seen = " ".join(p.read_text() for p in GOLDEN.glob("*.txt"))
    missing = [c for c in CODES if f"[{c}]" not in seen]
    assert not missing, f"codes without a golden example: {missing}"
