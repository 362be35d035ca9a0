"""The language server: pygls over stdio, answering from `archspec.lsp.analysis`.

Diagnostics are published on open, change and save. Edits are throttled, not merely delayed:
the first edit after a quiet spell is checked at once (a check takes milliseconds), and edits
arriving within DEBOUNCE_S of a check are coalesced into one check DEBOUNCE_S after it, so the
last edit of a burst is always checked. Requests (hover, hints, ...) analyse the latest text
themselves when it changed since the last check.
"""
from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import unquote

from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.io_ import StdoutWriter
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol, lsp_method
from pygls.uris import from_fs_path, to_fs_path

from archspec._version import VERSION as __version__
from archspec.language.diagnostics import Diagnostic, Span
from archspec.language.files import Unreadable, read_arch_file
from archspec.lsp.framing import BadFrame, FrameReader

if TYPE_CHECKING:
    from archspec.lsp.analysis import Analysis

DEBOUNCE_S = 0.15
SOURCE = "archspec"
PARSE_ERROR, INVALID_REQUEST, INVALID_PARAMS, INTERNAL_ERROR, REQUEST_FAILED = -32700, -32600, -32602, -32603, -32803
_UNANSWERED = object()  # a message already answered (or a notification dropped) while it was read
logger = logging.getLogger(__name__)


class RequestFailed(JsonRpcException):
    """A request about a document that cannot be read (not open, and refused by the file guard)."""

    CODE = REQUEST_FAILED


class ArchspecProtocol(LanguageServerProtocol):
    """pygls' protocol, answering what it would leave unanswered, without Python tracebacks."""

    def structure_message(self, data: dict[str, Any]) -> Any:
        try:
            return super().structure_message(data)
        except JsonRpcException as exc:  # params that do not fit the method's types
            if "method" in data and "id" in data:
                self.reply_error(data["id"], INVALID_PARAMS, _params_problem(data["method"], exc))
            return _UNANSWERED

    def handle_message(self, message: Any) -> None:
        if message is _UNANSWERED:
            return
        if not hasattr(message, "jsonrpc"):  # JSON, but no JSON-RPC message (a list, a number, no "jsonrpc")
            self.reply_error(message.get("id") if isinstance(message, dict) else None, INVALID_REQUEST,
                             "not a JSON-RPC 2.0 message (an object with \"jsonrpc\": \"2.0\" and a \"method\")")
            return
        super().handle_message(message)

    def reply_error(self, msg_id: Any, code: int, message: str) -> None:
        if isinstance(msg_id, (int, str)) and not isinstance(msg_id, bool):
            self._send_response(msg_id, error=types.ResponseError(code=code, message=message))
        else:  # JSON-RPC: "id": null when the request's id is unknown (lsprotocol would drop the field)
            self._send_data({"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}})

    def _send_response(self, msg_id: Any, result: Any = None, error: types.ResponseError | None = None) -> None:
        if error is not None and error.data is not None:  # pygls puts the Python traceback in `data`
            message = error.message.splitlines()[0] if error.message else "unknown error"
            if error.code == INTERNAL_ERROR:
                message = f"internal error in archspec lsp: {message}"
            error = types.ResponseError(code=error.code, message=message)
        super()._send_response(msg_id, result, error)

    @lsp_method(types.TEXT_DOCUMENT_DID_CHANGE)
    def lsp_text_document__did_change(self, params: types.DidChangeTextDocumentParams):
        """A change to a document that is not open is dropped (pygls would read the file from disk to apply it)."""
        if unquote(params.text_document.uri) not in self.workspace.text_documents:
            logger.warning("didChange for %s, which is not open: ignored", params.text_document.uri)
            return
        yield from super().lsp_text_document__did_change(params)


def _params_problem(method: Any, exc: JsonRpcException) -> str:
    from cattrs import transform_error

    cause = exc.__cause__
    where = "; ".join(transform_error(cause)) if cause is not None else "they do not fit its types"
    where = where.replace("@ $.params", "at params").replace("@ $", "at the message")
    hint = " (a line or character is an integer from 0 to 2147483647)" if "position" in where or "range" in where else ""
    return f"invalid params for {method!s:.80}: {where}{hint}"


class ArchspecServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__("archspec", __version__, text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
                         protocol_cls=ArchspecProtocol)
        self.analyses: dict[str, Analysis] = {}
        self.pending: dict[str, asyncio.TimerHandle] = {}
        self.last_check: dict[str, float] = {}
        # Diagnostics go to the file they are in: published[target uri][document uri] = its list.
        self.published: dict[str, dict[str, list[types.Diagnostic]]] = {}

    # ---- the connection

    def start_io(self, stdin: BinaryIO | None = None, stdout: BinaryIO | None = None) -> None:
        """Serve over stdio, reading frames with `framing` (a bad frame costs that frame only)."""
        self._stop_event = threading.Event()
        source = stdin or sys.stdin.buffer
        self.protocol.set_writer(StdoutWriter(stdout or sys.stdout.buffer))

        async def read_some(n: int) -> bytes:
            return await asyncio.get_running_loop().run_in_executor(self.thread_pool, source.read1, n)  # type: ignore[attr-defined]

        try:
            asyncio.run(self.serve_frames(FrameReader(read_some)))
        except (BrokenPipeError, KeyboardInterrupt, SystemExit):
            pass
        finally:
            self.shutdown()

    async def serve_frames(self, frames: FrameReader) -> None:
        protocol: ArchspecProtocol = self.protocol  # type: ignore[assignment]
        while not self._stop_event.is_set():  # type: ignore[union-attr]
            try:
                body = await frames.next_body()
            except EOFError:
                return
            except BadFrame as exc:
                protocol.reply_error(None, PARSE_ERROR, exc.reason)
                continue
            try:
                message = json.loads(body, object_hook=protocol.structure_message)
            except (ValueError, RecursionError) as exc:  # not UTF-8, not JSON, nested too deep
                protocol.reply_error(None, PARSE_ERROR, f"the message is not JSON ({str(exc)[:200]})")
                continue
            try:
                protocol.handle_message(message)
            except Exception:  # a handler's own errors are answered by pygls; this is the dispatch failing
                logger.exception("message not handled")

    # ---- documents

    def is_open(self, uri: str) -> bool:
        return unquote(uri) in self.workspace.text_documents

    def text(self, uri: str) -> str:
        """The document's text: the editor's copy when it is open, else the file read through the
        checker's guard (no device, FIFO or file over 1 MiB is read)."""
        if self.is_open(uri):
            return self.workspace.get_text_document(uri).source
        path = to_fs_path(uri) if uri.startswith("file:") else None
        if not path:
            raise RequestFailed(f"{uri}: not an open document, and not a file")
        try:
            return read_arch_file(path)
        except Unreadable as exc:
            raise RequestFailed(f"{uri}: {exc.reason}") from None

    def lines(self, uri: str) -> list[str]:
        return self.text(uri).splitlines() or [""]

    def analysis(self, uri: str, fresh: bool = False) -> Analysis:
        """The analysis of the document's current text (re-checked only when the text changed, or
        when `fresh`: a file it uses changed on disk). One of a document that is not open is not kept."""
        text = self.text(uri)
        previous = self.analyses.get(uri)
        if fresh or previous is None or previous.text != text:
            previous = _analysis().analyze(_path(uri), text, previous)
            if self.is_open(uri):
                self.analyses[uri] = previous
        return previous

    def schedule(self, uri: str) -> None:
        loop = asyncio.get_event_loop()
        if uri in self.pending:
            return  # a check is already due: it will read the latest text
        wait = DEBOUNCE_S - (loop.time() - self.last_check.get(uri, -DEBOUNCE_S))
        if wait <= 0:
            self.check_and_publish(uri)
        else:
            self.pending[uri] = loop.call_later(wait, self.check_and_publish, uri)

    def check_and_publish(self, uri: str, fresh: bool = False) -> None:
        self.pending.pop(uri, None)
        if not self.is_open(uri):
            return
        self.last_check[uri] = asyncio.get_event_loop().time()
        a = self.analysis(uri, fresh)
        by_target: dict[str, list[types.Diagnostic]] = {uri: []}
        for d in a.report.diagnostics:
            target = uri if d.span is None or d.span.path == a.path else _uri(d.span.path)
            by_target.setdefault(target, []).append(self.to_lsp(d, target, a, uri))
            if target != uri and d.trace and d.trace[0][1].path == a.path:  # show it at the call in this file too
                by_target[uri].append(self.at_call_site(d, uri, a))
        for target in set(by_target) | {t for t, sources in self.published.items() if uri in sources}:
            self.published.setdefault(target, {})[uri] = by_target.get(target, [])
            merged = [x for source in self.published[target].values() for x in source]
            version = self.workspace.get_text_document(uri).version if target == uri else None
            self.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=target, diagnostics=merged, version=version))

    def forget(self, uri: str) -> None:
        handle = self.pending.pop(uri, None)
        if handle:
            handle.cancel()
        self.analyses.pop(uri, None)
        for target, sources in self.published.items():
            if sources.pop(uri, None) is not None:
                merged = [x for source in sources.values() for x in source]
                self.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=target, diagnostics=merged))

    # ---- conversions

    def span_range(self, span: Span | None, lines: list[str]) -> types.Range:
        if span is None:
            return types.Range(types.Position(0, 0), types.Position(0, 0))
        return types.Range(_position(lines, span.line - 1, span.column - 1),
                           _position(lines, span.end_line - 1, span.end_column - 1))

    def lines_of(self, uri: str) -> list[str]:
        """The lines of any document (a definition's target), [] when it cannot be read."""
        try:
            return self.lines(uri)
        except RequestFailed:
            return []

    def to_lsp(self, d: Diagnostic, target: str, a: Analysis, doc_uri: str) -> types.Diagnostic:
        lines = (a.source_lines(d.span.path) if d.span else None) or self.lines_of(target) or [""]
        related = [types.DiagnosticRelatedInformation(
            types.Location(doc_uri if span.path == a.path else _uri(span.path),
                           self.span_range(span, a.source_lines(span.path) or [""])),
            f"in block `{name}`, called here") for name, span in d.trace]
        message = "\n".join([d.message] + [f"note: {n}" for n in d.notes] + ([f"help: {d.help}"] if d.help else []))
        return types.Diagnostic(
            range=self.span_range(d.span, lines),
            message=message,
            severity=types.DiagnosticSeverity.Error if d.severity == "error" else types.DiagnosticSeverity.Warning,
            code=d.code,
            code_description=None,
            source=SOURCE,
            related_information=related or None,
        )

    def at_call_site(self, d: Diagnostic, uri: str, a: Analysis) -> types.Diagnostic:
        name, call = d.trace[0]
        where = f"{Path(d.span.path).name}:{d.span.line}:{d.span.column}"  # type: ignore[union-attr]
        base = self.to_lsp(d, uri, a, uri)
        base.range = self.span_range(call, a.text_lines)
        base.message = f"in block `{name}` ({where}): {base.message}"
        return base


def _analysis() -> ModuleType:
    """archspec.lsp.analysis (and with it the checker), imported after `initialize` is answered:
    importing it costs about as much CPU as the rest of the start, and the editor waits for that answer."""
    from archspec.lsp import analysis

    return analysis


def _path(uri: str) -> str:
    path = to_fs_path(uri) if uri.startswith("file:") else None
    return path or _analysis().UNSAVED


def _uri(path: str) -> str:
    return from_fs_path(str(Path(path).resolve())) or path


def _position(lines: list[str], line: int, column: int) -> types.Position:
    """A 0-based (line, code point column) as LSP's (line, UTF-16 column)."""
    if not 0 <= line < len(lines):
        return types.Position(max(line, 0), 0)
    prefix = lines[line][:max(column, 0)]
    return types.Position(line, len(prefix.encode("utf-16-le")) // 2)


def _column(lines: list[str], position: types.Position) -> tuple[int, str]:
    """LSP's UTF-16 column as a code point column, and the line's text."""
    text = lines[position.line] if 0 <= position.line < len(lines) else ""
    units = text.encode("utf-16-le")[: position.character * 2]
    return len(units.decode("utf-16-le", errors="ignore")), text


server = ArchspecServer()


@server.feature(types.INITIALIZED)
def initialized(ls: ArchspecServer, params: types.InitializedParams) -> None:
    _analysis()  # load the checker now, while the editor is still sending didOpen


@server.feature(types.TEXT_DOCUMENT_DID_OPEN)
def did_open(ls: ArchspecServer, params: types.DidOpenTextDocumentParams) -> None:
    ls.check_and_publish(params.text_document.uri)


@server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
def did_change(ls: ArchspecServer, params: types.DidChangeTextDocumentParams) -> None:
    ls.schedule(params.text_document.uri)


@server.feature(types.TEXT_DOCUMENT_DID_SAVE)
def did_save(ls: ArchspecServer, params: types.DidSaveTextDocumentParams) -> None:
    ls.check_and_publish(params.text_document.uri)


@server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: ArchspecServer, params: types.DidCloseTextDocumentParams) -> None:
    ls.forget(params.text_document.uri)


@server.feature(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)
def watched_files_changed(ls: ArchspecServer, params: types.DidChangeWatchedFilesParams) -> None:
    """A .arch file changed on disk: re-check every open document (any of them may `use` it)."""
    for uri in list(ls.workspace.text_documents):
        ls.check_and_publish(uri, fresh=True)


@server.feature(types.TEXT_DOCUMENT_HOVER)
def hover(ls: ArchspecServer, params: types.HoverParams) -> types.Hover | None:
    uri = params.text_document.uri
    column, line_text = _column(ls.lines(uri), params.position)
    text = _analysis().hover(ls.analysis(uri), params.position.line, column, line_text)
    if text is None:
        return None
    return types.Hover(contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=text))


@server.feature(types.TEXT_DOCUMENT_INLAY_HINT)
def inlay_hints(ls: ArchspecServer, params: types.InlayHintParams) -> list[types.InlayHint]:
    uri = params.text_document.uri
    lines = ls.lines(uri)
    first, last = params.range.start.line, params.range.end.line
    return [types.InlayHint(position=_position(lines, line, len(lines[line])), label=label,
                            kind=types.InlayHintKind.Type, padding_left=True)
            for line, label in sorted(_analysis().inlay_hints(ls.analysis(uri)).items())
            if first <= line <= last and line < len(lines)]


_COMPLETION_KINDS = {
    "op": types.CompletionItemKind.Function, "keyword": types.CompletionItemKind.Keyword,
    "block": types.CompletionItemKind.Class, "argument": types.CompletionItemKind.Property,
    "flag": types.CompletionItemKind.EnumMember, "parameter": types.CompletionItemKind.Variable,
    "file": types.CompletionItemKind.File, "folder": types.CompletionItemKind.Folder,
}


@server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(trigger_characters=[" ", '"', "/", "|", "("]))
def completion(ls: ArchspecServer, params: types.CompletionParams) -> types.CompletionList:
    uri = params.text_document.uri
    column, line_text = _column(ls.lines(uri), params.position)
    items = [types.CompletionItem(
        label=c.label, kind=_COMPLETION_KINDS[c.kind], detail=c.detail or None, insert_text=c.insert,
        documentation=types.MarkupContent(kind=types.MarkupKind.Markdown, value=c.doc) if c.doc else None)
        for c in _analysis().complete(ls.analysis(uri), line_text, column)]
    return types.CompletionList(is_incomplete=False, items=items)


@server.feature(types.TEXT_DOCUMENT_DEFINITION)
def definition(ls: ArchspecServer, params: types.DefinitionParams) -> types.Location | None:
    uri = params.text_document.uri
    column, line_text = _column(ls.lines(uri), params.position)
    found = _analysis().definition(ls.analysis(uri), params.position.line, column, line_text)
    if found is None:
        return None
    path, line, col, end_line, end_col = found
    target = _uri(path)
    lines = ls.lines_of(target)
    return types.Location(target, types.Range(_position(lines, line, col), _position(lines, end_line, end_col)))


_SYMBOL_KINDS = {"block": types.SymbolKind.Class, "layer": types.SymbolKind.Function,
                 "call": types.SymbolKind.Object, "structure": types.SymbolKind.Namespace}


@server.feature(types.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
def document_symbols(ls: ArchspecServer, params: types.DocumentSymbolParams) -> list[types.DocumentSymbol]:
    uri = params.text_document.uri
    lines = ls.lines(uri)
    out = []
    for s in _analysis().symbols(ls.analysis(uri)):
        rng = types.Range(_position(lines, s.line, s.column), _position(lines, s.end_line, s.end_column))
        out.append(types.DocumentSymbol(name=s.name, kind=_SYMBOL_KINDS[s.kind], range=rng, selection_range=rng, detail=s.detail))
    return out


@server.feature(types.TEXT_DOCUMENT_FORMATTING)
def formatting(ls: ArchspecServer, params: types.DocumentFormattingParams) -> list[types.TextEdit] | None:
    from archspec.language.errors import ArchspecError
    from archspec.views.fmt import format_text

    uri = params.text_document.uri
    text = ls.text(uri)
    try:
        formatted = format_text(text, _path(uri))
    except ArchspecError:
        return None  # a file that does not parse is left as it is (as `archspec fmt` does)
    if formatted == text:
        return []
    lines = text.splitlines()
    end = types.Position(len(lines), 0)
    return [types.TextEdit(types.Range(types.Position(0, 0), end), formatted)]


@server.feature(types.TEXT_DOCUMENT_CODE_ACTION,
                types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.QuickFix]))
def code_actions(ls: ArchspecServer, params: types.CodeActionParams) -> list[types.CodeAction]:
    uri = params.text_document.uri
    a = ls.analysis(uri)
    lines = ls.lines(uri)
    wanted = params.range
    actions = []
    for d in a.report.diagnostics:
        if d.span is None or d.span.path != a.path:
            continue
        rng = ls.span_range(d.span, a.text_lines)
        if rng.end.line < wanted.start.line or rng.start.line > wanted.end.line:
            continue
        lsp_diag = ls.to_lsp(d, uri, a, uri)
        for fix in _analysis().fixes(d, a.text_lines):
            end_line = fix.line if fix.end_line is None else fix.end_line
            edit = types.TextEdit(types.Range(_position(lines, fix.line, fix.start), _position(lines, end_line, fix.end)), fix.text)
            actions.append(types.CodeAction(
                title=fix.title, kind=types.CodeActionKind.QuickFix, diagnostics=[lsp_diag], is_preferred=fix.preferred or None,
                edit=types.WorkspaceEdit(changes={uri: [edit]})))
    return actions


VIEW_REQUEST = "archspec/view"


@server.feature(VIEW_REQUEST)
def view_data(ls: ArchspecServer, params: object) -> dict:
    """The interactive view of a document as it is now (the VS Code command "archspec: Show network").

    Params: `{"textDocument": {"uri": ...}, "page": bool}`. The result is `{"data": ...}`, the view's
    JSON; with `page` true also `"page"`: the view's HTML, which then takes new data by message.
    """
    from archspec.views.interactive import page, view_data as data_of

    doc = _field(params, "textDocument")
    data = data_of(ls.analysis(_field(doc, "uri")).report)
    return {"data": data, **({"page": page(None, "archspec view")} if _field(params, "page", False) else {})}


def _field(params: object, name: str, default: object = None) -> object:
    """A custom request's params arrive as pygls' attribute objects (or a dict, from some clients)."""
    return params.get(name, default) if isinstance(params, dict) else getattr(params, name, default)


def serve() -> None:
    server.start_io()
