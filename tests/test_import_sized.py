"""`archspec import` of a forward that decides on its input's size (torch.fx's symbolic tracer cannot
trace it): traced at the import's size, the branch that size takes, said in the text's header.

Oracle: the original torch module. The imported text is checked, built, given the original's weights
and must give the original's outputs in float64 (eval), at each size, on each side of the branch."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import archspec
from archspec.importers.api import Result, import_module, imported_weights
from archspec.language.pipeline import CheckOptions, checked

ROOT = Path(__file__).resolve().parents[1]

SIZE_BRANCH = '''
import torch
import torch.nn.functional as F
from torch import nn


class Head(nn.Module):
    """timm's VGG head: a map smaller than the kernel is pooled up to it first."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(8, 4, 5)

    def forward(self, x):
        if x.shape[-2] < 5 or x.shape[-1] < 5:
            x = F.adaptive_avg_pool2d(x, (max(5, x.shape[-2]), max(5, x.size(-1))))
        return self.conv(x)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU())
        self.head = Head()

    def forward(self, x):
        return torch.flatten(self.head(self.stem(x)), 1)
'''

VALUE_BRANCH = '''
from torch import nn


class Gate(nn.Module):
    def forward(self, x):
        if x.sum() > 0:
            return x.relu()
        return x


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.gate = nn.Conv2d(3, 8, 3), Gate()

    def forward(self, x):
        return self.gate(self.conv(x))
'''


def _net(source: str) -> torch.nn.Module:
    space: dict = {}
    exec(source, space)  # noqa: S102 - the test's own source text
    torch.manual_seed(0)
    return space["Net"]().eval()


def _difference(original: torch.nn.Module, result: Result, size: int) -> float:
    """The imported text, checked, built and given the original's weights, against the original: max |ours - theirs| / max |theirs|."""
    assert not checked(result.text, CheckOptions(classes=None)).errors
    net = archspec.build(result.text)
    net.load_state_dict(imported_weights(original, result))
    x = torch.randn(2, 3, size, size, dtype=torch.float64)
    with torch.no_grad():
        want, got = original.double()(x), net.double().eval()(x)
    return ((got - want).abs().max() / want.abs().max()).item()


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "archspec", *args], check=False, capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.mark.parametrize(("size", "pooled"), [(6, True), (16, False)])
def test_a_branch_on_the_input_size_is_the_branch_that_size_takes(size: int, pooled: bool) -> None:
    """At 6x6 the stem gives 3x3, under the head's kernel: pooled up to 5x5; at 16x16 (8x8) not."""
    original = _net(SIZE_BRANCH)
    result = import_module(original, (3, size, size), title="Net")
    header = result.text.split(f"\ninput 3x{size}x{size}\n")[0].splitlines()
    assert header[0] == "# Net" and " ".join(line.removeprefix("# ") for line in header[1:]) == (
        f"traced at 3x{size}x{size}: the forward branches on the input size in `head` (Head); the text is the branch "
        f"taken at this size"), result.text
    assert ("adaptiveavgpool 5x5 | conv 4 k5" in result.text) is pooled, result.text
    assert _difference(original, result, size) <= 1e-12


def test_a_loop_over_a_tensors_parts_is_traced_at_the_size_and_said() -> None:
    """A loop over `x.chunk(2, dim=1)` (fx's symbolic trace cannot iterate a traced value): no branch on a size,
    but the sizes were numbers, so the header says the text holds at this size."""
    from torch import nn

    class Parts(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.parts = nn.ModuleList([nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 1)])

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.conv(x)
            return torch.cat([conv(part) for conv, part in zip(self.parts, x.chunk(2, dim=1))], dim=1)

    torch.manual_seed(0)
    original = Parts().eval()
    result = import_module(original, (3, 8, 8), title="Parts")
    assert result.imported.notes == [("traced at 3x8x8 with the input's sizes as numbers (the symbolic trace stopped: Proxy object "
                                     "cannot be iterated); the text holds at this size")]
    assert "split { conv 4 k3 p1 } { conv 4 k1 }" in result.text, result.text
    assert _difference(original, result, 8) <= 1e-12


def test_cli_says_on_stderr_that_the_text_holds_at_its_size(tmp_path: Path) -> None:
    (tmp_path / "sized_net.py").write_text(SIZE_BRANCH)
    run = _cli("import", "sized_net:Net", "--input", "3x6x6", "-o", "n.arch", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stderr == ("warning: traced at 3x6x6: the forward branches on the input size in `head` (Head); "
                          "the text is the branch taken at this size\n")
    assert "adaptiveavgpool 5x5" in (tmp_path / "n.arch").read_text()


def test_a_branch_on_a_tensors_values_is_refused(tmp_path: Path) -> None:
    """Never specialised to the values of the input it was traced on: refused, naming the module, nothing written."""
    (tmp_path / "value_net.py").write_text(VALUE_BRANCH)
    run = _cli("import", "value_net:Net", "--input", "3x8x8", "-o", "v.arch", cwd=tmp_path)
    assert run.returncode == 1 and not (tmp_path / "v.arch").exists()
    assert run.stderr == (ROOT / "tests/golden/cli/import_value_branch.txt").read_text()


def test_a_branch_on_a_tensors_values_that_the_forward_catches_is_refused_too() -> None:
    """A forward that catches the refusal and goes on down another path still branched on a value."""
    from torch import nn

    from archspec.language.errors import ArchspecError

    class Careful(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.conv(x)
            if x.shape[-1] > 4:  # the symbolic trace stops here, the sized one goes on
                x = x.relu()
            try:
                if x.mean() > 0:
                    return x.relu()
            except Exception:  # noqa: BLE001, S110 - what the test is about
                pass
            return x

    with pytest.raises(ArchspecError) as info:
        import_module(Careful().eval(), (3, 8, 8))
    assert info.value.message == "`(top)` (Careful) branches on a tensor's values: the layers it runs would depend on the input's data"


def test_a_sized_forward_that_fails_at_the_size_says_so() -> None:
    """The sized trace runs the forward: a wrong input size is the same error as where the symbolic trace succeeds."""
    from archspec.language.errors import ArchspecError

    with pytest.raises(ArchspecError) as info:
        import_module(_net(SIZE_BRANCH), (1, 8, 8))
    assert info.value.message.startswith("the module does not run on a 1x8x8 input: "), info.value.message


def test_timm_vgg_imports_exactly() -> None:
    """timm's VGG, whose ConvMlp head pools a map under 7x7 up to it (a 1x1 map at 32x32); mlp_ratio keeps the
    head small (the full-size vgg11 runs in benchmarks/import_coverage.py)."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    original = timm.create_model("vgg11", pretrained=False, num_classes=10, mlp_ratio=1 / 64).eval()
    result = import_module(original, (3, 32, 32), title="timm:vgg11")
    assert "adaptiveavgpool 7x7 | conv 64 k7 | relu" in result.text, result.text
    assert "in `pre_logits` (ConvMlp)" in result.text.replace("\n# ", " ")
    assert _difference(original, result, 32) <= 1e-9
