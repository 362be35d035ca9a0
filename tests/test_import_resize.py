"""`F.interpolate(..., mode="nearest")` back to a size read from the network imports as `resize nearest { ... }`.

Oracle: the original torch module. The imported text is checked, built, given the original's weights and must give
the original's outputs in float64 (eval), at the size it was imported at and at an odd size where nearest's source
index, floor(i * in / out), is not i // 2."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

import archspec  # noqa: E402
from archspec.importers.api import ImportRefused, import_module, imported_weights  # noqa: E402
from archspec.language.pipeline import CheckOptions, checked  # noqa: E402


class _DFCGate(nn.Module):
    """GhostNetV2's ghost module with its DFC attention: a gate computed at half the size, resized by nearest neighbour
    to the size of the ghost output (computed beside it from the same input), then a gate from a third of the size
    resized back to the size of the tensor it is computed from."""

    def __init__(self) -> None:
        super().__init__()
        self.primary = nn.Sequential(nn.Conv2d(3, 4, 1, bias=False), nn.BatchNorm2d(4), nn.ReLU())
        self.cheap = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, groups=4, bias=False), nn.BatchNorm2d(4), nn.ReLU())
        self.short = nn.Sequential(nn.Conv2d(3, 6, 1, bias=False), nn.BatchNorm2d(6),
                                   nn.Conv2d(6, 6, (1, 5), padding=(0, 2), groups=6, bias=False), nn.BatchNorm2d(6))
        self.pooled = nn.Conv2d(6, 6, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = self.short(F.avg_pool2d(x, kernel_size=2, stride=2))
        x1 = self.primary(x)
        out = torch.cat([x1, self.cheap(x1)], dim=1)[:, :6]
        out = out * F.interpolate(res.sigmoid(), size=(out.shape[-2], out.shape[-1]), mode="nearest")
        return out + F.interpolate(self.pooled(F.max_pool2d(out, 3, 3, ceil_mode=True)), size=out.shape[-2:], mode="nearest")


def _original() -> nn.Module:
    torch.manual_seed(0)
    net = _DFCGate()
    for module in net.modules():  # batch-norm statistics that are not the identity
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1), module.running_var.uniform_(0.5, 2)
    return net.eval()


def test_nearest_interpolate_reads_as_resize_nearest_and_matches_at_an_odd_size() -> None:
    original = _original()
    result = import_module(original, (3, 16, 16))
    assert result.text.count("resize nearest {") == 2, result.text
    weights = imported_weights(original, result)
    original.double()
    for h, w in ((16, 16), (15, 13)):  # 15 -> 7 -> 15 takes rows 0,0,0,1,1,2,2,...: not i // 2
        text = result.text.replace("input 3x16x16", f"input 3x{h}x{w}")
        report = checked(text, CheckOptions(classes=None))
        assert not report.errors, report.diagnostics
        assert report.output_shape == (6, h, w)
        net = archspec.build(text)
        net.load_state_dict(weights)
        x = torch.randn(2, 3, h, w, dtype=torch.float64)
        with torch.no_grad():
            want, got = original(x), net.double().eval()(x)
        assert ((got - want).abs().max() / want.abs().max()).item() <= 1e-12


class _ResizedElsewhere(nn.Module):
    """A gate resized to the size of a stride-2 branch beside it: no `resize` goes back to its body's input there."""

    def __init__(self) -> None:
        super().__init__()
        self.main = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.gate = nn.Conv2d(3, 8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.main(x)
        return out * F.interpolate(self.gate(F.avg_pool2d(x, 4)), size=(out.shape[-2], out.shape[-1]), mode="nearest")


class _ScaleFactor(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * F.interpolate(F.avg_pool2d(x, 2), scale_factor=2.0, mode="nearest")


class _Bicubic(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * F.interpolate(F.avg_pool2d(x, 2), size=x.shape[-2:], mode="bicubic", align_corners=False)


@pytest.mark.parametrize("module, why", [
    (_ResizedElsewhere(), "uses torch.nn.functional.interpolate: resizing to the size of a tensor of another height and width"),
    (_ScaleFactor(), "uses torch.nn.functional.interpolate"),
    (_Bicubic(), "uses torch.nn.functional.interpolate"),
])
def test_an_interpolate_resize_cannot_write_is_refused_by_name(module: nn.Module, why: str) -> None:
    with pytest.raises(ImportRefused) as caught:
        import_module(module.eval(), (3, 16, 16))
    assert any(why in line for line in caught.value.lines), caught.value.lines
