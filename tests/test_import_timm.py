"""`archspec import` on timm models, one per family the importer reads (the full run is
benchmarks/import_coverage.py). Oracle: the original timm module, built with pretrained=False; the
imported text is checked, built, given the original's weights and must give its outputs in float64 (eval)."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")

import archspec
from archspec.importers.api import ImportRefused, import_module, imported_weights
from archspec.language.pipeline import CheckOptions, checked

from test_compile import one_thread  # noqa: E402,F401 (a fixture)

# model -> (input size, lines the text must have: the construct that model needs)
MODELS = {
    # TensorFlow's SAME padding (Conv2dSame) before each strided conv, BatchNormAct2d, squeeze-and-excitation
    "tf_efficientnet_b0": (32, ["pad 0 1 0 1 | conv 32 k3 s2 nobias | bn eps=0.001 | silu"]),
    # timm's LayerNorm2d, and ConvNeXt's [C] gamma reshaped to [1, C, 1, 1] as a layer scale
    "convnext_atto": (32, ["layernorm eps=1e-6", "layerscale 1e-6"]),
    # CSPNet: x.split(C // 2, dim=1), one half through the blocks, concatenated back in order
    "cs3darknet_focus_s": (32, ["split { dark_block(n) } {}"]),
    # RegNetY: SE gated by timm's Sigmoid class, whose name must not become a block named `sigmoid`
    "regnety_002": (32, ["mul {} { gap | conv c k1 | relu | conv c2 k1 | sigmoid }"]),
    # ECA: x.mean((2, 3)) viewed as [B, 1, C], nn.Conv1d across the channels, the gate viewed back and expanded
    "eca_resnext26ts": (32, ["block eca_module(k) { mul {} { gap | chanconv k{k} | sigmoid } }", "eca_module(n4)",
                            "bottleneck_block(512, 1, 16, 5)"]),
    # GhostNetV2: the DFC attention gate, computed at half the size and resized by nearest neighbour to the ghost output's
    "ghostnetv2_100": (64, ["resize nearest {\n        avgpool 2 | conv {c*2} k1 nobias | bn"]),
    # ResNet-blur: timm's BlurPool2d after the stem's stride-1 max pool and in the strided blocks (anti-aliasing)
    "resnetblur18": (32, ["maxpool 3 s1 p1 | blurpool"]),
    # EfficientNet-blur: the zero-padded variant ('blurpc')
    "efficientnet_blur_b0": (32, ["blurpool zeros"]),
    # timm's GELUTanh (F.gelu(x, approximate='tanh')) on the channels-last tensor of ConvNeXt's MLP
    "test_convnext2": (32, ["pwlinear c | gelu tanh | pwlinear c2"]),
    # BiT: weight-standardised convs (StdConv2d, eps 1e-8), nn.ConstantPad2d before the stem's max pool
    "resnetv2_50x1_bit": (32, ["stdconv 64 k7 s2 p3 nobias eps=1e-8 | pad 1 1 1 1"]),
    # timm's GroupNorm (an nn.GroupNorm whose forward calls F.group_norm)
    "resnet50_gn": (32, ["groupnorm 32"]),
    # RepViT's distillation head in eval: the mean of two classifiers, `(x + x_dist) / 2`
    "repvit_m0_9": (32, ["add { bn | linear 1000 } { bn | linear 1000 }\nscale 0.5"]),
}


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.usefixtures("one_thread")  # small float64 tensors: a thread pool on busy cores is many times slower
def test_timm_model_round_trips_exactly(name: str) -> None:
    size, wanted = MODELS[name]
    torch.manual_seed(0)
    original = timm.create_model(name, pretrained=False).eval()
    result = import_module(original, (3, size, size), title=f"timm:{name}")
    report = checked(result.text, CheckOptions(classes=None))
    assert not report.errors, report.diagnostics
    for line in wanted:
        assert line in result.text, (line, result.text)
    net = archspec.build(result.text)
    net.load_state_dict(imported_weights(original, result))
    x = torch.randn(2, 3, size, size, dtype=torch.float64)
    with torch.no_grad():
        want, got = original.double()(x), net.double().eval()(x)
    assert ((got - want).abs().max() / want.abs().max()).item() <= 1e-9


def _relative_difference(original: torch.nn.Module, imported, size: int) -> float:
    """max |ours - theirs| / max |theirs| in float64 (eval), the import built and given the original's tensors."""
    net = archspec.build(imported.text)
    net.load_state_dict(imported_weights(original, imported))
    x = torch.randn(2, 3, size, size, dtype=torch.float64)
    with torch.no_grad():
        want, got = original.double()(x), net.double().eval()(x)
    return ((got - want).abs().max() / want.abs().max()).item()


@pytest.mark.parametrize(("name", "kwargs", "wanted"), [
    ("convnextv2_atto", {"conv_mlp": True}, "conv c k1 | gelu | grn"),  # atto's default: between 1x1 convs
    ("convnextv2_atto", {"conv_mlp": False}, "pwlinear c | gelu | grn | pwlinear c2"),  # channels last, between Linears
    ("convnext_atto_rms", {}, "conv c k7 p3 g{c} | rmsnorm"),  # timm's RmsNorm2d
])
def test_convnext_norms_round_trip_exactly(name: str, kwargs: dict, wanted: str) -> None:
    """ConvNeXt-V2's GlobalResponseNorm (channels first, and channels last inside the permuted block) as `grn`, timm's
    RmsNorm2d as `rmsnorm`, their tensors loaded. Every 1-D parameter is drawn first: at timm's initial values (GRN's
    zeros, the norms' ones) a norm's parameters would agree whatever was loaded where."""
    torch.manual_seed(0)
    original = timm.create_model(name, pretrained=False, **kwargs).eval()
    with torch.no_grad():
        for p in original.parameters():
            if p.dim() == 1:
                p.copy_(torch.randn_like(p) * 0.5)
    result = import_module(original, (3, 32, 32))
    assert wanted in result.text, result.text
    assert _relative_difference(original, result, 32) <= 1e-9
    assert archspec.check(result.text).params == sum(p.numel() for p in original.parameters())


def test_rms_norms_over_the_last_dimension_read_as_rmsnorm() -> None:
    """timm's RmsNorm between a permute and its inverse normalises the channels, on a vector its features."""
    from timm.layers.norm import RmsNorm

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.norm, self.fc = torch.nn.Conv2d(3, 8, 3), RmsNorm(8, eps=1e-5), torch.nn.Linear(8, 8)
            self.head_norm, self.head = RmsNorm(8), torch.nn.Linear(8, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.fc(self.norm(self.conv(x).permute(0, 2, 3, 1))).permute(0, 3, 1, 2)
            return self.head(self.head_norm(y.mean((2, 3))))

    torch.manual_seed(0)
    original = Net().eval()
    with torch.no_grad():
        for p in original.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    result = import_module(original, (3, 16, 16))
    assert "conv 8 k3 | rmsnorm eps=1e-5 | pwlinear 8 | gap | flatten\nrmsnorm | linear 10" in result.text, result.text
    assert _relative_difference(original, result, 16) <= 1e-9


def test_a_global_response_norm_on_the_wrong_layout_is_refused() -> None:
    """GlobalResponseNorm(channels_last=True) on [B, C, H, W] normalises over C and H: not the language's `grn`."""
    from timm.layers.grn import GlobalResponseNorm

    original = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3), GlobalResponseNorm(6, channels_last=True)).eval()
    with pytest.raises(ImportRefused) as caught:
        import_module(original, (3, 8, 8))
    assert caught.value.lines == ["`1` uses timm.layers.grn.GlobalResponseNorm: a GlobalResponseNorm with channels_last=True "
                                  "on a [B, C, H, W] tensor (the language's grn normalises over H and W)"]


def test_same_padding_follows_the_input_size() -> None:
    """TensorFlow's SAME pads by what the input size leaves over: 1 at the bottom/right on an even size, 1 on each side on an odd one."""
    original = timm.create_model("tf_efficientnet_b0", pretrained=False).eval()
    assert "pad 0 1 0 1 | conv 32 k3 s2" in import_module(original, (3, 32, 32)).text
    assert "pad 1 1 1 1 | conv 32 k3 s2" in import_module(original, (3, 33, 33)).text


def test_a_timm_construct_the_language_lacks_is_named() -> None:
    """Circular ECA (timm's CecaModule) pads the channels circularly before its Conv1d: refused, naming the module path,
    the torch call, and the Conv1d the language reads as `chanconv`."""
    from timm.layers import CecaModule

    original = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), CecaModule(16)).eval()
    with pytest.raises(ImportRefused) as caught:
        import_module(original, (3, 8, 8))
    assert "`1` uses torch.nn.functional.pad" in caught.value.lines, caught.value.lines
    assert any(line.startswith("`1.conv` uses torch.nn.Conv1d: a 1-D convolution; the language's `chanconv kK` is ECA's")
               for line in caught.value.lines), caught.value.lines


def test_a_blur_pool_padded_otherwise_is_refused_naming_its_mode() -> None:
    from timm.layers.blur_pool import BlurPool2d

    original = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), BlurPool2d(4, pad_mode="replicate")).eval()
    with pytest.raises(ImportRefused) as caught:
        import_module(original, (3, 16, 16))
    assert caught.value.lines == ["`1` uses timm.layers.blur_pool.BlurPool2d: BlurPool2d(pad_mode='replicate') (the language's "
                                  "blurpool pads by reflection or with zeros)"], caught.value.lines


def test_cli_imports_timm_builders_by_name(tmp_path) -> None:
    """`archspec import timm:NAME` (timm keeps its builders in timm.models), in a real subprocess."""
    import subprocess
    import sys

    out = tmp_path / "net.arch"
    done = subprocess.run([sys.executable, "-m", "archspec", "import", "timm:resnet10t", "--input", "3x32x32", "-o", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert checked(out.read_text(), CheckOptions(classes=None)).errors == []


# model, its kwargs, a line of its text: timm's selective kernel and split attention read as `select`
ATTENTION = [
    ("skresnet18", {}, "{ slice 0:32 | conv_norm_act(64, 1, 1) }"),
    # ResNeSt with radix 4 and cardinality 2: rSoftMax over the radix within each of the 2 cardinal groups
    ("resnest14d", {"cardinality": 2, "block_args": {"radix": 4, "avd": True, "avd_first": False}}, "select g2"),
]


@pytest.mark.parametrize("name, kwargs, line", ATTENTION, ids=[a[0] for a in ATTENTION])
def test_timm_attention_imports_as_select_exactly(name: str, kwargs: dict, line: str) -> None:
    """Every batch norm given other statistics and affine values than its init (timm zero-inits the last bn of each
    block, which would hide the attention), then the import's outputs against the original's in float64."""
    torch.manual_seed(0)
    original = timm.create_model(name, pretrained=False, **kwargs).eval()
    for m in original.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5), m.bias.data.uniform_(-0.5, 0.5)
            m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2)
    result = import_module(original, (3, 32, 32))
    assert line in result.text, result.text
    assert not checked(result.text, CheckOptions(classes=None)).errors
    net = archspec.build(result.text)
    net.load_state_dict(imported_weights(original, result))
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        want, got = original.double()(x), net.double().eval()(x)
    assert ((got - want).abs().max() / want.abs().max()).item() <= 1e-9
