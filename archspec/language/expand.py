"""From syntax tree to specs: expand blocks, repetition and `use`, and keep a source span (and
block call trace) on every node; each layer's words are bound by `binding`, its `{...}` values
computed by `values`, and files read by `files`.

Expansion never stops at the first problem: every mistake becomes a diagnostic and the layer is
kept as an `Invalid` node, so the checker can go on with best-effort shapes.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from lark import Token, Tree
from lark.visitors import Interpreter

from archspec.language import codes
from archspec.language.binding import Binder, language_form
from archspec.language.diagnostics import Diagnostic, Reporter, Span, suggest
from archspec.language.files import Unreadable, display_path, read_arch_file, resolved_path, source_text, use_base
from archspec.language.joins import JOINS
from archspec.language import named
from archspec.language.nodes import BlockCall, Deferred, Invalid, Join, Model, Node, Seq, SweepParam, Trace, Value
from archspec.language.ops import OPS, resolve_op_name
from archspec.language.gcpause import without_gc_pauses
from archspec.language.syntax import MAX_NESTING, ParseFailed, parse_tree, token_span, too_deep, tree_span
from archspec.language.values import Evaluator

# --------------------------------------------------------------------------- resource limits
# Documented in docs/guide/limits.md: past each, one diagnostic instead of the work.
# MAX_FILE_BYTES (the size of one file) lives with the file reading, in `files`.
MAX_LAYERS = 50_000  # layers after expanding repeats, block calls and `use` (structures count one each)
MAX_USE_DEPTH = 32  # files that `use` each other in a chain
MAX_ARGUMENTS = 256  # arguments of one layer or one block call


class _Refused(Exception):
    """A resource limit was passed: the expansion stops with this one diagnostic."""

    def __init__(self, diagnostic: Diagnostic) -> None:
        super().__init__(diagnostic.message)
        self.diagnostic = diagnostic


if TYPE_CHECKING:
    from archspec.language.limits import Limit


@dataclass
class _BlockDef:
    name: str
    params: list[tuple[str, Any]]  # (name, default expr tree or None)
    body: Tree
    span: Span
    path: str


class _Namer:
    """Module names inside one container: conv1, conv2, fc1, ... (what print(model) shows)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.given: set[str] = set()

    def __call__(self, prefix: str) -> str:
        self.counts[prefix] = n = self.counts.get(prefix, 0) + 1
        name, sep = f"{prefix}{n}", "_"
        while name in self.given:  # block `stage2`'s first call and `stage`'s 21st: the later one takes `stage_21`
            name, sep = f"{prefix}{sep}{n}", sep + "_"
        self.given.add(name)
        return name


class _Scope(NamedTuple):
    """Where statements are expanded: their file, the names they can read, the block calls they
    are inside, and the module names of their container."""

    path: str
    env: dict[str, Value]
    trace: Trace
    namer: _Namer


class _Builder(Interpreter):
    """Expands one file (and those it `use`s) into nodes; binding and values are delegated.

    A lark Interpreter: each statement is expanded by the method of its rule (`layer`, `join`,
    `repeat`, `call`, `bare_call`, ...) under `scope`, the body it is in."""

    def __init__(self, sources: dict[str, str], diagnostics: list[Diagnostic]) -> None:
        self.report = Reporter(sources, diagnostics)
        self.error = self.report.error  # the two the expansion calls most, by their short names
        self.source_text = self.report.source_text
        self.blocks: dict[str, _BlockDef] = {}
        self.loading: list[str] = []
        self.loaded: set[str] = set()
        self.call_depth = 0
        self.nesting = 0  # bodies open right now (MAX_NESTING)
        self.expanded = 0  # nodes made so far (MAX_LAYERS)
        self.values = Evaluator(self.report)
        self.binder = Binder(self.report, self.values)
        self.scope = _Scope("", {}, (), _Namer())  # set by `statements` for the statements it expands
        self.scopes = named.Scopes(Tree("start", []))  # the names `as` gives (parse() sets the file's tree)

    def grow(self, count: int, span: Span, trace: Trace, what: str = "") -> None:
        """Count `count` more nodes; past MAX_LAYERS stop the expansion, naming the number it would reach."""
        self.expanded += count
        self.refuse_past(self.expanded, span, trace, what)

    def refuse_past(self, total: int, span: Span, trace: Trace, what: str = "") -> None:
        if total > MAX_LAYERS:
            reach = f"{what} would make {total:,} layers, past" if what else "the network expands past"
            raise _Refused(Diagnostic(
                codes.TOO_LARGE, f"{reach} the limit of {MAX_LAYERS:,} layers",
                span, trace=trace, help="use fewer repeats or smaller counts; a network of that size cannot be trained anyway"))

    # ---- files and `use`

    def load_file(self, path: str, text: str) -> Tree | None:
        text = source_text(text)  # what carets and `# noqa` read is what the parser reads
        self.report.sources[path] = text
        try:
            tree = parse_tree(text, path)
        except ParseFailed as failed:
            self.report.diags.extend(failed.diagnostics)
            if failed.tree is None:
                return None
            tree = failed.tree  # the statements that parse are still checked
        deep = too_deep(tree, path)
        if deep is not None:
            self.report.diags.append(deep)
            return None
        return tree

    def collect_defs(self, tree: Tree, path: str, top_level: bool) -> list[Tree]:
        """Register `block` definitions and `use` imports; return the remaining statements."""
        statements = []
        for stmt in tree.children:
            if not isinstance(stmt, Tree):
                continue
            if stmt.data == "block_def":
                self.define(stmt, path)
            elif stmt.data == "use":
                self.use_file(stmt, path)
            elif top_level:
                statements.append(stmt)
            else:
                self.error(codes.IMPORT_ERROR, f"a file brought in with `use` may only define blocks; found `{_stmt_head(stmt)}`",
                           tree_span(stmt, path), (), help="move the layers into the file that uses this one")
        return statements

    def define(self, stmt: Tree, path: str) -> None:
        name_tok, params_tree, body = stmt.children
        span = token_span(name_tok, path)
        if str(name_tok) in OPS or str(name_tok) in named.WORDS:
            what = "an op" if str(name_tok) in OPS else "a word of the language"
            self.error(codes.UNDEFINED_NAME, f"block `{name_tok}` has the name of {what}", span, (), help="rename the block")
            return
        if str(name_tok) in self.blocks:
            prev = self.blocks[str(name_tok)].span
            self.error(codes.UNDEFINED_NAME, f"block `{name_tok}` is defined twice", span, (),
                       notes=[f"first defined at {prev.path}:{prev.line}:{prev.column}"], help="rename one of them")
            return
        params = []
        for p in params_tree.children if params_tree is not None else []:
            pname, default = p.children
            params.append((str(pname), default))
        self.blocks[str(name_tok)] = _BlockDef(str(name_tok), params, body, span, path)

    def use_file(self, stmt: Tree, path: str) -> None:
        tok = stmt.children[0]
        span = token_span(tok, path)
        rel = str(tok)[1:-1]
        base = use_base(path)
        if "\x00" in rel:  # no file name holds one: the OS calls raise ValueError, not OSError
            self.error(codes.IMPORT_ERROR, f"cannot read `{rel!r}`: a file name cannot contain a NUL character", span, (),
                       help="remove the NUL character from the path")
            return
        try:
            target = (base / rel).resolve()
        except (RuntimeError, OSError):  # a loop of symbolic links (RuntimeError before Python 3.13)
            self.error(codes.IMPORT_ERROR, f"cannot read `{rel}`: a loop of symbolic links", span, (),
                       help="point the link at a file")
            return
        key = str(target)
        if len(self.loading) > MAX_USE_DEPTH:
            self.error(codes.IMPORT_ERROR, f'`use "{rel}"` is {len(self.loading)} files deep, past the limit of {MAX_USE_DEPTH}',
                       span, (), help="bring the blocks in from fewer levels of files")
            return
        if key in self.loading:
            self.error(codes.IMPORT_ERROR, f'`use "{rel}"` makes a cycle of files', span, (),
                       notes=[" -> ".join(self.loading + [key])], help="remove one of the `use` lines")
            return
        if key in self.loaded:
            return  # already loaded: its blocks are defined
        self.loaded.add(key)
        try:
            text = read_arch_file(target)
        except Unreadable as exc:
            self.error(codes.IMPORT_ERROR, f"cannot read `{rel}`: {exc.reason}",
                       span, (), help=exc.help or f"the path is relative to the file that uses it: {base}")
            return
        tree = self.load_file(display_path(target), text)
        if tree is None:
            return
        self.loading.append(key)
        self.collect_defs(tree, display_path(target), top_level=False)
        self.loading.pop()

    # ---- statements

    def statements(self, stmts: list[Tree], path: str, env: dict[str, Value], trace: Trace, namer: _Namer) -> list[Node]:
        """The nodes of the statements, each made by its rule's method under this scope."""
        outer, self.scope = self.scope, _Scope(path, env, trace, namer)
        try:
            return [node for stmt in stmts for node in self.visit(stmt)]
        finally:
            self.scope = outer

    def body(self, body: Tree, path: str, env: dict[str, Value], trace: Trace) -> Seq:
        self.nesting += 1
        try:
            if self.nesting > MAX_NESTING:
                raise _Refused(Diagnostic(
                    codes.TOO_LARGE, f"nesting {self.nesting} levels deep once blocks are expanded, past the limit of {MAX_NESTING}",
                    tree_span(body, path), trace=trace, help="call blocks inside fewer levels of residuals, branches and blocks"))
            return self._body(body, path, env, trace)
        finally:
            self.nesting -= 1

    def _body(self, body: Tree, path: str, env: dict[str, Value], trace: Trace) -> Seq:
        stmts = [c for c in body.children if isinstance(c, Tree)]
        for s in stmts:
            if s.data in ("block_def", "use"):
                self.error(codes.UNDEFINED_NAME if s.data == "block_def" else codes.IMPORT_ERROR, f"`{s.data.split('_')[0]}` is only allowed at the top level of a file",
                           tree_span(s, path), trace)
        stmts = [s for s in stmts if s.data not in ("block_def", "use")]
        self.scopes.open()  # a body's names are its own (and those of the bodies inside it)
        try:
            return Seq(self.statements(stmts, path, env, trace, _Namer()))
        finally:
            self.scopes.close()

    # ---- one method per statement rule (the grammar has no other statement)

    def layer(self, stmt: Tree) -> list[Node]:
        path, env, trace, namer = self.scope
        name_tok = stmt.children[0]
        if len(stmt.children) == 1 and str(name_tok) in self.blocks and str(name_tok) not in OPS:
            # A bare block name calls it without arguments, like `stem()`.
            return self.call(Tree("call", [name_tok, None, None, None], stmt.meta))
        span = tree_span(stmt, path)
        self.grow(1, span, trace)
        return [self.bound_layer(stmt, path, env, trace, namer, span)]

    def bare_call(self, stmt: Tree) -> list[Node]:
        """`dense * 6` is `dense() * 6`."""
        name_tok, star, times = stmt.children
        return self.call(Tree("call", [name_tok, None, star, times], stmt.meta))

    def top_level_only(self, stmt: Tree) -> list[Node]:
        keyword = "param" if stmt.data == "sweep_param" else stmt.data.split('_')[0]
        self.error(codes.UNDEFINED_NAME, f"`{keyword}` is only allowed at the top level of a file",
                   tree_span(stmt, self.scope.path), self.scope.trace)
        return []

    block_def = use = budget = sweep_param = top_level_only

    def __default__(self, stmt: Tree) -> list[Node]:
        raise AssertionError(f"unhandled statement {stmt.data}")  # the grammar has no other statement

    def join(self, stmt: Tree) -> list[Node]:
        """A join word and its bodies: the join (archspec/language/joins/) says how many bodies and which option."""
        path, env, trace, namer = self.scope
        self.grow(1, tree_span(stmt, path), trace)
        word_tok, option, *bodies, last_word, shortcut = stmt.children
        kind = JOINS[str(word_tok)]
        head = _head_span(stmt, path, kind.word)
        problem = kind.arity_problem(len(bodies), shortcut is not None)
        if last_word is not None and not kind.takes_shortcut:
            problem = f"`{kind.word}` takes no `{last_word} {{ ... }}`"
        elif problem is None and last_word is not None and str(last_word) != kind.shortcut_word:
            problem = f"`{kind.word}` names its last body `{kind.shortcut_word} {{ ... }}`, not `{last_word}`"
        if problem is not None:
            self.error(codes.SYNTAX_ERROR, problem, head, trace, help=f"usage: `{kind.usage}`")
            return []
        written = str(option) if option is not None else None
        problem = kind.option_problem(written, option is not None and option.type == "NUMBER")
        if problem is not None:
            code, message, help = problem
            self.error(code, message, token_span(option, path) if option is not None else head, trace, help=help)
        return [Join(kind, [self.body(b, path, env, trace) for b in bodies], head, trace,
                     namer(kind.name_prefix or kind.word), option=written if problem is None else None,
                     shortcut=self.body(shortcut, path, env, trace) if shortcut is not None else None)]

    def repeat(self, stmt: Tree) -> list[Node]:
        path, env, trace, namer = self.scope
        count_tree, body = stmt.children
        count = self.values.count(count_tree, path, env, trace)
        items: list[Node] = []
        stmts = [c for c in body.children if isinstance(c, Tree)]
        for i in range(count):
            before = self.expanded
            items.extend(self.statements(stmts, path, env, trace, namer))
            if i == 0:  # refuse before making the other copies: one copy's size is known now
                self.refuse_past(before + (self.expanded - before) * count, _head_span(stmt, path, "repeat"), trace,
                                 f"`repeat {count}`")
        return items

    def budget_limits(self, stmt: Tree, path: str) -> list["Limit"]:
        """The limits of a `budget` statement; a wrong one is reported (E003/E004) and left out."""
        from archspec.language.limits import BudgetError, make_limit

        limits = []
        for item in stmt.children:
            metric, op, quantity = item.children
            span = tree_span(item, path)
            try:
                limits.append(make_limit(str(metric), "max" if str(op) == "<=" else "min", str(quantity),
                                         f"{metric} {op} {quantity}", span))
            except BudgetError as exc:
                from archspec.language.limits import METRICS

                code = codes.INVALID_VALUE if str(metric) in METRICS else codes.UNKNOWN_ARGUMENT
                self.error(code, str(exc), span, (), help=exc.help)
        return limits

    def sweep_params(self, stmts: list[Tree], path: str) -> dict[str, SweepParam]:
        """The `param` statements, each default computed from the ones before it; a mistake is reported and left out."""
        params: dict[str, SweepParam] = {}
        for stmt in stmts:
            name_tok, default = stmt.children
            name, span = str(name_tok), token_span(name_tok, path)
            if name in params:
                first = params[name].span
                self.error(codes.UNDEFINED_NAME, f"param `{name}` is defined twice", span, (),
                           notes=[f"first defined at {first.path}:{first.line}:{first.column}"], help="rename one of them")
                continue
            value = self.values.expr(default, path, {n: p.value for n, p in params.items()}, ())
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                self.error(codes.INVALID_VALUE, f"param `{name}` needs a number, not `{self.source_text(tree_span(default, path))}`",
                           tree_span(default, path), (), help=f"e.g. `param {name} = 32`")
                continue
            params[name] = SweepParam(name, value, span, tree_span(default, path))
        return params

    # ---- layers

    def bound_layer(self, stmt: Tree, path: str, env: dict[str, Value], trace: Trace, namer: _Namer,
                    span: Span | None = None) -> Node:
        op_tok, *arg_trees = stmt.children
        span = span or tree_span(stmt, path)
        op = str(op_tok)
        if op in named.WORDS:
            return self.named_tensor(op_tok, arg_trees, span, path, trace, namer)
        cls = OPS.get(op)
        if cls is None:
            if op in self.blocks:
                help = (f"call a block with its arguments in parentheses: `{op}(...)`" if self.blocks[op].params
                        else f"block `{op}` takes no arguments: write `{op}`")
            else:
                hint = resolve_op_name(op) or suggest(op, list(OPS) + list(self.blocks))
                help = f"did you mean `{hint}`?" if hint else "run `archspec ops` to list the ops"
            self.error(codes.UNKNOWN_OP, f"unknown op `{op}`", token_span(op_tok, path), trace, help=help)
            return Invalid(op, span, trace, namer(op))
        if len(arg_trees) > MAX_ARGUMENTS:
            self.error(codes.UNKNOWN_ARGUMENT, f"`{op}` has {len(arg_trees):,} arguments, past the limit of {MAX_ARGUMENTS}",
                       span, trace, help=f"usage: `{cls.usage}`")
            return Invalid(op, span, trace, namer(op))
        reads = _shape_reads(arg_trees)
        if reads and not any(k in env for k in IN_SHAPE_NAMES):
            return self.deferred(stmt, op, reads, path, env, trace, namer(cls.name_prefix or op))
        name = namer(cls.name_prefix or op)
        spec = self.binder.spec(cls, op, arg_trees, path, env, trace, span, name)
        return Invalid(op, span, trace, name) if spec is None else spec

    def deferred(self, stmt: Tree, op: str, reads: list[Token], path: str, env: dict[str, Value], trace: Trace,
                 name: str) -> Node:
        """A layer that reads the incoming shape: E007 for a name other than in.c/h/w/f, else bound later."""
        unknown = [t for t in reads if str(t) not in IN_SHAPE_NAMES]
        for tok in unknown:
            hint = suggest(str(tok), list(IN_SHAPE_NAMES))
            self.error(codes.UNDEFINED_NAME, f"`{tok}` is not a size of the incoming shape", token_span(tok, path), trace,
                       help=f"did you mean `{hint}`?" if hint else "the incoming shape has `in.c`, `in.h`, `in.w` (images) and `in.f` (features)")
        if unknown:
            return Invalid(op, tree_span(stmt, path), trace, name)

        def resolve(sizes: dict[str, int]) -> tuple[Node, list[Diagnostic]]:
            mine: list[Diagnostic] = []
            saved, self.report.diags = self.report.diags, mine  # this layer's binding diagnostics go to the checker
            try:
                return self.bound_layer(stmt, path, {**env, **sizes}, trace, lambda _prefix: name), mine
            finally:
                self.report.diags = saved

        return Deferred(op, tree_span(stmt, path), {str(t): token_span(t, path) for t in reads}, resolve, trace, name)

    def named_tensor(self, word: Token, arg_trees: list[Tree], span: Span, path: str, trace: Trace, namer: _Namer) -> Node:
        """`as NAME` (name the running tensor) or `from NAME` (read a named one): see language/named.py."""
        op = str(word)
        example = "as stage1" if op == named.KEEP_WORD else "from stem"
        written = arg_trees[0] if len(arg_trees) == 1 else None
        if written is None or written.data != "word" or not str(written.children[0]).isidentifier():
            where = tree_span(written, path) if written is not None else token_span(word, path)
            what = ("needs the name of a tensor" if not arg_trees else
                    "takes one name" if len(arg_trees) > 1 else
                    f"takes a name (letters, digits and `_`), not `{self.source_text(where)}`")
            self.error(codes.MISSING_ARGUMENT if not arg_trees else codes.INVALID_VALUE, f"`{op}` {what}", where, trace,
                       help=f"e.g. `{example}`")
            return Invalid(op, span, trace, namer(op))
        tok = written.children[0]
        tensor, where = str(tok), token_span(tok, path)
        if op == named.KEEP_WORD:
            found, problem = self.scopes.define(tensor, where)
        else:
            found, problem = self.scopes.read(tensor, where)
        if problem is not None or found is None:
            assert problem is not None
            self.error(problem.code, problem.message, where, trace, help=problem.help, notes=problem.notes)
            return Invalid(op, span, trace, namer(op))
        spec = named.KeepTensor if op == named.KEEP_WORD else named.ReadTensor
        return spec(op=op, tensor=tensor, ref=found.ref, span=span, trace=trace, name=namer(op))

    # ---- blocks

    def call(self, stmt: Tree) -> list[Node]:
        path, env, trace, namer = self.scope
        name_tok, args_tree, _, times_tree = stmt.children
        name = str(name_tok)
        span = tree_span(stmt, path)
        times = self.values.count(times_tree, path, env, trace) if times_tree is not None else 1
        args = args_tree.children if args_tree is not None else []
        block = self.callee(name_tok, args, path, span, trace)
        bound = self.call_arguments(block, args, path, env, span, trace) if block is not None else None
        if block is None or bound is None:
            return [Invalid(name, span, trace, namer(name))]
        return self.expand_call(block, bound, times, span, trace, namer)

    def callee(self, name_tok: Token, args: list[Tree], path: str, span: Span, trace: Trace) -> _BlockDef | None:
        """The block a call names; None once reported (an op called like a block, no such block, recursion)."""
        name = str(name_tok)
        block = self.blocks.get(name)
        op = resolve_op_name(name)
        if block is None and op is not None:
            words = [self.source_text(tree_span(a, path)) for a in args]
            what = f"`{name}` is an op, not a block" if name == op else f"`{name}` is not a block: the op is `{op}`"
            self.error(codes.UNDEFINED_NAME, what, token_span(name_tok, path), trace,
                       help=f"write `{language_form(op, words)}`" + (f": {OPS[op].torch_note}" if name != op and OPS[op].torch_note else ""))
            return None
        if block is None:
            hint = suggest(name, list(self.blocks))
            self.error(codes.UNDEFINED_NAME, f"no block named `{name}`", token_span(name_tok, path), trace,
                       help=f"did you mean `{hint}`?" if hint else "define it with `block NAME(params) { ... }` or bring it in with `use \"file.arch\"`")
            return None
        if any(name == t[0] for t in trace) or self.call_depth > 64:
            self.error(codes.UNDEFINED_NAME, f"block `{name}` calls itself", token_span(name_tok, path), trace, help="blocks cannot be recursive")
            return None
        if len(args) > MAX_ARGUMENTS:
            self.error(codes.UNDEFINED_NAME, f"block `{name}` gets {len(args):,} arguments, past the limit of {MAX_ARGUMENTS}",
                       span, trace)
            return None
        return block

    def call_arguments(self, block: _BlockDef, args: list[Tree], path: str, env: dict[str, Value], span: Span,
                       trace: Trace) -> dict[str, Value] | None:
        """The block's parameters bound to the call's values (defaults filled in); None once a mistake is reported."""
        name = block.name
        positional: list[Value] = []
        keyword: dict[str, tuple[Value, Span]] = {}
        for a in args:
            if a.data == "call_kwarg":
                k, e = a.children
                keyword[str(k)] = (self.values.expr(e, path, env, trace), token_span(k, path))
            else:
                positional.append(self.values.expr(a.children[0], path, env, trace))
        params = [p for p, _ in block.params]
        defined = f"defined at {block.span.path}:{block.span.line}:{block.span.column} as `{name}({', '.join(params)})`"
        if len(positional) > len(params):
            self.error(codes.UNDEFINED_NAME, f"block `{name}` takes {len(params)} argument(s), got {len(positional)}", span, trace,
                       notes=[defined])
            return None
        bound: dict[str, Value] = dict(zip(params, positional))
        for k, (v, kspan) in keyword.items():
            if k not in params:
                hint = suggest(k, params)
                self.error(codes.UNDEFINED_NAME, f"block `{name}` has no parameter `{k}`", kspan, trace,
                           help=f"did you mean `{hint}`?" if hint else f"its parameters: {', '.join(params) or 'none'}")
                return None
            if k in bound:
                self.error(codes.UNDEFINED_NAME, f"block `{name}` gets `{k}` twice", kspan, trace)
                return None
            bound[k] = v
        for pname, default in block.params:
            if pname not in bound:
                if default is None:
                    self.error(codes.UNDEFINED_NAME, f"block `{name}` needs a value for `{pname}`", span, trace, notes=[defined])
                    return None
                bound[pname] = self.values.expr(default, block.path, bound, trace)
        return bound

    def expand_call(self, block: _BlockDef, bound: dict[str, Value], times: int, span: Span, trace: Trace,
                    namer: _Namer) -> list[Node]:
        """`times` copies of the block's body, each a BlockCall node under the call's trace."""
        name = block.name
        nodes: list[Node] = []
        self.call_depth += 1
        try:
            for i in range(times):
                before = self.expanded
                self.grow(1, span, trace)
                inner = trace + ((name, span),)
                self.scopes.open(barrier=block.body)  # a block sees only the names its own body gives
                try:
                    body = self.body(block.body, block.path, bound, inner)
                finally:
                    self.scopes.close()
                nodes.append(BlockCall(name, dict(bound), body, span, block.span, trace, namer(name)))
                if i == 0:  # refuse before making the other copies: one call's size is known now
                    self.refuse_past(before + (self.expanded - before) * times, span, trace, f"`{name}(...) * {times}`")
        finally:
            self.call_depth -= 1
        return nodes


# The sizes of the shape flowing into a layer, as its arguments can read them.
IN_SHAPE_NAMES = ("in.c", "in.h", "in.w", "in.f")


def _shape_reads(arg_trees: list[Tree]) -> list[Token]:
    """The `in.*` names a layer's arguments read (in `{...}` expressions or as a bare word)."""
    return [tok for tree in arg_trees for tok in tree.scan_values(lambda v: isinstance(v, Token))
            if tok.type == "NAME" and str(tok).startswith("in.")]


def _stmt_head(stmt: Tree) -> str:
    first = stmt.children[0] if stmt.children else stmt.data
    return str(first) if isinstance(first, Token) else stmt.data


def _head_span(stmt: Tree, path: str, keyword: str) -> Span:
    """The span of a structure's keyword (where a caret for the whole construct should point)."""
    s = tree_span(stmt, path)
    return Span(path, s.start, s.start + len(keyword), s.line, s.column, s.line, s.column + len(keyword))


# --------------------------------------------------------------------------- entry points

@without_gc_pauses
def parse(text: str, path: str = "<string>") -> Model:
    """Parse and bind a .arch text. Never raises for a mistake in the text: see Model.diagnostics."""
    sources: dict[str, str] = {}
    diagnostics: list[Diagnostic] = []
    builder = _Builder(sources, diagnostics)
    tree = builder.load_file(path, text)
    if tree is None:
        return Model(path, Seq(), sources, diagnostics)
    builder.loading.append(resolved_path(path))
    builder.scopes = named.Scopes(tree)
    budgets, params = [], {}
    try:
        stmts = builder.collect_defs(tree, path, top_level=True)
        budgets = [limit for s in stmts if s.data == "budget" for limit in builder.budget_limits(s, path)]
        params = builder.sweep_params([s for s in stmts if s.data == "sweep_param"], path)
        env: dict[str, Value] = {name: p.value for name, p in params.items()}
        body = Seq(builder.statements([s for s in stmts if s.data not in ("budget", "sweep_param")], path, env, (), _Namer()))
    except _Refused as refused:
        diagnostics.append(refused.diagnostic)
        body = Seq()
    return Model(path, body, sources, dedupe(diagnostics), blocks=sorted(builder.blocks), budgets=budgets,
                 sweep_params=params)


def dedupe(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    """Drop exact repeats (a block called `* 3` with a mistake inside reports it once)."""
    seen: set[tuple] = set()
    out = []
    for d in diagnostics:
        key = (d.code, d.message, d.span, d.trace)
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out


@without_gc_pauses
def load(path: str | Path) -> Model:
    """Read and parse a .arch file. Raises UsageError when the file cannot be read."""
    from archspec.language.errors import UsageError

    p = Path(path)
    if not p.exists() and not p.is_symlink():
        raise UsageError(f"{p}: no such file", "check the path")
    try:
        text = read_arch_file(p)
    except Unreadable as exc:
        raise UsageError(f"{p}: {exc.reason}", exc.help) from None
    return parse(text, str(path))


def with_param_values(model: Model, values: dict[str, int | float]) -> str:
    """The model's file text with the given `param` defaults written in place of the file's: a variant as
    self-contained .arch text (what a sweep checks, trains and writes out). Names must be the model's params."""
    text = model.text
    spans = sorted(((model.sweep_params[name].value_span, value) for name, value in values.items()),
                   key=lambda item: item[0].start, reverse=True)
    for span, value in spans:  # from the end, so earlier offsets stay valid
        text = text[:span.start] + _number_text(value) + text[span.end:]
    return text


def _number_text(value: int | float) -> str:
    return repr(value) if isinstance(value, float) else str(value)
