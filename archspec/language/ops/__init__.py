"""The op registry: every op class, one file per family beside this one.

Defining a `LayerSpec` subclass with an `op` literal registers it. `OPS` maps each op word to its
class in the order `archspec ops` lists them (known families first, then any other module found
here). A family module is imported the first time one of its ops is asked for: `index.py`, a table
generated from the registry, says which module defines each word, so a file that uses five ops
builds only their families' classes. Adding an op is adding a class to its family file (then
`ARCHSPEC_REGEN=1 python -m pytest tests/test_ops_registry.py` rewrites the index).
"""
from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Annotated, Any, Union

from archspec.language.ops.base import (REGISTRY, Emit, LayerSpec, Pair, RFStep, Shape, TorchCall, fmt_shape,
                                        number_text, pair_text, value_text, window_line, window_out)
from archspec.language.ops.index import FAMILY_OF

_FAMILIES = ("input", "conv", "pool", "activation", "norm", "dropout", "dense")
_NOT_FAMILIES = {"base", "index"}


def family_modules() -> list[str]:
    """The family modules in registry order: the known families, then any other module found here."""
    found = sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name not in _NOT_FAMILIES)
    return [*_FAMILIES, *(m for m in found if m not in _FAMILIES)]


def import_families() -> None:
    """Define every op class (the registry is then complete)."""
    for name in family_modules():
        importlib.import_module(f"{__name__}.{name}")


class _Ops(Mapping[str, "type[LayerSpec]"]):
    """Every op class by its word. Words and membership come from the index without importing
    anything; a class is defined (its family imported) when it is first looked up."""

    def __getitem__(self, word: str) -> type[LayerSpec]:
        cls = self.get(word)
        if cls is None:
            raise KeyError(word)
        return cls

    def get(self, word: str, default: Any = None) -> Any:  # type: ignore[override]
        # Written out (not Mapping's get over __getitem__): binding looks ops up for every layer.
        cls = REGISTRY.get(word)
        if cls is None and word in FAMILY_OF:
            importlib.import_module(f"{__name__}.{FAMILY_OF[word]}")
            cls = REGISTRY.get(word)
        return default if cls is None else cls

    def __contains__(self, word: object) -> bool:
        return word in FAMILY_OF or word in REGISTRY

    def __iter__(self) -> Iterator[str]:
        yield from FAMILY_OF
        yield from (word for word in REGISTRY if word not in FAMILY_OF)

    def __len__(self) -> int:
        return len(FAMILY_OF) + sum(word not in FAMILY_OF for word in REGISTRY)


OPS: Mapping[str, type[LayerSpec]] = _Ops()

from archspec.language.ops.input import Input  # noqa: E402  (every network starts with one)

if TYPE_CHECKING:
    from pydantic import TypeAdapter

    from archspec.language.ops.conv import Conv
    from archspec.language.ops.norm import BatchNorm


def _family(cls: type[LayerSpec]) -> str:
    return cls.__module__.rsplit(".", 1)[-1]


def ops_in_order() -> list[type[LayerSpec]]:
    """Every op class, by family in `family_modules` order, then as its file defines them (the registry's own
    order depends on which ops were looked up first)."""
    import_families()
    families = family_modules()
    return sorted(REGISTRY.values(), key=lambda cls: families.index(_family(cls)))


def index_source() -> str:
    """The text of index.py for the registry as the family files define it now."""
    lines = [f'    "{cls.model_fields["op"].default}": "{_family(cls)}",' for cls in ops_in_order()]
    return ('"""Which family module defines each op, in registry order: generated from the registry (rewrite it with\n'
            '`ARCHSPEC_REGEN=1 python -m pytest tests/test_ops_registry.py`), so looking an op up imports only its family."""\n'
            "FAMILY_OF: dict[str, str] = {\n" + "\n".join(lines) + "\n}\n")


def validate_layer(data: dict[str, Any]) -> LayerSpec:
    """The op model for `data` (its "op" names one of OPS), validated by that op's class alone.

    Only the classes a file uses build their validators (LayerSpec defers building): binding
    does not pay for the whole union. Pydantic's ValidationError locations start at the field.
    """
    return OPS[data["op"]].model_validate(data)


_ADAPTER: "TypeAdapter | None" = None


def layer_adapter() -> "TypeAdapter":
    """A TypeAdapter for the discriminated union of every op, built on first use (it builds every op's validator)."""
    global _ADAPTER
    if _ADAPTER is None:
        from pydantic import Field, TypeAdapter

        _ADAPTER = TypeAdapter(Annotated[Union[tuple(OPS.values())], Field(discriminator="op")])  # type: ignore[arg-type]
    return _ADAPTER


def __getattr__(name: str) -> Any:
    # `ops.LAYER_ADAPTER` still works, built when first asked for rather than at import; so do `ops.Conv`
    # and `ops.BatchNorm`, defined when first asked for like every op class.
    if name == "LAYER_ADAPTER":
        return layer_adapter()
    if name in ("Conv", "BatchNorm"):
        return OPS[{"Conv": "conv", "BatchNorm": "bn"}[name]]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

# What course students type from PyTorch and Keras, lower-cased without `_`, to this language's op.
OP_ALIASES: dict[str, str] = {
    "conv2d": "conv", "convolution2d": "conv",
    "fc": "linear", "dense": "linear",
    "batchnorm": "bn", "batchnorm1d": "bn", "batchnorm2d": "bn", "batchnormalization": "bn",
    "view": "flatten", "reshape": "flatten",
    "maxpool2d": "maxpool", "maxpooling2d": "maxpool", "avgpool2d": "avgpool", "averagepooling2d": "avgpool",
    "adaptiveavgpool2d": "adaptiveavgpool", "globalaveragepooling2d": "gap", "globalavgpool": "gap",
    "swish": "silu", "logsoftmax": "softmax",
    # MobileNetV3's paper writes h-sigmoid and h-swish (`hsigmoid` is closer to `sigmoid`, a different function).
    "hsigmoid": "hardsigmoid", "hswish": "hardswish",
}
_TORCH_PREFIXES = ("torch.nn.functional.", "torch.nn.", "nn.functional.", "nn.", "f.", "layers.", "keras.layers.")


def resolve_op_name(word: str) -> str | None:
    """The op a PyTorch or Keras spelling means (`ReLU`, `nn.Conv2d`, `Dense`, `view`), or None."""
    key = word.lower()
    for prefix in _TORCH_PREFIXES:
        key = key.removeprefix(prefix)
    key = key.replace("_", "")
    if key in OPS:
        return key
    return OP_ALIASES.get(key)


__all__ = ["OP_ALIASES", "resolve_op_name", "OPS", "validate_layer", "layer_adapter", "LayerSpec", "Input", "Conv", "BatchNorm", "TorchCall", "Shape", "Pair", "RFStep",
           "Emit", "fmt_shape", "pair_text", "value_text", "number_text", "window_line", "window_out"]
