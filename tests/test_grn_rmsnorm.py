"""`grn`, ConvNeXt-V2's global response normalisation, and `rmsnorm`: the built layers are timm's GlobalResponseNorm
(channels first and, through the permute, channels last), RmsNorm2d and RmsNorm; the generated source is the built
network, and it exports to ONNX with onnxruntime giving torch's outputs. Their parameters are drawn first: at GRN's
initial zeros the layer is the identity, and every comparison would hold whatever the norm computed. (The
random-network oracle in tests/test_oracle.py compares grn with the paper's formula written out, rmsnorm with
torch's F.rms_norm.)"""
from __future__ import annotations

import types

import pytest

torch = pytest.importorskip("torch")

import archspec  # noqa: E402
from archspec.pytorch import codegen  # noqa: E402

NET = """input 8x5x6
residual {
  conv 8 k3 p1 g8 | rmsnorm | pwlinear 32 | gelu | grn | pwlinear 8
}
grn eps=0.001
gap | flatten | rmsnorm eps=1e-5 | linear 3
"""


def _drawn(net: torch.nn.Module) -> torch.nn.Module:
    torch.manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    return net.eval()


@pytest.mark.parametrize("channels_last", [False, True])
def test_grn_is_timms_global_response_norm(channels_last: bool) -> None:
    grn = pytest.importorskip("timm.layers.grn")
    theirs = _drawn(grn.GlobalResponseNorm(12, eps=1e-3, channels_last=channels_last)).double()
    mine = archspec.build("input 12x5x7\ngrn eps=0.001\n").double().eval()
    mine.load_state_dict({"grn1." + k: v for k, v in theirs.state_dict().items()})
    x = torch.randn(3, 12, 5, 7, dtype=torch.float64)
    with torch.no_grad():
        want = theirs(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2) if channels_last else theirs(x)
        got = mine(x)
    assert ((got - want).abs().max() / want.abs().max()).item() <= 1e-12


@pytest.mark.parametrize("name", ["RmsNorm2d", "RmsNorm"])
def test_rmsnorm_is_timms_rms_norm(name: str) -> None:
    norm = pytest.importorskip("timm.layers.norm")
    theirs = _drawn(getattr(norm, name)(12, eps=1e-5)).double()
    shape = (3, 12, 5, 7) if name == "RmsNorm2d" else (3, 12)
    mine = archspec.build(f"input {'x'.join(map(str, shape[1:]))}\nrmsnorm eps=1e-5\n").double().eval()
    mine.load_state_dict({"rms1." + k: v for k, v in theirs.state_dict().items()})
    x = torch.randn(*shape, dtype=torch.float64)
    with torch.no_grad():
        want, got = theirs(x), mine(x)
    assert ((got - want).abs().max() / want.abs().max()).item() <= 1e-12


def test_generated_source_with_grn_and_rmsnorm_matches_the_build() -> None:
    source = codegen.generate(NET)
    assert "class GlobalResponseNorm(nn.Module):" in source and "class RmsNorm(nn.Module):" in source
    module = types.ModuleType("generated_grn")
    exec(compile(source, "<generated>", "exec"), module.__dict__)  # noqa: S102 - our own generated source
    built = _drawn(archspec.build(NET))
    generated = module.Net().eval()
    generated.load_state_dict(built.state_dict())
    x = torch.randn(2, 8, 5, 6)
    with torch.no_grad():
        assert torch.allclose(generated(x), built(x), atol=1e-6)


def test_grn_and_rmsnorm_export_to_onnx_and_agree_on_onnxruntime(tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    from archspec.training.export import export_onnx, source_from_arch
    from test_onnx import session

    path = tmp_path / "norms.arch"
    path.write_text(NET)
    src = source_from_arch(path)
    _drawn(src.model)
    export_onnx(src, tmp_path / "m.onnx")
    x = torch.randn(2, 8, 5, 6, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = src.model(x).numpy()
    got = session(tmp_path / "m.onnx").run(None, {"input": x.numpy()})[0]
    assert got.shape == expected.shape == (2, 3) and abs(got - expected).max() < 1e-4 * max(1.0, abs(expected).max())
