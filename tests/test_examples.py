"""Every example checks clean through the CLI; every broken example fails (or warns) with exactly
the codes its first line announces: `# expect: E101` (several codes: `# expect: W201 E104`)."""
from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from conftest import EXAMPLES

GOOD = sorted(EXAMPLES.glob("*.arch"))
BROKEN = sorted((EXAMPLES / "broken").glob("*.arch"))
EXPECT = re.compile(r"^#\s*expect:\s*(?P<codes>[A-Z]\d{3}(?:[\s,]+[A-Z]\d{3})*)\s*$")

def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "archspec", *args], capture_output=True, text=True)


def cli_in_process(*args: str) -> tuple[int, str]:
    """The CLI's main() in this process (no interpreter start-up): exit code and stdout."""
    from archspec.cli import main

    out = io.StringIO()
    return main(list(args), out=out), out.getvalue()


def expected_codes(path: Path) -> list[str]:
    first = path.read_text(encoding="utf-8").splitlines()[0] if path.read_text(encoding="utf-8") else ""
    m = EXPECT.match(first.strip())
    assert m, f"{path.name}: the first line must be `# expect: CODE [CODE ...]`, got {first!r}"
    return re.findall(r"[A-Z]\d{3}", m["codes"])


def test_there_are_examples():
    assert len(GOOD) >= 8
    names = {p.name for p in GOOD}
    assert {"lenet.arch", "resnet18.arch", "vgg11_bn.arch", "mobilenet_v2.arch", "fastcifar.arch"} <= names


@pytest.mark.parametrize("path", GOOD,
                         ids=lambda p: p.name)
def test_example_checks_clean(path: Path):
    out = run_cli("check", str(path))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "error[" not in out.stdout and "Traceback" not in out.stderr


ZOO = sorted((EXAMPLES / "zoo").rglob("*.arch"))  # segmentation/ too


def test_zoo_files_check_clean():
    """examples/zoo/: one file per torchvision classifier and segmentation network, all checked in one run (in process: 70+ files)."""
    assert len(ZOO) >= 40
    rc, stdout = cli_in_process("check", "--classes", "1000", "--format", "json", *map(str, ZOO))
    files = json.loads(stdout)["files"]
    assert rc == 0 and len(files) == len(ZOO)
    assert [f["diagnostics"] for f in files if f["diagnostics"]] == []


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: p.name)
def test_broken_example_reports_its_designed_codes(path: Path):
    expected = expected_codes(path)
    rc, stdout = cli_in_process("check", "--format", "json", str(path))
    files = json.loads(stdout)["files"]
    assert len(files) == 1
    got = [d["code"] for d in files[0]["diagnostics"]]
    assert Counter(got) == Counter(expected), f"{path.name}: expected {expected}, got {got}"
    has_error = any(c.startswith("E") for c in expected)
    assert rc == (1 if has_error else 0)
    assert files[0]["ok"] is (not has_error)
    if not has_error:  # warnings only: `--strict` turns them into a failure
        assert cli_in_process("check", "--strict", str(path))[0] == 1
    # The text format shows every expected code with its position.
    text = cli_in_process("check", str(path))[1]
    for code in set(expected):
        assert re.search(rf"{re.escape(path.name)}:\d+:\d+: (error|warning)\[{code}\]", text), (code, text)
