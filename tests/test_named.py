"""Named tensors (`as NAME`, `from NAME`): a branch that starts from an earlier stage, against a hand-written torch
module with the same skips (shapes, params, MACs and outputs in float64), codegen, scoping in blocks, the receptive
field and symbolic sizes at the named point."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import archspec  # noqa: E402
from archspec.pytorch.codegen import generate  # noqa: E402

# DLA-style aggregation: the last stage concatenated with pooled copies of two earlier ones, and a block whose
# own names (`bottom`, `left`) are kept apart in each of its two calls.
TEXT = """\
block tree(c) {
  as bottom
  conv c k3 p1 nobias | bn | relu | as left
  conv c k3 p1 nobias | bn | relu
  concat {} { from left } { from bottom }
  conv c k1 nobias | bn | relu
}

input 3x32x32
conv 16 k3 p1 nobias | bn | relu | as stem
conv 32 k3 s2 p1 nobias | bn | relu | as level1
tree(32) * 2
conv 64 k3 s2 p1 nobias | bn | relu
concat {} { from level1 | maxpool 2 } { from stem | maxpool 4 }
add { conv 64 k1 } { from level1 | conv 64 k3 s2 p1 }
gap | flatten | linear 10
"""


def cbr(cin: int, cout: int, k: int, s: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride=s, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class Tree(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.left, self.right, self.root = cbr(c, c, 3), cbr(c, c, 3), cbr(3 * c, c, 1)

    def forward(self, bottom: torch.Tensor) -> torch.Tensor:
        left = self.left(bottom)
        return self.root(torch.cat([self.right(left), left, bottom], dim=1))


class Hand(nn.Module):
    """The same network as TEXT, written as a person writes skips in torch: variables."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.level1 = cbr(3, 16, 3), cbr(16, 32, 3, 2)
        self.trees = nn.Sequential(Tree(32), Tree(32))
        self.level2 = cbr(32, 64, 3, 2)
        self.mix, self.down = nn.Conv2d(112, 64, 1), nn.Conv2d(32, 64, 3, stride=2, padding=1)
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stem = self.stem(x)
        level1 = self.level1(stem)
        y = self.level2(self.trees(level1))
        y = torch.cat([y, nn.functional.max_pool2d(level1, 2), nn.functional.max_pool2d(stem, 4)], dim=1)
        y = self.mix(y) + self.down(level1)
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(y, 1), 1))


def _copy_weights(net: nn.Module, hand: nn.Module) -> None:
    """The hand-written module's tensors, in its order, into the built one (both list them in execution order)."""
    mine, theirs = net.state_dict(), hand.state_dict()
    assert [tuple(v.shape) for v in mine.values()] == [tuple(v.shape) for v in theirs.values()]
    net.load_state_dict(dict(zip(mine, theirs.values())))


def test_skips_from_earlier_stages_equal_a_hand_written_torch_module():
    report = archspec.check(TEXT)
    assert report.ok, report.diagnostics
    hand = Hand().double().eval()
    for m in hand.modules():  # non-trivial statistics, so that a wrong skip cannot hide behind identity batchnorms
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with FlopCounterMode(display=False) as flops, torch.no_grad():
        expected = hand(x)
    assert report.params == sum(p.numel() for p in hand.parameters())
    assert report.macs == flops.get_total_flops() // (2 * x.shape[0])
    assert report.output_shape == tuple(expected.shape[1:])
    net = archspec.build(TEXT).double().eval()
    _copy_weights(net, hand)
    with torch.no_grad():
        got = net(x)
    assert torch.allclose(got, expected, rtol=1e-12, atol=1e-12)
    # The generated source holds the same modules and skips.
    namespace: dict = {}
    exec(compile(generate(TEXT), "<generated>", "exec"), namespace)
    generated = namespace["Net"]().double().eval()
    generated.load_state_dict(net.state_dict())
    with torch.no_grad():
        assert torch.allclose(generated(x), expected, rtol=1e-12, atol=1e-12)


def test_every_row_has_the_shape_torch_gives_there():
    """Each checker row against the built module at its path (hooks), `from` rows included."""
    report = archspec.check(TEXT)
    net = archspec.build(TEXT).eval()
    modules = dict(net.named_modules())
    seen: dict[str, tuple] = {}
    for row in report.rows[1:]:
        modules[row.path].register_forward_hook(lambda m, i, o, path=row.path: seen.__setitem__(path, tuple(o.shape[1:])))
    net(torch.randn(1, 3, 32, 32))
    assert {r.path: r.out_shape for r in report.rows[1:]} == seen
    assert [r.layer.key for r in report.rows if r.op in ("as", "from")] == [
        "stem", "level1", "tree1.bottom", "tree1.left", "tree1.left", "tree1.bottom", "tree2.bottom", "tree2.left",
        "tree2.left", "tree2.bottom", "level1", "stem", "level1"]


def test_the_kept_tensors_are_released_after_each_forward():
    net = archspec.build(TEXT)
    net(torch.randn(1, 3, 32, 32))
    keep = next(m for m in net.modules() if type(m).__name__ == "Keep")
    assert keep.tensors == {}


def test_from_carries_the_receptive_field_and_symbolic_size_of_its_named_point():
    text = "input 3xHxW\nconv 8 k3 p1 | as stem\nconv 8 k3 s2 p1\nconcat {} { from stem | maxpool 2 }\n"
    from archspec.language.pipeline import checked

    report = checked(text)
    assert report.ok, report.diagnostics
    rows = {r.path: r for r in report.rows}
    assert rows["concat1.branch2.from1"].rf == rows["as1"].rf == ((3, 3), (1, 1))
    assert rows["concat1.branch2.from1"].symbolic_shape == rows["as1"].symbolic_shape
    # Even sizes only: the stride-2 conv's and the pool's outputs must agree.
    assert report.symbolic.axes[0].accepted_rule() == "H % 2 == 0"


def test_check_reports_every_misuse_of_a_name():
    text = "input 3x8x8\nas a\nas a\nconcat {} { from b }\nconcat {} { from c }\nas c\n"
    codes = [d.code for d in archspec.check(text).errors]
    assert codes == ["E132", "E130", "E131"]


def test_graph_draws_an_edge_from_the_named_point_into_the_branch():
    from archspec.views.graph import to_dot

    dot = to_dot("input 3x8x8\nconv 4 k3 p1 | as stem\nconv 4 k3 p1\nconcat { conv 4 k1 } { from stem | bn } { from stem }\n"
                 "conv 4 k1\n", classes=None)
    nodes = dict(line.strip().split(" [label=", 1) for line in dot.splitlines() if " [label=" in line and "->" not in line)
    ids = {label.split("\\n")[0].strip('"'): nid for nid, label in nodes.items()}
    assert f'{ids["conv1: conv 4 k3 p1"]} -> {ids["bn1: bn"]} [label="from stem"' in dot
    assert f'{ids["conv1: conv 4 k3 p1"]} -> {ids["concat"]} [label="from stem"' in dot  # a branch that only reads
    assert "as stem" not in dot and "from1" not in dot  # no box of their own


def test_fmt_keeps_names_and_slices(tmp_path):
    from archspec.views.fmt import format_text

    text = "input 8x4x4\nconv 8 k1|as   stem\nconcat{}{from stem|slice 0:{2 + 2}}\n"
    out = format_text(text)
    assert "as stem" in out and "from stem | slice 0:{2+2}" in out
    assert format_text(out) == out
    assert archspec.check(out, classes=None).output_shape == (12, 4, 4)


def test_onnx_export_of_a_network_with_named_tensors_matches_torch(tmp_path):
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    from archspec.training.export import export_onnx, source_from_arch

    arch = tmp_path / "dla.arch"
    arch.write_text(TEXT)
    src = source_from_arch(arch)
    export_onnx(src, tmp_path / "m.onnx")
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = src.model(x).numpy()
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    assert abs(got - expected).max() < 1e-4


def test_explain_says_which_branch_starts_from_a_named_tensor():
    from archspec.views.explain import explain

    text = explain("input 3x8x8\nconv 4 k3 p1 | as stem\nconv 4 k3 p1\nconcat {} { from stem | maxpool 1 }\n", classes=None)
    assert "each branch gets the same input [B, 4, 8, 8] (branch 2 starts from a named tensor instead)" in text
    assert "the tensor named `stem`, in place of the running [B, 4, 8, 8]" in text


def test_slice_of_flattened_features_on_a_symbolic_input_is_checked_size_by_size():
    """`flatten | slice A:B` on `input CxHxW`: the feature count is C*h*w, so the range is checked at each size, and
    the sizes accepted are those where torch's x[:, A:B] has B - A features (a regression: it raised a TypeError)."""
    text = "input 1xHxW\nconv 2 k3 | flatten | slice 0:100 | linear 1\n"
    report = archspec.check(text)
    assert not report.errors
    sizes = {n for n in range(3, 14) if not archspec.check(text.replace("HxW", f"{n}x{n}")).errors}
    for n in range(3, 14):
        with torch.no_grad():
            features = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten())(torch.zeros(1, 1, n, n))[:, 0:100]
        assert (features.shape[1] == 100) == (n in sizes)
