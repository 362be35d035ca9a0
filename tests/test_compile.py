"""The compiler against torch: the seed Net exactly, generated source equal to build(), clear refusals."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
import types
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from hypothesis import HealthCheck, given, settings  # noqa: E402

import archspec  # noqa: E402
from archspec.pytorch import codegen  # noqa: E402
from archspec.language.errors import ArchError  # noqa: E402
from conftest import EXAMPLES  # noqa: E402
from test_oracle import Renderer, structured_archs  # noqa: E402


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


# --------------------------------------------------------------------------- generated source == build()

@pytest.fixture
def one_thread():
    """Small tensors: one intra-op thread is much faster than a pool contending for 2 busy cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def import_generated(source: str) -> types.ModuleType:
    """Execute generated source as a fresh module, as `import net` would."""
    module = types.ModuleType("archspec_generated_net")
    exec(compile(source, "<generated net.py>", "exec"), module.__dict__)
    return module


def randomize_batchnorm_statistics(net: nn.Module) -> None:
    """Fresh BN running stats make eval-mode BN the identity; make them matter."""
    for module in net.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats:
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 1.5)


def assert_generated_equals_build(source: str, text_or_path: str | Path) -> None:
    """Same state_dict keys and shapes as build(); with build()'s weights, the same outputs."""
    torch.manual_seed(0)
    built = archspec.build(text_or_path).eval()
    generated = import_generated(source).Net().eval()
    expected = {k: tuple(v.shape) for k, v in built.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in generated.state_dict().items()} == expected
    randomize_batchnorm_statistics(built)
    generated.load_state_dict(built.state_dict())  # strict
    # Eval mode: one image is enough, and vgg11_bn at 224x224 is not cheap; but torch's GroupNorm refuses a group of
    # one value even in eval (a 1-channel group on 1x1), which two images avoid.
    batch = 2 if any(isinstance(m, nn.GroupNorm) for m in built.modules()) else 1
    x = torch.randn(batch, *built.input_shape)
    with torch.no_grad():
        assert torch.equal(generated(x), built(x))


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.arch")), ids=lambda p: p.name)
def test_every_example_compiles_to_a_module_equal_to_build(path, cli, tmp_path, one_thread):
    out = tmp_path / "net.py"
    result = cli("compile", str(path), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stderr == f"wrote {out}\n"
    source = out.read_text()
    if archspec.check(archspec.load(path), classes=None).input_shape is None:  # a block library: no network
        assert import_generated(source).Net().state_dict() == {}
        return
    assert_generated_equals_build(source, path)


@pytest.mark.filterwarnings("ignore:Using padding=.same. with even kernel")
@settings(max_examples=30, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(arch=structured_archs())
def test_random_structured_nets_compile_to_modules_equal_to_build(arch):
    """test_oracle's generator: blocks called inside residuals, branches, repeats and other blocks."""
    text = Renderer().render(arch)
    source = codegen.generate(archspec.check(text, classes=None))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert_generated_equals_build(source, text)
    finally:
        torch.set_num_threads(before)


NESTED_BLOCK_CALLS = """input 3x8x8
block cbr(c) {
  conv c k3 p1 nobias | bn | relu
}
block unit(c) {
  residual { cbr(c) }
  concat { cbr(c) } { }
}
unit(3)
residual { cbr(6) }
add { cbr(6) } { residual { cbr(6) } }
"""


def test_block_calls_nested_in_residuals_branches_and_blocks_compile(cli, tmp_path, one_thread):
    """Issue 10: `residual { cbr(3) }` in a block wrote a file that did not parse (exit 0)."""
    src = tmp_path / "nested.arch"
    src.write_text(NESTED_BLOCK_CALLS)
    out = tmp_path / "nested.py"
    result = cli("compile", str(src), "-o", str(out))
    assert result.returncode == 0, result.stderr
    source = out.read_text()
    assert "# cbr(c=3)\n" in source and "# unit(c=3)\n" in source  # comments on lines of their own
    assert_generated_equals_build(source, NESTED_BLOCK_CALLS)


BROKEN_PYTHON = "class Net(nn.Module):\n    def __init__(self) -> None:\n        self.x = (1,]\n"


@pytest.mark.parametrize("existing", [None, "# the previous net.py\n"])
def test_output_that_does_not_parse_is_never_written(cli, tmp_path, monkeypatch, existing):
    monkeypatch.setattr(codegen, "generate", lambda model, class_name="Net": BROKEN_PYTHON)
    out = tmp_path / "net.py"
    if existing is not None:
        out.write_text(existing)
    result = cli("compile", str(EXAMPLES / "lenet.arch"), "-o", str(out))
    assert result.returncode == 1
    assert result.stderr.startswith("error: internal error: the PyTorch source generated from ")
    assert "line 3" in result.stderr and "Traceback" not in result.stderr and result.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ([] if existing is None else ["net.py"])  # no temp files
    assert not out.exists() if existing is None else out.read_text() == existing


def test_output_that_does_not_parse_is_not_printed_either(cli, monkeypatch):
    monkeypatch.setattr(codegen, "generate", lambda model, class_name="Net": BROKEN_PYTHON)
    result = cli("compile", str(EXAMPLES / "lenet.arch"))
    assert result.returncode == 1 and result.stdout == "" and "error: internal error" in result.stderr


def test_a_failed_rename_leaves_the_old_file_and_no_temp_file(cli, tmp_path, monkeypatch):
    import archspec.cli

    def refuse(src: str, dst: str) -> None:
        raise PermissionError(13, "Permission denied")

    out = tmp_path / "net.py"
    out.write_text("# the previous net.py\n")
    monkeypatch.setattr(archspec.cli.os, "replace", refuse)
    result = cli("compile", str(EXAMPLES / "lenet.arch"), "-o", str(out))
    assert result.returncode == 1 and result.stderr == f"error: {out}: cannot write (Permission denied)\n"
    assert [p.name for p in tmp_path.iterdir()] == ["net.py"] and out.read_text() == "# the previous net.py\n"


def test_a_new_output_file_gets_the_usual_permissions(cli, tmp_path):
    import os

    out = tmp_path / "net.py"
    assert cli("compile", str(EXAMPLES / "lenet.arch"), "-o", str(out)).returncode == 0
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask


def test_class_name_must_be_a_python_identifier(cli, tmp_path):
    out = tmp_path / "net.py"
    result = cli("compile", str(EXAMPLES / "lenet.arch"), "-o", str(out), "--class-name", "my net")
    assert result.returncode == 2 and "error: --class-name 'my net' is not a Python class name" in result.stderr
    assert not out.exists()
    assert cli("compile", str(EXAMPLES / "lenet.arch"), "-o", str(out), "--class-name", "LeNet").returncode == 0
    assert hasattr(import_generated(out.read_text()), "LeNet")


CLASHING_BLOCKS = """input 3x32x32
block stage { conv 8 k3 p1 | relu }
block stage2 { conv 8 k3 p1 | relu }
stage2
stage * 21
gap | flatten | linear 10
"""


def test_block_names_that_meet_another_blocks_count_keep_every_module():
    """`stage2`'s first call and `stage`'s 21st would both be `stage21`: the later one is `stage_21`, and
    the built and generated networks keep every layer the checker counted (they used to lose one)."""
    report = archspec.check(CLASHING_BLOCKS)
    paths = [row.path for row in report.rows]
    assert len(paths) == len(set(paths)) and "stage21.conv1" in paths and "stage_21.conv1" in paths
    by_hand = (8 * 3 * 9 + 8) + 21 * (8 * 8 * 9 + 8) + (8 * 10 + 10)  # stage2's conv, stage's 21 convs, the linear
    assert report.params == by_hand
    built = archspec.build(CLASHING_BLOCKS)
    generated = import_generated(codegen.generate(archspec.check(CLASHING_BLOCKS))).Net()
    for net in (built, generated):
        assert sum(p.numel() for p in net.parameters()) == by_hand
