"""The op registry (archspec.language.ops.OPS) is the one list of ops: everything that lists ops
is checked against it, so adding an op is adding its class (and its oracle entry), and a missing
piece fails here by name.

* the torch oracle (tests/test_oracle.py) has an entry for every op: its .arch text and its
  torch.nn module (test_oracle's random nets then generate every op and compare it with torch);
* every op has a one-line doc and a usage line;
* `archspec ops` prints exactly the registry, in order;
* the README's op table names exactly the registry's ops in its first column.
"""
from __future__ import annotations

import re

import pytest

from archspec.cli import main
from archspec.language.ops import OPS
from conftest import REPO


def test_every_op_has_an_oracle_entry():
    pytest.importorskip("torch")
    from test_oracle import ORACLE

    missing = [op for op in OPS if op not in ORACLE]
    assert not missing, (f"ops without a torch oracle entry: {', '.join(missing)}; add each to ORACLE in "
                         "tests/test_oracle.py (its .arch text and its nn module, and how to draw it)")
    assert not set(ORACLE) - set(OPS), f"oracle entries for ops that do not exist: {sorted(set(ORACLE) - set(OPS))}"
    for op, entry in ORACLE.items():
        assert entry.module is not None or op == "input", f"{op}: the oracle entry has no torch module"


@pytest.mark.parametrize("op", list(OPS))
def test_every_op_has_a_doc_and_a_usage(op):
    cls = OPS[op]
    assert cls.doc().strip(), f"{op} has no one-line doc (its `summary` ClassVar)"
    assert "\n" not in cls.doc(), f"{op}'s doc should be one line"
    assert cls.usage.strip(), f"{op} has no usage line"
    assert cls.usage.split()[0] == op, f"{op}'s usage should start with the op: {cls.usage!r}"


def test_archspec_ops_lists_exactly_the_registry(capsys):
    assert main(["ops"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert [line.split()[0] for line in lines] == list(OPS)
    for line, cls in zip(lines, OPS.values()):
        assert cls.usage in line and cls.doc() in line


def _readme_op_table() -> list[str]:
    """The op names in the first column of README's `| op | form | PyTorch | notes |` table."""
    text = (REPO / "README.md").read_text()
    start = text.index("| op | form | PyTorch | notes |")
    names: list[str] = []
    for row in text[start:].splitlines()[2:]:
        if not row.startswith("|"):
            break
        names += re.findall(r"`([a-z0-9]+)`", row.split("|")[1])
    return names


def test_readme_op_table_is_the_registry():
    names = _readme_op_table()
    assert len(names) == len(set(names)), f"ops listed twice in the README table: {names}"
    missing = [op for op in OPS if op not in names]
    unknown = [n for n in names if n not in OPS]
    assert not missing, f"ops missing from the README op table (README.md, ### Ops): {', '.join(missing)}"
    assert not unknown, f"the README op table lists ops that do not exist: {', '.join(unknown)}"
