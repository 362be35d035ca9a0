"""Statements -> .arch text a person would have written (no torch here).

Statements are grouped by the modules around them (`layer1`, `layer1.0`, ...). A module class that
occurs more than once with the same layout becomes one `block`: the numbers that differ between its
occurrences are its parameters (a number that is always a whole multiple of another is written as
that multiple, `{c*4}`), and each occurrence is a call. Runs of identical statements become `* N`
(calls) or `repeat N { ... }`. Comments say which module each block and each top-level part came from.
"""
from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, field

from archspec.importers.statements import Imported, Join, Op, Scope
from archspec.language.joins import JOINS
from archspec.language.ops import OPS

WIDTH = 100
_NUMBER = re.compile(r"(?<![A-Za-z0-9_.])(?P<pre>k|s|p|d|g|op)?(?P<num>\d+(?:\.\d+)?(?:e-?\d+)?)(?![A-Za-z0-9_.])")
_DEFAULTS = re.compile(r"\b(conv(?:transpose)? [^|{}]*)")
_CALL = re.compile(r"^[a-z_][a-z0-9_]*(\(.*\))?$")
_OP_WORDS = {"conv", "stdconv", "convtranspose", "maxpool", "avgpool", "linear", "bn", "groupnorm", "dropout", "dropout2d", "upsample",
             "adaptiveavgpool", "leakyrelu"}
# A block may not take an op's or a join's name (timm has classes named Sigmoid, GELU...), nor a keyword's, nor
# the prefix of their module names (a block `pool` would name its calls pool1, pool2 as maxpool's are).
_RESERVED = {*OPS, *JOINS, *(c.name_prefix for c in OPS.values()), *(j.name_prefix for j in JOINS.values()),
             "input", "block", "repeat", "use", "param", "budget", "shortcut", "project", "attend"}


@dataclass
class Group:
    """The statements inside one module of the original network."""

    scope: Scope
    members: list = field(default_factory=list)
    call: str | None = None  # the call text, once the module's class became a block


Statement = list[str]  # one statement: its physical lines


def group(statements: list, depth: int) -> list:
    """Statements nested in Groups by their module at `depth` and below."""
    items: list = []
    for s in statements:
        scope = s.scopes[depth] if len(s.scopes) > depth else None
        if scope is None:
            if isinstance(s, Join):
                s = Join(s.word, [group(b, depth) for b in s.branches], s.scopes,
                         group(s.shortcut, depth) if s.shortcut is not None else None)
            items.append(s)
        elif items and isinstance(items[-1], Group) and items[-1].scope.path == scope.path:
            items[-1].members.append(s)
        else:
            items.append(Group(scope, [s]))
    for item in items:
        if isinstance(item, Group):
            item.members = group(item.members, depth + 1)
    return items


@dataclass
class Block:
    name: str
    params: list[str]
    body: list[Statement]
    paths: list[str]
    cls: str


class Renderer:
    def __init__(self, items: list) -> None:
        self.items = items
        self.blocks: list[Block] = []
        self.called: list[Group] = []  # every group written as a block call (its text renamed with its block)
        self._fold()

    def _instances(self) -> dict[str, list[Group]]:
        found: dict[str, list[Group]] = {}

        def walk(items: list) -> None:
            for item in items:
                if isinstance(item, Group):
                    if not item.scope.container:
                        found.setdefault(item.scope.cls, []).append(item)
                    walk(item.members)
                elif isinstance(item, Join):
                    for b in item.branches:
                        walk(b)
        walk(self.items)
        return found

    def _fold(self) -> None:
        """Decide the blocks, innermost classes first (their calls are part of the outer bodies)."""
        instances = self._instances()
        # By how deep modules nest inside a class's occurrences, not by where they sit: a class that also occurs at
        # the top (Inception-ResNet's stem convs) is still folded before the blocks it is inside.
        order = sorted(instances, key=lambda c: max(_height(g) for g in instances[c]))
        names: set[str] = set()
        for cls in order:
            variants: dict[str, list[tuple[Group, str]]] = {}
            for g in instances[cls]:
                text = "\n".join("\n".join(s) for s in self.statements(g.members))
                variants.setdefault(_NUMBER.sub("#", text), []).append((g, text))
            for members in variants.values():
                if len(members) > 1:
                    self._block(cls, members, names)
        self._separate_module_names()

    def _separate_module_names(self) -> None:
        """Calls are named block name + count: when `stage` is called 21 times, a block `stage2` (a second variant,
        or a class Stage2) would name its first call `stage21` too, and the built network would lose one of them;
        such a block takes an underscore, `stage_2`."""
        calls = {b.name: len(b.paths) for b in self.blocks}
        renames = {}
        for b in self.blocks:
            for other, count in calls.items():
                digits = b.name[len(other):]
                if other != b.name and b.name.startswith(other) and digits.isdigit() and count >= int(digits + "1"):
                    renames[b.name] = f"{other}_{digits}"
        for old, new in renames.items():
            called = re.compile(rf"(?<![\w.]){re.escape(old)}\(")
            for b in self.blocks:
                b.name = new if b.name == old else b.name
                b.body = [[called.sub(f"{new}(", part) for part in line] for line in b.body]
            for g in self.called:
                g.call = called.sub(f"{new}(", g.call)  # type: ignore[arg-type]

    def _block(self, cls: str, members: list[tuple[Group, str]], names: set[str]) -> None:
        base = re.sub(r"(?<!^)(?=[A-Z][a-z])", "_", cls.strip("_")).lower() or "block"
        base = base if base not in _RESERVED else base + "_block"
        name = base
        n = 2
        while name in names:
            name, n = f"{base}{n}", n + 1
        names.add(name)
        texts = [t for _, t in members]
        template, params, values = _parameters(texts)
        body = [[line] for line in template.split("\n")]
        self.blocks.append(Block(name, params, body, [g.scope.path for g, _ in members], cls))
        for (g, _), vals in zip(members, values):
            g.call = f"{name}({', '.join(map(_text, vals))})"  # `name()`: a bare name cannot take `* N`
            self.called.append(g)

    def statements(self, items: list) -> list[Statement]:
        """The statements for a sequence of items, runs of identical ones folded."""
        out: list[Statement] = []
        line: list[str] = []

        def flush() -> None:
            if line:
                out.append([" | ".join(line)])
                line.clear()
        for item in items:
            if isinstance(item, Op):
                if line and (item.weighted and any(_weighted(p) for p in line) or _width(" | ".join(line + [item.text])) > WIDTH - 20):
                    flush()
                line.append(item.text)
            elif isinstance(item, Join):
                flush()
                out.append(self.join(item))
            elif item.call is not None:
                flush()
                out.append([item.call])
            elif item.scope.container and item.scope.path.count(".") > 0:
                for s in self.statements(item.members):  # a nested Sequential flows into the lines around it
                    if len(s) == 1 and not s[0].startswith("#") and not _CALL.match(s[0]) and not s[0].startswith(("residual", "concat", "add", "mul", "repeat")):
                        for part in s[0].split(" | "):
                            if line and (_weighted(part) and any(_weighted(p) for p in line) or _width(" | ".join(line + [part])) > WIDTH - 20):
                                flush()
                            line.append(part)
                    else:
                        flush()
                        out.append(s)
            else:
                flush()
                what = item.scope.path if item.scope.container else f"{item.scope.path} ({item.scope.cls})"
                out.append([f"# {what}"])
                out.extend(self.statements(item.members))
        flush()
        return _runs(out)

    def join(self, join: Join) -> Statement:
        word = join.word
        branches = [self.statements(b) for b in join.branches]
        tail = ""
        if join.shortcut is not None and word == "residual":
            branches.append(self.statements(join.shortcut))
        if join.shortcut is not None and word.startswith("select"):
            return self.select(word, branches, self.statements(join.shortcut))
        flat = [_inline(b) for b in branches]
        if all(f is not None for f in flat):
            parts = [f"{{ {f} }}" if f else "{}" for f in flat]
            if word == "residual" and len(parts) == 2:
                text = f"residual {parts[0]} shortcut {parts[1]}"
            else:
                text = f"{word} {' '.join(parts)}{tail}"
            if _width(text) <= WIDTH:
                return [text]
        lines = [word if len(branches) > 1 or word != "residual project" else word + " {"]
        if len(branches) == 1 or word.startswith("residual") and len(branches) <= 2:
            lines[0] = f"{word} {{"
            lines += ["  " + x for s in branches[0] for x in s] + ["}"]
            if len(branches) == 2:
                lines[-1] = "} shortcut {"
                lines += ["  " + x for s in branches[1] for x in s] + ["}"]
            return lines
        for f, b in zip(flat, branches):
            if f is not None and _width(f) < WIDTH - 6:
                lines.append(f"  {{ {f} }}" if f else "  {}")
            else:
                lines += ["  {"] + ["    " + x for s in b for x in s] + ["  }"]
        return lines

    def select(self, word: str, branches: list[list[Statement]], attention: list[Statement]) -> Statement:
        """`select { a } { b } attend { attention }` on one line where it fits; else a branch per line, then `attend`."""
        flat, attend = [_inline(b) for b in branches], _inline(attention)
        if all(f is not None for f in flat) and attend is not None:
            text = f"{word} {' '.join(f'{{ {f} }}' if f else '{}' for f in flat)} attend {{ {attend} }}"
            if _width(text) <= WIDTH:
                return [text]
        lines = [word]
        for f, b in zip(flat, branches):
            if f is not None and _width(f) < WIDTH - 6:
                lines.append(f"  {{ {f} }}" if f else "  {}")
            else:
                lines += ["  {"] + ["    " + x for s in b for x in s] + ["  }"]
        if attend is not None and _width(attend) < WIDTH - 12:
            return lines + [f"attend {{ {attend} }}"]
        return lines + ["attend {"] + ["  " + x for s in attention for x in s] + ["}"]

    def text(self) -> list[str]:
        lines: list[str] = []
        for b in self.blocks:
            shown = ", ".join(b.paths[:2]) + (f", ... ({len(b.paths)} in all)" if len(b.paths) > 2 else "")
            lines.append(f"# {b.cls}: {shown}")
            head = f"block {b.name}{'(' + ', '.join(b.params) + ')' if b.params else ''}"
            body = [x for s in b.body for x in s]
            one = f"{head} {{ {body[0]} }}" if len(body) == 1 else ""
            lines += [one] if one and len(one) <= WIDTH else [head + " {"] + ["  " + x for x in body] + ["}"]
        if lines:
            lines.append("")
        return lines + [x for s in self.statements(self.items) for x in s]


def _height(item: object) -> int:
    """How many modules deep a group goes (1: only layers in it); 0 for a layer."""
    if isinstance(item, Group):
        return 1 + max((_height(m) for m in item.members), default=0)
    if isinstance(item, Join):
        return max((_height(s) for b in item.branches + [item.shortcut or []] for s in b), default=0)
    return 0


def _weighted(part: str) -> bool:
    return part.split(" ", 1)[0] in ("conv", "stdconv", "linear", "convtranspose", "pwlinear")


def _inline(statements: list[Statement]) -> str | None:
    """A branch on one line ('' for the identity), or None when it needs several."""
    kept = [s for s in statements if not (len(s) == 1 and s[0].startswith("#"))]
    if any(len(s) != 1 for s in kept):
        return None
    return " | ".join(s[0] for s in kept)


def _runs(statements: list[Statement]) -> list[Statement]:
    """Runs of identical statements as `call * N` or `repeat N { ... }`."""
    out: list[Statement] = []
    i = 0
    while i < len(statements):
        s = statements[i]
        n = 1
        while i + n < len(statements) and statements[i + n] == s and not s[0].startswith("#"):
            n += 1
        if n == 1:
            out.append(s)
        elif len(s) == 1 and _CALL.match(s[0]):
            out.append([f"{s[0]} * {n}"])
        elif len(s) == 1 and _width(s[0]) < WIDTH - 14:
            out.append([f"repeat {n} {{ {s[0]} }}"])
        else:
            out.append([f"repeat {n} {{"] + ["  " + x for x in s] + ["}"])
        i += n
    return out


def _parameters(texts: list[str]) -> tuple[str, list[str], list[list[int]]]:
    """(the block body with parameters, their names, each occurrence's values) from same-layout texts."""
    matches = [list(_NUMBER.finditer(t)) for t in texts]
    columns = list(zip(*[[_value(m["num"]) for m in ms] for ms in matches]))
    names: list[str] = []
    vectors: list[tuple[int, ...]] = []
    pieces: list[str] = []
    last = 0
    template = texts[0]
    for j, m in enumerate(matches[0]):
        pieces.append(template[last:m.start()])
        last = m.end()
        column = columns[j]
        pre = m["pre"] or ""
        if len(set(column)) == 1:
            pieces.append(m.group(0))
            continue
        in_call = template[:m.start()].count("(") > template[:m.start()].count(")")
        expr = _expression(column, vectors, names)
        if expr is None:
            name = _fresh(_param_name(pre, template[:m.start()]), names)
            names.append(name)
            vectors.append(column)
            expr = name
        bare = in_call or (not pre and re.search(r"\b(conv|convtranspose|linear|pwlinear) $", template[:m.start()]) and "*" not in expr)
        pieces.append(f"{pre}{expr}" if bare else f"{pre}{{{expr}}}")
    pieces.append(template[last:])
    values = [[vectors[names.index(n)][i] for n in names] for i in range(len(texts))]
    return "".join(pieces), names, values


def _value(token: str) -> int | float:
    return int(token) if token.isdigit() else float(token)


def _text(value: float) -> str:
    return str(value) if isinstance(value, int) else repr(value).replace("e-0", "e-")


def _expression(column: tuple[int, ...], vectors: list[tuple[int, ...]], names: list[str]) -> str | None:
    """A name or `name*k` that gives this column in every occurrence, or None."""
    for name, v in zip(names, vectors):
        if v == column:
            return name
    if not all(isinstance(a, int) for a in column):
        return None
    for name, v in zip(names, vectors):
        if all(isinstance(b, int) for b in v) and all(b != 0 for b in v) and all(a % b == 0 for a, b in zip(column, v)):
            ratios = {a // b for a, b in zip(column, v)}
            if len(ratios) == 1 and (k := ratios.pop()) > 1:
                return f"{name}*{k}"
    return None


def _param_name(pre: str, before: str) -> str:
    if pre:
        return pre
    word = before.rstrip().rsplit(None, 1)[-1] if before.strip() else ""
    return {"conv": "c", "stdconv": "c", "convtranspose": "c", "linear": "f", "pwlinear": "c", "repeat": "n", "*": "n", "groupnorm": "groups", "stochasticdepth": "drop",
            "dropout": "drop", "layerscale": "scale"}.get(word, "n")


def _fresh(base: str, taken: list[str]) -> str:
    name, n = base, 2
    while name in taken:
        name, n = f"{base}{n}", n + 1
    return name


def _drop_defaults(line: str) -> str:
    """`conv 64 k3 s1 p0 d1 g1` -> `conv 64 k3`: the defaults were written only to line blocks up."""
    out: list[str] = []
    op = None
    for token in line.split(" "):
        if token in _OP_WORDS or token in ("|", "{", "}", "{}"):
            op = token
        if op in ("conv", "stdconv", "convtranspose") and token in ("s1", "p0", "d1", "g1"):
            continue
        out.append(token)
    return " ".join(out)


def _width(text: str) -> int:
    """The length with every number as three digits: the same layout at every width (64 or 512 channels)."""
    return len(_NUMBER.sub("000", text))


def render(imported: Imported, title: str) -> str:
    """The .arch text of an imported network."""
    statements = imported.statements if imported.stopped is None else imported.statements[:imported.stopped]
    renderer = Renderer(group(statements, 0))
    shape = "x".join(map(str, imported.input_shape))
    notes = [f"# {line}" for note in imported.notes for line in textwrap.wrap(note, WIDTH - 2)]
    lines = [f"# {title}", *notes, f"input {shape}", ""] + renderer.text()
    return "\n".join(_drop_defaults(line).rstrip() for line in lines) + "\n"
