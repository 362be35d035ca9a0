"""archspec in Jupyter: `%load_ext archspec` gives the `%%arch NAME` cell magic.

    %%arch lenet
    input 3x32x32
    conv 6 k5 | relu | maxpool 2
    ...

checks the cell, shows the report (layers and diagnostics with their carets), and binds `lenet`
to the checked model, so `archspec.build(lenet)` and `archspec.summary(lenet)` work in the next
cell. `use "file.arch"` in a cell is relative to the notebook's working directory.
"""
from __future__ import annotations

import keyword
from typing import Any

from archspec.language.check import CheckReport
from archspec.language.errors import UsageError
from archspec.language.pipeline import checked


def check_cell(name: str, text: str) -> CheckReport:
    """The `%%arch NAME` cell as a checked model (errors are in the report, not raised)."""
    if not name.isidentifier():
        raise UsageError(f"%%arch needs a Python name to bind the model to, got {name!r}", "e.g. %%arch lenet")
    if keyword.iskeyword(name):  # `for = ...` is a syntax error in the next cell (`match`, a soft keyword, is a name)
        raise UsageError(f"%%arch {name}: `{name}` is a Python keyword, so no cell could use it as a name",
                         f"choose another name, e.g. %%arch {name}_net")
    return checked(text, name=f"<cell {name}>")


def load_ipython_extension(ipython: Any) -> None:
    from IPython.core.magic import register_cell_magic  # noqa: F401 (IPython is there when this runs)

    def arch(line: str, cell: str) -> CheckReport | None:
        name = line.strip()
        report = check_cell(name, cell)
        ipython.user_ns[name] = report
        return report

    ipython.register_magic_function(arch, magic_kind="cell", magic_name="arch")
