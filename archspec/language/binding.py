"""Binding one layer's written arguments to its op's LayerSpec fields, with help for the habits
PyTorch users bring (a missing `|`, torch's argument order, long names) and pydantic's errors
translated into one plain sentence per field."""
from __future__ import annotations

import dataclasses
import functools
import re
from dataclasses import dataclass
from typing import Any

from lark import Tree
from pydantic import ValidationError

from archspec.language import codes
from archspec.language.diagnostics import Reporter, Span, suggest
from archspec.language.nodes import Trace, Value
from archspec.language.ops import OPS, LayerSpec, validate_layer, value_text
from archspec.language.syntax import tree_span
from archspec.language.values import Evaluator, glued_value, out_of_range

_GLUED = re.compile(r"^(?P<key>[a-z]+?)(?P<value>\d+(?:x\d+)+|\d+\.\d*|\d*\.\d+|\d+)$")
_WORD_VALUES = {"same", "valid", "whiten", "default"}

# A word that reads as dimensions with a symbol in them: `H`, `W`, `HxW`, `Cx32x32` (only `input 3xHxW` is right).
_SYMBOLIC_DIMS = re.compile(r"[A-Z](x([A-Z]|\d+))*|\d+(x([A-Z]|\d+))+")

# PyTorch's keyword arguments as this language writes them ("" : the op's positional; "in": dropped).
_TORCH_KEYWORDS = {"in_channels": "in", "in_features": "in", "out_channels": "", "out_features": "",
                   "kernel_size": "k", "stride": "s", "padding": "p", "dilation": "d", "groups": "g"}


@dataclass
class _Arg:
    kind: str  # "word" | "value" | "kwarg"
    value: Value
    span: Span
    key: str = ""
    bound: Value | None = None  # the block parameter's value when the word names one


class Binder:
    """Turns a layer's argument trees into its validated LayerSpec, or reports why not (None)."""

    def __init__(self, report: Reporter, values: Evaluator) -> None:
        self.report = report
        self.values = values
        # The same text bound under the same parameters and call chain (each turn of `repeat 16 {...}`, each
        # call of `block(...) * 6`, a line written twice) gives the same spec but for its module name and
        # where it is written: one entry per distinct statement text and parameters, within one parse.
        self.bound: dict[tuple, LayerSpec] = {}

    def spec(self, cls: type[LayerSpec], op: str, arg_trees: list[Tree], path: str, env: dict[str, Value],
             trace: Trace, span: Span, name: str) -> LayerSpec | None:
        """The layer's spec; None once its mistakes are reported (the caller keeps an Invalid node)."""
        key: tuple | None = (self.report.source_text(span), trace, tuple(env.items()))
        try:
            earlier = self.bound.get(key)  # type: ignore[arg-type]
        except TypeError:  # a parameter value that cannot be hashed: bind this statement every time
            key = earlier = None
        if earlier is not None:
            return earlier.model_copy(update={"name": name, "span": span})
        reported = len(self.report.diags)
        spec = self._fresh_spec(cls, op, arg_trees, path, env, trace, span, name)
        if key is not None and spec is not None and len(self.report.diags) == reported:  # a clean binding only
            self.bound[key] = spec
        return spec

    def _fresh_spec(self, cls: type[LayerSpec], op: str, arg_trees: list[Tree], path: str, env: dict[str, Value],
                   trace: Trace, span: Span, name: str) -> LayerSpec | None:
        args = _glue_pairs(cls, [self.arg(t, path, env, trace) for t in arg_trees])
        if self.misplaced_symbol(op, args, trace):
            return None
        if (self.missing_separator(cls, op, args, span, trace) or self.torch_order(cls, op, args, span, trace)
                or self.torch_keywords(cls, op, args, span, trace)):
            return None
        data, ok = self.bind(cls, op, args, span, trace)
        if not ok:
            return None
        return self.validated(cls, op, args, data, span, trace, name)

    def arg(self, tree: Tree, path: str, env: dict[str, Value], trace: Trace) -> _Arg:
        span = tree_span(tree, path)
        if tree.data == "kwarg":
            key_tok, value_tree = tree.children
            return _Arg("kwarg", self.values.value(value_tree, path, env, trace), span, key=str(key_tok))
        if tree.data == "word":
            word = str(tree.children[0])
            return _Arg("word", word, span, bound=env.get(word))
        return _Arg("value", self.values.value(tree, path, env, trace), span)

    def validated(self, cls: type[LayerSpec], op: str, args: list[_Arg], data: dict[str, Any], span: Span,
                  trace: Trace, name: str) -> LayerSpec | None:
        """The op's pydantic model checks the bound values; each failing field is one diagnostic at its argument."""
        try:
            spec = validate_layer({"op": op, **data, "span": span, "trace": trace, "name": name})
        except ValidationError as exc:
            for fld, errors in _errors_by_field(exc, op).items():
                where = next((a.span for a in args if a.key == fld), span)
                self.report.error(codes.INVALID_VALUE, f"`{op}` {_field_label(cls, fld)}: {_joined_msg(errors)}", where, trace,
                           help=f"usage: `{cls.usage}`")
            return None
        # A word such as `inf` or `nan` becomes a float only in validation: refuse what torch cannot take.
        bad = [fld for fld in data if out_of_range(getattr(spec, fld, None))]
        for fld in bad:
            where = next((a.span for a in args if a.key == fld), span)
            self.report.error(codes.INVALID_VALUE, f"`{op}` {_field_label(cls, fld)}: must be finite and at most 2^63-1, "
                       f"got `{value_text(getattr(spec, fld))}`", where, trace, help=f"usage: `{cls.usage}`")
        return None if bad else spec

    def misplaced_symbol(self, op: str, args: list[_Arg], trace: Trace) -> bool:
        """A symbolic size (`H`, `W`) anywhere but the height and width of `input`: one diagnostic each."""
        found = False
        for a in args:
            if a.kind == "word" and a.bound is None and _SYMBOLIC_DIMS.fullmatch(str(a.value)):
                if op == "input":
                    self.report.error(codes.INVALID_VALUE, f"`input {a.value}`: the channels must be a number; only the height "
                               "and width can be symbols", a.span, trace,
                               help="write the channels first as a number, e.g. `input 3xHxW` (H, W: any size)")
                else:
                    self.report.error(codes.INVALID_VALUE, f"`{op}` {a.value}: a symbolic size can only be the height or width "
                               "of `input`", a.span, trace, help=f"write a number here; usage: `{OPS[op].usage}`")
                found = True
            elif isinstance(a.value, tuple) and any(isinstance(d, str) for d in a.value) and op != "input":
                self.report.error(codes.INVALID_VALUE, f"`{op}` {value_text(a.value)}: a symbolic size can only be the height "
                           "or width of `input`", a.span, trace, help=f"write numbers here; usage: `{OPS[op].usage}`")
                found = True
        return found

    def missing_separator(self, cls: type[LayerSpec], op: str, args: list[_Arg], span: Span, trace: Trace) -> bool:
        """`conv 6 k5 relu maxpool 2`: one diagnostic at the first op name among the arguments."""
        starts = [a.span.start for a in args if _names_an_op(cls, a)]
        if not starts:
            return False
        word = next(str(a.value) for a in args if _names_an_op(cls, a))
        where = next(a.span for a in args if _names_an_op(cls, a))
        text = self.report.source_text(span)
        for start in reversed(starts):
            cut = start - span.start
            text = text[:cut].rstrip() + " | " + text[cut:]
        self.report.error(codes.UNKNOWN_ARGUMENT, f"missing `|` before `{word}`?", where, trace,
                   help=f"separate layers with `|` or a newline: `{text}`")
        return True

    def torch_order(self, cls: type[LayerSpec], op: str, args: list[_Arg], span: Span, trace: Trace) -> bool:
        """`conv 6 5`, `conv 3 6 5`, `linear 400 120`: PyTorch's positional arguments, one diagnostic with the form here."""
        numbers = [a for i, a in enumerate(args) if a.kind == "value" and not (i and _is_key(cls, args[i - 1]))]
        if not cls.torch_order or len(numbers) <= len(cls.positional):
            return False
        form = language_form(op, [self.report.source_text(a.span) for a in args])
        count = "one number" if len(cls.positional) == 1 else f"{len(cls.positional)} numbers"
        self.report.error(codes.UNKNOWN_ARGUMENT, f"`{op}` takes {count} here, got {len(numbers)}: {cls.torch_note}", span, trace,
                   help=f"write `{form}`")
        return True

    def torch_keywords(self, cls: type[LayerSpec], op: str, args: list[_Arg], span: Span, trace: Trace) -> bool:
        """`linear in_features=1024 out_features=10`, `conv ... kernel_size=5`: PyTorch's keyword names this op
        does not take, one diagnostic that says why and gives the form here (not a near name such as `out_features=`)."""
        torch = [a for a in args if a.kind == "kwarg" and a.key not in cls.model_fields
                 and _TORCH_KEYWORDS.get(a.key, "-") in cls.torch_order]
        if not torch:
            return False
        key = torch[0].key
        why = "the checker infers it from the previous layer's output" if _TORCH_KEYWORDS[key] == "in" else cls.torch_note
        form = language_form(op, [self.report.source_text(a.span) for a in args])
        self.report.error(codes.UNKNOWN_ARGUMENT, f"`{op}` takes no `{key}=`: {why}", span, trace,
                          help=f"write `{form}` (usage: `{cls.usage}`)")
        return True

    def bind(self, cls: type[LayerSpec], op: str, args: list[_Arg], span: Span, trace: Trace) -> tuple[dict[str, Any], bool]:
        """Map positional values, `k5` / `p same` / `init=whiten` keys and flags to the op's fields."""
        data: dict[str, Any] = {}
        ok = True
        fields, required = _bindable(cls)

        def put(fld: str, value: Any, arg: _Arg) -> None:
            nonlocal ok
            if fld in data:
                self.report.error(codes.UNKNOWN_ARGUMENT, f"`{op}` gets {_field_label(cls, fld)} twice", arg.span, trace, help="keep one of them")
                ok = False
            data[fld] = value
            arg.key = fld

        positional = list(cls.positional)
        i = 0
        while i < len(args):
            arg = args[i]
            nxt = args[i + 1] if i + 1 < len(args) else None
            if arg.kind == "kwarg":
                fld = cls.keys.get(arg.key, arg.key)
                if fld in fields:
                    put(fld, arg.value, arg)
                else:
                    self._unknown(op, arg.key, arg.span, trace)
                    ok = False
            elif arg.kind == "word":
                word = str(arg.value)
                glued = _GLUED.match(word)
                if word in cls.flags:
                    fld, value = cls.flags[word]
                    put(fld, value, arg)
                elif word in cls.keys and nxt is not None and self._is_value(cls, nxt):
                    put(cls.keys[word], nxt.bound if nxt.bound is not None else nxt.value, arg)
                    nxt.key = cls.keys[word]
                    i += 1
                elif arg.bound is not None and positional:
                    put(positional.pop(0), arg.bound, arg)
                elif word in cls.keys:
                    self.report.error(codes.MISSING_ARGUMENT, f"`{op}` argument `{word}` needs a value", arg.span, trace,
                               help=f"write it glued, e.g. `{word}1`, or as `{word} VALUE`; usage: `{cls.usage}`")
                    ok = False
                elif glued and glued["key"] in cls.keys:
                    put(cls.keys[glued["key"]], glued_value(glued["value"]), arg)
                elif word in _WORD_VALUES and positional:
                    put(positional.pop(0), word, arg)
                else:
                    self._unknown(op, word, arg.span, trace)
                    ok = False
            else:
                if positional:
                    put(positional.pop(0), arg.value, arg)
                else:
                    takes = f"takes {len(cls.positional)} positional argument(s)" if cls.positional else "takes no positional arguments"
                    self.report.error(codes.UNKNOWN_ARGUMENT, f"unexpected value `{value_text(arg.value)}`: `{op}` {takes}", arg.span, trace,
                               help=f"usage: `{cls.usage}`")
                    ok = False
            i += 1
        for fld in required:
            if fld not in data:
                self.report.error(codes.MISSING_ARGUMENT, f"`{op}` needs {_field_label(cls, fld)}", span, trace, help=f"usage: `{cls.usage}`")
                ok = False
        return data, ok

    @staticmethod
    def _is_value(cls: type[LayerSpec], arg: _Arg) -> bool:
        if arg.kind == "value" or arg.bound is not None:
            return True
        if arg.kind != "word":
            return False
        word = str(arg.value)
        glued = _GLUED.match(word)
        return word not in cls.keys and word not in cls.flags and not (glued and glued["key"] in cls.keys)

    def _unknown(self, op: str, word: str, span: Span, trace: Trace) -> None:
        cls = OPS[op]
        vocabulary = list(cls.keys) + list(cls.flags) + [f"{k}=" for k in _bindable(cls)[0]]
        stem = _GLUED.match(word)
        short = {fld: key for key, fld in cls.keys.items()}
        spaced = _key_glued_to_word(cls, word)
        if spaced:  # `psame` -> `p same`: a word value is written after a space
            hint: str | None = spaced
        elif stem and stem["key"] in short:  # `stride2` -> `s2`: the long name glued to a value
            hint = short[stem["key"]] + stem["value"]
        else:
            hint = suggest(stem["key"] if stem else word, vocabulary)
            if hint and stem and not hint.endswith("="):
                hint += stem["value"]
        self.report.error(codes.UNKNOWN_ARGUMENT, f"unknown argument `{word}` for `{op}`", span, trace,
                   help=(f"did you mean `{hint}`? " if hint else "") + f"usage: `{cls.usage}`")


_PAIR_TAIL = re.compile(r"^x(?P<second>\d+)?$")  # `x` before `{kw}`, or `x7`, after `k{kh}`
_PAIR_HEAD = re.compile(r"^(?P<key>[a-z]+?)(?P<first>\d+)x$")  # `k1x` before `{kw}`


def _glue_pairs(cls: type[LayerSpec], args: list[_Arg]) -> list[_Arg]:
    """`k{kh}x{kw}`, `k{kh}x7` and `k1x{kw}` (written without spaces) as one key with a pair, like `k1x7`."""
    if not any(a.span.end == b.span.start for a, b in zip(args, args[1:])):
        return args  # nothing written glued to its neighbour (almost every layer)
    out: list[_Arg] = []
    i = 0
    while i < len(args):
        arg, rest = args[i], args[i + 1:i + 4]
        glued = 0  # how many of `rest` follow on with no space between
        while glued < len(rest) and args[i + glued].span.end == rest[glued].span.start:
            glued += 1
        head = _PAIR_HEAD.match(str(arg.value)) if arg.kind == "word" else None
        if head and head["key"] in cls.keys and glued >= 1 and rest[0].kind == "value":
            out.append(_Arg("word", head["key"], _joined(arg, rest[0])))
            out.append(_Arg("value", (int(head["first"]), rest[0].value), rest[0].span))
            i += 2
            continue
        if arg.kind == "word" and arg.value in cls.keys and glued >= 2 and rest[0].kind == "value" \
                and rest[1].kind == "word" and (tail := _PAIR_TAIL.match(str(rest[1].value))):
            if tail["second"] is not None:
                out += [arg, _Arg("value", (rest[0].value, int(tail["second"])), _joined(rest[0], rest[1]))]
                i += 3
                continue
            if glued == 3 and rest[2].kind == "value":
                out += [arg, _Arg("value", (rest[0].value, rest[2].value), _joined(rest[0], rest[2]))]
                i += 4
                continue
        out.append(arg)
        i += 1
    return out


def _joined(first: _Arg, last: _Arg) -> Span:
    return dataclasses.replace(first.span, end=last.span.end, end_line=last.span.end_line, end_column=last.span.end_column)


def _is_key(cls: type[LayerSpec], arg: _Arg) -> bool:
    """A bare key such as the `k` of `k 5`: the value after it is not positional."""
    return arg.kind == "word" and str(arg.value) in cls.keys


def _names_an_op(cls: type[LayerSpec], arg: _Arg) -> bool:
    """An argument that is the name of another op (a layer written without its `|` before it)."""
    if arg.kind != "word" or arg.bound is not None:
        return False
    word = str(arg.value)
    return word in OPS and word not in cls.keys and word not in cls.flags and word not in _WORD_VALUES


@functools.cache
def _bindable(cls: type[LayerSpec]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The op's own fields (all but op, span, trace and name) and those it requires: once per class, as
    pydantic's `model_fields` is slow to read and binding runs for every layer."""
    fields = tuple(f for f in cls.model_fields if f not in ("op", "span", "trace", "name"))
    return fields, tuple(f for f in fields if cls.model_fields[f].is_required())


def language_form(op: str, words: list[str]) -> str:
    """A PyTorch-style argument list in this language: `conv` + [3, 6, 5] -> `conv 6 k5`,
    `linear` + [400, 120] -> `linear 120`, `conv` + [6, kernel_size=5] -> `conv 6 k5`."""
    cls = OPS[op]
    numbers = [w for w in words if re.fullmatch(r"\d+", w)]
    given = {key for key in cls.keys for w in words if re.match(rf"{key}\d", w)}
    given |= {_TORCH_KEYWORDS[w.partition("=")[0].strip()] for w in words if w.partition("=")[0].strip() in _TORCH_KEYWORDS}
    full = list(cls.torch_order) or [""]
    lead = len([key for key in full if key in ("in", "")])
    first_key = full[lead] if lead < len(full) else None
    needed = lead + (0 if first_key is None or first_key in given else 1)
    order = [key for key in full if key not in given or key in ("in", "")]
    if len(numbers) < needed:
        order = [key for key in order if key != "in"]  # `conv 6 5`: out-channels and kernel, no in-channels
    parts: dict[str, str] = {key: value for key, value in zip(order, numbers)}
    rest = []
    for word in words:
        key, sep, value = word.partition("=")
        if sep and key.strip() in _TORCH_KEYWORDS:
            parts[_TORCH_KEYWORDS[key.strip()]] = value.strip().strip("'\"")
        elif sep and key.strip() == "bias" and value.strip() == "False":
            rest.append("nobias")
        elif not re.fullmatch(r"\d+", word):
            rest.append(word)
    parts.pop("in", None)
    positional = [parts.pop("")] if "" in parts else []
    keyed = [f"{key}{value}" if re.fullmatch(r"[\dx]+", value) else f"{key} {value}" for key, value in parts.items()]
    return " ".join([op] + positional + keyed + rest)


def _key_glued_to_word(cls: type[LayerSpec], word: str) -> str | None:
    """`psame` -> `p same`, `initwhiten` -> `init whiten`; None when the word is not a key glued to a word value."""
    for key in cls.keys:
        rest = word[len(key):]
        if word.startswith(key) and rest in _WORD_VALUES:
            return f"{key} {rest}"
    return None


def _field_label(cls: type[LayerSpec], fld: str) -> str:
    keys = {v: k for k, v in cls.keys.items()}
    return f"{fld.replace('_', ' ')} (`{keys[fld]}`)" if fld in keys else fld.replace("_", " ")


def _errors_by_field(exc: ValidationError, op: str) -> dict[str, list[dict]]:
    """Pydantic's errors grouped by field: a union field (padding: N, NxM, same or valid) fails once per member."""
    grouped: dict[str, list[dict]] = {}
    for err in exc.errors():
        fld = str(err["loc"][0]) if err["loc"] else op
        grouped.setdefault(fld, []).append(err)
    return grouped


def _joined_msg(errors: list[dict]) -> str:
    """One sentence for one field: `must be N or NxM, or 'same' or 'valid', got `2.5`` for a union."""
    messages = [_clean_msg(err) for err in errors]
    if len(messages) == 1:
        return messages[0]
    got = value_text(errors[0].get("input"))
    wants = [m.removeprefix("must be ").rsplit(", got ", 1)[0] for m in messages if m.startswith("must be ")]
    if len(wants) != len(messages):
        return messages[0]
    return f"must be {', or '.join(dict.fromkeys(wants))}, got `{got}`"


def _clean_msg(err: dict) -> str:
    """A pydantic error as one plain sentence (never the raw dump)."""
    ctx = err.get("ctx") or {}
    kind = err["type"]
    got = err.get("input")
    if kind == "greater_than_equal":
        return f"must be at least {ctx.get('ge')}, got {value_text(got)}"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"must be a whole number, got `{value_text(got)}`"
    if kind in ("float_type", "float_parsing"):
        return f"must be a number, got `{value_text(got)}`"
    if kind == "literal_error":
        return f"must be {ctx.get('expected')}, got `{value_text(got)}`"
    if kind in ("tuple_type", "too_long", "too_short"):
        return f"must be N or NxM, got `{value_text(got)}`"
    if kind == "bool_type":
        return f"is a flag, got `{value_text(got)}`"
    return err["msg"][0].lower() + err["msg"][1:]
