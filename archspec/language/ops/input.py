"""The input tensor: the first layer of every network."""

from typing import Any, ClassVar, Literal, Union

from pydantic import field_validator

from archspec.language.ops.base import Emit, LayerSpec, Shape, fmt_shape
from archspec.language.sizemap import Sym


class Input(LayerSpec):
    op: Literal["input"] = "input"
    dims: tuple[Union[int, str], ...]  # `3xHxW`: H and/or W symbolic (any size; `archspec check` derives which work)
    positional: ClassVar = ("dims",)
    summary: ClassVar = "The input tensor without the batch: CxHxW for images, or F for features."
    usage: ClassVar = "input 3x32x32"

    @field_validator("dims", mode="before")
    @classmethod
    def _dims(cls, v: Any) -> Any:
        v = (v,) if isinstance(v, int) else v
        if isinstance(v, tuple) and len(v) not in (1, 3):
            raise ValueError(f"input must be CxHxW (3 numbers) or F (1 number), got {'x'.join(map(str, v))}")
        if isinstance(v, tuple) and any(isinstance(d, int) and d < 1 for d in v):
            raise ValueError("input dimensions must be at least 1")
        if isinstance(v, tuple) and any(isinstance(d, str) for d in v):
            wrong = [d for i, d in enumerate(v) if isinstance(d, str) and (len(v) != 3 or d != "_HW"[i])]
            if wrong:
                raise ValueError(f"`{'x'.join(map(str, v))}`: only the height and width can be symbols, written H "
                                 "(second) and W (third), e.g. 3xHxW, 3xHx32 or 3x32xW")
        return v

    @property
    def symbols(self) -> tuple[str, ...]:
        """The symbolic axes, e.g. ("H", "W") for `input 3xHxW`."""
        return tuple(d for d in self.dims if isinstance(d, str))

    def infer(self, x: Shape | None, emit: Emit) -> Shape | None:
        # A symbolic input's H and W are expressions when the checker collects their conditions (`emit.sizes`);
        # otherwise the check is at numbers put in its place, and reached here it is not the file's first
        # layer (E006): its size is unknown rather than a string.
        if not self.symbols:
            return self.dims
        return tuple(Sym(d) if isinstance(d, str) else d for d in self.dims) if emit.sizes is not None else None

    def describe(self) -> str:
        return "x".join(map(str, self.dims))

    def explain(self, x: Shape | None, y: Shape | None, params: int, macs: int) -> list[str]:
        if y is not None and len(y) == 3:
            return [f"{fmt_shape(y)}: a batch of B images, {y[0]} channel{'s' if y[0] != 1 else ''} of {y[1]}x{y[2]} pixels"]
        return [f"{fmt_shape(y)}: a batch of B vectors of {y[0] if y else '?'} features"]
