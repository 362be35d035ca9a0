"""`stdconv` beyond the oracle (tests/test_oracle.py compares its shapes, params, MACs and outputs with a torch
reference): the generated source computes what the build does, and the ONNX export agrees with onnxruntime."""
from __future__ import annotations

import types

import pytest

torch = pytest.importorskip("torch")

import archspec  # noqa: E402
from archspec.pytorch import codegen  # noqa: E402

NET = """input 3x12x12
stdconv 8 k3 s2 p1 nobias eps=1e-8 | groupnorm 4 | relu
stdconv 16 k3 p same scaled gamma=1.7 | relu
stdconv 16 k1 g2 scaled
gap | flatten | linear 10
"""


def _built() -> torch.nn.Module:
    torch.manual_seed(0)
    net = archspec.build(NET).eval()
    with torch.no_grad():  # gains away from 1, so that each one matters
        for name, p in net.named_parameters():
            if name.endswith("gain"):
                p.copy_(torch.rand_like(p) + 0.5)
    return net


def test_generated_source_of_stdconv_matches_the_build() -> None:
    source = codegen.generate(NET)
    assert "class StdConv2d(nn.Conv2d):" in source
    module = types.ModuleType("generated_stdconv")
    exec(compile(source, "<generated>", "exec"), module.__dict__)  # noqa: S102 - our own generated source
    built = _built()
    generated = module.Net().eval()
    generated.load_state_dict(built.state_dict())
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(generated.double()(x), built.double()(x))


def test_stdconv_exports_to_onnx_and_agrees_on_onnxruntime(tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from archspec.training.export import export_onnx, source_from_arch

    path = tmp_path / "std.arch"
    path.write_text(NET)
    src = source_from_arch(path)
    src.model.load_state_dict(_built().state_dict())
    export_onnx(src, tmp_path / "m.onnx")
    x = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = src.model.eval()(x).numpy()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    got = ort.InferenceSession(str(tmp_path / "m.onnx"), options, providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]
    assert got.shape == expected.shape == (2, 10) and abs(got - expected).max() < 1e-4
