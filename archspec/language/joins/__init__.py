"""The join registry: `residual`, `concat`, `add`, ..., one class per file beside this one.

Defining a `JoinKind` subclass with a `word` registers it; this package imports each module here
(the known ones first, in the order `archspec ops` and the messages list them), so adding a join is
adding its file (and its oracle entry in tests/test_oracle.py).
"""
from __future__ import annotations

import importlib
import pkgutil

from archspec.language.joins.base import JOINS, JoinKind

_KNOWN = ("concat", "add", "residual")


def _import_joins() -> None:
    found = sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name != "base")
    for name in [*_KNOWN, *(m for m in found if m not in _KNOWN)]:
        importlib.import_module(f"{__name__}.{name}")


_import_joins()


def join_list() -> str:
    """`concat, add, residual`: the joins as messages list them."""
    return ", ".join(JOINS)


__all__ = ["JOINS", "JoinKind", "join_list"]
