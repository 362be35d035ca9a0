"""timm's weight-standardised convs (BiT's StdConv2d, NF-Nets' ScaledStdConv2d, and their TensorFlow-SAME variants)
imported as `stdconv`: the text, and the outputs of the built network with the original's tensors (weight, bias,
gain) against the original module's in float64. The tensors are random, the gains too, so that each one matters."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
timm_layers = pytest.importorskip("timm.layers")
from torch import nn  # noqa: E402

import archspec  # noqa: E402
from archspec.importers.api import import_module, imported_weights  # noqa: E402
from archspec.language.pipeline import CheckOptions, checked  # noqa: E402

# (the conv, the input size, the line the import must write)
CASES = {
    "std": (lambda: timm_layers.StdConv2d(3, 8, 3, stride=2, eps=1e-8), 9, "stdconv 8 k3 s2 p1 nobias eps=1e-8"),
    "std_bias_groups": (lambda: timm_layers.StdConv2d(4, 8, 3, dilation=2, groups=2, bias=True), 9,
                        "stdconv 8 k3 p2 d2 g2"),
    "scaled": (lambda: timm_layers.ScaledStdConv2d(3, 8, 3, stride=2, gamma=1.7015043497085571, eps=1e-5), 9,
               "stdconv 8 k3 s2 p1 eps=1e-5 scaled gamma=1.7015043497085571"),
    "scaled_gamma_1": (lambda: timm_layers.ScaledStdConv2d(3, 8, 1, bias=False), 9, "stdconv 8 k1 nobias scaled"),
    "std_same_stride": (lambda: timm_layers.StdConv2dSame(3, 8, 3, stride=2), 8, "pad 0 1 0 1 | stdconv 8 k3 s2 nobias"),
    "std_same_odd": (lambda: timm_layers.StdConv2dSame(3, 8, 3, stride=2), 9, "pad 1 1 1 1 | stdconv 8 k3 s2 nobias"),
    "scaled_same_stride": (lambda: timm_layers.ScaledStdConv2dSame(3, 8, 3, stride=2, gamma=2.0), 8,
                           "pad 0 1 0 1 | stdconv 8 k3 s2 scaled gamma=2"),
    "scaled_same_static": (lambda: timm_layers.ScaledStdConv2dSame(3, 8, 3), 8, "stdconv 8 k3 p1 scaled"),
}


def _randomised(module: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.2 + 1.0)  # gains away from their initial 1 (or 0), weights with a mean to remove
    return module.eval()


def _assert_built_computes_the_original(original: nn.Module, result, shape: tuple[int, ...]) -> None:
    """The imported text, built and given the original's tensors, computes the original's outputs in float64."""
    assert not checked(result.text, CheckOptions(classes=None)).errors
    net = archspec.build(result.text)
    net.load_state_dict(imported_weights(original, result))
    x = torch.randn(2, *shape, dtype=torch.float64)
    with torch.no_grad():
        want, got = original.double()(x), net.double().eval()(x)
    assert got.shape == want.shape
    assert ((got - want).abs().max() / want.abs().max()).item() <= 1e-9


@pytest.mark.parametrize("case", sorted(CASES))
def test_timm_std_conv_imports_as_stdconv_with_its_tensors(case: str) -> None:
    make, size, line = CASES[case]
    original = _randomised(nn.Sequential(make(), nn.ReLU()))
    result = import_module(original, (original[0].in_channels, size, size))
    assert line in result.text, result.text
    _assert_built_computes_the_original(original, result, (original[0].in_channels, size, size))


class _SkipInit(nn.Module):
    """NF-Nets' skipinit: the body's output multiplied in place by a learnable scalar, then read again."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = timm_layers.ScaledStdConv2d(4, 4, 3)
        self.skipinit_gain = nn.Parameter(torch.tensor(0.0))

    def forward(self, x: "torch.Tensor") -> "torch.Tensor":
        out = self.conv(x)
        out.mul_(self.skipinit_gain)
        return out * 0.2 + x


class _GammaAct(nn.Module):
    """timm's GammaAct: an in-place product whose result is what is read (nothing reads the tensor it changed)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = timm_layers.ScaledStdConv2d(4, 4, 3, gamma=1.7)

    def forward(self, x: "torch.Tensor") -> "torch.Tensor":
        return torch.relu(self.conv(x)).mul_(1.5)


def test_an_in_place_change_read_later_is_refused_not_dropped() -> None:
    from archspec.importers.api import ImportRefused

    with pytest.raises(ImportRefused) as caught:
        import_module(_SkipInit().eval(), (4, 8, 8))
    assert caught.value.lines[0].startswith("`(top)` uses Tensor.mul_: an in-place change of a tensor that later code reads"), \
        caught.value.lines


def test_an_in_place_change_whose_result_is_read_imports_exactly() -> None:
    original = _randomised(_GammaAct())
    result = import_module(original, (4, 8, 8))
    assert "stdconv 4 k3 p1 scaled gamma=1.7 | relu | scale 1.5" in result.text, result.text
    _assert_built_computes_the_original(original, result, (4, 8, 8))


def test_timms_smallest_nfnet_imports_exactly_with_random_tensors() -> None:
    """test_nfnet (NF-Net blocks: scaled stdconvs, `act(x) * beta`, `attn_gain * se(x)`, `x * alpha + shortcut`), every
    tensor random: the zero gains timm starts the last conv of each body with would hide the bodies."""
    timm = pytest.importorskip("timm")
    original = _randomised(timm.create_model("test_nfnet", pretrained=False))
    result = import_module(original, (3, 32, 32))
    for line in ("stdconv 16 k3 s2 p1 eps=1e-5 scaled gamma=1.7881293296813965 | silu", "scale 2 | scale 0.2"):
        assert line in result.text, result.text
    _assert_built_computes_the_original(original, result, (3, 32, 32))
