"""Load the grammar shipped in the package, parse text, and turn parse errors into diagnostics."""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from archspec.language import codes
from archspec.language.diagnostics import Diagnostic, Span, normalize_newlines, suggest


# A source checkout (installed or not) keeps the grammar at the top level; a wheel ships it as
# the package data `archspec.grammar`. The checkout's copy wins so an edit is seen at once.
# (archspec/language/syntax.py: the checkout is three levels up.)
_CHECKOUT_GRAMMAR = Path(__file__).resolve().parents[2] / "grammar" / "archspec.lark"


# The alternation of JOIN_WORD in the grammar file; the registry's words replace it.
_JOIN_WORDS = re.compile(r"^(JOIN_WORD\.2: /\()[^)]*(\))", re.M)


def grammar_text() -> str:
    """The grammar (the checkout's copy, else the package's), with the join registry's words in JOIN_WORD:
    adding a join needs no grammar change."""
    from archspec.language.joins import JOINS

    if _CHECKOUT_GRAMMAR.is_file():
        text = _CHECKOUT_GRAMMAR.read_text(encoding="utf-8")
    else:
        from importlib.resources import files

        text = files("archspec.grammar").joinpath("archspec.lark").read_text(encoding="utf-8")
    words = "|".join(re.escape(w) for w in sorted(JOINS, key=len, reverse=True))
    return _JOIN_WORDS.sub(lambda m: m.group(1) + words + m.group(2), text, count=1)


def open_grammar(**options) -> Lark:
    """The language's grammar with these lark options."""
    return Lark(grammar_text(), **options)


# Comments are ignored by the grammar but kept for `fmt`: the lexer hands each one to this list
# during a parse (`parse_with_comments` clears and reads it; parsing is not re-entrant).
_COMMENTS: list[Token] = []


@lru_cache(maxsize=1)
def parser() -> Lark:
    # cache=True stores the LALR tables in the temp directory: start-up stays low.
    return open_grammar(parser="lalr", propagate_positions=True, maybe_placeholders=True, cache=True,
                        lexer_callbacks={"COMMENT": _COMMENTS.append})


# Documented in docs/guide/limits.md. Lark takes tens of microseconds a token, so a
# file of a million tokens would parse for a minute: the count is estimated with one regex first.
MAX_TOKENS = 50_000
MAX_NESTING = 64  # nested bodies (blocks, residuals, branches, calls) and nested expression operators
_ROUGH_TOKEN = re.compile(r"#[^\n]*|[A-Za-z0-9_.]+|\S")


def too_many_tokens(text: str, path: str) -> Diagnostic | None:
    """E009 when the text has more than MAX_TOKENS words and symbols (comments count one each)."""
    if len(text) // 2 < MAX_TOKENS:  # a token and its separator take two characters at least
        return None
    count = sum(1 for _ in _ROUGH_TOKEN.finditer(text))
    if count <= MAX_TOKENS:
        return None
    return Diagnostic(codes.TOO_LARGE, f"the text has {count:,} words and symbols, past the limit of {MAX_TOKENS:,}",
                      Span(path, 0, 0, 1, 1, 1, 1),
                      help="a network description is a few hundred words; use `repeat` and blocks for repeated layers")


def syntax_depth(tree: Tree) -> tuple[int, Tree | None]:
    """The deepest nesting of bodies and expression operators in a syntax tree, and the node there
    (iterative: the limit exists so that the recursive walks after it stay within Python's stack)."""
    nesting = {"body_braces", "binop", "neg", "call", "braced"}
    deepest, where = 0, None
    stack: list[tuple[Tree, int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        depth += node.data in nesting
        if depth > deepest:
            deepest, where = depth, node
        stack.extend((c, depth) for c in node.children if isinstance(c, Tree))
    return deepest, where


def too_deep(tree: Tree, path: str) -> Diagnostic | None:
    depth, where = syntax_depth(tree)
    if depth <= MAX_NESTING:
        return None
    return Diagnostic(codes.TOO_LARGE, f"nesting {depth} levels deep, past the limit of {MAX_NESTING}",
                      tree_span(where, path) if where is not None else None,
                      help="blocks, residuals, branches and expressions nest at most "
                           f"{MAX_NESTING} levels; flatten the structure or name parts of it as blocks")


class ParseFailed(Exception):
    """Bad syntax: `diagnostic` is the first error, `diagnostics` all of them (one per broken
    statement), `tree` what the statements that parse make (None when the text cannot be completed)."""

    def __init__(self, diagnostic: Diagnostic, diagnostics: list[Diagnostic] | None = None, tree: Tree | None = None) -> None:
        super().__init__(diagnostic.message)
        self.diagnostic = diagnostic
        self.diagnostics = diagnostics or [diagnostic]
        self.tree = tree


# How the parser's terminal names read to a person.
_TERMINALS = {
    "NAME": "a name", "NUMBER": "a number", "DIMS": "dimensions like 3x32x32", "STRING": 'a "string"',
    "LBRACE": "`{`", "RBRACE": "`}`", "LPAR": "`(`", "RPAR": "`)`", "COMMA": "`,`", "EQUAL": "`=`",
    "_NL": "a newline", "VBAR": "`|`", "$END": "the end of the file", "STAR": "`*`", "MINUS": "`-`",
    "ADD_OP": "`+` or `-`", "MUL_OP": "`*` or `/`", "SHORTCUT": "`shortcut`", "JOIN_WORD": "a join word",
    "REPEAT": "`repeat`", "BLOCK": "`block`", "USE": "`use`",
}


def _describe_expected(expected: set[str]) -> str:
    names = sorted({_TERMINALS.get(t, t.lower()) for t in expected})
    return ", ".join(names[:-1]) + (" or " if len(names) > 1 else "") + names[-1] if names else "something else"


def _point_span(path: str, text: str, pos: int) -> Span:
    pos = max(0, min(pos, len(text)))
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return Span(path, pos, pos + 1, line, col, line, col + 1)


def _diagnostic(err: UnexpectedInput, path: str, text: str) -> Diagnostic:
    if isinstance(err, UnexpectedCharacters):
        ch = text[err.pos_in_stream] if err.pos_in_stream < len(text) else ""
        return Diagnostic(
            codes.SYNTAX_ERROR,
            f"unexpected character `{ch}`",
            _point_span(path, text, err.pos_in_stream),
            help="names use letters, digits and `_`; separate layers with `|` or a newline; comments start with `#`",
        )
    token: Token | None = getattr(err, "token", None)
    expected: set[str] = set(getattr(err, "expected", set()) or getattr(err, "accepts", set()) or set())
    at_end = isinstance(err, UnexpectedEOF) or (token is not None and token.type == "$END")
    if at_end:
        pos = len(text.rstrip())
        span = _point_span(path, text, max(0, pos - 1))
        if "RBRACE" in expected:
            brace = _unclosed_brace(text)
            return Diagnostic(codes.SYNTAX_ERROR, "this `{` is never closed", _point_span(path, text, brace) if brace is not None else span,
                              help="add `}` after the last layer of the block")
        return Diagnostic(codes.SYNTAX_ERROR, f"unexpected end of file; expected {_describe_expected(expected)}", span)
    assert token is not None
    span = Span(path, token.start_pos or 0, token.end_pos or 0, token.line or 1, token.column or 1,
                token.end_line or token.line or 1, token.end_column or (token.column or 1) + 1)
    if token.type == "RBRACE":
        return Diagnostic(codes.SYNTAX_ERROR, "unmatched `}`", span, help="remove it, or open the block it closes with `{`")
    expected = _without_option_word(expected, text[:token.start_pos or 0])
    return Diagnostic(codes.SYNTAX_ERROR, f"unexpected {_describe_unexpected(token)}; expected {_describe_expected(expected)}",
                      span, help=_help_for(token, expected, text))


def _without_option_word(expected: set[str], before: str) -> set[str]:
    """After a join word, the grammar's generic form accepts any name or number where the join takes only its
    own option words (`residual project`), its number (`aux 0.3`) or none (`concat`): say which, not "a name"."""
    from archspec.language.joins import JOINS

    word = re.search(r"([A-Za-z_][A-Za-z0-9_]*)\s*$", before)
    join = JOINS.get(word.group(1)) if word else None
    if join is None or "NAME" not in expected:
        return expected
    number = {"NUMBER"} if join.takes_number else set()
    return (expected - {"NAME", "NUMBER"}) | number | {f"`{option}`" for option in join.options}


def _describe_unexpected(token: Token) -> str:
    """The token found, without an article and never with a raw newline: `name `conv``, `end of line`."""
    if token.type == "_NL":
        return "end of line"
    what = _TERMINALS.get(token.type, token.type.lower())
    if what.startswith("`"):
        return what
    for article in ("a ", "an "):
        what = what.removeprefix(article)
    return f"{what} `{token}`"


_REPEAT_LINE = re.compile(r"^\s*repeat\s+(\S+)(?:\s+([^#{]*?))?\s*(#.*)?$")


def _help_for(token: Token, expected: set[str], text: str) -> str | None:
    if token.type in ("LBRACE", "LPAR"):
        return "separate layers with `|` or a newline"
    if "LBRACE" not in expected:
        return None
    start = text.rfind("\n", 0, token.start_pos or 0) + 1
    end = text.find("\n", token.start_pos or 0)
    repeat = _REPEAT_LINE.match(text[start:end if end >= 0 else len(text)])
    if repeat and repeat.group(2):
        return f"write `repeat {repeat.group(1)} {{ {repeat.group(2)} }}`: the repeated layers go in braces"
    if repeat:
        return f"write `repeat {repeat.group(1)} {{ ... }}` with the repeated layers inside the braces"
    return "a body goes in braces, `{ conv 8 k3 | relu }`; a body may also start the next line (one branch per line)"


def _unclosed_brace(text: str) -> int | None:
    """Offset of the last `{` without its `}` (comments and strings skipped)."""
    stack: list[int] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "#":
            i = text.find("\n", i)
            if i < 0:
                break
        elif ch == '"':
            i = text.find('"', i + 1)
            if i < 0:
                break
        elif ch == "{":
            stack.append(i)
        elif ch == "}" and stack:
            stack.pop()
        i += 1
    return stack[-1] if stack else None


def parse_tree(text: str, path: str = "<string>") -> Tree:
    """Parse text into a lark tree; raise ParseFailed with an E001 diagnostic on bad syntax."""
    return parse_with_comments(text, path)[0]


def parse_with_comments(text: str, path: str = "<string>") -> tuple[Tree, list[Token]]:
    """The tree and the comment tokens in source order (what `fmt` needs to keep them). A lone CR
    is a line break (see diagnostics.normalize_newlines), for every caller."""
    text = normalize_newlines(text)
    big = too_many_tokens(text, path)
    if big is not None:
        raise ParseFailed(big)
    _COMMENTS.clear()
    try:
        tree = parser().parse(text)
    except UnexpectedInput as err:
        _COMMENTS.clear()
        try:
            partial, diagnostics = recovering_parse(text, path)  # only for a file with errors: find them all
        except (_TooDeep, RecursionError):  # an error nested past MAX_NESTING (too deep to copy): the first says enough
            partial, diagnostics = None, [_diagnostic(err, path, text)]
        if _unclosed_brace(text) is not None:
            # Inside a `{` that is never closed every later line fails too: one error says it all.
            diagnostics = diagnostics[:1]
        raise ParseFailed(diagnostics[0], diagnostics, partial) from None
    finally:
        comments = list(_COMMENTS)
        _COMMENTS.clear()
    return tree, comments


class _TooDeep(Exception):
    """An error inside bodies nested past MAX_NESTING: recovery stops at the first one."""


def recovering_parse(text: str, path: str) -> tuple[Tree | None, list[Diagnostic]]:
    """Parse with LALR error recovery: every syntax error in the text, one per broken statement.

    The interactive parser is fed token by token. After each separator (`|`, a newline) and each
    `{` it keeps a copy of its state for that nesting depth; on an error it goes back to the copy
    for the depth of the error and skips tokens up to the next separator or `}` at that depth, so
    the broken statement is left out and the statements after it still parse (and get checked).
    The tree is None when the text cannot be completed (a `{` never closed).
    """
    interactive = parser().parse_interactive(text)
    lexer = interactive.lexer_thread
    # Copies share the parsed values (LALR never changes a value once pushed): a deep copy at every `|`
    # made a 20,000-layer line with one mistake take 100 s.
    saved = {0: (interactive.parser_state.copy(deepcopy_values=False), 0)}  # per depth: the state after its last separator, and len(braces)
    depth = 0
    braces: list[bool] = []  # the `{` fed and not closed: True for a body, False for an expression
    diagnostics: list[Diagnostic] = []
    skipping: int | None = None  # while skipping a broken statement: the braces opened inside it
    statement: dict[int, list[Token]] = {0: []}  # per depth: the first tokens of the statement being fed
    tokens = lexer.lex(interactive.parser_state)

    def go_back() -> None:
        nonlocal skipping
        if depth not in saved:  # past MAX_NESTING no copy is kept (each holds the whole stack: O(depth²) memory)
            raise _TooDeep
        state, open_braces = saved[depth]
        interactive.parser_state = state.copy(deepcopy_values=False)
        # The `{`s of the broken statement still open (an expression's): their `}`s are part of it, not unmatched.
        skipping = len(braces) - open_braces
        del braces[open_braces:]

    def recover(err: UnexpectedInput) -> None:
        diagnostics.append(_unknown_join(statement.get(depth, []), path) or _diagnostic(err, path, text))
        go_back()

    while True:
        try:
            token = next(tokens)
        except StopIteration:
            break
        except UnexpectedCharacters as err:  # a character no token starts with: report it, step over it
            if skipping is None:
                recover(err)
            pos = lexer.state.line_ctr.char_pos
            lexer.state.line_ctr.feed(text[pos:pos + 1])
            tokens = lexer.lex(interactive.parser_state)
            continue
        except UnexpectedToken as err:  # the contextual lexer read a token this state cannot take
            token = err.token
            if skipping is None:
                recover(err)
        retried = None
        while token is not None:
            if skipping is not None:
                if token.type == "LBRACE" or (token.type == "RBRACE" and skipping):
                    skipping += 1 if token.type == "LBRACE" else -1
                    break
                if skipping or token.type not in ("_NL", "VBAR", "RBRACE"):
                    break  # (inside braces of the broken statement, separators are its own)
                skipping = None  # the separator or `}` after the broken statement: it goes on from here
            try:
                interactive.feed_token(token)
                head = statement.setdefault(depth, [])
                if len(head) < 2:
                    head.append(token)
            except UnexpectedToken as err:
                if retried is token:  # refused again after going back (a stray `}`): leave it out
                    go_back()
                    break
                recover(err)
                retried = token
                continue  # the failing token may itself end the broken statement (a newline, `}`)
            if token.type == "LBRACE":
                # A body's `{` (which a newline may follow) opens a depth; a `{c*2}` expression's does not.
                state = interactive.parser_state
                braces.append("_NL" in state.parse_conf.parse_table.states[state.position])
                depth += braces[-1]
            elif token.type == "RBRACE" and braces.pop():
                saved.pop(depth, None)
                depth -= 1
            if token.type in ("_NL", "VBAR") or (token.type == "LBRACE" and braces[-1]):
                statement[depth] = []
                if depth <= MAX_NESTING:  # deeper, recovery goes back to the nearest saved depth
                    saved[depth] = (interactive.parser_state.copy(deepcopy_values=False), len(braces))
            token = None
        tokens = lexer.lex(interactive.parser_state)  # the lexer follows the parser state (it may be restored)
    try:
        return interactive.feed_eof(), diagnostics
    except UnexpectedInput as err:
        diagnostics.append(_diagnostic(err, path, text))
        return None, diagnostics


def _unknown_join(head: list[Token], path: str) -> Diagnostic | None:
    """`mul { ... } { ... }` where `mul` is neither an op nor a join: a join word the registry does not have.

    (Written `NAME {` and failing inside the braces: an op's `{expr}` argument would have parsed.)"""
    if len(head) < 2 or head[0].type != "NAME" or head[1].type != "LBRACE":
        return None
    from archspec.language.joins import JOINS, join_list
    from archspec.language.ops import OPS, resolve_op_name

    word = str(head[0])
    if word in OPS or resolve_op_name(word) is not None:
        return None
    hint = suggest(word, list(JOINS))
    return Diagnostic(codes.SYNTAX_ERROR, f"unknown join `{word}`; joins are {join_list()}", token_span(head[0], path),
                      help=f"did you mean `{hint}`?" if hint else "a join is a join word and its branches, "
                      "`concat { conv 8 k1 } { conv 8 k3 p1 }`; a layer's `{...}` holds an expression, like `conv {c*2} k3`")


def token_span(token: Token, path: str) -> Span:
    return Span(path, token.start_pos or 0, token.end_pos or 0, token.line or 1, token.column or 1,
                token.end_line or 1, token.end_column or 1)


def tree_span(tree: Tree, path: str) -> Span:
    m = tree.meta
    if getattr(m, "empty", True):
        return Span(path, 0, 0, 1, 1, 1, 1)
    return Span(path, m.start_pos, m.end_pos, m.line, m.column, m.end_line, m.end_column)
