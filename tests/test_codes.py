"""Diagnostic codes are constants from one table: the emitters, the checking guide's code table and the renderers agree."""
from __future__ import annotations

import re

import pytest

from archspec.language import codes
from archspec.language.codes import CODES, Code
from archspec.language.diagnostics import Diagnostic
from conftest import REPO


def test_every_code_is_a_constant_carrying_its_table_entry():
    constants = {value: name for name, value in vars(codes).items() if isinstance(value, Code)}
    assert sorted(constants) == sorted(CODES)
    for value, name in constants.items():
        assert value.info is CODES[value] and name == value.info.name.upper().replace("-", "_") or name == "INPUT_LAYER"


def test_an_unknown_code_fails_where_the_diagnostic_is_made():
    with pytest.raises(ValueError, match="unknown diagnostic code 'E999'"):
        Diagnostic("E999", "no such rule", None)


def test_no_code_is_spelled_as_a_bare_string_outside_the_table():
    bare = re.compile(r"[\"'][EW]\d{3}[\"']")
    offenders = [f"{p.relative_to(REPO)}:{i}" for p in (REPO / "archspec").rglob("*.py") if p.name != "codes.py"
                 for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if bare.search(line)]
    assert not offenders, f"use the constants of archspec/language/codes.py: {offenders}"


def test_guide_code_table_lists_exactly_the_codes_with_their_names():
    page = (REPO / "docs" / "guide" / "checking.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| ([EW]\d{3}) \| ([\w-]+) \|", page, flags=re.M)
    assert rows == [(c, info.name) for c, info in CODES.items()]
