"""The package tree is the pipeline: import-linter's contracts (pyproject.toml) and the facade rule."""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO


def _lint_imports() -> str:
    exe = Path(sys.executable).with_name("lint-imports")
    found = str(exe) if exe.exists() else shutil.which("lint-imports")
    if found is None:
        pytest.fail("import-linter is not installed: pip install -e '.[test]'")
    return found


def test_import_linter_contracts_hold():
    cp = subprocess.run([_lint_imports(), "--config", str(REPO / "pyproject.toml")], cwd=REPO,
                        capture_output=True, text=True, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert "0 broken" in cp.stdout and "kept" in cp.stdout


def test_lower_layers_never_import_the_facade():
    """`import archspec` / `from archspec import X` only in the CLI's entry points, never below the facade."""
    offenders = []
    for path in (REPO / "archspec").rglob("*.py"):
        if path.parent == REPO / "archspec":
            continue  # the facade itself, __main__ and _version
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import) and any(a.name == "archspec" for a in node.names):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
            if isinstance(node, ast.ImportFrom) and node.module == "archspec" and node.level == 0:
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not offenders, f"import from the layer's own package instead of the facade: {offenders}"


def test_every_language_module_has_a_floor():
    """A new module in archspec/language must be placed in the language's layers contract, or its
    imports would go unchecked (and a circle could come back)."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    contract = next(c for c in config["tool"]["importlinter"]["contracts"] if c["name"].startswith("The language in layers"))
    placed = {m.strip() for layer in contract["layers"] for m in layer.split("|")}
    language = REPO / "archspec" / "language"
    modules = {f"archspec.language.{p.stem}" for p in language.glob("*.py") if p.stem != "__init__"}
    modules |= {f"archspec.language.{p.name}" for p in language.iterdir() if (p / "__init__.py").exists()}
    assert modules - placed == set(), "add these to the language's layers contract in pyproject.toml"
    assert placed - modules == set(), "the contract names modules that no longer exist"
