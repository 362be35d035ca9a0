"""examples/zoo/ against torchvision itself: a file per family built, given the builder's weights as
`archspec import --weights` writes them (so the file's layers must be the import's, in order), and
compared with it in eval, in float64 (relative difference <= 1e-9).
The whole zoo, at two sizes each, is benchmarks/zoo_exact.py."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from conftest import EXAMPLES

import archspec
from archspec.importers.api import import_module, imported_weights

SIZE = 64
# One per family the zoo's importer needed something new for: SE with hardsigmoid, split and shuffle,
# SE in a residual with grouped convs, and the classic residual network.
FAMILIES = ["mobilenet_v3_small", "shufflenet_v2_x0_5", "regnet_y_400mf", "resnet18"]


@pytest.mark.parametrize("name", FAMILIES)
def test_zoo_file_is_torchvisions_network(name: str) -> None:
    torch.manual_seed(0)
    original = getattr(torchvision.models, name)(weights=None).eval()
    net = archspec.build(EXAMPLES / "zoo" / f"{name}.arch")
    net.load_state_dict(imported_weights(original, import_module(original, (3, SIZE, SIZE))))
    original, net = original.double(), net.double().eval()
    x = torch.randn(2, 3, SIZE, SIZE, dtype=torch.float64)
    with torch.no_grad():
        want, got = original(x), net(x)
    assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for p in original.parameters())
    assert ((got - want).abs().max() / want.abs().max()).item() <= 1e-9
