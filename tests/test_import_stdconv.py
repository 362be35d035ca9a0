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
               "stdconv 8 k3 s2 p1 eps=1e-5 scaled gamma=1.70150434971"),
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
            p.copy_(torch.randn_like(p) * 0.5 + 1.0)  # gains away from their initial 1, weights with a mean to remove
    return module.eval()


@pytest.mark.parametrize("case", sorted(CASES))
def test_timm_std_conv_imports_as_stdconv_with_its_tensors(case: str) -> None:
    make, size, line = CASES[case]
    original = _randomised(nn.Sequential(make(), nn.ReLU()))
    result = import_module(original, (original[0].in_channels, size, size))
    assert line in result.text, result.text
    assert not checked(result.text, CheckOptions(classes=None)).errors
    net = archspec.build(result.text)
    net.load_state_dict(imported_weights(original, result))
    x = torch.randn(2, original[0].in_channels, size, size, dtype=torch.float64)
    with torch.no_grad():
        want, got = original.double()(x), net.double().eval()(x)
    assert got.shape == want.shape
    assert ((got - want).abs().max() / want.abs().max()).item() <= 1e-9
