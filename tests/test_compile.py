"""The compiler against torch: the seed Net exactly, generated source equal to build(), clear refusals."""
from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import archspec  # noqa: E402
from archspec.language.errors import ArchError  # noqa: E402
from conftest import EXAMPLES  # noqa: E402


class SeedNet(nn.Module):
    """The seed course's hand-written baseline, verbatim."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels=3, out_channels=6, kernel_size=5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(in_channels=6, out_channels=16, kernel_size=5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def test_lenet_builds_into_the_seed_net():
    built = archspec.build(EXAMPLES / "lenet.arch")
    seed = SeedNet()
    assert [(k, v.shape) for k, v in built.state_dict().items()] == [(k, v.shape) for k, v in seed.state_dict().items()]
    assert sum(p.numel() for p in built.parameters()) == 62_006
    built.load_state_dict(seed.state_dict())
    x = torch.randn(4, 3, 32, 32)
    assert torch.equal(built(x), seed(x))
    printed = str(built)
    assert "(conv1): Conv2d(3, 6" in printed and "(fc1): Linear(in_features=400, out_features=120" in printed


STRUCTURED = """input 3x32x32
block basic(c, s=1) {
  residual project { conv c k3 s{s} p1 nobias | bn | relu | conv c k3 p1 nobias | bn }
  relu
}
conv 16 k3 p1 init whiten | relu
basic(16) * 2
basic(32, s=2)
residual { conv 32 k3 p1 | bn } shortcut { conv 32 k1 }
concat { } { conv 8 k3 p1 | relu } { maxpool 3 s1 p1 }
add { conv 8 k1 } { conv 8 k3 p1 | leakyrelu 0.2 }
conv 8 k3 p same d2 g2 | gelu | avgpool 2 ceil
adaptiveavgpool 2x2 | flatten | dropout 0.1 | linear 32 | bn | silu | linear 10
"""


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.arch")), ids=lambda p: p.name)
def test_every_example_forward_matches_the_checker(path):
    report = archspec.check(archspec.load(path), classes=None)
    if report.input_shape is None:
        with pytest.raises(archspec.ArchspecError, match="block library"):
            archspec.build(path)
        return
    net = archspec.build(path).eval()
    assert sum(p.numel() for p in net.parameters()) == report.params
    _assert_rows_match(net, report)


def _assert_rows_match(net, report):
    """Every checker row's output shape equals the real module's output (forward hooks, batch 2)."""
    modules = dict(net.named_modules())
    seen = {}
    hooks = [modules[r.path].register_forward_hook(lambda m, i, o, p=r.path: seen.__setitem__(p, tuple(o.shape[1:])))
             for r in report.rows if r.op != "input"]
    with torch.no_grad():
        out = net(torch.randn(2, *report.input_shape))
    for h in hooks:
        h.remove()
    assert tuple(out.shape[1:]) == report.output_shape
    for r in report.rows:
        if r.op != "input":
            assert seen[r.path] == r.out_shape, r.path
            assert sum(p.numel() for p in modules[r.path].parameters()) == r.params, r.path


def test_structured_network_matches_checker_and_generated_source(tmp_path):
    report = archspec.check(STRUCTURED)
    assert report.ok, [d.message for d in report.diagnostics]
    net = archspec.build(STRUCTURED).eval()
    _assert_rows_match(net, report)
    assert net.init_hints == {"conv1": "whiten"}  # from the checked tree, for the runner

    src = tmp_path / "model.arch"
    src.write_text(STRUCTURED)
    out = tmp_path / "net.py"
    cp = subprocess.run([sys.executable, "-m", "archspec.cli", "compile", str(src), "-o", str(out)], capture_output=True, text=True)
    assert cp.returncode == 0, cp.stderr
    spec = importlib.util.spec_from_file_location("generated_net", out)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    generated = module.Net().eval()
    generated.load_state_dict(net.state_dict())  # strict: same names, same shapes
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(generated(x), net(x), atol=1e-6)
    assert generated.init_hints == {"conv1": "whiten"}


def test_lenet_generated_source_reads_like_a_person_wrote_it(tmp_path):
    from archspec.pytorch.codegen import generate

    text = generate(archspec.load(EXAMPLES / "lenet.arch"))
    assert "class Net(nn.Module):" in text and "def forward(self, x: torch.Tensor)" in text
    assert "self.fc1 = nn.Linear(400, 120)" in text  # nobody computes 16 * 5 * 5 by hand again
    assert "x = F.relu(x)" in text


def test_spec_with_errors_is_refused_with_its_diagnostics():
    with pytest.raises(ArchError) as info:
        archspec.build("input 3x4x4\nconv 6 k5\nflatten\nconv 3 k1\nlinear 10\n")
    codes = [d.code for d in info.value.diagnostics]
    assert codes == ["E101", "E103"]
    cp = subprocess.run([sys.executable, "-m", "archspec.cli", "compile", "-"], input="input 3x4x4\nconv 6 k5\n",
                        capture_output=True, text=True)
    assert cp.returncode == 1 and "Traceback" not in cp.stderr and "E101" in cp.stderr


def test_build_command_runs_a_forward_pass():
    cp = subprocess.run([sys.executable, "-m", "archspec.cli", "build", str(EXAMPLES / "lenet.arch")], capture_output=True, text=True)
    assert cp.returncode == 0, cp.stderr
    assert "(fc1): Linear(in_features=400, out_features=120, bias=True)" in cp.stdout
    assert "62,006 parameters; forward [B, 3, 32, 32] -> [B, 10] (as the checker said)" in cp.stdout
