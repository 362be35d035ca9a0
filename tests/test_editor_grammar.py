"""The VS Code extension in editors/vscode: its grammar tests pass, and its grammar knows every op.

The grammar tests (editors/vscode/test/*.arch, vscode-tmgrammar-test) and the client's tests need
node and the extension's dev dependencies (`npm ci --prefix editors/vscode`); without them the
first test skips, except under CI (CI=true), where it fails. The op-list checks need no node.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest

from archspec.language.ops import OPS
from conftest import REPO

VSCODE = REPO / "editors" / "vscode"
GRAMMAR = VSCODE / "syntaxes" / "arch.tmLanguage.json"
PACKAGE = VSCODE / "package.json"


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _grammar() -> dict:
    return json.loads(GRAMMAR.read_text())


def _alternation(match: str, where: str) -> list[str]:
    """The words of a `\\b(?:a|b|c)\\b` pattern."""
    found = re.fullmatch(r"\\b\(\?:([A-Za-z0-9_|]+)\)\\b", match)
    assert found, f"{where} should be a plain word list `\\b(?:a|b|...)\\b`, got {match!r}"
    return found.group(1).split("|")


def _grammar_ops() -> tuple[str, list[str]]:
    patterns = _grammar()["repository"]["op-name"]["patterns"]
    known = [p for p in patterns if p.get("name") == "support.function.op.arch"]
    assert len(known) == 1, "repository.op-name should have one pattern scoped support.function.op.arch"
    return known[0]["match"], _alternation(known[0]["match"], "repository.op-name")


def test_npm_grammar_and_client_tests_pass():
    npm = shutil.which("npm")
    installed = (VSCODE / "node_modules" / "vscode-tmgrammar-test").is_dir()
    if npm is None or not installed:
        why = ("npm is not installed" if npm is None
               else "the extension's dev dependencies are not installed (run `npm ci --prefix editors/vscode`)")
        if _in_ci():
            pytest.fail(f"CI is set but {why}; .ci/run installs them where npm exists")
        pytest.skip(why)
    result = subprocess.run([npm, "test", "--prefix", str(VSCODE)], capture_output=True, text=True,
                            timeout=300, cwd=REPO)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"`npm test --prefix editors/vscode` failed:\n{output}"
    # Every annotated sample ran (a glob that matched nothing would also exit 0).
    samples = sorted(p.name for p in (VSCODE / "test").glob("*.arch"))
    assert len(samples) >= 5
    for name in samples:
        assert f"test/{name} run successfuly" in output, f"{name} did not run:\n{output}"
    assert re.search(r"^# fail 0$", output, re.M) and not re.search(r"^# pass 0$", output, re.M), output


def test_grammar_op_list_is_the_op_table():
    match, words = _grammar_ops()
    missing = sorted(set(OPS) - set(words))
    unknown = sorted(set(words) - set(OPS))
    assert not missing, (
        f"ops missing from the editor grammar: {', '.join(missing)}. Add them to the word list of "
        f"repository.op-name (the support.function.op.arch pattern) in {GRAMMAR.relative_to(REPO)}, "
        "and a line using each to editors/vscode/test/ops.arch")
    assert not unknown, (
        f"the editor grammar colours words as ops that archspec.language.ops.OPS does not have: {', '.join(unknown)}; "
        f"remove them from repository.op-name in {GRAMMAR.relative_to(REPO)}")
    assert len(words) == len(set(words)), f"duplicate ops in the grammar's list: {words}"
    # Oniguruma and Python agree on this simple pattern: each op is matched whole, and an op that is
    # a prefix of another (relu, relu6) does not stop the longer one from matching.
    for op in OPS:
        assert re.fullmatch(match, op), f"the grammar's op pattern does not match all of `{op}`"
    assert not re.fullmatch(match, "relux")


def test_grammar_flags_cover_every_op_flag():
    patterns = _grammar()["repository"]["arguments"]["patterns"]
    flag_patterns = [p for p in patterns if p.get("name") == "storage.modifier.flag.arch"]
    assert len(flag_patterns) == 1, "repository.arguments should have one pattern scoped storage.modifier.flag.arch"
    found = re.fullmatch(r"\(\?<!\[\\w\.\]\)\(\?:([a-z_|]+)\)\(\?!\[\\w\.\]\)", flag_patterns[0]["match"])
    assert found, f"unexpected flag pattern {flag_patterns[0]['match']!r}"
    grammar_flags = set(found.group(1).split("|"))
    op_flags = {flag for cls in OPS.values() for flag in cls.flags}
    missing = sorted(op_flags - grammar_flags)
    assert not missing, (f"flags missing from the editor grammar: {', '.join(missing)}; add them to the "
                         f"storage.modifier.flag.arch pattern of repository.arguments in {GRAMMAR.relative_to(REPO)}")
    assert grammar_flags <= op_flags, f"the grammar colours as flags words no op takes: {sorted(grammar_flags - op_flags)}"


def test_package_json_contributes_the_language_grammar_and_settings():
    package = json.loads(PACKAGE.read_text())
    contributes = package["contributes"]
    (language,) = contributes["languages"]
    assert language["id"] == "arch" and language["extensions"] == [".arch"]
    assert (VSCODE / language["configuration"]).is_file()
    (grammar,) = contributes["grammars"]
    assert grammar["language"] == "arch"
    assert grammar["scopeName"] == _grammar()["scopeName"] == "source.arch"
    assert (VSCODE / grammar["path"]).resolve() == GRAMMAR.resolve()
    settings = contributes["configuration"]["properties"]
    assert settings["archspec.server.path"]["default"] == "archspec"
    assert settings["archspec.server.args"]["default"] == ["lsp"]
    assert (VSCODE / package["main"]).is_file()
    assert "vscode-languageclient" in package["dependencies"]
    assert package["license"] == "MIT" and package["repository"]["url"]
    config = json.loads((VSCODE / language["configuration"]).read_text())
    assert config["comments"]["lineComment"] == "#"
    assert ["{", "}"] in config["brackets"] and ["(", ")"] in config["brackets"]
    assert {"open": "\"", "close": "\"", "notIn": ["string", "comment"]} in config["autoClosingPairs"]
    start, end = re.compile(config["folding"]["markers"]["start"]), re.compile(config["folding"]["markers"]["end"])
    assert start.search("block basic(c, s=1) {") and start.search("residual project {   # comment")
    assert end.search("  }") and not start.search("conv 64 k3 s{s} p1")


def test_grammar_colours_every_join_word_as_a_keyword():
    """Every join of the registry (archspec.language.joins.JOINS) is a keyword to the editor: its word is
    matched whole by repository.residual or the keyword.control pattern of repository.keywords."""
    from archspec.language.joins import JOINS

    repo = _grammar()["repository"]
    patterns = [repo["residual"]["match"]] + [p["match"] for p in repo["keywords"]["patterns"]
                                              if p.get("name", "").startswith("keyword.control.$1")]
    for word in JOINS:
        text = f"{word} {{ relu }} {{ relu }}"
        assert any((m := re.match(p, text)) and m.group(1) == word for p in patterns), (
            f"the editor grammar does not colour the join `{word}`: add it to the keyword.control.$1.arch "
            f"pattern of repository.keywords in {GRAMMAR.relative_to(REPO)}, and a line using it to "
            "editors/vscode/test/structure.arch")
    assert not re.match(patterns[-1], "adder { relu }"), "a join word must be matched whole"
