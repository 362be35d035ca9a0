"""Walks dispatch by name: every rule of the grammar that a walk meets has its method there, and no
table is keyed by `id()` (results live on the nodes)."""
from __future__ import annotations

import re

import pytest

from archspec.language.expand import _Builder
from archspec.language.syntax import parser
from archspec.language.values import _Argument, _Expression
from archspec.views.fmt import _Anchors, _ExprText, _Printer
from conftest import REPO


def _trees_made_by(origins: set[str]) -> set[str]:
    """The names of the trees the rules `origins` make: an alternative's alias, else the rule's own
    name (an inlined `?rule` alternative without an alias makes no tree of its own)."""
    rules = [r for r in parser().rules if r.origin.name in origins]
    return {r.alias or r.origin.name for r in rules if r.alias or not r.options.expand1}


def _statement_rules() -> set[str]:
    statements = {str(s.name) for r in parser().rules if r.origin.name == "_stmt" for s in r.expansion}
    return _trees_made_by(statements)


def _own_methods(cls: type) -> set[str]:
    """What the class and its archspec bases define (not lark's `__getattr__` fallback)."""
    return {name for klass in cls.__mro__ if klass.__module__.startswith("archspec") for name in vars(klass)}


STATEMENTS = _statement_rules()
VALUES = _trees_made_by({"value", "kwarg"})
EXPRESSIONS = _trees_made_by({"sum", "product", "atom"})


def test_the_grammar_reading_is_what_the_walks_name():
    assert STATEMENTS == {"layer", "join", "repeat", "call", "bare_call", "block_def", "use", "budget", "sweep_param"}
    assert EXPRESSIONS == {"number", "dims", "word", "neg", "binop"}
    assert VALUES == {"number", "dims", "word", "string", "braced", "kwarg", "range"}


@pytest.mark.parametrize("walk, rules", [
    (_Builder, STATEMENTS),  # expansion: one method per statement
    (_Printer, STATEMENTS | {"body_braces"}),  # fmt's printer
    (_Anchors, STATEMENTS | {"body_braces"}),  # fmt's comment anchors
    (_Expression, EXPRESSIONS),  # the value of an expression
    (_Argument, EXPRESSIONS | VALUES - {"kwarg"}),  # a layer's argument (binding splits off `key=value`)
    (_ExprText, EXPRESSIONS | VALUES),  # fmt's text of an argument or an expression
], ids=lambda v: getattr(v, "__name__", ""))
def test_every_rule_a_walk_meets_has_its_method(walk, rules):
    missing = rules - _own_methods(walk)
    assert not missing, f"{walk.__qualname__} ({walk.__module__}) has no method for the rules {sorted(missing)}"


def test_no_table_is_keyed_by_id():
    """Results are fields of the checked nodes; a view that pairs two structures builds both in one pass.
    (training/ and pytorch/run_order.py follow torch tensors by identity: torch objects, not results about nodes.)"""
    found = []
    for path in sorted((REPO / "archspec").rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        if rel.startswith("archspec/training/") or rel == "archspec/pytorch/run_order.py":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"(?<![\w.])id\(", line):
                found.append(f"{rel}:{number}: {line.strip()}")
    assert not found, "\n".join(found)
