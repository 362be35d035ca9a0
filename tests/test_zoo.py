"""The model zoo in examples/ against torchvision (built without weights: offline) and hand-written
torch equivalents: total params, the output shape of every stage, and every conv / bn / linear in
execution order (kind, output shape, params) -- from the checker and from `archspec.build`."""
from __future__ import annotations

import re

import pytest

torch = pytest.importorskip("torch")
tvm = pytest.importorskip("torchvision.models")
from torch import nn  # noqa: E402

import archspec  # noqa: E402
from archspec.language.diagnostics import filter_diagnostics  # noqa: E402
from archspec.language.tree import Call  # noqa: E402
from conftest import EXAMPLES  # noqa: E402

PARAM_LAYERS = {nn.Conv2d: "conv", nn.BatchNorm2d: "bn", nn.BatchNorm1d: "bn", nn.Linear: "linear"}


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def torch_trace(net: nn.Module, input_shape: tuple[int, ...], watch: dict[str, nn.Module] | None = None):
    """Run one image through `net`; return [(kind, out_shape, params)] for each conv/bn/linear call
    in execution order, and the output shape of each module in `watch` (name -> module)."""
    calls: list[tuple[str, tuple[int, ...], int]] = []
    stages: dict[str, tuple[int, ...]] = {}
    hooks = []
    for m in net.modules():
        kind = PARAM_LAYERS.get(type(m))
        if kind:
            hooks.append(m.register_forward_hook(
                lambda mod, inp, out, kind=kind: calls.append((kind, tuple(out.shape[1:]), n_params(mod)))))
    for name, m in (watch or {}).items():
        hooks.append(m.register_forward_hook(lambda mod, inp, out, name=name: stages.__setitem__(name, tuple(out.shape[1:]))))
    net.eval()
    with torch.no_grad():
        out = net(torch.randn(1, *input_shape))
    for h in hooks:
        h.remove()
    return calls, stages, tuple(out.shape[1:])


def checker_trace(report) -> list[tuple[str, tuple[int, ...], int]]:
    return [(r.op, r.out_shape, r.params) for r in report.rows if r.op in ("conv", "bn", "linear")]


def block_outputs(report, prefix: str) -> dict[str, tuple[int, ...]]:
    """Output shape of each top-level block call whose name starts with `prefix` (stage1, stage2, ...)."""
    return {n.name: n.out_shape for n in report.body if isinstance(n, Call) and n.name.startswith(prefix)}


def check_file(name: str):
    report = archspec.check(archspec.load(EXAMPLES / name))
    assert report.ok, [d.message for d in report.errors]
    return report


def assert_same_network(name: str, reference: nn.Module, expected_params: int | None = None):
    """Checker rows, the compiled net and the reference agree on every param layer and in total."""
    report = check_file(name)
    ref_calls, _, ref_out = torch_trace(reference, report.input_shape)
    total = n_params(reference)
    if expected_params is not None:
        assert total == expected_params
    assert report.params == total
    assert report.output_shape == ref_out
    assert checker_trace(report) == ref_calls
    built = archspec.build(EXAMPLES / name)
    assert n_params(built) == total
    built_calls, _, built_out = torch_trace(built, report.input_shape)
    assert built_calls == ref_calls and built_out == ref_out
    return report


# --------------------------------------------------------------------------- torchvision models

def test_resnet18_matches_torchvision():
    ref = tvm.resnet18(weights=None, num_classes=10)
    report = assert_same_network("resnet18.arch", ref, expected_params=11_181_642)
    _, stages, _ = torch_trace(ref, (3, 224, 224), {f"stage{i}": getattr(ref, f"layer{i}") for i in range(1, 5)})
    assert block_outputs(report, "stage") == stages == {
        "stage1": (64, 56, 56), "stage2": (128, 28, 28), "stage3": (256, 14, 14), "stage4": (512, 7, 7)}


def test_resnet18_cifar_matches_torchvision_with_cifar_stem():
    ref = tvm.resnet18(weights=None, num_classes=10)
    ref.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    ref.maxpool = nn.Identity()
    report = assert_same_network("resnet18_cifar.arch", ref, expected_params=11_173_962)
    _, stages, _ = torch_trace(ref, (3, 32, 32), {f"stage{i}": getattr(ref, f"layer{i}") for i in range(1, 5)})
    assert block_outputs(report, "stage") == stages == {
        "stage1": (64, 32, 32), "stage2": (128, 16, 16), "stage3": (256, 8, 8), "stage4": (512, 4, 4)}


def test_vgg11_bn_matches_torchvision():
    ref = tvm.vgg11_bn(weights=None, num_classes=10)
    report = assert_same_network("vgg11_bn.arch", ref, expected_params=128_812_810)
    pools = [m for m in ref.features if isinstance(m, nn.MaxPool2d)]
    _, stages, _ = torch_trace(ref, (3, 224, 224), {f"pool{i + 1}": m for i, m in enumerate(pools)} | {"avgpool": ref.avgpool})
    rows = {r.path: r.out_shape for r in report.rows}
    assert {k: rows[k] for k in stages if k != "avgpool"} == {k: v for k, v in stages.items() if k != "avgpool"}
    assert rows["pool6"] == stages["avgpool"] == (512, 7, 7)  # adaptiveavgpool 7x7: the sixth `pool`


def test_mobilenet_v2_matches_torchvision():
    ref = tvm.mobilenet_v2(weights=None, num_classes=10)
    report = assert_same_network("mobilenet_v2.arch", ref, expected_params=2_236_682)
    # torchvision's features[i] at the end of each stage of the (t, c, n, s) table.
    ends = {"stage1": 3, "stage2": 6, "stage3": 10, "stage4": 13, "stage5": 16, "inverted1": 17}
    _, stages, _ = torch_trace(ref, (3, 224, 224), {k: ref.features[i] for k, i in ends.items()})
    ours = block_outputs(report, "stage") | block_outputs(report, "inverted")
    assert ours == stages
    assert stages["inverted1"] == (320, 7, 7)
    # Depthwise convs: groups = channels; residuals only where stride 1 and in == out (10 of them).
    dw = [r for r in report.rows if r.op == "conv" and r.layer.groups > 1]
    assert len(dw) == 17 and all(r.layer.groups == r.in_shape[0] == r.out_shape[0] for r in dw)
    residuals = sum(1 for m in ref.features.modules() if getattr(m, "use_res_connect", False))
    ours_res = [r.path for r in report.rows if re.search(r"\.res\d+\.body\.inverted1\.conv1$", r.path)]
    assert residuals == len(ours_res) == 10


# --------------------------------------------------------------------------- hand-written references

class _AirbenchGroup(nn.Sequential):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding="same", bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(cout), nn.GELU(),
            nn.Conv2d(cout, cout, 3, padding="same", bias=False), nn.BatchNorm2d(cout), nn.GELU(),
        )


def airbench94_reference() -> nn.Module:
    """legacy/airbench94.py's make_net, structure only (widths 64/256/256, whitening 2x2 stem
    with 2*3*2*2 = 24 channels and a bias, MaxPool2d(3), Linear(256, 10, bias=False)); the
    final Mul(1/9) has no parameters and does not change shapes."""
    return nn.Sequential(
        nn.Conv2d(3, 24, 2, padding=0, bias=True), nn.GELU(),
        _AirbenchGroup(24, 64), _AirbenchGroup(64, 256), _AirbenchGroup(256, 256),
        nn.MaxPool2d(3), nn.Flatten(), nn.Linear(256, 10, bias=False),
    )


def test_fastcifar_matches_airbench94():
    ref = airbench94_reference()
    report = assert_same_network("fastcifar.arch", ref, expected_params=1_972_792)
    stem = report.rows[1]
    assert stem.op == "conv" and stem.layer.init == "whiten" and stem.layer.bias and stem.out_shape == (24, 31, 31)
    _, stages, _ = torch_trace(ref, (3, 32, 32), {f"group{i}": ref[i + 1] for i in range(1, 4)})
    assert block_outputs(report, "group") == stages == {"group1": (64, 15, 15), "group2": (256, 7, 7), "group3": (256, 3, 3)}


def test_vgg_bn_matches_hand_written_torch():
    layers: list[nn.Module] = []
    cin = 3
    for w in (64, 128, 256):
        for _ in range(2):
            layers += [nn.Conv2d(cin, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
            cin = w
        layers.append(nn.MaxPool2d(2))
    ref = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(256, 10))
    assert_same_network("vgg_bn.arch", ref, expected_params=1_148_874)


def test_use_is_the_same_as_pasting_the_blocks_in():
    used = check_file("uses_blocks.arch")
    text = (EXAMPLES / "uses_blocks.arch").read_text().replace('use "blocks.arch"', (EXAMPLES / "blocks.arch").read_text())
    pasted = archspec.check(text)
    assert pasted.ok
    assert [(r.path, r.out_shape, r.params) for r in used.rows] == [(r.path, r.out_shape, r.params) for r in pasted.rows]
    assert used.output_shape == (10,) and used.params == pasted.params


# --------------------------------------------------------------------------- no diagnostics

ZOO = ["resnet18.arch", "resnet18_cifar.arch", "vgg11_bn.arch", "mobilenet_v2.arch", "fastcifar.arch",
       "vgg_bn.arch", "uses_blocks.arch"]
@pytest.mark.parametrize("name", ZOO)
def test_zoo_example_has_no_diagnostics(name):
    """Zero diagnostics, after the file's own `# noqa` comments (fastcifar keeps airbench94's
    floor-dropping max pools on purpose and says so)."""
    report = archspec.check(archspec.load(EXAMPLES / name))
    assert filter_diagnostics(report.diagnostics, report.model.sources, [], []) == []
