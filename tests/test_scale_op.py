"""`scale F`: every value times a constant, against torch's own arithmetic (build, generated source, ONNX Runtime)."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import archspec  # noqa: E402
from archspec.pytorch import codegen  # noqa: E402

# Inception-ResNet's scaled residual on an image, then the mean of two heads on features.
TEXT = """input 4x5x6
residual { conv 4 k3 p1 | relu | scale 0.17 }
gap | flatten
add { linear 3 } { linear 3 } | scale 0.5
scale {1/3}
"""


def _by_hand(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The same function written in torch with the built network's tensors: `x * c` and `/ 3` as Python writes them."""
    w = dict(net.named_parameters())
    conv = [k for k in w if k.endswith("weight") and w[k].dim() == 4][0]
    y = x + torch.relu(torch.nn.functional.conv2d(x, w[conv], w[conv.replace("weight", "bias")], padding=1)) * 0.17
    y = y.mean((2, 3))
    heads = [k for k in w if k.endswith("weight") and w[k].dim() == 2]
    a, b = (torch.nn.functional.linear(y, w[k], w[k.replace("weight", "bias")]) for k in heads)
    return (a + b) / 2 / 3


def test_scale_computes_what_torch_computes_and_counts_nothing():
    torch.manual_seed(0)
    net = archspec.build(TEXT).double().eval()
    x = torch.randn(2, 4, 5, 6, dtype=torch.float64)
    with torch.no_grad():
        got, expected = net(x), _by_hand(net, x)
    assert ((got - expected).abs().max() / expected.abs().max()).item() <= 1e-12
    report = archspec.check(TEXT)
    assert report.params == sum(p.numel() for p in net.parameters())
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as flops, torch.no_grad():
        net.float()(x[:1].float())  # MACs are per sample
    assert report.macs == flops.get_total_flops() // 2  # x * c counts nothing, as the linears' and the conv's MACs do


def test_generated_source_of_scale_matches_the_build():
    from test_compile import assert_generated_equals_build

    source = codegen.generate(TEXT)
    assert "class Scale(nn.Module):" in source and "Scale(0.17)" in source
    assert_generated_equals_build(source, TEXT)


def test_scale_exports_to_onnx_and_agrees_on_onnxruntime(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from archspec.training.export import export_onnx, source_from_arch
    from test_onnx import session

    path = tmp_path / "scaled.arch"
    path.write_text(TEXT.replace("linear 3", "linear 10"))
    src = source_from_arch(path)
    export_onnx(src, tmp_path / "m.onnx")
    x = torch.randn(2, 4, 5, 6, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = src.model(x).numpy()
    got = session(tmp_path / "m.onnx").run(None, {"input": x.numpy()})[0]
    assert got.shape == expected.shape == (2, 10) and abs(got - expected).max() < 1e-5
