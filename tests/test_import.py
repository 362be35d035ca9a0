"""`archspec import` / `archspec.from_torch`: torchvision models round-trip exactly, refusals are named.

Oracle: the original torch module. The imported text is checked, built, given the original's weights
(as `--weights` writes them) and must give the original's outputs in float64 (eval)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

import archspec
from archspec.importers.api import ImportRefused, import_module, imported_weights
from archspec.language.pipeline import CheckOptions, checked

ROOT = Path(__file__).resolve().parents[1]
SIZE = 64


def _round_trip(name: str) -> tuple[str, float]:
    torch.manual_seed(0)
    return _round_trip_of(getattr(torchvision.models, name)(weights=None, num_classes=10), name)


def _round_trip_of(original: torch.nn.Module, name: str) -> tuple[str, float]:
    original.eval()
    result = import_module(original, (3, SIZE, SIZE), title=name)
    report = checked(result.text, CheckOptions(classes=10))
    assert not report.errors and not report.warnings, report.diagnostics
    net = archspec.build(result.text)
    net.load_state_dict(imported_weights(original, result))
    x = torch.randn(2, 3, SIZE, SIZE, dtype=torch.float64)
    with torch.no_grad():
        want, got = original.double()(x), net.double().eval()(x)
    return result.text, ((got - want).abs().max() / want.abs().max()).item()


@pytest.mark.parametrize("name,example", [("resnet18", "resnet18.arch"), ("densenet121", None)])
def test_round_trip_is_exact_and_short(name: str, example: str | None) -> None:
    text, diff = _round_trip(name)
    assert diff <= 1e-9
    if example is not None:
        assert len(text.splitlines()) <= 2 * len((ROOT / "examples" / example).read_text().splitlines())


# Modern families, one small builder each: SE (`mul`), hardsigmoid, stochastic depth, split and shuffle.
MODERN = {
    "mobilenet_v3_small": ["mul {} { gap | conv c k1 | relu | conv c2 k1 | hardsigmoid }"],
    "efficientnet_b0": ["mul {} { gap | conv c k1 | silu | conv c2 k1 | sigmoid }", "stochasticdepth {drop}"],
    "shufflenet_v2_x0_5": ["  split", "  channelshuffle 2"],
    "regnet_y_400mf": ["mul {} { gap | conv c k1 | relu | conv c2 k1 | sigmoid }"],
}


@pytest.mark.parametrize("name", sorted(MODERN))
def test_modern_families_round_trip_exactly(name: str) -> None:
    text, diff = _round_trip(name)
    assert diff <= 1e-9
    for line in MODERN[name]:
        assert line in text.splitlines() or any(line in x for x in text.splitlines()), line


def test_convnext_block_reads_as_layernorm_pwlinear_layerscale() -> None:
    """torchvision's own ConvNeXt classes at a small width (convnext_tiny itself is in benchmarks/zoo_exact.py)."""
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt

    torch.manual_seed(0)
    small = ConvNeXt([CNBlockConfig(16, 32, 2), CNBlockConfig(32, None, 1)], stochastic_depth_prob=0.1, num_classes=10)
    text, diff = _round_trip_of(small, "convnext")
    assert diff <= 1e-9
    assert "    pwlinear c | layerscale 1e-6 | stochasticdepth {drop}" in text
    assert "conv 16 k4 s4 | layernorm eps=1e-6" in text


def test_repeated_modules_become_one_block_with_calls() -> None:
    text, _ = _round_trip("resnet18")
    assert text.count("block basic_block(") == 1
    assert "# BasicBlock: layer1.0, layer1.1, ... (8 in all)" in text
    assert "basic_block(64, 1) * 2" in text and "residual project {" in text


def test_densenet_concat_folds_into_blocks() -> None:
    text, _ = _round_trip("densenet121")
    assert "block dense_block(n) { repeat {n} { concat {} { dense_layer() } } }" in text
    assert [line for line in text.splitlines() if line.startswith("dense_block(")] == [
        "dense_block(6)", "dense_block(12)", "dense_block(24)", "dense_block(16)"]


# A network with constructs the language has no word for (a roll, a cumulative sum): the refusal oracle.
REFUSED_NET = """
import torch
from torch import nn


class Shifted(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x):
        return torch.roll(self.conv(x), 1, dims=2)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.blocks = nn.Sequential(Shifted(), Shifted())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = self.blocks(torch.relu(self.stem(x)))
        return self.fc(self.pool(x).cumsum(1).flatten(1))
"""


def _refused_net(tmp_path: Path) -> str:
    (tmp_path / "refused_net.py").write_text(REFUSED_NET)
    return "refused_net:Net"


def test_refusal_names_each_construct_once() -> None:
    space: dict = {}
    exec(REFUSED_NET, space)  # noqa: S102 - the test's own source text
    with pytest.raises(ImportRefused) as info:
        import_module(space["Net"](), (3, 16, 16))
    assert info.value.lines == [
        "`blocks.0` uses torch.roll (and in 1 more place)",
        "`(top)` uses Tensor.cumsum",
    ]


def test_a_channels_last_tensor_that_is_not_permuted_back_is_refused() -> None:
    """LayerNorm after a permute reads as `layernorm` only when the tensor is permuted back before other layers."""
    from torch import nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.norm, self.fc = nn.Conv2d(3, 8, 3), nn.LayerNorm(8), nn.Linear(8 * 14 * 14, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.norm(self.conv(x).permute(0, 2, 3, 1)).flatten(1))

    with pytest.raises(ImportRefused) as info:
        import_module(Net(), (3, 16, 16))
    assert info.value.lines == ["`(top)` uses Tensor.flatten: a channels-last tensor (after a permute) that the language has no layer for"]


def test_functional_activations_on_a_channels_last_tensor_read_as_their_layers() -> None:
    """F.gelu (exact, and its tanh approximation), x.relu(), torch.sigmoid and nn.Hardswish between a permute and its
    inverse are elementwise: the layers they are, in place, with the Linears between them as `pwlinear`."""
    from torch import nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.act, self.head = nn.Conv2d(3, 8, 3), nn.Hardswish(), nn.Linear(8, 10)
            self.fc = nn.ModuleList(nn.Linear(8, 8) for _ in range(5))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = nn.functional.gelu(self.fc[0](self.conv(x).permute(0, 2, 3, 1)), approximate="tanh")
            y = torch.sigmoid(self.fc[2](self.fc[1](y).relu()))
            y = nn.functional.gelu(self.fc[4](self.act(self.fc[3](y)))).permute(0, 3, 1, 2)
            return self.head(y.mean((2, 3)))

    torch.manual_seed(0)
    text, diff = _round_trip_of(Net(), "functional")
    assert ("conv 8 k3 | pwlinear 8 | gelu tanh | pwlinear 8 | relu\n"
            "pwlinear 8 | sigmoid | pwlinear 8 | hardswish | pwlinear 8 | gelu\n") in text, text
    assert diff <= 1e-9


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "archspec", *args], check=False, capture_output=True, text=True, cwd=cwd, timeout=300)


def test_cli_writes_text_and_weights_that_build_to_the_original(tmp_path: Path) -> None:
    run = _cli("import", "torchvision.models:resnet18", "--kwargs", '{"num_classes": 10}', "--input", "3x32x32",
               "-o", "r18.arch", "--weights", "r18.pt", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    torch.manual_seed(0)
    net = archspec.build(tmp_path / "r18.arch")
    net.load_state_dict(torch.load(tmp_path / "r18.pt"))
    assert _cli("check", "r18.arch", "-q", cwd=tmp_path).returncode == 0


def test_cli_refusal_writes_nothing(tmp_path: Path) -> None:
    run = _cli("import", _refused_net(tmp_path), "--input", "3x16x16", "-o", "c.arch", cwd=tmp_path)
    assert run.returncode == 1 and not (tmp_path / "c.arch").exists()
    assert run.stderr == (ROOT / "tests/golden/cli/import_refused.txt").read_text()


def test_cli_partial_writes_the_prefix_that_checks(tmp_path: Path) -> None:
    run = _cli("import", _refused_net(tmp_path), "--input", "3x16x16", "--partial", "-o", "s.arch", cwd=tmp_path)
    assert run.returncode == 1
    assert run.stderr == "warning: stopped at `blocks.0`: the text holds the layers before it\n"
    text = (tmp_path / "s.arch").read_text()
    assert text.endswith("conv 8 k3 p1\n# stopped here: `blocks.0` uses torch.roll (and in 1 more place)\n")
    assert not checked(text, CheckOptions(classes=None)).errors


def test_views_take_module_callable(tmp_path: Path) -> None:
    run = _cli("summary", "torchvision.models:resnet18", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[0] == "torchvision.models:resnet18: [B, 3, 224, 224] -> [B, 1000]"
    assert "11,689,512" in run.stdout  # torchvision's resnet18 parameter count


# torchvision's segmentation builders return {"out": ...} and resize back to a size read from the network
# (`F.interpolate(x, size=t.shape[-2:])`): the importer writes `resize { ... }` from `t` on.
SEGMENTATION = ["deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large"]


@pytest.mark.parametrize("name", SEGMENTATION)
def test_segmentation_models_round_trip_exactly_at_two_sizes(name: str) -> None:
    torch.manual_seed(0)
    original = getattr(torchvision.models.segmentation, name)(weights=None, weights_backbone=None).eval()
    result = import_module(original, (3, SIZE, SIZE), title=name)
    assert "resize {" in result.text
    weights = imported_weights(original, result)
    original.double()
    for size in (SIZE, 80):  # the imported text at another input size: the resizes follow it
        text = result.text.replace(f"input 3x{SIZE}x{SIZE}", f"input 3x{size}x{size}")
        report = checked(text, CheckOptions(classes=21))
        assert not report.errors and not report.warnings, report.diagnostics
        assert report.output_shape == (21, size, size)
        net = archspec.build(text)
        net.load_state_dict(weights)
        x = torch.randn(2, 3, size, size, dtype=torch.float64)
        with torch.no_grad():
            want, got = original(x)["out"], net.double().eval()(x)
        assert ((got - want).abs().max() / want.abs().max()).item() <= 1e-9


DOWNLOADING_NET = """
from urllib.error import URLError
from torch import nn


def segmenter(num_classes=21, weights=None, weights_backbone="IMAGENET1K_V1"):
    if weights_backbone is not None:
        raise URLError("[Errno -2] Name or service not known")
    return nn.Sequential(nn.Conv2d(3, num_classes, 1))
"""


def test_a_builder_that_downloads_is_told_which_arguments_skip_it(tmp_path: Path) -> None:
    (tmp_path / "downloading_net.py").write_text(DOWNLOADING_NET)
    run = _cli("import", "downloading_net:segmenter", "--kwargs", '{"num_classes": 5}', "-o", "s.arch", cwd=tmp_path)
    assert run.returncode == 1 and not (tmp_path / "s.arch").exists()
    assert run.stderr.splitlines() == [
        "error: downloading_net:segmenter(num_classes=5) failed: URLError: <urlopen error [Errno -2] Name or service not known>",
        "help: it tried to download pretrained weights; import reads the structure only: "
        "pass --kwargs '{\"num_classes\": 5, \"weights_backbone\": null}'",
    ]
    run = _cli("import", "downloading_net:segmenter", "--kwargs", '{"num_classes": 5, "weights_backbone": null}',
               "--input", "3x8x8", "-o", "s.arch", cwd=tmp_path)
    assert run.returncode == 0, run.stderr


class _TwoOutputs(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head, self.aux = torch.nn.Conv2d(3, 4, 1), torch.nn.Conv2d(3, 4, 1)

    def forward(self, x: torch.Tensor) -> dict:
        return {"out": self.head(x), "aux": self.aux(x)}


def test_a_dict_with_more_than_out_is_refused_by_its_keys() -> None:
    with pytest.raises(archspec.ArchspecError) as info:
        import_module(_TwoOutputs(), (3, 8, 8))
    assert (info.value.message, info.value.help) == (
        "the module returns a dict with keys 'out', 'aux', not one tensor",
        "archspec imports one output (a dict with only 'out' is read as it); build it without the others, e.g. aux_loss=False")


class _Unit(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.act = torch.nn.Conv2d(4, 4, 3, padding=1), torch.nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


class _Unit1(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = torch.nn.Conv2d(4, 4, 1, bias=False), torch.nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


def test_block_names_never_make_module_names_meet() -> None:
    """Blocks `unit` and `unit1` would name unit1's first call and unit's 11th both `unit11`, and the
    built network would keep one of them: a class name ending in digits takes an underscore (`unit_1`)."""
    torch.manual_seed(0)
    original = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), _Unit1(), _Unit1(), *[_Unit() for _ in range(11)],
                                   torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 10))
    text, diff = _round_trip_of(original, "units")
    assert diff <= 1e-9
    assert "block unit_1 {" in text and "block unit {" in text, text


def test_a_module_that_fails_at_the_size_says_torchs_reason_without_a_traceback(capsys) -> None:
    """torch.fx's ShapeProp prints the failing layer's traceback before raising: the user gets one error line."""
    from archspec.language.errors import ArchspecError

    with pytest.raises(ArchspecError) as caught:
        import_module(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 5)), (3, 2, 2))
    assert caught.value.message.startswith("the module does not run on a 3x2x2 input: Calculated padded input size"), caught.value.message
    assert "Traceback" not in capsys.readouterr().err


class _PlusOne(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + 1.0


def test_a_join_the_language_lacks_is_refused_by_name_not_a_crash() -> None:
    """`x + 1.0` is met while the graph is walked (after the scan of the layers): it is still refused, once."""
    with pytest.raises(ImportRefused) as caught:
        import_module(_PlusOne(), (3, 8, 8))
    assert caught.value.lines == ["`(top)` uses operator.add: adding a constant or with alpha"]


class _PlusZero(_PlusOne):
    def __init__(self) -> None:
        super().__init__()
        self.head = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x) + 0)  # MobileOne's sum when a block has no identity branch


def test_adding_zero_is_the_tensor_as_it_is() -> None:
    text, diff = _round_trip_of(_PlusZero(), "plus_zero")
    assert diff <= 1e-9 and "add" not in text.split("input", 1)[1], text


class _MixedConv(torch.nn.Module):
    """MixNet's MixedConv2d and FasterNet's partial conv: channels split unevenly, each part its own layers, then
    concatenated back in order (`torch.split` with a list, and `x.split` by a size that leaves a smaller last part)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 12, 3, padding=1)
        self.mixed = torch.nn.ModuleList([torch.nn.Conv2d(5, 5, 3, padding=1), torch.nn.Conv2d(7, 7, 5, padding=2)])
        self.partial = torch.nn.Conv2d(5, 5, 3, padding=1)
        self.head = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(12, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        parts = torch.split(x, [5, 7], dim=1)
        x = torch.cat([self.mixed[0](parts[0]), self.mixed[1](parts[1])], dim=1)
        first, rest = x.split(5, dim=1)[0], x[:, 5:]  # 12 channels by 5: parts of 5, 5 and 2
        return self.head(torch.cat((self.partial(first), rest), dim=1))


def test_uneven_channel_splits_read_as_slices_in_a_concat() -> None:
    torch.manual_seed(0)
    text, diff = _round_trip_of(_MixedConv(), "mixed_conv")
    assert diff <= 1e-9
    assert "{ slice 0:5 | conv 5 k3 p1 }" in text and "{ slice 5:12 | conv 7 k5 p2 }" in text, text


class _PaperECA(torch.nn.Module):
    """ECA as the ECA-Net paper's code writes it: pool to [B, C, 1, 1], squeeze and transpose to [B, 1, C], a Conv1d across
    the channels, back to [B, C, 1, 1], sigmoid, expand_as."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.avg_pool = torch.nn.AdaptiveAvgPool2d(1)
        self.conv = torch.nn.Conv1d(1, 1, k, padding=(k - 1) // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(self.avg_pool(x).squeeze(-1).transpose(-1, -2)).transpose(-1, -2).unsqueeze(-1)
        return x * torch.sigmoid(y).expand_as(x)


def test_eca_gates_read_as_chanconv_in_a_mul() -> None:
    """The paper's ECA after a conv, then timm's form (the mean over H and W viewed as [B, 1, C]) written by hand."""

    class TimmECA(_PaperECA):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x.mean((2, 3)).view(x.shape[0], 1, -1))
            return x * torch.sigmoid(y).view(x.shape[0], -1, 1, 1).expand_as(x)

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), _PaperECA(5), torch.nn.ReLU(), TimmECA(3),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 10))
    text, diff = _round_trip_of(net, "eca")
    assert diff <= 1e-9
    assert "mul {} { gap | chanconv k5 | sigmoid }" in text and "mul {} { gap | chanconv k3 | sigmoid }" in text, text


class _ConstantFactors(torch.nn.Module):
    """A Python number times or over the tensor, each way torch code writes it: Inception-ResNet's `x * self.scale + x`,
    RepViT's `(x1 + x2) / 2` over two heads, and `x * 1`, which is the tensor as it is."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.body = torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Conv2d(4, 4, 3, padding=1)
        self.head, self.head_dist = torch.nn.Linear(4, 10), torch.nn.Linear(4, 10)
        self.scale = 0.17

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = 0.5 * (self.stem(x) * 2)
        x = self.body(x) * self.scale + x
        x = (x / 3).mul(1.5).div(4) * 1
        x = x.mean((2, 3))
        return (self.head(x) + self.head_dist(x)) / 2


def test_constant_factors_read_as_scale() -> None:
    torch.manual_seed(0)
    text, diff = _round_trip_of(_ConstantFactors(), "constant_factors")
    assert diff <= 1e-9
    body = text.split("input", 1)[1]
    for line in ("conv 4 k3 p1 | scale 2 | scale 0.5", "conv 4 k3 p1 | scale 0.17 }",
                 "scale {1/3} | scale 1.5 | scale 0.25 | gap | flatten", "add { linear 10 } { linear 10 }\nscale 0.5"):
        assert line in body, (line, text)
    assert "scale 1\n" not in body and "scale 1 " not in body


class _Reciprocal(_PlusOne):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 / self.conv(x)


def test_a_number_over_the_tensor_is_refused_not_read_as_a_scale() -> None:
    with pytest.raises(ImportRefused) as caught:
        import_module(_Reciprocal(), (3, 8, 8))
    assert caught.value.lines == ["`(top)` uses operator.truediv"]



class _ConvAct(torch.nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv, self.act = torch.nn.Conv2d(c_in, c_out, 3, padding=1), torch.nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


class _Unit(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = _ConvAct(4, 4), _ConvAct(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x)) * 0.2 + x


class _StemAndUnits(torch.nn.Module):
    """A class used at the top (the stem) and inside a repeated one (Inception-ResNet's ConvNormAct and Block35)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = _ConvAct(3, 4)
        self.units = torch.nn.Sequential(_Unit(), _Unit(), _Unit())
        self.head = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.units(self.stem(x)))


def test_a_class_used_at_the_top_and_inside_a_repeated_one_folds_both() -> None:
    torch.manual_seed(0)
    text, diff = _round_trip_of(_StemAndUnits(), "stem_and_units")
    assert diff <= 1e-9
    assert "block unit { residual project { conv_act() * 2 | scale 0.2 } }" in text and "\nunit() * 3\n" in text, text


def test_padding_modules_import_as_pad_and_a_negative_one_is_refused() -> None:
    """torch.nn.ZeroPad2d / torch.nn.ConstantPad2d are `pad` (outputs as the original's); a negative side crops (NASNet's
    ZeroPad2d((-1, 1, -1, 1))), which `pad` cannot say: refused by name, not written as a text that fails its check."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ZeroPad2d((0, 1, 2, 0)), torch.nn.ConstantPad2d(1, 0.5), torch.nn.Conv2d(4, 4, 3),
                        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 10))
    text, diff = _round_trip_of(net, "pads")
    assert diff <= 1e-9 and "pad 0 1 2 0" in text and "pad 1 1 1 1 value=0.5" in text, text
    with pytest.raises(ImportRefused) as info:
        import_module(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ZeroPad2d((-1, 1, -1, 1)), torch.nn.Conv2d(4, 4, 3)), (3, 8, 8))
    assert info.value.lines == ["`1` uses torch.nn.ZeroPad2d: a negative padding (-1, 1, -1, 1), which crops "
                                "(the language's `pad` adds rows and columns)"]
