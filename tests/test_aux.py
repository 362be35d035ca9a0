"""`aux WEIGHT { head }`: auxiliary heads against torchvision's structure, written by hand in torch, and the
runner's loss against the weighted sum computed from the model's own outputs."""
from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torchvision.models.googlenet import GoogLeNetOutputs  # noqa: E402
from torchvision.models.inception import InceptionOutputs  # noqa: E402

import archspec  # noqa: E402
from archspec.pytorch.codegen import generate  # noqa: E402
from archspec.training import loop  # noqa: E402
from archspec.training.data import Dataset  # noqa: E402
from archspec.training.recipes import make_config  # noqa: E402

# Two heads, as GoogLeNet has (aux1 after inception4a, aux2 after inception4d), with different weights.
TWO_HEADS = """input 3x16x16
conv 8 k3 p1 | relu
aux 0.3 { avgpool 2 | conv 4 k1 | relu | gap | flatten | linear 5 }
conv 8 k3 p1 | relu
aux 0.5 { gap | flatten | linear 5 }
gap | flatten | linear 5
"""
ONE_HEAD = "input 3x16x16\nconv 8 k3 p1 | relu\naux 0.4 { gap | flatten | linear 5 }\ngap | flatten | linear 5\n"


class HandWritten(nn.Module):
    """TWO_HEADS (or ONE_HEAD) as torchvision writes GoogLeNet's forward: heads called in training only."""

    def __init__(self, two: bool) -> None:
        super().__init__()
        self.two = two
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        if two:
            self.aux1 = nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(8, 4, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                      nn.Linear(4, 5))
            self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.aux2 = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = self.conv1(x).relu()
        aux1 = self.aux1(x) if self.two and self.training else None
        if self.two:
            x = self.conv2(x).relu()
        aux2 = self.aux2(x) if self.training else None
        logits = self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))
        if not self.training:
            return logits
        return GoogLeNetOutputs(logits, aux2, aux1) if self.two else InceptionOutputs(logits, aux2)


def _pair(text: str, two: bool) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    net, hand = archspec.build(text, classes=5), HandWritten(two)
    built, written = list(net.parameters()), list(hand.parameters())
    assert [p.shape for p in built] == [p.shape for p in written]  # same layers in the same order
    with torch.no_grad():
        for a, b in zip(built, written):
            b.copy_(a)
    return net, hand


@pytest.mark.parametrize("text, two, fields", [(TWO_HEADS, True, GoogLeNetOutputs._fields),
                                                (ONE_HEAD, False, InceptionOutputs._fields)])
def test_training_output_has_torchvisions_structure_and_values(text, two, fields):
    net, hand = _pair(text, two)
    x = torch.randn(3, 3, 16, 16)
    got, want = net.train()(x), hand.train()(x)
    assert isinstance(got, tuple) and got._fields == fields == want._fields
    for a, b in zip(got, want):
        assert torch.allclose(a, b, atol=1e-6)
    # in eval: the main output only, a tensor, and the heads do not run
    got, want = net.eval()(x), hand.eval()(x)
    assert isinstance(got, torch.Tensor) and torch.allclose(got, want, atol=1e-6)
    # the checker counts the heads' parameters, as torchvision's models hold them
    assert archspec.check(text, classes=5).params == sum(p.numel() for p in hand.parameters() if p.requires_grad)


def test_generated_source_returns_the_same_outputs():
    net, _ = _pair(TWO_HEADS, True)
    namespace: dict = {}
    exec(compile(generate(TWO_HEADS), "<generated>", "exec"), namespace)
    gen = namespace["Net"]()
    gen.load_state_dict(net.state_dict())
    x = torch.randn(2, 3, 16, 16)
    got, want = gen.train()(x), net.train()(x)
    assert got._fields == want._fields and all(torch.equal(a, b) for a, b in zip(got, want))
    assert torch.equal(gen.eval()(x), net.eval()(x))


def test_one_training_step_adds_the_weighted_aux_losses(tmp_path, monkeypatch):
    """fit's loss for one step equals CE(logits) + 0.5 CE(aux2) + 0.3 CE(aux1), computed here from the outputs."""
    g = torch.Generator().manual_seed(0)
    data = Dataset(torch.randint(0, 256, (32, 3, 16, 16), dtype=torch.uint8, generator=g), torch.arange(32) % 5,
                   torch.randint(0, 256, (10, 3, 16, 16), dtype=torch.uint8, generator=g), torch.arange(10) % 5,
                   [str(i) for i in range(5)], "synthetic")
    seen = []
    real = loop.training_loss

    def spy(run, out, y):
        loss, logits = real(run, out, y)
        seen.append((out, y, loss.detach()))
        return loss, logits

    monkeypatch.setattr(loop, "training_loss", spy)
    cfg = make_config("default", epochs=1, batch_size=32, label_smoothing=0.0, precision="fp32")
    model = loop.build_model(TWO_HEADS, "two.arch", cfg.seed)
    loop.fit(model, data, cfg, tmp_path, arch_source=TWO_HEADS, arch_path="two.arch", log=lambda _: None, quiet=True,
             threads=1)
    (out, y, loss), = seen
    assert out._fields == ("logits", "aux_logits2", "aux_logits1")
    ce = nn.functional.cross_entropy
    by_hand = ce(out.logits, y) + 0.5 * ce(out.aux_logits2, y) + 0.3 * ce(out.aux_logits1, y)
    assert torch.allclose(loss, by_hand.detach(), rtol=1e-6)
    assert not torch.allclose(loss, ce(out.logits, y).detach())  # the heads' losses are really in it
    metrics = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert metrics["train_loss"] == pytest.approx(by_hand.item(), rel=1e-5)


def test_eval_onnx_graph_leaves_the_heads_out():
    """The exported eval model is the main network: no head weight among the ONNX initializers."""
    onnx = pytest.importorskip("onnx")
    import io

    net = archspec.build(TWO_HEADS, classes=5).eval()
    buffer = io.BytesIO()
    torch.onnx.export(net, torch.randn(1, 3, 16, 16), buffer, dynamo=False)
    names = {i.name for i in onnx.load_from_string(buffer.getvalue()).graph.initializer}
    assert names == {"conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc1.weight", "fc1.bias"}
