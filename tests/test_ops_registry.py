"""The op registry (archspec.language.ops.OPS) is the one list of ops: everything that lists ops
is checked against it, so adding an op is adding its class (and its oracle entry), and a missing
piece fails here by name.

* the torch oracle (tests/test_oracle.py) has an entry for every op: its .arch text and its
  torch.nn module (test_oracle's random nets then generate every op and compare it with torch);
* every op has a one-line doc and a usage line;
* every op and join has one shape rule, for numbers and `input 3xHxW` alike (no symbolic second rule);
* `archspec ops` prints exactly the registry, in order;
* the user guide's op table (docs/guide/language.md) names exactly the registry's ops in its first column
  (the generated reference, docs/reference/ops.md, is built from the registry and cannot drift).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from archspec.cli import main
from archspec.language.ops import OPS, resolve_op_name
from conftest import REPO


def test_every_op_has_an_oracle_entry():
    pytest.importorskip("torch")
    from test_oracle import ORACLE

    _covers("ops", OPS, ORACLE, "ORACLE", "its .arch text and its nn module, and how to draw it")
    for op, entry in ORACLE.items():
        assert entry.module is not None or op == "input", f"{op}: the oracle entry has no torch module"


def _covers(kind: str, registry: dict, oracle: dict, name: str, what: str) -> None:
    """Every entry of the registry has an oracle entry, and the oracle names nothing else (a join's option has its own
    entry, named by the word and the option: `resize nearest`)."""
    missing = [k for k in registry if k not in oracle]
    assert not missing, (f"{kind} without a torch oracle entry: {', '.join(missing)}; add each to {name} in "
                         f"tests/test_oracle.py ({what})")
    unknown = sorted(k for k in oracle if k.split()[0] not in registry or not _is_option(registry[k.split()[0]], k.split()[1:]))
    assert not unknown, f"oracle entries for {kind} that do not exist: {unknown}"


def _is_option(entry: object, words: list[str]) -> bool:
    return not words or (len(words) == 1 and words[0] in getattr(entry, "options", ()))


def test_every_op_and_join_has_one_shape_rule():
    """`infer` (a join's `combine`) serves numbers and `input 3xHxW` alike, through sizemap's size functions
    and `emit.sizes` (CONTRIBUTING.md, "Add an op"): a second, symbolic rule would be dead code beside it."""
    from archspec.language.joins import JOINS

    ops = [name for name, cls in OPS.items() if hasattr(cls, "axis_map")]
    joins = [word for word, kind in JOINS.items() if hasattr(kind, "axis")]
    assert not ops and not joins, (f"ops with an `axis_map`: {ops}; joins with an `axis` rule: {joins}: "
                                   "fold it into the shape rule (sizemap.window_size / scaled_size, emit.sizes)")


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


def test_the_op_index_is_the_registry():
    """index.py (which family module defines each op) is generated from the registry: a new op is missing from
    it until it is rewritten, and the lazy registry would not find it."""
    from archspec.language.ops import index_source, ops_in_order

    index = REPO / "archspec" / "language" / "ops" / "index.py"
    if os.environ.get("ARCHSPEC_REGEN"):
        index.write_text(index_source())
    assert index.read_text() == index_source(), (
        "archspec/language/ops/index.py is out of date: rewrite it with "
        "ARCHSPEC_REGEN=1 python -m pytest tests/test_ops_registry.py")
    classes = ops_in_order()
    assert list(OPS) == [cls.model_fields["op"].default for cls in classes] and len(OPS) == len(classes)
    assert list(OPS.values()) == classes


def test_an_unknown_word_is_not_an_op():
    assert "convv" not in OPS and OPS.get("convv") is None and resolve_op_name("convv") is None
    with pytest.raises(KeyError):
        OPS["convv"]


def _families_loaded(code: str) -> set[str]:
    """The op family modules a fresh interpreter has imported after running `code`."""
    probe = (f"{code}\nimport sys\n"
             "print(' '.join(m.rsplit('.', 1)[1] for m in sys.modules if m.startswith('archspec.language.ops.')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO).stdout
    return set(out.split()) - {"base", "index"}


def test_a_file_defines_only_the_op_classes_it_uses():
    """Start-up: checking LeNet builds the classes of its five families, not all of them; listing the ops
    (for completion or did-you-mean) builds none."""
    lenet = "import archspec; archspec.check(open('examples/lenet.arch').read())"
    assert _families_loaded(lenet) == {"input", "conv", "activation", "pool", "dense"}
    assert _families_loaded("from archspec.language.ops import OPS; words = list(OPS); 'relu' in OPS") == {"input"}
    assert _families_loaded("from archspec.language.ops import OPS; OPS['bn']") == {"input", "norm"}


def test_op_files_define_their_classes_without_postponed_annotations():
    """pydantic evaluates every field and ClassVar annotation of an op class when the class is defined: a
    string (what `from __future__ import annotations` makes of each) costs an eval, a real object nothing.
    Without it the op classes take about 30% less time to define."""
    offenders = [f.name for f in (REPO / "archspec" / "language" / "ops").glob("*.py")
                 if f.name != "__init__.py" and "\nfrom __future__ import annotations" in f.read_text()]
    assert not offenders, f"op files with `from __future__ import annotations`: {offenders}"


LANGUAGE_PAGE = REPO / "docs" / "guide" / "language.md"  # the hand-written op and join tables


def _guide_op_table() -> list[str]:
    """The op names in the first column of the language guide's `| op | form | PyTorch | notes |` table."""
    text = LANGUAGE_PAGE.read_text()
    start = text.index("| op | form | PyTorch | notes |")
    names: list[str] = []
    for row in text[start:].splitlines()[2:]:
        if not row.startswith("|"):
            break
        names += re.findall(r"`([a-z0-9]+)`", row.split("|")[1])
    return names


def test_guide_op_table_is_the_registry():
    names = _guide_op_table()
    assert len(names) == len(set(names)), f"ops listed twice in the op table of docs/guide/language.md: {names}"
    missing = [op for op in OPS if op not in names]
    unknown = [n for n in names if n not in OPS]
    assert not missing, f"ops missing from the op table (docs/guide/language.md, ## Ops): {', '.join(missing)}"
    assert not unknown, f"the op table of docs/guide/language.md lists ops that do not exist: {', '.join(unknown)}"


# --------------------------------------------------------------------------- joins
# The join registry (archspec.language.joins.JOINS) is the one list of joins, like OPS for ops.

from archspec.language.joins import JOINS  # noqa: E402


def test_every_join_has_an_oracle_entry():
    pytest.importorskip("torch")
    from test_oracle import JOIN_ORACLE

    _covers("joins", JOINS, JOIN_ORACLE, "JOIN_ORACLE", "a network using it and the torch expression it must equal")


@pytest.mark.parametrize("word", list(JOINS))
def test_every_join_has_a_doc_a_usage_and_a_runtime_module(word):
    join = JOINS[word]
    assert join.summary.strip() and "\n" not in join.summary, f"{word} has no one-line doc (its `summary`)"
    assert join.usage.split()[0] == word, f"{word}'s usage should start with the join word: {join.usage!r}"
    assert join.hint.strip(), f"{word} has no `hint` (the editor's keyword completion)"
    assert word not in OPS, f"`{word}` is both an op and a join"
    from archspec.pytorch.codegen import runtime_classes

    for cls in (join.runtime_class, *join.runtime_needs):
        assert cls in runtime_classes(), f"{word}: `{cls}` is not a class of archspec/pytorch/runtime.py"


def test_the_grammar_reads_the_join_words_from_the_registry():
    from archspec.language.syntax import grammar_text

    line = next(x for x in grammar_text().splitlines() if x.startswith("JOIN_WORD"))
    assert sorted(re.search(r"/\((.*?)\)", line).group(1).split("|")) == sorted(JOINS)
    for word in JOINS:
        report = archspec_check(f"input 3x8x8\n{word} {{ relu }} {{ relu }}\n")
        assert "unknown join" not in " ".join(d.message for d in report.diagnostics), word


def archspec_check(text: str):
    import archspec

    return archspec.check(text, classes=None)


def _guide_join_table() -> list[str]:
    text = LANGUAGE_PAGE.read_text()
    start = text.index("| join | form | PyTorch | notes |")
    names: list[str] = []
    for row in text[start:].splitlines()[2:]:
        if not row.strip().startswith("|"):
            break
        names += re.findall(r"`([a-z0-9]+)`", row.split("|")[1])
    return names


def test_guide_join_table_is_the_registry():
    names = _guide_join_table()
    assert sorted(names) == sorted(JOINS), (
        f"the join table (docs/guide/language.md, ## Blocks, ...: `| join | form | PyTorch | notes |`) lists {names}; "
        f"the joins are {list(JOINS)}")
