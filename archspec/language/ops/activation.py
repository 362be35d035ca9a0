"""Elementwise activations, and softmax."""

from typing import ClassVar, Literal

from pydantic import Field

from archspec.language.ops.base import LayerSpec, Shape, TorchCall


class _Activation(LayerSpec):
    is_activation: ClassVar = True
    torch_cls: ClassVar[str] = ""

    def torch_call(self, x: Shape | None) -> TorchCall:
        return TorchCall(cls=self.torch_cls)


class ReLU(_Activation):
    op: Literal["relu"] = "relu"
    torch_cls: ClassVar = "ReLU"
    functional: ClassVar = "F.relu({x})"
    summary: ClassVar = "max(0, x) (nn.ReLU)."
    usage: ClassVar = "relu"


class ReLU6(_Activation):
    op: Literal["relu6"] = "relu6"
    torch_cls: ClassVar = "ReLU6"
    functional: ClassVar = "F.relu6({x})"
    summary: ClassVar = "min(max(0, x), 6) (nn.ReLU6), as in MobileNet."
    usage: ClassVar = "relu6"


class GELU(_Activation):
    op: Literal["gelu"] = "gelu"
    approximate: Literal["none", "tanh"] = "none"
    flags: ClassVar = {"tanh": ("approximate", "tanh")}
    torch_cls: ClassVar = "GELU"
    summary: ClassVar = "Gaussian error linear unit (nn.GELU); `tanh`: its tanh approximation (nn.GELU(approximate='tanh'))."
    usage: ClassVar = "gelu [tanh]"

    @property
    def functional(self) -> str:  # type: ignore[override]
        return "F.gelu({x})" if self.approximate == "none" else "F.gelu({x}, approximate='tanh')"

    def torch_call(self, x: Shape | None) -> TorchCall:
        return TorchCall(cls="GELU", kwargs={} if self.approximate == "none" else {"approximate": "tanh"})

    def describe(self) -> str:
        return "" if self.approximate == "none" else "tanh"

    def explain(self, x: Shape | None, y: Shape | None, params: int, macs: int) -> list[str]:
        # The summary names both forms; a layer is one of them.
        this = ("Gaussian error linear unit (nn.GELU)." if self.approximate == "none"
                else "Gaussian error linear unit, its tanh approximation (nn.GELU(approximate='tanh')).")
        lines = super().explain(x, y, params, macs)
        return [lines[0].replace(self.summary, this), *lines[1:]]


class SiLU(_Activation):
    op: Literal["silu"] = "silu"
    torch_cls: ClassVar = "SiLU"
    functional: ClassVar = "F.silu({x})"
    summary: ClassVar = "x * sigmoid(x) (nn.SiLU, a.k.a. swish)."
    usage: ClassVar = "silu"


class Sigmoid(_Activation):
    op: Literal["sigmoid"] = "sigmoid"
    torch_cls: ClassVar = "Sigmoid"
    functional: ClassVar = "torch.sigmoid({x})"
    summary: ClassVar = "1 / (1 + exp(-x)) (nn.Sigmoid)."
    usage: ClassVar = "sigmoid"


class Tanh(_Activation):
    op: Literal["tanh"] = "tanh"
    torch_cls: ClassVar = "Tanh"
    functional: ClassVar = "torch.tanh({x})"
    summary: ClassVar = "Hyperbolic tangent (nn.Tanh)."
    usage: ClassVar = "tanh"


class Hardswish(_Activation):
    op: Literal["hardswish"] = "hardswish"
    torch_cls: ClassVar = "Hardswish"
    functional: ClassVar = "F.hardswish({x})"
    summary: ClassVar = "x * relu6(x + 3) / 6 (nn.Hardswish), as in MobileNetV3."
    usage: ClassVar = "hardswish"


class Hardsigmoid(_Activation):
    op: Literal["hardsigmoid"] = "hardsigmoid"
    torch_cls: ClassVar = "Hardsigmoid"
    functional: ClassVar = "F.hardsigmoid({x})"
    summary: ClassVar = "relu6(x + 3) / 6 (nn.Hardsigmoid), the gate of MobileNetV3's squeeze-and-excitation."
    usage: ClassVar = "hardsigmoid"


class LeakyReLU(_Activation):
    op: Literal["leakyrelu"] = "leakyrelu"
    slope: float = Field(default=0.01, ge=0)
    positional: ClassVar = ("slope",)
    summary: ClassVar = "max(0, x) + slope * min(0, x) (nn.LeakyReLU), slope default 0.01."
    usage: ClassVar = "leakyrelu [0.01]"

    def torch_call(self, x: Shape | None) -> TorchCall:
        return TorchCall(cls="LeakyReLU", args=(self.slope,) if self.slope != 0.01 else ())

    @property
    def functional(self) -> str:  # type: ignore[override]
        return "F.leaky_relu({x}" + (f", {self.slope!r})" if self.slope != 0.01 else ")")

    def describe(self) -> str:
        return "" if self.slope == 0.01 else str(self.slope)


class Softmax(LayerSpec):
    op: Literal["softmax"] = "softmax"
    name_prefix: ClassVar = "softmax"
    summary: ClassVar = "Softmax over the channel/feature dimension (nn.Softmax(dim=1)). Leave it out when training with cross-entropy."
    usage: ClassVar = "softmax"
    functional: ClassVar = "F.softmax({x}, dim=1)"

    def torch_call(self, x: Shape | None) -> TorchCall:
        return TorchCall(cls="Softmax", kwargs={"dim": 1})
