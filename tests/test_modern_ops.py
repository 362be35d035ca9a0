"""The ops of modern CNNs against torchvision's own code: ConvNeXt's block (depthwise conv, LayerNorm2d,
pointwise linears, layer scale, stochastic depth) loads torchvision's tensors as they are and computes
the same function; stochastic depth follows torch in training; ShuffleNet's shuffle is torchvision's."""
from __future__ import annotations

import types

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
from torch import nn  # noqa: E402
from torchvision.models.convnext import CNBlock  # noqa: E402
from torchvision.models.shufflenetv2 import channel_shuffle  # noqa: E402

import archspec  # noqa: E402
from archspec.pytorch import codegen  # noqa: E402

CNBLOCK = """input 32x7x9
residual {
  conv 32 k7 p3 g32 | layernorm eps=1e-6 | pwlinear 128 | gelu | pwlinear 32 | layerscale 1e-6 | stochasticdepth 0.25
}
"""


def _torchvision_block() -> CNBlock:
    torch.manual_seed(0)
    block = CNBlock(32, layer_scale=1e-6, stochastic_depth_prob=0.25).double()
    with torch.no_grad():  # not the initial values: every tensor matters to the output
        for p in block.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    return block


def _loaded(block: CNBlock) -> nn.Module:
    """The archspec block with torchvision's tensors through load_weights, each as it is (no reshape, no transpose)."""
    net = archspec.build(CNBLOCK).double()
    theirs = block.state_dict()
    order = ["block.0.weight", "block.0.bias", "block.2.weight", "block.2.bias", "block.3.weight", "block.3.bias",
             "block.5.weight", "block.5.bias", "layer_scale"]
    assert archspec.load_weights(net, block) == []  # by structure: CNBlock's own layer_scale comes after its block
    assert all(torch.equal(mine, theirs[k]) for mine, k in zip(net.state_dict().values(), order, strict=True))
    return net


def test_convnext_block_loads_torchvisions_tensors_and_agrees_in_eval():
    block = _torchvision_block().eval()
    net = _loaded(block).eval()
    x = torch.randn(3, 32, 7, 9, dtype=torch.float64)
    with torch.no_grad():
        expected, got = block(x), net(x)
    assert ((got - expected).abs().max() / expected.abs().max()).item() <= 1e-9
    assert archspec.check(CNBLOCK).params == sum(p.numel() for p in block.parameters())


def test_stochastic_depth_follows_torch_in_training():
    block = _torchvision_block().train()
    net = _loaded(block).train()
    x = torch.randn(64, 32, 7, 9, dtype=torch.float64)
    torch.manual_seed(5)
    expected = block(x)
    torch.manual_seed(5)
    got = net(x)
    assert ((got - expected).abs().max() / expected.abs().max()).item() <= 1e-9
    dropped = (got - x).flatten(1).abs().amax(1) == 0  # a dropped row is the shortcut alone
    assert 0 < int(dropped.sum()) < 64


def test_generated_source_of_the_modern_ops_matches_the_build():
    text = CNBLOCK + "channelshuffle 4 | hardsigmoid\ngap | flatten | layernorm | layerscale 0.5 | linear 10\n"
    source = codegen.generate(text)
    assert "from torchvision.ops import StochasticDepth" in source and "class LayerNorm2d(nn.LayerNorm):" in source
    module = types.ModuleType("generated_modern")
    exec(compile(source, "<generated>", "exec"), module.__dict__)  # noqa: S102 - our own generated source
    generated, built = module.Net().eval(), archspec.build(text).eval()
    generated.load_state_dict(built.state_dict())
    x = torch.randn(2, 32, 7, 9)
    with torch.no_grad():
        assert torch.allclose(generated(x), built(x), atol=1e-6)


def test_channel_shuffle_is_shufflenets():
    net = archspec.build("input 12x3x5\nchannelshuffle 3\n").eval()
    x = torch.randn(2, 12, 3, 5)
    assert torch.equal(net(x), channel_shuffle(x, 3))


def test_the_modern_ops_export_to_onnx_and_agree_on_onnxruntime(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from archspec.training.export import export_onnx, source_from_arch

    path = tmp_path / "modern.arch"
    path.write_text(CNBLOCK + "channelshuffle 4 | hardsigmoid | groupnorm 4 eps=0.1\n"
                    "gap | flatten | layernorm eps=1e-6 | layerscale 0.5 | linear 10\n")
    src = source_from_arch(path)
    export_onnx(src, tmp_path / "m.onnx")
    x = torch.randn(2, 32, 7, 9, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = src.model(x).numpy()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    got = ort.InferenceSession(str(tmp_path / "m.onnx"), options, providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]
    assert got.shape == expected.shape == (2, 10) and abs(got - expected).max() < 1e-4


def test_the_modern_ops_keep_every_size_of_a_symbolic_input():
    from archspec.views.sizes import input_sizes

    text = CNBLOCK.replace("input 32x7x9", "input 32xHxW") + "channelshuffle 4 | hardsigmoid\ngap | flatten | layernorm | linear 10\n"
    assert archspec.check(text).ok
    sizes = input_sizes(archspec.parse(text, "m.arch"), 32)
    assert sizes.derivation.exact and [a.valid_rule for a in sizes.axes] == ["any H", "any W"]
