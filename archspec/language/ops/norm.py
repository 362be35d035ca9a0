"""Normalisation layers."""

from typing import ClassVar, Literal

from pydantic import Field

from archspec.language import codes
from archspec.language.ops.base import Emit, LayerSpec, RFStep, Shape, TorchCall, fmt_shape


class BatchNorm(LayerSpec):
    op: Literal["bn"] = "bn"
    eps: float = Field(default=1e-5, gt=0, allow_inf_nan=False)
    momentum: float = Field(default=0.1, ge=0, le=1)
    affine: bool = True
    keys: ClassVar = {"eps": "eps", "momentum": "momentum"}
    flags: ClassVar = {"noaffine": ("affine", False), "affine": ("affine", True)}
    name_prefix: ClassVar = "bn"
    summary: ClassVar = ("Batch normalisation: nn.BatchNorm2d on [B, C, H, W], nn.BatchNorm1d on [B, F]; "
                         "eps=E (default 1e-5), momentum=M (default 0.1), `noaffine` (no scale and shift).")
    usage: ClassVar = "bn [eps=1e-5] [momentum=0.1] [noaffine]"

    def params(self, x: Shape | None) -> int:
        return 2 * x[0] if self.affine and x and x[0] is not None else 0

    def torch_call(self, x: Shape | None) -> TorchCall:
        kw: dict[str, object] = {}
        if self.eps != 1e-5:
            kw["eps"] = self.eps
        if self.momentum != 0.1:
            kw["momentum"] = self.momentum
        if not self.affine:
            kw["affine"] = False
        return TorchCall(cls="BatchNorm2d" if len(x) == 3 else "BatchNorm1d", args=(x[0],), kwargs=kw)  # type: ignore[arg-type]

    def describe(self) -> str:
        parts = [f"eps={self.eps:g}"] if self.eps != 1e-5 else []
        parts += [f"momentum={self.momentum:g}"] if self.momentum != 0.1 else []
        return " ".join(parts + ([] if self.affine else ["noaffine"]))

    def explain(self, x: Shape | None, y: Shape | None, params: int, macs: int) -> list[str]:
        if x is None:
            return super().explain(x, y, params, macs)
        return [f"{fmt_shape(x)} -> {fmt_shape(y)}: normalises each of the {x[0]} channels over the batch"
                + (" and H, W" if len(x) == 3 else "") + ", then scales and shifts it",
                (f"params: 2*{x[0]} = {params:,} (a scale and a shift per channel; "
                 "the running mean and variance are buffers, not params)" if self.affine
                 else "params: 0 (`noaffine`: no scale and shift; the running mean and variance are buffers)")]


class GroupNorm(LayerSpec):
    op: Literal["groupnorm"] = "groupnorm"
    groups: int = Field(ge=1)
    eps: float = Field(default=1e-5, gt=0, allow_inf_nan=False)
    positional: ClassVar = ("groups",)
    keys: ClassVar = {"eps": "eps"}
    name_prefix: ClassVar = "gn"
    torch_order: ClassVar = ("", "in")
    torch_note: ClassVar = "the channels come from the previous layer"
    summary: ClassVar = "Group normalisation (nn.GroupNorm(G, C)): normalises each of G channel groups per sample; eps=E (default 1e-5)."
    usage: ClassVar = "groupnorm 8 [eps=1e-5]"
    checks_features: ClassVar = True  # G must divide the channels, or the features after `flatten`

    def infer(self, x: Shape | None, emit: Emit) -> Shape | None:
        c = x[0] if x else None
        if c is not None and c % self.groups:
            emit(codes.GROUPNORM_GROUPS, f"`groupnorm {self.groups}` needs {self.groups} to divide the {c} channels",
                 notes=[f"input is {fmt_shape(x)}"],
                 help=f"use a number of groups that divides {c}, e.g. {max(g for g in range(1, self.groups) if c % g == 0)}")
        return x

    def params(self, x: Shape | None) -> int:
        return 2 * x[0] if x and x[0] is not None else 0

    def torch_call(self, x: Shape | None) -> TorchCall:
        return TorchCall(cls="GroupNorm", args=(self.groups, x[0]),  # type: ignore[index]
                         kwargs={"eps": self.eps} if self.eps != 1e-5 else {})

    def describe(self) -> str:
        return str(self.groups) + (f" eps={self.eps:g}" if self.eps != 1e-5 else "")

    def explain(self, x: Shape | None, y: Shape | None, params: int, macs: int) -> list[str]:
        if x is None or x[0] is None:
            return super().explain(x, y, params, macs)
        per = x[0] // self.groups
        return [f"{fmt_shape(x)} -> {fmt_shape(y)}: splits the {x[0]} channels into {self.groups} groups of {per} and "
                "normalises each group over its channels" + (" and H, W" if len(x) == 3 else "")
                + " in each sample (no batch statistics), then scales and shifts each channel",
                f"params: 2*{x[0]} = {params:,} (a scale and a shift per channel)"]


class LayerNorm(LayerSpec):
    op: Literal["layernorm"] = "layernorm"
    eps: float = Field(default=1e-5, gt=0, allow_inf_nan=False)
    keys: ClassVar = {"eps": "eps"}
    name_prefix: ClassVar = "ln"
    summary: ClassVar = ("Layer normalisation over the channels at each pixel on [B, C, H, W] (ConvNeXt's LayerNorm2d), "
                         "over the features on [B, F] (nn.LayerNorm); eps=E (default 1e-5).")
    usage: ClassVar = "layernorm [eps=1e-5]"

    def params(self, x: Shape | None) -> int:
        return 2 * x[0] if x and x[0] is not None else 0

    def torch_call(self, x: Shape | None) -> TorchCall:
        kw = {"eps": self.eps} if self.eps != 1e-5 else {}
        if x is not None and len(x) == 3:
            return TorchCall(cls="LayerNorm2d", args=(x[0],), kwargs=kw, home="layers")
        return TorchCall(cls="LayerNorm", args=(x[0],), kwargs=kw)  # type: ignore[index]

    def describe(self) -> str:
        return f"eps={self.eps:g}" if self.eps != 1e-5 else ""

    def explain(self, x: Shape | None, y: Shape | None, params: int, macs: int) -> list[str]:
        if x is None or x[0] is None:
            return super().explain(x, y, params, macs)
        where = (f"at each of the {x[1]} x {x[2]} pixels, normalises its {x[0]} channels" if len(x) == 3
                 else f"normalises the {x[0]} features of each sample")
        return [f"{fmt_shape(x)} -> {fmt_shape(y)}: {where} to mean 0 and variance 1 (no batch statistics), "
                "then scales and shifts each one",
                f"params: 2*{x[0]} = {params:,} (a scale and a shift per {'channel' if len(x) == 3 else 'feature'})"]


class LayerScale(LayerSpec):
    op: Literal["layerscale"] = "layerscale"
    init: float = Field(default=1e-6, allow_inf_nan=False)
    positional: ClassVar = ("init",)
    name_prefix: ClassVar = "scale"
    summary: ClassVar = ("A learnable scale per channel ([C, 1, 1] on images, [F] on features), starting at the value given "
                         "(default 1e-6): ConvNeXt's layer scale.")
    usage: ClassVar = "layerscale [1e-6]"

    def params(self, x: Shape | None) -> int:
        return x[0] if x and x[0] is not None else 0

    def torch_call(self, x: Shape | None) -> TorchCall:
        shape = (x[0], 1, 1) if x is not None and len(x) == 3 else (x[0],)  # type: ignore[index]
        return TorchCall(cls="LayerScale", args=(shape, self.init), home="layers")

    def describe(self) -> str:
        return f"{self.init:g}"

    def explain(self, x: Shape | None, y: Shape | None, params: int, macs: int) -> list[str]:
        if x is None or x[0] is None:
            return super().explain(x, y, params, macs)
        what = "channel" if len(x) == 3 else "feature"
        return [f"{fmt_shape(x)} -> {fmt_shape(y)}: multiplies each {what} by its own learnable scale, "
                f"which starts at {self.init:g}",
                f"params: {x[0]:,} (one scale per {what})"]


class _EpsNorm(LayerSpec):
    """A norm with timm's eps=E, 1e-6 by default (grn, rmsnorm)."""

    eps: float = Field(default=1e-6, gt=0, allow_inf_nan=False)
    keys: ClassVar = {"eps": "eps"}

    def eps_kwargs(self) -> dict[str, float]:
        return {"eps": self.eps} if self.eps != 1e-6 else {}

    def describe(self) -> str:
        return f"eps={self.eps:g}" if self.eps != 1e-6 else ""


class GlobalResponseNorm(_EpsNorm):
    op: Literal["grn"] = "grn"
    name_prefix: ClassVar = "grn"
    summary: ClassVar = ("Global response normalisation (ConvNeXt-V2's GRN) on [B, C, H, W]: each channel's L2 norm over H, W, "
                         "divided by the mean of those norms over the channels (+ eps), gives N; x + gamma * (x * N) + beta, "
                         "gamma and beta per channel (zeros at first); eps=E (default 1e-6).")
    usage: ClassVar = "grn [eps=1e-6]"

    def infer(self, x: Shape | None, emit: Emit) -> Shape | None:
        if x is not None and len(x) != 3:
            emit(codes.WRONG_RANK, f"`grn` needs a 4-D tensor [B, C, H, W], got {fmt_shape(x)}",
                 notes=["`grn` compares each channel's norm over H and W with the others'; features have no H and W"],
                 help="move `grn` before `gap` / `flatten`; on features use `layernorm`")
            return None
        return x

    def params(self, x: Shape | None) -> int:
        return 2 * x[0] if x and len(x) == 3 and x[0] is not None else 0

    def rf(self, x: Shape | None) -> RFStep | None:
        # Each output pixel depends on its channel's norm over the whole H x W: a window over all of it, stride 1.
        if x is None or len(x) != 3 or x[1] is None or x[2] is None:
            return None
        return (x[1], x[2]), (1, 1)

    def torch_call(self, x: Shape | None) -> TorchCall:
        return TorchCall(cls="GlobalResponseNorm", args=(x[0],), kwargs=self.eps_kwargs(), home="layers")  # type: ignore[index]

    def explain(self, x: Shape | None, y: Shape | None, params: int, macs: int) -> list[str]:
        if x is None or len(x) != 3 or None in x:
            return super().explain(x, y, params, macs)
        return [f"{fmt_shape(x)} -> {fmt_shape(y)}: G = the L2 norm of each of the {x[0]} channels over its "
                f"{x[1]} x {x[2]} pixels, N = G / (the mean of G over the channels + {self.eps:g}); "
                "out = x + gamma * (x * N) + beta (no batch statistics)",
                f"params: 2*{x[0]} = {params:,} (gamma and beta per channel, both 0 at first: the layer starts as the identity)"]


class RMSNorm(_EpsNorm):
    op: Literal["rmsnorm"] = "rmsnorm"
    name_prefix: ClassVar = "rms"
    summary: ClassVar = ("RMS normalisation over the channels at each pixel on [B, C, H, W] (timm's RmsNorm2d), over the features "
                         "on [B, F] (timm's RmsNorm, as nn.RMSNorm): x / sqrt(mean of x^2 + eps), times a learnable scale per channel (no mean "
                         "subtracted, no shift); eps=E (default 1e-6).")
    usage: ClassVar = "rmsnorm [eps=1e-6]"

    def params(self, x: Shape | None) -> int:
        return x[0] if x and x[0] is not None else 0

    def torch_call(self, x: Shape | None) -> TorchCall:
        return TorchCall(cls="RmsNorm", args=(x[0],), kwargs=self.eps_kwargs(), home="layers")  # type: ignore[index]

    def explain(self, x: Shape | None, y: Shape | None, params: int, macs: int) -> list[str]:
        if x is None or x[0] is None:
            return super().explain(x, y, params, macs)
        where = (f"at each of the {x[1]} x {x[2]} pixels, divides its {x[0]} channels" if len(x) == 3
                 else f"divides the {x[0]} features of each sample")
        what = "channel" if len(x) == 3 else "feature"
        return [f"{fmt_shape(x)} -> {fmt_shape(y)}: {where} by their root mean square (+ {self.eps:g} under the root; "
                f"no mean subtracted, no batch statistics), then scales each one",
                f"params: {x[0]:,} (a scale per {what}, no shift)"]
