"""What the editor asks about one .arch document, answered from the checked tree (no LSP here).

Positions in this module are 0-based lines and 0-based columns counted in characters (code
points); `server` converts them to and from the protocol's UTF-16 columns. A document whose
text does not parse keeps the checked tree of its last text that did, with that text's lines
mapped onto the current ones (`Analysis.line_map`), so hovers and inlay hints survive a syntax
error mid-edit on every line that did not change.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Iterator

from archspec.language import codes
from archspec.language.check import CheckReport
from archspec.language.diagnostics import CODES, Diagnostic, Span
from archspec.language.expand import MAX_USE_DEPTH
from archspec.language.files import Unreadable, read_arch_file
from archspec.language.pipeline import checked
from archspec.language.ops import OPS, Input, fmt_shape, value_text
from archspec.language.joins import JOINS
from archspec.language.named import READ_WORD, KeepTensor
from archspec.language.tree import Branch, Call, CheckedNode, Join, Layer, TensorRead, Visitor, layers, walk

# A document that is not a file on disk (an untitled buffer): `use` paths resolve from the cwd.
UNSAVED = "<string>"
KEYWORDS = {
    "block": "block NAME(param, param=default) { ... }: a named, reusable sequence of layers",
    **{word: join.keyword_doc for word, join in JOINS.items()},
    "repeat": "repeat N { ... }: the body N times",
    "use": 'use "file.arch": brings in the block definitions of another file',
    "param": "param NAME = VALUE: a value `archspec sweep` may vary; the file checks and trains with VALUE",
    "as": "as NAME: names the running tensor, so that a later `from NAME` can read it",
    "from": "from NAME: starts from the tensor named with `as NAME`, in place of the running one (a skip from an earlier stage)",
}


@dataclass
class BlockInfo:
    """A `block` definition as written: its name, parameters (with default text) and where."""

    name: str
    params: list[tuple[str, str | None]]
    path: str
    line: int  # 0-based, the `block` line
    column: int
    end_line: int  # the closing `}`
    end_column: int
    name_span: Span

    def signature(self) -> str:
        return f"{self.name}(" + ", ".join(p if d is None else f"{p}={d}" for p, d in self.params) + ")"


@dataclass
class Analysis:
    """One version of a document: its check report, and the tree that answers hovers."""

    path: str
    text: str
    report: CheckReport  # the current text's report: its diagnostics are what the editor shows
    tree: CheckReport  # the current report, or the last one whose text parsed
    line_map: dict[int, int] | None = None  # the tree's 0-based lines -> the current text's; None: the same text
    previous: "Analysis | None" = field(default=None, repr=False)  # the good analysis a broken text falls back on
    _lines: dict[str, list[str]] = field(default_factory=dict, repr=False)

    @cached_property
    def text_lines(self) -> list[str]:
        return self.text.splitlines() or [""]

    def source_lines(self, path: str) -> list[str] | None:
        """The lines of a checked source (this file or a used one), split once: converting a report's
        thousands of spans used to split the text once per diagnostic."""
        if path not in self._lines:
            text = self.report.sources.get(path)
            if text is None:
                return None
            self._lines[path] = text.splitlines() or [""]
        return self._lines[path]

    @cached_property
    def blocks(self) -> list[BlockInfo]:
        """The blocks in scope (a second parse: computed when completion or definition asks, not per edit)."""
        if self.previous is not None:
            return self.previous.blocks
        return block_infos(self.text, self.path)

    @property
    def parses(self) -> bool:
        return self.tree is self.report

    def here(self, line: int) -> int | None:
        """The current line of a line of the tree's text (None when that line was edited away)."""
        return line if self.line_map is None else self.line_map.get(line)


def analyze(path: str, text: str, previous: Analysis | None = None) -> Analysis:
    """Check the text; when it does not parse, keep the previous good tree, mapped by lines."""
    report = checked(text, name=path)  # budgets and `# noqa` as in `check`
    broken = any(d.code == codes.SYNTAX_ERROR and d.span is not None and d.span.path == path for d in report.diagnostics)
    if not broken or previous is None:
        return Analysis(path, text, report, report)
    good = previous.previous or previous
    return Analysis(path, text, report, good.tree, map_lines(good.text, text), good)


MAX_DIFF_CELLS = 4_000_000  # old lines x new lines between the common head and tail that are diffed


def map_lines(old: str, new: str) -> dict[int, int]:
    """0-based line numbers of `old` that survive unchanged in `new`, and where they are now.

    The common head and tail are matched first, and only the lines between them are diffed: on a
    file of 20,000 identical lines difflib alone took 89 s (each line matches every other). An edit
    that rewrites a region too large to diff maps only the head and tail."""
    a, b = old.splitlines(), new.splitlines()
    head = 0
    while head < min(len(a), len(b)) and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < min(len(a), len(b)) - head and a[-1 - tail] == b[-1 - tail]:
        tail += 1
    mapping = {i: i for i in range(head)} | {len(a) - 1 - k: len(b) - 1 - k for k in range(tail)}
    middle_a, middle_b = a[head:len(a) - tail], b[head:len(b) - tail]
    if middle_a and middle_b and len(middle_a) * len(middle_b) <= MAX_DIFF_CELLS:
        matcher = difflib.SequenceMatcher(None, middle_a, middle_b, autojunk=False)
        mapping |= {head + x + i: head + y + i for x, y, size in matcher.get_matching_blocks() for i in range(size)}
    return mapping


# --------------------------------------------------------------------------- blocks in the text

def block_infos(text: str, path: str, seen: set[str] | None = None, depth: int = 0) -> list[BlockInfo]:
    """The blocks a text defines and those of the files it `use`s (recursively, each file once, as
    deep as the checker follows a `use` chain)."""
    from archspec.language.syntax import ParseFailed, parse_tree, token_span

    seen = seen if seen is not None else set()
    try:
        tree = parse_tree(text, path)
    except ParseFailed:
        return []
    found: list[BlockInfo] = []
    for stmt in tree.children:
        if getattr(stmt, "data", None) == "block_def":
            name_tok, params_tree, _body = stmt.children
            params = [(str(p.children[0]), _source(text, p.children[1]) if p.children[1] is not None else None)
                      for p in (params_tree.children if params_tree is not None else [])]
            meta = stmt.meta
            found.append(BlockInfo(str(name_tok), params, path, meta.line - 1, meta.column - 1,
                                   meta.end_line - 1, meta.end_column - 1, token_span(name_tok, path)))
        elif getattr(stmt, "data", None) == "use":
            target = use_target(path, str(stmt.children[0])[1:-1])
            if str(target) in seen or depth >= MAX_USE_DEPTH:
                continue
            seen.add(str(target))
            try:  # through the checker's guard: no device, FIFO or file over 1 MiB is read
                found += block_infos(read_arch_file(target), str(target), seen, depth + 1)
            except Unreadable:
                continue  # the checker reports it (E008)
    return found


def _source(text: str, tree) -> str:
    meta = getattr(tree, "meta", None)
    if meta is not None and not meta.empty:
        return text[meta.start_pos:meta.end_pos]
    return str(tree)


def use_target(path: str, rel: str) -> Path:
    """Where `use "rel"` in the file `path` points (as the checker resolves it)."""
    base = Path(path).parent if path != UNSAVED else Path.cwd()
    return (base / rel).resolve()


# --------------------------------------------------------------------------- nodes at a position

def _own(node: CheckedNode, path: str) -> bool:
    return node.span is not None and node.span.path == path


def nodes_at(a: Analysis, line: int, column: int) -> list[CheckedNode]:
    """Nodes written at this position of the document (in execution order): one for a line of the
    network, one per call for a layer inside a block definition. Innermost spans only."""
    hits = []
    for node in walk(a.tree.body, children_first=True):  # a join has its residual's or branch's span: that node speaks for it
        span = node.span
        if isinstance(node, Join) or not _own(node, a.path) or span.line != span.end_line or a.here(span.line - 1) != line:  # type: ignore[union-attr]
            continue
        if span.column - 1 <= column <= span.end_column - 1:  # type: ignore[union-attr]
            hits.append(node)
    if not hits:
        return []
    width = min(n.span.end_column - n.span.column for n in hits)  # type: ignore[union-attr]
    # Nodes sharing a span in one call (the 1x1 conv + bn `residual project` sizes, written at its
    # `residual`) are answered by the outermost, which post-order gives last.
    outermost: dict[tuple, CheckedNode] = {}
    for n in hits:
        if n.span.end_column - n.span.column == width:  # type: ignore[union-attr]
            outermost.pop((n.trace, n.span), None)
            outermost[(n.trace, n.span)] = n
    return list(outermost.values())


# --------------------------------------------------------------------------- hover

def hover(a: Analysis, line: int, column: int, line_text: str) -> str | None:
    """Markdown for the position: the layer (or block call, or structure), then the rules of any
    diagnostic code under the cursor or any diagnostic covering it."""
    parts: list[str] = []
    nodes = nodes_at(a, line, column)
    if nodes:
        parts.append(_node_hover(nodes, a))
    code = _code_at(line_text, column)
    rule_codes = [code] if code else []
    rule_codes += [d.code for d in a.report.diagnostics if _covers(d, a.path, line, column) and d.code not in rule_codes]
    parts += [rule_doc(c) for c in rule_codes]
    return "\n\n---\n\n".join(parts) if parts else None


def _covers(d: Diagnostic, path: str, line: int, column: int) -> bool:
    s = d.span
    if s is None or s.path != path:
        return False
    return (s.line - 1, s.column - 1) <= (line, column) <= (s.end_line - 1, s.end_column - 1)


def _code_at(line_text: str, column: int) -> str | None:
    for m in re.finditer(r"\b[EW]\d{3}\b", line_text):
        if m.start() <= column <= m.end() and m.group() in CODES:
            return m.group()
    return None


def rule_doc(code: str) -> str:
    info = CODES[code]
    return (f"**{info.code}** `{info.name}` ({info.severity})\n\n{info.summary}\n\n"
            f"example: `{info.example}`\n\nfix: {info.fix}")


def _node_hover(nodes: list[CheckedNode], a: Analysis) -> str:
    first = nodes[0]
    if first.trace:  # inside a block definition: one entry per call of the block
        shown = nodes[:4]
        body = "\n\n".join(f"in `{n.path}` (called at line {n.trace[0][1].line}):\n\n" + _describe(n, a) for n in shown)
        more = f"\n\n... and {len(nodes) - len(shown)} more calls" if len(nodes) > len(shown) else ""
        return body + more
    return _describe(first, a)


def _describe(node: CheckedNode, a: Analysis) -> str:
    return _Hover(a).visit(node)


class _Hover(Visitor[str]):
    """The hover text of one checked node (the block, residual or branch totals; a layer's arithmetic)."""

    def __init__(self, analysis: Analysis) -> None:
        self.analysis = analysis

    def visit_layer(self, node: Layer) -> str:
        return _layer_hover(node, self.analysis)

    def visit_call(self, node: Call) -> str:
        args = ", ".join(f"{k}={value_text(v)}" for k, v in node.args.items())
        count = len(layers(node.children()))
        return f"**{node.path}**: block `{node.block}({args})`, {count} layers\n\n{_totals(node, self.analysis)}"

    def visit_branch(self, node: Branch) -> str:
        return f"**{node.path}**: {node.rule.hover(node)}\n\n{_totals(node, self.analysis)}"

    def generic_visit(self, node: CheckedNode) -> str:
        return f"**{node.path}**\n\n{_totals(node, self.analysis)}"


def _totals(node: CheckedNode, a: Analysis) -> str:
    numbers = f"`{fmt_shape(node.in_shape)} -> {fmt_shape(node.out_shape)}`, {node.params:,} params, {node.macs:,} MACs"
    if not counted(node):
        numbers += " (partial: an error leaves shapes unknown here, and what they decide is not counted)"
    derived = getattr(a.tree, "symbolic", None)  # `input 3xHxW`: the shape in H and W, the numbers at one size
    if derived is None or node.symbolic_shape is None:
        return numbers
    at = "x".join(map(str, derived.at)) if derived.at else "the checked size"
    return f"`-> {fmt_shape(node.symbolic_shape)}`; at {at}: {numbers}"


def _layer_hover(node: Layer, a: Analysis) -> str:
    layer = node.layer
    if not node.valid:
        return f"**{node.path}**: `{node.op}` is not written correctly (see its diagnostic)"
    x, y = node.in_shape, node.out_shape
    known = isinstance(layer, Input) or (_known(x) and _known(y))
    failing = any(d.severity == "error" and d.span == node.span and d.trace == node.trace for d in a.tree.diagnostics)
    lines = layer.explain_failure(x, y) if failing or not known else layer.explain(x, y, node.params, node.macs)  # type: ignore[union-attr]
    head = f"**{node.path}**: `{node.op} {layer.describe()}`".rstrip()  # type: ignore[union-attr]
    return f"{head}\n\n{_totals(node, a)}\n\n```text\n" + "\n".join(lines) + "\n```"


def _known(shape) -> bool:
    return shape is not None and None not in shape


# --------------------------------------------------------------------------- inlay hints

def inlay_hints(a: Analysis) -> dict[int, str]:
    """Per 0-based line of the current text: `-> [B, 16, 5, 5]` (the shape that leaves the line),
    with the params of the layers written on it. Lines inside block definitions get none (a block's
    shapes depend on its call; hover shows them)."""
    shapes: dict[int, str] = {}
    params: dict[int, int] = {}
    for node in walk(a.tree.body, children_first=True):
        if node.trace or not _own(node, a.path) or node.out_shape is None:  # after an error: nothing to say
            continue
        line = a.here(node.span.line - 1)  # type: ignore[union-attr]
        if line is None:
            continue
        shapes[line] = fmt_shape(node.symbolic_shape or node.out_shape)  # `input 3xHxW`: in H and W
        if isinstance(node, (Layer, Call)) and params.get(line, 0) is not None:
            params[line] = params.get(line, 0) + node.params if counted(node) else None  # type: ignore[operator]
    return {line: f"-> {shape}" + (f"  {params[line]:,} params" if params.get(line) else "") for line, shape in shapes.items()}


def counted(node: CheckedNode) -> bool:
    """Whether the node's params are all counted: every layer in it was bound and knows its input's
    channels (or features), the one size a layer's params depend on. After an error they can be
    unknown, and a conv there counts nothing (a `cbr(32)` showed only its bn's 64 params): such a
    count is not shown, or is said to be partial."""
    under = [node] if isinstance(node, Layer) else layers(node.children())
    return all(layer.valid and bool(layer.in_shape) and layer.in_shape[0] is not None for layer in under)  # type: ignore[index]


# --------------------------------------------------------------------------- completion

@dataclass
class Completion:
    label: str
    kind: str  # "op" | "keyword" | "block" | "argument" | "flag" | "parameter" | "file" | "folder"
    detail: str = ""
    doc: str = ""
    insert: str | None = None


_USE_PREFIX = re.compile(r'^\s*use\s+"(?P<typed>[^"]*)$')


def complete(a: Analysis, line_text: str, column: int) -> list[Completion]:
    prefix = line_text[:column]
    use = _USE_PREFIX.match(prefix)
    if use:
        return _use_paths(a.path, use.group("typed"))
    segment = re.split(r"[|{}]", prefix.split("#")[0])[-1].lstrip()
    words = segment.split()
    if not words or (len(words) == 1 and not segment.endswith(" ")):
        return _first_words(a)
    head = words[0].split("(")[0]
    if head == READ_WORD:  # `from ` + the names given in the file (the checker says which are seen where)
        names = dict.fromkeys(r.layer.tensor for r in a.tree.rows if isinstance(r.layer, KeepTensor))
        return [Completion(n, "parameter", f"as {n}", f"the tensor named with `as {n}`") for n in names]
    if head in OPS:
        return _op_arguments(head)
    block = next((b for b in a.blocks if b.name == head), None)
    if block is not None:
        return [Completion(f"{p}=", "parameter", f"{block.signature()}", f"default {d}" if d else "required")
                for p, d in block.params]
    return []


def _first_words(a: Analysis) -> list[Completion]:
    items = [Completion(name, "op", cls.usage, f"{cls.summary}\n\nusage: `{cls.usage}`") for name, cls in OPS.items()]
    items += [Completion(word, "keyword", doc.split(":")[0], doc) for word, doc in KEYWORDS.items()]
    items += [Completion(b.name, "block", b.signature(), f"block defined in {Path(b.path).name} line {b.line + 1}",
                         insert=f"{b.name}(" + ", ".join(p for p, d in b.params if d is None) + ")")
              for b in a.blocks]
    return items


def _op_arguments(op: str) -> list[Completion]:
    cls = OPS[op]
    fields = cls.model_fields
    items = []
    for key, fld in cls.keys.items():
        desc = fields[fld].description if fld in fields and fields[fld].description else fld
        items.append(Completion(key, "argument", f"{fld} ({op})", f"{desc}\n\nusage: `{cls.usage}`"))
    for word, (fld, value) in cls.flags.items():
        items.append(Completion(word, "flag", f"{fld}={value} ({op})", f"usage: `{cls.usage}`"))
    return items


def _use_paths(path: str, typed: str) -> list[Completion]:
    base = Path(path).parent if path != UNSAVED else Path.cwd()
    folder_text = typed.rsplit("/", 1)[0] + "/" if "/" in typed else ""
    folder = (base / folder_text).resolve()
    if not folder.is_dir():
        return []
    items = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            items.append(Completion(folder_text + entry.name + "/", "folder"))
        elif entry.suffix == ".arch" and entry.resolve() != Path(path).resolve():
            items.append(Completion(folder_text + entry.name, "file", str(entry)))
    return items


# --------------------------------------------------------------------------- definition, symbols

def word_at(line_text: str, column: int) -> str | None:
    for m in re.finditer(r"[A-Za-z_][A-Za-z0-9_.]*", line_text):
        if m.start() <= column <= m.end():
            return m.group()
    return None


def definition(a: Analysis, line: int, column: int, line_text: str) -> tuple[str, int, int, int, int] | None:
    """(path, line, column, end line, end column) of what the position names: a block (its
    definition, from the call's def_span) or a `use` file (its start)."""
    use = re.match(r'^\s*use\s+"([^"]*)"', line_text)
    if use and use.start(1) - 1 <= column <= use.end(1) + 1:
        target = use_target(a.path, use.group(1))
        return (str(target), 0, 0, 0, 0) if target.is_file() else None
    word = word_at(line_text, column)
    if word is None:
        return None
    for node in nodes_at(a, line, column):
        if isinstance(node, TensorRead) and node.source is not None and node.source.span is not None:
            s = node.source.span  # `from NAME`: the `as NAME` that gives it
            return (str(Path(s.path).resolve()), s.line - 1, s.column - 1, s.end_line - 1, s.end_column - 1)
        if isinstance(node, Call) and node.block == word and node.def_span is not None:
            s = node.def_span
            return (str(Path(s.path).resolve()), s.line - 1, s.column - 1, s.end_line - 1, s.end_column - 1)
    block = next((b for b in a.blocks if b.name == word), None)  # a call inside a block definition
    if block is not None:
        s = block.name_span
        return (str(Path(s.path).resolve()), s.line - 1, s.column - 1, s.end_line - 1, s.end_column - 1)
    return None


@dataclass
class Symbol:
    name: str
    kind: str  # "block" | "layer" | "call" | "structure"
    detail: str
    line: int
    column: int
    end_line: int
    end_column: int


def symbols(a: Analysis) -> list[Symbol]:
    """The blocks this document defines, and the network's top-level layers, calls and structures."""
    found = [Symbol(b.name, "block", b.signature(), b.line, b.column, b.end_line, b.end_column)
             for b in a.blocks if b.path == a.path]
    for node in a.tree.body:
        line = a.here(node.span.line - 1) if _own(node, a.path) else None  # type: ignore[union-attr]
        if line is None:
            continue
        kind = "layer" if isinstance(node, Layer) else "call" if isinstance(node, Call) else "structure"
        what = f"{node.op} {node.layer.describe()}".rstrip() if isinstance(node, Layer) and node.valid else node.path  # type: ignore[union-attr]
        found.append(Symbol(node.path, kind, f"{what} -> {fmt_shape(node.out_shape)}", line,
                            node.span.column - 1, line, node.span.end_column - 1))  # type: ignore[union-attr]
    return sorted(found, key=lambda s: (s.line, s.column))


# --------------------------------------------------------------------------- code actions

@dataclass
class Fix:
    """A quick fix: replace [start, end) of one line with `text` (start == end inserts); with
    `end_line`, the range ends on that line instead (a removed line ends at the next one's start)."""

    title: str
    line: int
    start: int
    end: int
    text: str
    preferred: bool = False
    end_line: int | None = None


@dataclass
class _Site:
    """What a fix rule reads: the diagnostic, its help, the document's lines and the span on its first line."""

    d: Diagnostic
    help: str
    lines: list[str]
    line: int  # 0-based
    start: int
    end: int

    @property
    def text(self) -> str:
        return self.lines[self.line]

    @property
    def written(self) -> str:
        return self.text[self.start:self.end]


_DID_YOU_MEAN = re.compile(r"did you mean `([^`]+)`")
_SNIPPET = re.compile(r"(usage: )?`([^`]+)`")
_ARGUMENT = re.compile(r"^([a-z]+)(\d+(?:x\d+)?|\s+same|\s+valid)$")  # `p1`, `p1x2`, `g2`, `op1`, `p same`
_NAMED_ARGUMENT = re.compile(r"(?:e\.g\.|at most) ([a-z]+\d+(?:x\d+)?)\b")  # "use at most p1", "e.g. g2"
_NAMED_NUMBER = re.compile(r"e\.g\. (\d+)\b")
_PLACEHOLDER = re.compile(r"\s*(?:\{\s*\.\.\.\s*\}|\.\.\.)\s*$")  # `residual project { ... }`
_REMOVE = re.compile(r"^remove (it|one of them|this line)\b")
_ADD_BEFORE = re.compile(r"add `([^`]+)`.*? before it")
_START_WITH = re.compile(r"^start the file with .*?`([^`]+)`")


def fixes(d: Diagnostic, lines: list[str]) -> list[Fix]:
    """The edits a diagnostic's help names (each rule reads the help's words and its `snippets`,
    whatever the code), then `# noqa: CODE` on its line (`lines`: the document's)."""
    s = d.span
    if s is None or not 0 < s.line <= len(lines):
        return []
    line_text = lines[s.line - 1]
    end = s.end_column - 1 if s.end_line == s.line else len(line_text)
    site = _Site(d, d.help or "", lines, s.line - 1, s.column - 1, end)
    found: list[Fix] = []
    for rule in _RULES:
        for fix in rule(site):
            if not any((f.line, f.start, f.end, f.text, f.end_line) == (fix.line, fix.start, fix.end, fix.text, fix.end_line) for f in found):
                found.append(fix)
    for i, fix in enumerate(found):
        fix.preferred = i == 0
    return found + [_noqa_fix(d.code, line_text, s.line - 1)]


def _did_you_mean(site: _Site) -> Iterator[Fix]:
    m = _DID_YOU_MEAN.search(site.help)
    if not m:
        return
    wrong = re.search(r"`([^`]+)`", site.d.message)
    at = site.text.find(wrong.group(1), site.start, max(site.end, site.start + 1) + len(wrong.group(1))) if wrong else -1
    if at >= 0:
        yield Fix(f"Replace `{wrong.group(1)}` with `{m.group(1)}`", site.line, at, at + len(wrong.group(1)), m.group(1))  # type: ignore[union-attr]
    else:
        yield Fix(f"Replace with `{m.group(1)}`", site.line, site.start, site.end, m.group(1))


def _remove(site: _Site) -> Iterator[Fix]:
    """"remove it", "remove one of them": the layer and its `|`; "remove this line", or a layer alone on its line: the line."""
    m = _REMOVE.match(site.help)
    if not m:
        return
    before, after = site.text[:site.start], site.text[site.end:]
    pipe_before, pipe_after = re.search(r"\s*\|\s*$", before), re.match(r"\s*\|\s*", after)
    if m.group(1) != "this line" and pipe_before:
        yield Fix(f"Remove `{site.written}`", site.line, pipe_before.start(), site.end, "")
    elif m.group(1) != "this line" and pipe_after:
        yield Fix(f"Remove `{site.written}`", site.line, site.start, site.end + pipe_after.end(), "")
    elif m.group(1) == "this line" or not (before.strip() or after.split("#")[0].strip()):
        yield Fix("Remove this line", site.line, 0, 0, "", end_line=site.line + 1)


def _add_before(site: _Site) -> Iterator[Fix]:
    m = _ADD_BEFORE.search(site.help)
    if m:
        yield Fix(f"Add `{m.group(1)}` before it", site.line, site.start, site.start, f"{m.group(1)} | ")


def _start_with(site: _Site) -> Iterator[Fix]:
    m = _START_WITH.match(site.help)
    if m:
        yield Fix(f"Start the file with `{m.group(1)}`", 0, 0, 0, f"{m.group(1)}\n")


def _snippets(site: _Site) -> Iterator[Fix]:
    """Each `snippet` the help names as what to write (not a `usage: ...` line, nor one a rule above used)."""
    used = {m.group(1) for rx in (_DID_YOU_MEAN, _ADD_BEFORE, _START_WITH) for m in rx.finditer(site.help)}
    for m in _SNIPPET.finditer(site.help):
        snippet = m.group(2)
        if m.group(1) or snippet in used:
            continue
        if _ARGUMENT.match(snippet):
            yield _argument_fix(site, snippet)
        elif snippet in getattr(OPS.get(site.written.split(" ")[0]), "flags", ()) and snippet not in site.written.split():
            yield Fix(f"Add `{snippet}`", site.line, site.end, site.end, f" {snippet}")  # a flag of the layer's op: `ceil`
        elif (fix := _statement_fix(site, snippet)) is not None:
            yield fix
    for m in _NAMED_ARGUMENT.finditer(site.help):  # an argument named without backticks
        if _ARGUMENT.match(m.group(1)) and " " in site.written.strip():
            yield _argument_fix(site, m.group(1))
    if (m := _NAMED_NUMBER.search(site.help)) and (number := re.match(r"(\w+) (\d+)\b", site.written)) \
            and f"`{number.group(0)}`" in site.d.message:  # `groupnorm 5` ... e.g. 4: the number it names
        at = site.start + number.start(2)
        yield Fix(f"Write `{number.group(1)} {m.group(1)}`", site.line, at, at + len(number.group(2)), m.group(1))


def _argument_fix(site: _Site, argument: str) -> Fix:
    """`p1` named for a layer: replaces its `p...` argument, or is added after the layer."""
    key = _ARGUMENT.match(argument).group(1)  # type: ignore[union-attr]
    old = re.search(rf"(?<=\s){key}(?:\d+(?:x\d+)?|\s+same|\s+valid)(?=\s|$)", site.written)
    title = f"Pad with `{argument}`" if key == "p" and "pad" in site.help else f"Use `{argument}`"
    if old:
        return Fix(title, site.line, site.start + old.start(), site.start + old.end(), argument)
    return Fix(title, site.line, site.end, site.end, f" {argument}")


def _statement_fix(site: _Site, snippet: str) -> Fix | None:
    """A statement the help says to write: it replaces the span when it starts with the same word
    (a call `conv(6, k5)` with its arguments) or extends it (`residual` -> `residual project`); a
    dotted name replaces a dotted name (`in.c` -> `in.f`); an `input ...` replaces the input line."""
    written = site.written
    whole = _PLACEHOLDER.sub("", snippet)
    if whole != snippet:  # `residual project { ... }`: the words before the body
        if whole.startswith(written + " ") and written.strip():
            return Fix(f"Write `{whole}`", site.line, site.start, site.end, whole)
        return None
    first, written_first = snippet.split(" ")[0], written.split(" ")[0]
    if " " in snippet and written_first and first.lower() == written_first.lower() and "|" not in snippet:
        end = site.end
        call = re.match(r"\s*\([^()]*\)", site.text[end:]) if " " not in written else None
        end += call.end() if call else 0
        return Fix(f"Write `{snippet}`", site.line, site.start, end, snippet)
    dotted = re.compile(r"^([A-Za-z_]\w*\.)\w+$")
    if (a := dotted.match(snippet)) and (b := dotted.match(written)) and a.group(1) == b.group(1) and snippet != written:
        return Fix(f"Write `{snippet}`", site.line, site.start, site.end, snippet)
    if first == "input" and written_first != "input":
        rows = [i for i, row in enumerate(site.lines) if re.match(r"\s*input\b", row)]
        if len(rows) == 1:
            row = site.lines[rows[0]]
            m = re.match(r"\s*(input\b[^|#]*?)\s*(?=\||#|$)", row)
            return Fix(f"Write `{snippet}`", rows[0], m.start(1), m.end(1), snippet) if m else None  # type: ignore[union-attr]
    return None


_RULES = (_did_you_mean, _add_before, _snippets, _start_with, _remove)


def _noqa_fix(code: str, line_text: str, line: int) -> Fix:
    m = re.search(r"#\s*noqa:\s*[A-Za-z0-9, ]*[A-Za-z0-9]", line_text, re.IGNORECASE)
    if m:
        return Fix(f"Silence {code} on this line (# noqa)", line, m.end(), m.end(), f", {code}")
    code_end = len(line_text.rstrip())
    return Fix(f"Silence {code} on this line (# noqa)", line, code_end, len(line_text), f"  # noqa: {code}")
