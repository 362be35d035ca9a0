"""`archspec.load_weights`: torchvision's tensors onto a built network by structure, checked against torchvision
itself (same outputs in float64), a refusal naming the first mismatch on both sides, and `train --init`."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
from torch import nn  # noqa: E402

import archspec  # noqa: E402
from archspec.language.errors import ArchspecError  # noqa: E402
from conftest import EXAMPLES, REPO, assert_golden  # noqa: E402
from test_data import write_folder  # noqa: E402

GOLDEN = REPO / "tests" / "golden" / "cli"


def _relative_difference(a: "torch.Tensor", b: "torch.Tensor") -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize("as_state_dict", [False, True], ids=["module", "state_dict"])
def test_resnet18_takes_torchvisions_weights_and_computes_the_same(as_state_dict):
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None, num_classes=10)
    with torch.no_grad():  # running statistics that are not 0 and 1, so the buffers matter too
        for m in reference.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    net = archspec.build(EXAMPLES / "resnet18.arch")
    assert archspec.load_weights(net, reference.state_dict() if as_state_dict else reference) == []
    net, reference = net.double().eval(), reference.double().eval()
    x = torch.randn(2, 3, 224, 224, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert _relative_difference(net(x), reference(x)) <= 1e-9


def test_a_mismatch_names_the_first_layer_on_both_sides():
    net = archspec.build(EXAMPLES / "resnet18.arch")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(ArchspecError) as exc:
        archspec.load_weights(net, torchvision.models.resnet34(weights=None))
    text = f"error: {exc.value.message}\nhelp: {exc.value.help}\n"
    assert_golden(GOLDEN / "load_weights_mismatch.txt", SimpleNamespace(returncode=1, stdout="", stderr=text))
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # nothing half-loaded


@pytest.mark.parametrize("name", ["regnet_x_400mf", "regnet_y_400mf"])
def test_regnet_registers_its_shortcut_first_and_still_loads(name):
    # ResBottleneckBlock registers `proj` before `f` and computes proj(x) + f(x); the zoo file's residual is body + shortcut.
    torch.manual_seed(0)
    reference = getattr(torchvision.models, name)(weights=None).eval()
    net = archspec.build(EXAMPLES / "zoo" / f"{name}.arch")
    assert archspec.load_weights(net, reference) == []
    net, reference = net.double().eval(), reference.double()
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert _relative_difference(net(x), reference(x)) <= 1e-9


class _RegisteredBackwards(nn.Module):
    """Registers its classifier first and its shortcut before its body, and adds the shortcut on the left."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.shortcut = nn.Sequential(nn.Conv2d(3, 4, 1, bias=False), nn.BatchNorm2d(4))
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                                  nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4))

    def forward(self, x: "torch.Tensor") -> "torch.Tensor":
        return self.fc(torch.relu(self.shortcut(x) + self.body(x)).mean((2, 3)))


_HANDMADE = ("input 3x8x8\nresidual project { conv 4 k3 p1 nobias | bn | relu | conv 4 k3 p1 nobias | bn }\n"
             "relu | gap | flatten | linear 3\n")


def test_layers_are_matched_in_the_order_they_run_not_the_order_they_are_registered():
    torch.manual_seed(0)
    reference = _RegisteredBackwards().eval()
    before = {k: v.clone() for k, v in reference.state_dict().items()}
    net = archspec.build(_HANDMADE)
    assert archspec.load_weights(net, reference) == []
    assert not reference.training and all(not m.training for m in reference.modules())  # its modes as they were
    assert all(torch.equal(before[k], v) for k, v in reference.state_dict().items())  # its statistics untouched
    net, reference = net.double().eval(), reference.double()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert _relative_difference(net(x), reference(x)) <= 1e-9


def test_a_state_dict_keeps_its_key_order_and_the_refusal_says_so():
    net = archspec.build(_HANDMADE)
    with pytest.raises(ArchspecError) as exc:
        archspec.load_weights(net, _RegisteredBackwards().state_dict())
    text = f"error: {exc.value.message}\nhelp: {exc.value.help}\n"
    assert_golden(GOLDEN / "load_weights_state_dict_order.txt", SimpleNamespace(returncode=1, stdout="", stderr=text))


def test_sources_that_are_not_weights_are_refused():
    net = archspec.build("input 3x8x8\nconv 4 k3\n")
    with pytest.raises(ArchspecError, match="cannot load weights from a list"):
        archspec.load_weights(net, [1, 2])
    with pytest.raises(ArchspecError, match="the network has 1 layers with tensors, the source 2"):
        archspec.load_weights(net, nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 1)))


def _tiny_run(tmp_path: Path) -> list[str]:
    write_folder(tmp_path / "data", per_class=(4, 2), size=(8, 8))
    (tmp_path / "tiny.arch").write_text("input 3x8x8\nconv 4 k3 p1 nobias | bn | relu\ngap | flatten | linear 2\n")
    return ["train", str(tmp_path / "tiny.arch"), "--data", str(tmp_path / "data"), "--data-dir", str(tmp_path / "cache"),
            "--epochs", "1", "--batch-size", "4", "--out", str(tmp_path / "run"), "--quiet"]


def test_train_init_from_a_state_dict_reinitialises_another_class_count(cli, tmp_path):
    teacher = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))
    torch.save(teacher.state_dict(), tmp_path / "weights.pt")
    r = cli(*_tiny_run(tmp_path), "--init", str(tmp_path / "weights.pt"))
    assert r.returncode == 0, r.stderr
    assert f"initialised from {tmp_path / 'weights.pt'}: 2 of 3 layers with tensors" in r.stdout
    assert ("`fc1` (Linear: weight [2, 4], bias [2]) is initialised afresh: "
            "the source's `5` (tensors: weight [5, 4], bias [5]) has another class count") in r.stdout


def test_train_init_refuses_weights_that_do_not_fit(cli, tmp_path):
    r = cli(*_tiny_run(tmp_path), "--init", "torchvision.models:resnet18")
    said = "".join(line + "\n" for line in (r.stdout + r.stderr).splitlines() if line.startswith(("error:", "help:")))
    assert_golden(GOLDEN / "train_init_mismatch.txt", SimpleNamespace(returncode=r.returncode, stdout="", stderr=said))
    r = cli(*_tiny_run(tmp_path), "--init", str(tmp_path / "missing.pt"))
    assert r.returncode == 1 and "no such file" in r.stderr and "Traceback" not in r.stderr
