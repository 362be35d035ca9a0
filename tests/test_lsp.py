"""End-to-end tests of `archspec lsp`: pytest-lsp's client drives `python -m archspec lsp` over stdio.

Numbers are checked against independent oracles where there is one: torch / torchvision for
shapes, params and MACs, the checker itself re-run on the text a code action produced, and
`archspec fmt` for formatting.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import ClientServerConfig, LanguageClient

from conftest import EXAMPLES, REPO

pytestmark = pytest.mark.asyncio(loop_scope="module")

SERVER = ClientServerConfig(
    server_command=[sys.executable, "-m", "archspec", "lsp"],
    server_env={**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")},
)


@pytest_lsp.fixture(scope="module", config=SERVER)
async def client(lsp_client: LanguageClient):
    await lsp_client.initialize_session(types.InitializeParams(
        capabilities=pytest_lsp.client_capabilities("visual-studio-code"), root_uri=REPO.as_uri()))
    yield
    await lsp_client.shutdown_session()


# --------------------------------------------------------------------------- helpers

async def wait_for(client: LanguageClient, uri: str, timeout: float = 10.0) -> list[types.Diagnostic]:
    """The next diagnostics published for `uri` (call `forget` first)."""
    for _ in range(int(timeout / 0.01)):
        if uri in client.diagnostics:
            return list(client.diagnostics[uri])
        await asyncio.sleep(0.01)
    raise AssertionError(f"no diagnostics published for {uri}")


async def open_doc(client: LanguageClient, path: Path, text: str | None = None,
                   timeout: float = 10.0) -> tuple[str, list[types.Diagnostic]]:
    uri = path.resolve().as_uri()
    client.diagnostics.pop(uri, None)
    client.text_document_did_open(types.DidOpenTextDocumentParams(types.TextDocumentItem(
        uri=uri, language_id="archspec", version=1, text=text if text is not None else path.read_text())))
    return uri, await wait_for(client, uri, timeout)


async def change(client: LanguageClient, uri: str, text: str, version: int,
                 timeout: float = 10.0) -> list[types.Diagnostic]:
    client.diagnostics.pop(uri, None)
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        types.VersionedTextDocumentIdentifier(uri=uri, version=version),
        [types.TextDocumentContentChangeWholeDocument(text=text)]))
    return await wait_for(client, uri, timeout)


async def close(client: LanguageClient, uri: str) -> None:
    """Close, and wait for the server to clear the document's diagnostics (so that a later open of
    the same file cannot mistake that late, empty list for its own)."""
    client.diagnostics.pop(uri, None)
    client.text_document_did_close(types.DidCloseTextDocumentParams(types.TextDocumentIdentifier(uri=uri)))
    assert await wait_for(client, uri) == []


async def hover_text(client: LanguageClient, uri: str, line: int, character: int) -> str:
    result = await client.text_document_hover_async(types.HoverParams(
        types.TextDocumentIdentifier(uri=uri), types.Position(line, character)))
    assert result is not None, f"no hover at {line}:{character}"
    return result.contents.value  # type: ignore[union-attr]


async def hints(client: LanguageClient, uri: str, lines: int) -> dict[int, str]:
    result = await client.text_document_inlay_hint_async(types.InlayHintParams(
        types.TextDocumentIdentifier(uri=uri), types.Range(types.Position(0, 0), types.Position(lines, 0))))
    return {h.position.line: h.label for h in result or []}  # type: ignore[misc]


async def complete(client: LanguageClient, uri: str, line: int, character: int) -> dict[str, types.CompletionItem]:
    result = await client.text_document_completion_async(types.CompletionParams(
        types.TextDocumentIdentifier(uri=uri), types.Position(line, character)))
    items = result.items if isinstance(result, types.CompletionList) else result or []
    return {item.label: item for item in items}


def apply(text: str, edits: list[types.TextEdit]) -> str:
    """Apply the edits (what the code actions make), last first."""
    lines = text.split("\n")
    for e in sorted(edits, key=lambda e: (e.range.start.line, e.range.start.character), reverse=True):
        start, end = e.range.start, e.range.end
        tail = lines[end.line][end.character:] if end.line < len(lines) else ""
        lines[start.line:end.line + 1] = (lines[start.line][:start.character] + e.new_text + tail).split("\n")
    return "\n".join(lines)


def codes_of(text: str, path: Path) -> list[str]:
    from archspec.language.pipeline import checked

    return [d.code for d in checked(text, name=str(path)).diagnostics]


# --------------------------------------------------------------------------- diagnostics

async def test_diagnostics_code_range_severity_and_help(client: LanguageClient):
    uri, diags = await open_doc(client, EXAMPLES / "broken" / "kernel_too_large.arch")
    assert [(d.code, d.severity) for d in diags] == [("E101", types.DiagnosticSeverity.Error)]
    d = diags[0]
    assert (d.range.start.line, d.range.start.character, d.range.end.line, d.range.end.character) == (3, 0, 3, 9)
    assert d.source == "archspec" and "help: pad the input (e.g. `p1`)" in d.message
    await close(client, uri)


async def test_diagnostic_in_block_has_its_call_site_as_related_information(client: LanguageClient):
    uri, diags = await open_doc(client, EXAMPLES / "broken" / "block_error.arch")
    [d] = [d for d in diags if d.code == "E101"]
    assert d.range.start.line == 5  # the conv in the block definition
    [related] = d.related_information or []
    assert related.location.uri == uri and related.location.range.start.line == 8  # `down(32)`
    assert "down" in related.message
    await close(client, uri)


async def test_diagnostics_of_a_used_file_go_to_that_file(client: LanguageClient, tmp_path: Path):
    (tmp_path / "lib.arch").write_text("block squeeze(c) {\n  conv c k5 | relu\n}\n")
    main = tmp_path / "main.arch"
    text = 'use "lib.arch"\ninput 3x4x4\nsqueeze(8)\ngap | flatten | linear 10\n'
    lib_uri = (tmp_path / "lib.arch").resolve().as_uri()
    client.diagnostics.pop(lib_uri, None)
    uri, diags = await open_doc(client, main, text)
    lib_diags = await wait_for(client, lib_uri)
    assert [(d.code, d.range.start.line) for d in lib_diags] == [("E101", 1)]
    assert lib_diags[0].related_information[0].location.uri == uri  # type: ignore[index]
    assert [(d.code, d.range.start.line) for d in diags] == [("E101", 2)]  # also shown at the call
    # the used file fixed on disk: the editor says so, the server re-checks what is open
    (tmp_path / "lib.arch").write_text("block squeeze(c) {\n  conv c k3 | relu\n}\n")
    client.diagnostics.pop(lib_uri, None)
    client.diagnostics.pop(uri, None)
    client.workspace_did_change_watched_files(types.DidChangeWatchedFilesParams(
        [types.FileEvent(uri=lib_uri, type=types.FileChangeType.Changed)]))
    assert await wait_for(client, uri) == [] and await wait_for(client, lib_uri) == []
    # a mistake in the call itself, then fixed: both files clear
    (tmp_path / "lib.arch").write_text("block squeeze(c) {\n  conv c k5 | relu\n}\n")
    client.workspace_did_change_watched_files(types.DidChangeWatchedFilesParams(
        [types.FileEvent(uri=lib_uri, type=types.FileChangeType.Changed)]))
    await asyncio.sleep(0.3)
    client.diagnostics.pop(lib_uri, None)
    assert await change(client, uri, text.replace("input 3x4x4", "input 3x16x16"), 2) == []
    assert await wait_for(client, lib_uri) == []
    await close(client, uri)


async def test_diagnostics_follow_edits_and_a_syntax_error_keeps_hover_and_hints(client: LanguageClient):
    path = EXAMPLES / "lenet.arch"
    text = path.read_text()
    uri, diags = await open_doc(client, path, text)
    assert diags == []
    before = await hints(client, uri, 20)
    broken = text.replace("flatten\n", "flatten\nconv 16 k5 {\n")  # mid-edit: a brace not closed yet
    diags = await change(client, uri, broken, 2)
    assert [d.code for d in diags] == ["E001"]
    assert "conv1" in await hover_text(client, uri, 2, 0)  # the last good tree, on unchanged lines
    after = await hints(client, uri, 20)
    assert after[2] == before[2] and after[8] == before[7]  # `linear 10` moved down one line
    assert 5 not in after  # the line being written has no hint
    no_flatten = text.replace("flatten\n", "")
    assert [d.code for d in await change(client, uri, no_flatten, 3)] == ["E103"]
    assert await change(client, uri, text, 4) == []
    await close(client, uri)


async def test_a_burst_of_edits_ends_checked_and_save_publishes(client: LanguageClient):
    path = EXAMPLES / "lenet.arch"
    text = path.read_text()
    uri, _ = await open_doc(client, path, text)
    client.diagnostics.pop(uri, None)
    for version, k in enumerate([7, 9, 11, 13, 33], start=2):  # faster than the 150 ms throttle
        client.text_document_did_change(types.DidChangeTextDocumentParams(
            types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            [types.TextDocumentContentChangeWholeDocument(text=text.replace("conv 6 k5", f"conv 6 k{k}"))]))
    for _ in range(300):  # the last version (k33 > 32: E101) is always checked
        await asyncio.sleep(0.01)
        if [d.code for d in client.diagnostics.get(uri, [])] == ["E101"]:
            break
    assert [d.code for d in client.diagnostics[uri]] == ["E101"]
    client.diagnostics.pop(uri, None)
    client.text_document_did_save(types.DidSaveTextDocumentParams(types.TextDocumentIdentifier(uri=uri)))
    assert [d.code for d in await wait_for(client, uri)] == ["E101"]
    await close(client, uri)


# --------------------------------------------------------------------------- hover

async def test_hover_on_a_layer_gives_the_explain_arithmetic_torch_agrees(client: LanguageClient):
    import torch
    from torch import nn

    uri, _ = await open_doc(client, EXAMPLES / "lenet.arch")
    text = await hover_text(client, uri, 2, 1)  # `conv 6 k5 s1 p0` on line 3
    conv = nn.Conv2d(3, 6, 5)
    y = conv(torch.zeros(1, 3, 32, 32))
    params = sum(p.numel() for p in conv.parameters())
    macs = y[0].numel() * 3 * 5 * 5
    assert f"[B, 3, 32, 32] -> [B, {', '.join(map(str, y.shape[1:]))}]" in text
    assert f"{params:,} params" in text and f"{macs:,} MACs" in text
    assert "H: (32 + 2*0 - 1*(5-1) - 1)/1 + 1 = 28" in text  # the formula line, as `explain` writes it
    pool = await hover_text(client, uri, 2, 26)  # `maxpool 2`
    assert "[B, 6, 28, 28] -> [B, 6, 14, 14]" in pool and "pool1" in pool
    await close(client, uri)


async def test_hover_on_a_block_call_gives_its_totals_torchvision_agrees(client: LanguageClient):
    import torch
    import torchvision

    net = torchvision.models.resnet18(num_classes=10)
    uri, _ = await open_doc(client, EXAMPLES / "resnet18.arch")
    lines = (EXAMPLES / "resnet18.arch").read_text().splitlines()
    row = next(i for i, line in enumerate(lines) if line.startswith("stage(128, 2)"))
    text = await hover_text(client, uri, row, 2)
    x = torch.zeros(1, 64, 56, 56)
    y = net.layer2(x)
    params = sum(p.numel() for p in net.layer2.parameters())
    assert "block `stage(c=128, s=2)`" in text
    assert f"[B, 64, 56, 56] -> [B, {', '.join(map(str, y.shape[1:]))}]" in text
    assert f"{params:,} params" in text
    row = next(i for i, line in enumerate(lines) if "residual project" in line)  # in `block basic`: one entry per call
    text = await hover_text(client, uri, row, lines[row].index("residual") + 1)
    first_of_layer2 = sum(p.numel() for p in net.layer2[0].parameters())
    assert (f"in `stage2.basic1.res1` (called at line {lines.index('stage(128, 2)    # layer2: 128 x 28 x 28') + 1})"
            in text)
    assert f"residual with projection (1x1 conv + bn) shortcut\n\n`[B, 64, 56, 56] -> [B, 128, 28, 28]`, {first_of_layer2:,} params" in text
    await close(client, uri)


async def test_hover_inside_a_block_definition_shows_each_call(client: LanguageClient):
    uri, _ = await open_doc(client, EXAMPLES / "broken" / "block_error.arch")
    text = await hover_text(client, uri, 5, 3)  # `conv c k5` in `block down(c)`
    assert "in `down1.conv2` (called at line 8)" in text and "[B, 16, 8, 8] -> [B, 16, 4, 4]" in text
    assert "in `down2.conv2` (called at line 9)" in text and "[B, 32, 2, 2] -> [B, 32, ?, ?]" in text
    await close(client, uri)


async def test_hover_on_a_code_and_inside_a_diagnostic_gives_the_rule(client: LanguageClient, tmp_path: Path):
    from archspec.language.codes import CODES

    text = "input 3x15x15\nconv 8 k3  # noqa: W201\nmaxpool 2\ngap | flatten | linear 10\n"
    uri, diags = await open_doc(client, tmp_path / "codes.arch", text)
    assert [d.code for d in diags] == ["W201"]
    on_code = await hover_text(client, uri, 1, text.splitlines()[1].index("W201") + 2)
    assert CODES["W201"].summary in on_code
    in_range = await hover_text(client, uri, 2, 3)  # `maxpool 2` carries the W201
    assert CODES["W201"].summary in in_range and "[B, 8, 13, 13] -> [B, 8, 6, 6]" in in_range
    await close(client, uri)


# --------------------------------------------------------------------------- inlay hints

async def test_inlay_hints_give_each_line_its_output_shape_and_params(client: LanguageClient):
    import torch
    from torch import nn

    uri, _ = await open_doc(client, EXAMPLES / "lenet.arch")
    got = await hints(client, uri, 20)
    lines = [nn.Sequential(nn.Conv2d(3, 6, 5), nn.ReLU(), nn.MaxPool2d(2)),
             nn.Sequential(nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2)), nn.Flatten(),
             nn.Sequential(nn.Linear(400, 120), nn.ReLU()), nn.Sequential(nn.Linear(120, 84), nn.ReLU()), nn.Linear(84, 10)]
    x = torch.zeros(1, 3, 32, 32)
    assert got[1] == "-> [B, 3, 32, 32]"
    for row, module in enumerate(lines, start=2):
        x = module(x)
        params = sum(p.numel() for p in module.parameters())
        expected = f"-> [B, {', '.join(map(str, x.shape[1:]))}]" + (f"  {params:,} params" if params else "")
        assert got[row] == expected
    assert 0 not in got  # the comment line
    await close(client, uri)


async def _everything(client: LanguageClient, path: Path, text: str) -> tuple[list, dict[int, str], dict[tuple[int, int], str | None]]:
    """Diagnostics, inlay hints and the hover at every character of every line."""
    uri, diags = await open_doc(client, path, text)
    lines = text.splitlines()
    got_hints = await hints(client, uri, len(lines))
    hovers = {}
    for row, line in enumerate(lines):
        for col in range(len(line)):
            result = await client.text_document_hover_async(types.HoverParams(
                types.TextDocumentIdentifier(uri=uri), types.Position(row, col)))
            hovers[row, col] = result.contents.value if result is not None else None  # type: ignore[union-attr]
    await close(client, uri)
    summary = [(d.code, d.severity, d.message, d.range.start.line, d.range.start.character, d.range.end.line,
                d.range.end.character) for d in diags]
    return summary, got_hints, hovers


# The same file twice: with `param` statements, and with their default values written in. A value is
# as long as its `{name}` (or `name`) so every column lines up, and the param lines become comments.
PARAMS_AND_LITERALS = {  # case: (with params, literal, the codes both get)
    "warnings": ("param w = 128\nparam d = 2\ninput 3x15x15\nconv {w} k3 | relu | relu\nrepeat d { conv {w} k3 p1 | bn }\n"
                 "maxpool 2\ngap | flatten | linear 10\n",
                 "# w = 128\n# d = 2\ninput 3x15x15\nconv 128 k3 | relu | relu\nrepeat 2 { conv 128 k3 p1 | bn }\n"
                 "maxpool 2\ngap | flatten | linear 10\n", ["W203", "W201"]),
    "an error": ("param k = 100\ninput 3x32x32\nconv 8 k3 p1 | relu\nconv 8 k{k}\nflatten\nlinear 10\n",
                 "# k = 100\ninput 3x32x32\nconv 8 k3 p1 | relu\nconv 8 k100\nflatten\nlinear 10\n", ["E101"]),
}


@pytest.mark.parametrize("case", PARAMS_AND_LITERALS)
async def test_a_file_with_params_gets_what_the_file_with_their_values_gets(client: LanguageClient, tmp_path: Path,
                                                                            case: str):
    with_params, literal, codes = PARAMS_AND_LITERALS[case]
    diags, got_hints, hovers = await _everything(client, tmp_path / "params.arch", with_params)
    want_diags, want_hints, want_hovers = await _everything(client, tmp_path / "literal.arch", literal)
    assert [d[0] for d in diags] == codes and diags == want_diags
    params = sum(line.startswith("param ") for line in with_params.splitlines())
    assert got_hints == want_hints and len(got_hints) >= 3
    compared = {at: text for at, text in hovers.items() if at[0] >= params}  # the param lines are comments there
    assert compared == {at: want_hovers[at] for at in compared}
    assert sum(text is not None and "params" in text for text in compared.values()) > 20  # layers were hovered


# --------------------------------------------------------------------------- completion

async def test_completion_of_ops_arguments_blocks_and_use_paths(client: LanguageClient):
    from archspec.language.ops import OPS

    path = EXAMPLES / "uses_blocks.arch"
    text = path.read_text() + "\nconv 8 \nbas\n"
    uri, _ = await open_doc(client, path, text)
    rows = text.splitlines()
    first = await complete(client, uri, len(rows) - 1, 3)
    assert set(OPS) <= set(first)
    assert first["conv"].detail == OPS["conv"].usage
    assert first["basic"].detail == "basic(c, s=1)" and first["basic"].kind == types.CompletionItemKind.Class
    assert "residual" in first
    args = await complete(client, uri, len(rows) - 2, len("conv 8 "))
    assert {"k", "s", "p", "d", "g", "nobias"} <= set(args)
    assert OPS["conv"].usage in args["k"].documentation.value  # type: ignore[union-attr]
    params = await complete(client, uri, 5, len("basic(64, "))
    assert set(params) == {"c=", "s="}
    await close(client, uri)
    uri, _ = await open_doc(client, path, 'use "\n')
    files = await complete(client, uri, 0, 5)
    assert "blocks.arch" in files and "broken/" in files and "uses_blocks.arch" not in files
    await close(client, uri)
    uri, _ = await open_doc(client, path, 'use "broken/\n')
    assert "broken/syntax_error.arch" in await complete(client, uri, 0, len('use "broken/'))
    await close(client, uri)


# --------------------------------------------------------------------------- navigation, symbols, formatting

async def test_definition_of_block_calls_and_use_files(client: LanguageClient):
    path = EXAMPLES / "uses_blocks.arch"
    uri, _ = await open_doc(client, path)
    rows = path.read_text().splitlines()
    blocks = (EXAMPLES / "blocks.arch").resolve()
    to_file = await client.text_document_definition_async(types.DefinitionParams(
        types.TextDocumentIdentifier(uri=uri), types.Position(1, 8)))
    assert to_file.uri == blocks.as_uri() and to_file.range.start.line == 0  # type: ignore[union-attr]
    row = next(i for i, line in enumerate(rows) if line.startswith("basic(64"))
    to_block = await client.text_document_definition_async(types.DefinitionParams(
        types.TextDocumentIdentifier(uri=uri), types.Position(row, 2)))
    block_line = next(i for i, line in enumerate(blocks.read_text().splitlines()) if line.startswith("block basic("))
    assert to_block.uri == blocks.as_uri() and to_block.range.start.line == block_line  # type: ignore[union-attr]
    await close(client, uri)


async def test_document_symbols_list_blocks_and_top_level_layers(client: LanguageClient):
    uri, _ = await open_doc(client, EXAMPLES / "resnet18.arch")
    result = await client.text_document_document_symbol_async(types.DocumentSymbolParams(types.TextDocumentIdentifier(uri=uri)))
    names = [(s.name, s.kind) for s in result]  # type: ignore[union-attr]
    assert ("basic", types.SymbolKind.Class) in names and ("stage", types.SymbolKind.Class) in names
    assert ("conv1", types.SymbolKind.Function) in names and ("stage4", types.SymbolKind.Object) in names
    assert names[-1] == ("fc1", types.SymbolKind.Function)
    await close(client, uri)


async def test_formatting_applies_the_fmt_rules(client: LanguageClient, tmp_path: Path):
    text = "input 3x32x32\nconv   6 k 5|relu\nlinear    10\n"
    formatted = subprocess.run([sys.executable, "-m", "archspec", "fmt", "-"], input=text, capture_output=True, text=True,
                               env=SERVER.server_env, check=True).stdout
    uri, _ = await open_doc(client, tmp_path / "messy.arch", text)
    edits = await client.text_document_formatting_async(types.DocumentFormattingParams(
        types.TextDocumentIdentifier(uri=uri), types.FormattingOptions(tab_size=2, insert_spaces=True)))
    assert [e.new_text for e in edits] == [formatted] and formatted != text  # type: ignore[union-attr]
    await close(client, uri)


# --------------------------------------------------------------------------- code actions

async def _actions(client: LanguageClient, uri: str, line: int) -> list[types.CodeAction]:
    result = await client.text_document_code_action_async(types.CodeActionParams(
        types.TextDocumentIdentifier(uri=uri), types.Range(types.Position(line, 0), types.Position(line, 0)),
        types.CodeActionContext(diagnostics=[])))
    return list(result or [])  # type: ignore[arg-type]


@pytest.mark.parametrize("name, code, title", [
    ("torch_names.arch", "E002", "Replace `BatchNorm2d` with `bn`"),
    ("linear_on_4d.arch", "E103", "Add `flatten` before it"),
    ("kernel_too_large.arch", "E101", "Pad with `p1`"),
    ("torch_conv_order.arch", "E003", "Write `conv 6 k5`"),
])
async def test_code_actions_fix_what_the_help_says(client: LanguageClient, name: str, code: str, title: str):
    path = EXAMPLES / "broken" / name
    text = path.read_text()
    uri, diags = await open_doc(client, path, text)
    first = next(d for d in diags if d.code == code)
    elsewhere = len([d for d in diags if d.code == code and d.range.start.line != first.range.start.line])
    actions = await _actions(client, uri, first.range.start.line)
    fix = next(a for a in actions if a.title == title)
    fixed = apply(text, fix.edit.changes[uri])  # type: ignore[union-attr,index]
    assert codes_of(fixed, path).count(code) == codes_of(text, path).count(code) - 1  # the checker agrees
    noqa = next(a for a in actions if a.title.startswith(f"Silence {code}"))
    silenced = apply(text, noqa.edit.changes[uri])  # type: ignore[union-attr,index]
    assert f"# noqa: {code}" in silenced.splitlines()[first.range.start.line]
    await close(client, uri)
    uri, diags = await open_doc(client, path, silenced)
    assert len([d for d in diags if d.code == code]) == elsewhere  # silenced on its line only
    await close(client, uri)


# --------------------------------------------------------------------------- packaging

async def test_import_archspec_and_check_do_not_load_pygls():
    probe = ("import sys, archspec; from archspec.cli import main; code = main(['check', '-q', 'examples/lenet.arch']);"
             "assert code == 0; bad = [m for m in sys.modules if m.split('.')[0] in ('pygls', 'lsprotocol')];"
             "assert not bad, bad")
    subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=SERVER.server_env, check=True, capture_output=True)


async def test_lsp_without_pygls_says_how_to_install_it():
    probe = "import sys; sys.modules['pygls'] = None; from archspec.cli import main; sys.exit(main(['lsp']))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=SERVER.server_env, capture_output=True, text=True)
    assert done.returncode == 1
    assert "error: the language server needs pygls" in done.stderr and "pip install 'archspec-cnn[lsp]'" in done.stderr


# --------------------------------------------------------------------------- quick fixes named by the help

BROKEN = sorted((EXAMPLES / "broken").glob("*.arch"))


async def test_every_quick_fix_the_help_names_removes_its_diagnostic(client: LanguageClient):
    """Every example's every diagnostic: each quick fix but `# noqa`, applied, leaves one fewer of its
    code and no new error (the checker, re-run on the fixed text, is the oracle). The fixes come from
    the help's words, whatever the code: these codes must each have one."""
    from archspec.language.pipeline import checked

    fixed_codes: set[str] = set()
    for path in BROKEN:
        text = path.read_text()
        uri, diags = await open_doc(client, path, text)
        before = codes_of(text, path)
        for line in sorted({d.range.start.line for d in diags}):
            for action in await _actions(client, uri, line):
                [d] = action.diagnostics or []
                if action.title.startswith("Silence"):
                    continue
                fixed = apply(text, action.edit.changes[uri])  # type: ignore[union-attr,index]
                after = checked(fixed, name=str(path)).diagnostics
                assert [x.code for x in after].count(d.code) < before.count(d.code), (path.name, action.title)  # type: ignore[arg-type]
                assert {x.code for x in after if x.severity == "error"} <= set(before), (path.name, action.title)
                fixed_codes.add(str(d.code))
        await close(client, uri)
    assert {"E002", "E003", "E006", "E007", "E101", "E102", "E103", "E104", "E105", "E106", "E107", "E109", "E110",
            "E113", "W201", "W203", "W204", "W205"} <= fixed_codes


async def test_a_residual_mismatch_offers_the_project_the_help_names(client: LanguageClient):
    path = EXAMPLES / "broken" / "residual_mismatch.arch"
    text = path.read_text()
    uri, diags = await open_doc(client, path, text)
    [d] = [d for d in diags if d.code == "E107"]
    assert "`residual project { ... }`" in d.message
    titles = [a.title for a in await _actions(client, uri, d.range.start.line)]
    assert titles == ["Write `residual project`", "Silence E107 on this line (# noqa)"]
    await close(client, uri)


# --------------------------------------------------------------------------- totals after an error

CBR = "block cbr(c) {\n  conv c k3 p1 nobias | bn | relu\n}\ninput 3x8x8\n{first}\ncbr(32)\ngap | flatten | linear 10\n"


async def test_a_count_an_error_leaves_partial_is_not_shown_as_a_total(client: LanguageClient, tmp_path: Path):
    from torch import nn

    uri, _ = await open_doc(client, tmp_path / "cbr.arch", CBR.replace("{first}", "conv 16 k3"))
    whole = sum(p.numel() for p in nn.Sequential(nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32)).parameters())
    assert (await hints(client, uri, 10))[5] == f"-> [B, 32, 6, 6]  {whole:,} params"  # torch agrees: 4,672
    await close(client, uri)
    uri, diags = await open_doc(client, tmp_path / "cbr.arch", CBR.replace("{first}", "cnv 16 k3"))
    assert [d.code for d in diags] == ["E002"]
    got = await hints(client, uri, 10)
    assert got[5] == "-> [B, 32, ?, ?]"  # was "64 params": the bn's alone, the conv's unknown
    assert got[6] == "-> [B, 10]  330 params"  # its input's features are known again: a full count
    assert "64 params, 0 MACs (partial:" in await hover_text(client, uri, 5, 1)
    await close(client, uri)


# --------------------------------------------------------------------------- hostile documents

def _peak_mib(client: LanguageClient) -> float:
    status = Path(f"/proc/{client._server.pid}/status").read_text()  # type: ignore[union-attr]
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]


async def test_a_use_of_a_device_or_a_fifo_is_refused_and_every_request_answers(client: LanguageClient, tmp_path: Path):
    os.mkfifo(tmp_path / "fifo.arch")
    for target in ("/dev/zero", "/dev/urandom", "fifo.arch"):
        text = f'use "{target}"\ninput 3x8x8\n\n'
        uri, diags = await asyncio.wait_for(open_doc(client, tmp_path / "main.arch", text), 15)
        assert [d.code for d in diags] == ["E008"] and "not a regular file" in diags[0].message
        assert "conv" in await asyncio.wait_for(complete(client, uri, 2, 0), 10)  # reads the used files' blocks
        assert await asyncio.wait_for(client.text_document_definition_async(types.DefinitionParams(
            types.TextDocumentIdentifier(uri=uri), types.Position(0, 7))), 10) is None
        await close(client, uri)
    assert _peak_mib(client) < 600  # reading /dev/zero grew about 2 GB a second


@pytest.mark.parametrize("depth", [300, 10_000])
async def test_a_mistake_deep_in_nested_bodies_is_reported_in_bounded_time_and_memory(client: LanguageClient, tmp_path: Path,
                                                                                      depth: int):
    """Syntax recovery kept a copy of the parser's stack per depth: O(depth²) memory (10,000: MemoryError
    after 100 s, in `archspec check` too), and at 300 a copy deep enough to raise RecursionError."""
    half = depth // 2
    text = "input 3x32x32\n" + "residual {" * half + "resi dual {" + "residual {" * (half - 1) + " relu " + "}" * depth + "\n"
    uri, diags = await asyncio.wait_for(open_doc(client, tmp_path / "deep.arch", text), 20)
    assert [d.code for d in diags] == ["E001"]
    assert "unexpected" in diags[0].message
    assert await hints(client, uri, 3) == {}
    assert _peak_mib(client) < 600
    await close(client, uri)


async def test_a_mistake_at_the_end_of_a_20000_layer_line_is_reported_in_seconds(client: LanguageClient, tmp_path: Path):
    """Recovery deep-copied the parsed values at every `|`: 100 s for this line (`archspec check` too)."""
    text = "input 3x32x32\n" + " | ".join(["relu"] * 20_000) + " | )\n"
    started = time.perf_counter()  # the bug took 100 s; 30 s leaves room for a loaded machine
    uri, diags = await asyncio.wait_for(open_doc(client, tmp_path / "line.arch", text, timeout=30), 40)
    assert time.perf_counter() - started < 30
    assert [d.code for d in diags].count("E001") == 1 and len(diags) == 20_000  # and a W203 per `relu` after the first
    await close(client, uri)


async def test_a_syntax_error_in_a_file_of_identical_lines_keeps_the_last_tree_in_seconds(client: LanguageClient, tmp_path: Path):
    """The last good tree's lines are mapped onto the broken text: difflib alone took 89 s on 20,000 `relu` lines."""
    text = "input 3x32x32\n" + "relu\n" * 20_000 + "flatten\nlinear 10\n"
    uri, _ = await open_doc(client, tmp_path / "same.arch", text, timeout=30)
    rows = text.split("\n")
    rows.insert(10_000, "conv 16 k3 {")  # mid-edit: a brace not closed yet
    started = time.perf_counter()  # the bug took 89 s; 30 s leaves room for a loaded machine
    diags = await asyncio.wait_for(change(client, uri, "\n".join(rows), 2, timeout=30), 40)
    assert time.perf_counter() - started < 30 and "E001" in [d.code for d in diags]
    assert (await hints(client, uri, 20_004))[20_003] == "-> [B, 10]  30,730 params"  # `linear 10`, a line further down
    await close(client, uri)


async def test_requests_on_unopened_files_read_them_through_the_guard(client: LanguageClient, tmp_path: Path):
    big = tmp_path / "big.arch"
    big.write_text("# padding\n" * 120_000)  # 1.2 MB
    refused = {"file:///dev/zero": "not a regular file", big.as_uri(): "over the limit of 1,048,576 bytes",
               (tmp_path / "missing.arch").as_uri(): "No such file", "untitled:Untitled-1": "not an open document"}
    for uri, reason in refused.items():
        with pytest.raises(JsonRpcException) as err:
            await asyncio.wait_for(client.text_document_hover_async(types.HoverParams(
                types.TextDocumentIdentifier(uri=uri), types.Position(0, 0))), 10)
        assert err.value.code == -32803 and reason in err.value.message and err.value.data is None
    # a readable file that is not open is answered from disk, as before
    assert "conv1" in await hover_text(client, (EXAMPLES / "lenet.arch").resolve().as_uri(), 2, 1)


async def test_a_long_file_is_checked_within_twice_archspec_check(client: LanguageClient, tmp_path: Path):
    """One diagnostic per `relu` (W203): converting them split the text once each, quadratic."""
    n = 10_000
    path = tmp_path / "long.arch"
    text = "input 3x32x32\n" + "relu\n" * n + "flatten\nlinear 10\n"
    path.write_text(text)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "archspec", "check", "-q", str(path)], env=SERVER.server_env, capture_output=True, check=False)
    cli = time.perf_counter() - started
    started = time.perf_counter()
    uri, diags = await open_doc(client, path, text)
    lsp = time.perf_counter() - started
    assert len(diags) == n - 1 and diags[-1].range.start.line == n
    assert lsp < 2 * cli, f"open -> diagnostics {lsp:.2f} s, archspec check {cli:.2f} s"
    await close(client, uri)


# --------------------------------------------------------------------------- the protocol, in raw bytes

class RawServer:
    """`archspec lsp` in a subprocess, spoken to in bytes (what a client library would not send)."""

    def __init__(self, *argv: str) -> None:
        self.proc = subprocess.Popen(list(argv) or [sys.executable, "-m", "archspec", "lsp"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=SERVER.server_env)
        self.buffer = b""

    def send(self, data: bytes | dict) -> None:
        if isinstance(data, dict):
            body = json.dumps({"jsonrpc": "2.0", **data}).encode()
            data = b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        self.proc.stdin.write(data)  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]

    def receive(self, timeout: float = 10) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            head, sep, rest = self.buffer.partition(b"\r\n\r\n")
            size = re.search(rb"Content-Length: (\d+)", head)
            if sep and size and len(rest) >= int(size.group(1)):
                self.buffer = rest[int(size.group(1)):]
                return json.loads(rest[:int(size.group(1))])
            left = deadline - time.monotonic()
            assert left > 0 and select.select([self.proc.stdout], [], [], left)[0], "no answer"
            chunk = os.read(self.proc.stdout.fileno(), 1 << 16)  # type: ignore[union-attr]
            assert chunk, "the server exited"
            self.buffer += chunk

    def reply(self, msg_id: int) -> dict:
        """The answer to request `msg_id` (notifications on the way are skipped)."""
        while "id" not in (message := self.receive()) or message["id"] != msg_id:
            pass
        return message

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def raw():
    server = RawServer()
    server.send({"id": 0, "method": "initialize", "params": {"capabilities": {}}})
    server.reply(0)
    server.send({"method": "initialized", "params": {}})
    yield server
    server.close()


def _hover(msg_id: int, uri: str, line: object = 0, character: object = 0) -> dict:
    return {"id": msg_id, "method": "textDocument/hover",
            "params": {"textDocument": {"uri": uri}, "position": {"line": line, "character": character}}}


LENET_URI = (EXAMPLES / "lenet.arch").resolve().as_uri()


async def test_bad_params_are_answered_invalid_params(raw: RawServer):
    bad = [_hover(1, LENET_URI, -1), _hover(2, LENET_URI, 2**31), _hover(3, LENET_URI, 0, -5),
           {"id": 4, "method": "textDocument/hover", "params": 5},
           {"id": 5, "method": "textDocument/completion", "params": {"textDocument": {"uri": LENET_URI}}},
           {"id": 6, "method": "textDocument/inlayHint", "params": {"textDocument": {"uri": 7}, "range": None}}]
    for request in bad:
        raw.send(request)
        error = raw.reply(request["id"])["error"]
        assert error["code"] == -32602 and "data" not in error, error
        assert error["message"].startswith(f"invalid params for {request['method']}: ")
        if request["id"] <= 3:
            assert error["message"].endswith("(a line or character is an integer from 0 to 2147483647)")
    raw.send(_hover(7, LENET_URI, 2, 1))  # still serving
    assert "conv1" in raw.reply(7)["result"]["contents"]["value"]


async def test_a_frame_shorter_than_its_content_length_costs_that_frame_only(raw: RawServer):
    raw.send(b'Content-Length: 500\r\n\r\n{"jsonrpc": "2.0", "id": 1, "method": "shutdown"}')
    raw.send(_hover(2, LENET_URI, 2, 1))
    error = raw.receive()
    assert error == {"jsonrpc": "2.0", "id": None,
                     "error": {"code": -32700, "message": "a message shorter than its Content-Length (500 bytes)"}}
    assert "conv1" in raw.reply(2)["result"]["contents"]["value"]
    raw.send(b"Content-Length: 12\r\n\r\nnot json at")  # one byte short: completed by the next frame's first byte
    raw.send(b"!")
    assert raw.receive()["error"]["code"] == -32700
    raw.send(b"Content-Length: 999999999999\r\n\r\n{")  # a length no message has
    raw.send(_hover(3, LENET_URI, 2, 1))
    assert raw.receive()["error"]["code"] == -32700
    assert "conv1" in raw.reply(3)["result"]["contents"]["value"]
    raw.send(b"Content-Length: 7\r\n\r\n[1, 2 ]")
    assert raw.receive()["error"]["code"] == -32600


async def test_an_error_inside_the_server_is_answered_without_a_traceback():
    fail = ("import archspec.lsp.analysis as a\n"
            "def hover(*args):\n    raise KeyError('boom')\n"
            "a.hover = hover\nfrom archspec.lsp.server import serve\nserve()\n")
    server = RawServer(sys.executable, "-c", fail)
    try:
        server.send({"id": 0, "method": "initialize", "params": {"capabilities": {}}})
        server.reply(0)
        server.send(_hover(1, LENET_URI, 2, 1))
        error = server.reply(1)["error"]
        assert error == {"code": -32603, "message": "internal error in archspec lsp: KeyError: 'boom'"}
    finally:
        server.close()
