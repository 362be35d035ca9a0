"""Named tensors in the language server, through a real LSP client (pytest-lsp): diagnostics, hover on `from NAME`,
go to the `as NAME` that gives it, and completion of the names after `from `."""
from __future__ import annotations

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient

from test_lsp import client, close, open_doc  # noqa: F401 - `client` is the server fixture, shared

pytestmark = pytest.mark.asyncio(loop_scope="module")

TEXT = """input 3x16x16
conv 8 k3 p1 | relu | as stem
conv 16 k3 s2 p1 | relu
concat {} { from stem | maxpool 2 }
concat {} { from stme }
"""


async def test_names_get_diagnostics_hover_definition_and_completion(client: LanguageClient, tmp_path):
    uri, diagnostics = await open_doc(client, tmp_path / "named.arch", TEXT)
    assert [(d.code, d.range.start.line, d.range.start.character) for d in diagnostics] == [("E130", 4, 17)]
    assert diagnostics[0].message.startswith("no tensor named `stme` here")
    hover = await client.text_document_hover_async(types.HoverParams(
        types.TextDocumentIdentifier(uri=uri), types.Position(3, 18)))
    assert hover is not None and "`from stem`" in hover.contents.value  # type: ignore[union-attr]
    assert "[B, 8, 16, 16]" in hover.contents.value  # type: ignore[union-attr]
    found = await client.text_document_definition_async(types.DefinitionParams(
        types.TextDocumentIdentifier(uri=uri), types.Position(3, 18)))
    assert found.uri == uri and found.range.start == types.Position(1, 22)  # type: ignore[union-attr]
    items = await client.text_document_completion_async(types.CompletionParams(
        types.TextDocumentIdentifier(uri=uri), types.Position(4, 17)))
    assert [i.label for i in items.items] == ["stem"]  # type: ignore[union-attr]
    await close(client, uri)
