"""The op registry: every op class, one file per family beside this one.

Defining a `LayerSpec` subclass with an `op` literal registers it; this package imports each
family module (known families first, in the order `archspec ops` lists them, then any other
module found here), so adding an op is adding a class to its family file.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING, Annotated, Any, Union

from archspec.language.ops.base import (REGISTRY, Emit, LayerSpec, Pair, RFStep, Shape, TorchCall, fmt_shape,
                                        number_text, pair_text, value_text, window_line, window_out)

_FAMILIES = ("input", "conv", "pool", "activation", "norm", "dropout", "dense")


def _import_families() -> None:
    found = sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name != "base")
    for name in [*_FAMILIES, *(m for m in found if m not in _FAMILIES)]:
        importlib.import_module(f"{__name__}.{name}")


_import_families()

from archspec.language.ops.conv import Conv  # noqa: E402
from archspec.language.ops.input import Input  # noqa: E402
from archspec.language.ops.norm import BatchNorm  # noqa: E402

if TYPE_CHECKING:
    from pydantic import TypeAdapter

OPS: dict[str, type[LayerSpec]] = dict(REGISTRY)


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
    # `ops.LAYER_ADAPTER` still works, built when first asked for rather than at import.
    if name == "LAYER_ADAPTER":
        return layer_adapter()
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
