"""One pipeline: a file means the same in every caller (`archspec.language.pipeline.checked`).

The file below breaks its own `budget`: the command, the Python API, every view, the compiler, the
training preflight, the language server (a real client) and the notebook (a real kernel) must all
refuse it with the same E301, and accept it once the budget is raised.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

import archspec
from archspec.language.errors import ArchError
from conftest import REPO

OVER_BUDGET = "input 3x32x32\nbudget params <= 100\nconv 6 k5 | relu | maxpool 2\nflatten\nlinear 10\n"
WITHIN_BUDGET = OVER_BUDGET.replace("params <= 100", "params <= 20k")
E301_MESSAGE = "the network has 12,226 parameters, over the budget of 100 (`params <= 100`)"


@pytest.fixture
def over(tmp_path: Path) -> Path:
    path = tmp_path / "over.arch"
    path.write_text(OVER_BUDGET)
    return path


def test_python_api_reports_the_files_budget(over: Path):
    for source in (over, str(over), OVER_BUDGET):
        report = archspec.check(source)
        assert not report.ok
        assert [(d.code, d.message) for d in report.errors] == [("E301", E301_MESSAGE)]
    assert archspec.check(WITHIN_BUDGET).ok


@pytest.mark.parametrize("view", ["summary", "graph", "build"])
def test_views_and_compiler_refuse_a_broken_budget(over: Path, view: str):
    if view == "build":
        pytest.importorskip("torch")
    call = {"summary": archspec.summary, "graph": archspec.graph, "build": archspec.build}[view]
    with pytest.raises(ArchError) as info:
        call(over)
    assert [d.code for d in info.value.errors] == ["E301"]
    call(WITHIN_BUDGET)  # and each accepts the same file within its budget


def test_explain_shows_every_layer_then_the_budget(over: Path, cli):
    done = cli("explain", str(over))
    assert done.returncode == 1
    first = done.stdout.splitlines()[0]
    assert first == f"{over}: [B, 3, 32, 32] -> [B, 10], over its budget"
    assert "fc1 (line 5): linear 10" in done.stdout  # the arithmetic goes on past the input line
    assert f"error[E301]: {E301_MESSAGE}" in done.stdout


@pytest.mark.parametrize("command", ["check", "summary", "graph", "compile", "diff"])
def test_every_command_fails_the_same_way(over: Path, cli, command: str):
    args = [command, str(over)] + ([str(over)] if command == "diff" else [])
    done = cli(*args)
    assert done.returncode == 1
    assert f"error[E301]: {E301_MESSAGE}" in done.stdout + done.stderr


def test_training_refuses_before_reading_data(over: Path, cli, tmp_path: Path):
    pytest.importorskip("torch")
    done = cli("train", str(over), "--data", str(tmp_path / "no-such-data"), "--out", str(tmp_path / "run"))
    assert done.returncode == 1
    assert f"error[E301]: {E301_MESSAGE}" in done.stderr
    assert "no-such-data" not in done.stderr  # the spec is refused first: the data was never looked at
    assert not (tmp_path / "run").exists()


def test_noqa_silences_in_the_library_but_a_silenced_shape_error_still_stops_a_build():
    text = "input 3x4x4\nconv 6 k5  # noqa: E101\nflatten\nlinear 10\n"
    report = archspec.check(text)
    assert report.ok and [d.code for d in report.silenced] == ["E101"]
    with pytest.raises(ArchError) as info:
        report.raise_for_errors()
    assert [d.code for d in info.value.errors] == ["E101"]
    # a silenced budget, by contrast, is a choice about totals: the network builds
    silenced_budget = OVER_BUDGET.replace("input 3x32x32", "input 3x32x32  # noqa: E301")  # E301's line
    assert archspec.check(silenced_budget).raise_for_errors().ok


def test_options_add_limits_to_the_files_own():
    from archspec.language.limits import make_limit
    from archspec.language.pipeline import CheckOptions, checked

    limit = make_limit("macs", "max", "1k", "--max-macs 1k")
    report = checked(WITHIN_BUDGET, CheckOptions(limits=(limit,)))
    assert [d.code for d in report.errors] == ["E302"]
    assert [d.code for d in checked(WITHIN_BUDGET, CheckOptions(limits=(limit,), ignore=("E302",))).errors] == []


def test_language_server_publishes_the_budget(over: Path):
    """A real client over stdio (pytest-lsp's machinery without the module-wide fixture)."""
    pytest.importorskip("pygls")
    import asyncio

    from lsprotocol import types
    from pytest_lsp import ClientServerConfig, client_capabilities

    async def published() -> list[types.Diagnostic]:
        config = ClientServerConfig(server_command=[sys.executable, "-m", "archspec", "lsp"],
                                    server_env={**os.environ, "PYTHONPATH": str(REPO)})
        client = await config.start()
        try:
            await client.initialize_session(types.InitializeParams(
                capabilities=client_capabilities("visual-studio-code"), root_uri=over.parent.as_uri()))
            uri = over.as_uri()
            client.text_document_did_open(types.DidOpenTextDocumentParams(types.TextDocumentItem(
                uri=uri, language_id="archspec", version=1, text=OVER_BUDGET)))
            for _ in range(1000):
                if uri in client.diagnostics:
                    return list(client.diagnostics[uri])
                await asyncio.sleep(0.01)
            raise AssertionError("no diagnostics published")
        finally:
            await client.shutdown_session()

    diagnostics = asyncio.run(published())
    assert [(d.code, d.message.splitlines()[0]) for d in diagnostics] == [("E301", E301_MESSAGE)]


def test_notebook_cell_refuses_the_budget(tmp_path: Path):
    from test_notebook import execute

    outputs = execute(["%load_ext archspec", "%%arch net\n" + OVER_BUDGET, "net.ok, [d.code for d in net.errors]"],
                      tmp_path)
    assert outputs[2][0]["data"]["text/plain"] == "(False, ['E301'])"
