"""`archspec import` of graphs whose branches do not nest (named tensors) and of channel slices `x[:, a:b]`:
import -> check -> build -> the original's weights -> the original's outputs in float64 (eval)."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import archspec  # noqa: E402
from archspec.importers.api import import_module, imported_weights  # noqa: E402
from archspec.language.pipeline import CheckOptions, checked  # noqa: E402


def _round_trip(original: nn.Module, shape: tuple[int, ...]) -> tuple[str, float]:
    original.eval()
    result = import_module(original, shape, title=type(original).__name__)
    report = checked(result.text, CheckOptions(classes=None))
    assert report.ok, report.diagnostics
    net = archspec.build(result.text)
    net.load_state_dict(imported_weights(original, result))
    x = torch.randn(2, *shape, dtype=torch.float64)
    with torch.no_grad():
        want, got = original.double()(x), net.double().eval()(x)
    assert got.shape == want.shape
    return result.text, ((got - want).abs().max() / want.abs().max()).item()


def cbr(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class Aggregation(nn.Module):
    """DLA's idea by hand: the last stage concatenated with pooled copies of earlier ones (stem, stage1) and a skip
    that adds stage1 again later: no join nests the others."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.stage1, self.stage2 = cbr(3, 8), cbr(8, 16, 2), cbr(16, 16)
        self.root = nn.Conv2d(16 + 16 + 8, 16, 1)
        self.head = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stem = self.stem(x)
        s1 = self.stage1(stem)
        s2 = self.stage2(s1)
        y = self.root(torch.cat([s2, s1, nn.functional.max_pool2d(stem, 2)], dim=1)) + s1
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(y, 1), 1))


class DualPath(nn.Module):
    """DPN's dual path by hand: a conv's output cut into a residual part (added) and a dense part (concatenated)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(12, 8 + 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return torch.cat([x[:, :8] + out[:, :8], x[:, 8:], out[:, 8:]], dim=1)


def test_a_graph_whose_branches_do_not_nest_imports_with_named_tensors_exactly():
    torch.manual_seed(0)
    text, diff = _round_trip(Aggregation(), (3, 16, 16))
    assert diff <= 1e-9
    assert "| as " in text and "{ from " in text


def test_channel_slices_import_as_slice():
    torch.manual_seed(0)
    text, diff = _round_trip(DualPath(), (12, 4, 4))
    assert diff <= 1e-9
    assert "slice 0:8" in text and "slice 8:12" in text


@pytest.mark.parametrize("name", ["dla34", "selecsls42b", "hrnet_w18_small"])
def test_timm_models_that_aggregate_earlier_stages_round_trip_exactly(name: str):
    """DLA's trees, SelecSLS's skips into later stages, HRNet's streams: every one needs named tensors."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    text, diff = _round_trip(timm.create_model(name, pretrained=False, num_classes=10), (3, 32, 32))
    assert diff <= 1e-9
    assert "| as " in text or "\nas " in text
