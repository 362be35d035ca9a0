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


def test_same_padding_follows_the_input_size() -> None:
    """TensorFlow's SAME pads by what the input size leaves over: 1 at the bottom/right on an even size, 1 on each side on an odd one."""
    original = timm.create_model("tf_efficientnet_b0", pretrained=False).eval()
    assert "pad 0 1 0 1 | conv 32 k3 s2" in import_module(original, (3, 32, 32)).text
    assert "pad 1 1 1 1 | conv 32 k3 s2" in import_module(original, (3, 33, 33)).text


def test_a_timm_construct_the_language_lacks_is_named() -> None:
    """ECA's 1-D conv across the channels: refused, naming the module path and the torch call."""
    original = timm.create_model("ecaresnet26t", pretrained=False).eval()
    with pytest.raises(ImportRefused) as caught:
        import_module(original, (3, 32, 32))
    assert any(line.startswith("`layer1.0.se.conv` uses torch.nn.Conv1d") for line in caught.value.lines), caught.value.lines


def test_cli_imports_timm_builders_by_name(tmp_path) -> None:
    """`archspec import timm:NAME` (timm keeps its builders in timm.models), in a real subprocess."""
    import subprocess
    import sys

    out = tmp_path / "net.arch"
    done = subprocess.run([sys.executable, "-m", "archspec", "import", "timm:resnet10t", "--input", "3x32x32", "-o", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert checked(out.read_text(), CheckOptions(classes=None)).errors == []
