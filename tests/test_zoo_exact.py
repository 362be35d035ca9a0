"""examples/zoo/ against torchvision itself: a file per family built, given the builder's weights as
`archspec import --weights` writes them (so the file's layers must be the import's, in order), and
compared with it in eval, in float64 (relative difference <= 1e-9); the files written or edited by hand
(GoogLeNet's auxiliary heads, a segmentation network) given them by `archspec.load_weights`.
The whole zoo, at two sizes each, is benchmarks/zoo_exact.py."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from conftest import EXAMPLES

import archspec
from archspec.importers.api import import_module, imported_weights
from archspec.language.pipeline import CheckOptions, checked
from archspec.pytorch.build import build_checked

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


def _relative_difference(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got - want).abs().max() / want.abs().max()).item()


def test_googlenet_with_its_auxiliary_heads_is_torchvisions_in_eval_and_in_training() -> None:
    # The heads run in training only, so eval compares the main network and training compares all three outputs.
    torch.manual_seed(0)
    original = torchvision.models.googlenet(weights=None, init_weights=True)  # aux_logits=True, transform_input=False
    net = archspec.build(EXAMPLES / "zoo" / "googlenet.arch")
    assert archspec.load_weights(net, original) == []
    assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for p in original.parameters())
    original, net = original.double().eval(), net.double().eval()
    for size in (SIZE, 96):
        x = torch.randn(2, 3, size, size, dtype=torch.float64)
        with torch.no_grad():
            assert _relative_difference(net(x), original(x)) <= 1e-9
    original.train()
    net.train()
    x = torch.randn(2, 3, SIZE, SIZE, dtype=torch.float64)
    outputs = {}
    with torch.no_grad():  # the same seed before each: dropout (0.2 on the main path, 0.7 in the heads) draws the same masks
        for seed, side, module in ((5, "theirs", original), (5, "ours", net), (6, "ours again", net)):
            torch.manual_seed(seed)
            outputs[side] = module(x)
    assert outputs["ours"]._fields == outputs["theirs"]._fields == ("logits", "aux_logits2", "aux_logits1")
    for ours, theirs, other_seed in zip(outputs["ours"], outputs["theirs"], outputs["ours again"]):
        assert _relative_difference(ours, theirs) <= 1e-9
        assert _relative_difference(other_seed, theirs) > 1e-3  # dropout is on: the equality above is not trivial


def test_lraspp_segmentation_file_is_torchvisions_at_every_size() -> None:
    # The cheapest of examples/zoo/segmentation/ (the others are in benchmarks/zoo_exact.py). `input 3xHxW`: built at
    # one size, it runs at others, non-square and not a multiple of its stride, and returns torchvision's "out".
    torch.manual_seed(0)
    original = torchvision.models.segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None)
    with torch.no_grad():  # running statistics that are not 0 and 1, so the buffers matter too
        for m in original.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    path = EXAMPLES / "zoo" / "segmentation" / "lraspp_mobilenet_v3_large.arch"
    net = build_checked(checked(path, CheckOptions(classes=None, input_size=(3, 32, 32))))
    assert archspec.load_weights(net, original) == []
    assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for p in original.parameters())
    original, net = original.double().eval(), net.double().eval()
    for height, width in ((32, 32), (45, 53)):
        x = torch.randn(2, 3, height, width, dtype=torch.float64)
        with torch.no_grad():
            want, got = original(x)["out"], net(x)
        assert got.shape == want.shape == (2, 21, height, width)
        assert _relative_difference(got, want) <= 1e-9
