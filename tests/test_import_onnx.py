"""`archspec import model.onnx`: ONNX graphs read back as .arch text, checked against onnxruntime.

Oracle: onnxruntime running the original .onnx file. The imported text must check clean, and the
network built from it with the weights `--weights` wrote must give onnxruntime's outputs (float32:
ONNX graphs are float32, so the bound is a relative difference of 1e-5, not the torch importer's 1e-9).
An `archspec export`ed .arch reads back to the same layers and the same parameter count."""
from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

import numpy as np
from onnx import TensorProto, helper, numpy_helper

import archspec
from archspec.language.pipeline import CheckOptions, checked
from archspec.pytorch.weights import torch_kind
from archspec.training.export import export_onnx, source_from_arch

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden" / "cli"
SIZE = 64
TOLERANCE = 1e-5  # float32


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "archspec", *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False)


def _onnxruntime(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def _imported(path: Path, tmp: Path) -> tuple[str, torch.nn.Module]:
    """`archspec import path --weights w.pt -o m.arch`, then `archspec check m.arch`: the text and the built network."""
    run = _cli("import", str(path), "--weights", "w.pt", "-o", "m.arch", cwd=tmp)
    assert run.returncode == 0, run.stderr
    check = _cli("check", "m.arch", cwd=tmp)
    assert check.returncode == 0 and " 0 errors" in check.stdout, check.stdout + check.stderr  # warnings are the model's own (W201 at 64)
    text = (tmp / "m.arch").read_text()
    net = archspec.build(text).eval()
    net.load_state_dict(torch.load(tmp / "w.pt"))
    return text, net


def _relative(got: torch.Tensor, want: np.ndarray) -> float:
    return float(np.abs(got.detach().numpy() - want).max() / np.abs(want).max())


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small", "squeezenet1_1", "shufflenet_v2_x0_5", "convnext_tiny"])
def test_torchvision_onnx_imports_to_onnxruntime_outputs(name: str, tmp_path: Path) -> None:
    """torch.onnx.export with its defaults (batch norms fused into the convs) -> import -> outputs as onnxruntime's."""
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None, num_classes=10).eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(1, 3, SIZE, SIZE),), None, dynamo=True, verbose=False).save(str(tmp_path / "m.onnx"))
    text, net = _imported(tmp_path / "m.onnx", tmp_path)
    x = torch.randn(1, 3, SIZE, SIZE)
    assert _relative(net(x), _onnxruntime(tmp_path / "m.onnx", x.numpy())) <= TOLERANCE
    zoo = (ROOT / "examples" / "zoo" / f"{name}.arch").read_text()
    assert len(text.splitlines()) <= 2 * len(zoo.splitlines())


def _layers(net: torch.nn.Module) -> list[tuple[str | None, list[tuple[int, ...]]]]:
    return [(torch_kind(m), [tuple(t.shape) for t in m.state_dict().values()])
            for m in net.modules() if not list(m.children()) and m.state_dict()]


@pytest.mark.parametrize("example,blocks", [("lenet.arch", []), ("resnet18_cifar.arch", ["basic", "stage"]),
                                            ("mobilenet_v2.arch", ["inverted"]), ("modern_blocks.arch", ["cnblock"])])
def test_exported_arch_reads_back_to_the_same_network(example: str, blocks: list[str], tmp_path: Path) -> None:
    """`archspec export` keeps the layers (no batch-norm fusion): the same layers, parameters and outputs come
    back, and the blocks under their names (a block call is a module named after it)."""
    src = source_from_arch(ROOT / "examples" / example, seed=0)
    export_onnx(src, tmp_path / "m.onnx")
    text, net = _imported(tmp_path / "m.onnx", tmp_path)
    assert all(f"\nblock {name}(" in text for name in blocks), text
    original = src.model.eval()
    assert _layers(net) == _layers(original)
    options = CheckOptions(classes=None)
    assert checked(text, options).params == checked((ROOT / "examples" / example).read_text(), options).params
    x = torch.randn(2, *src.input_shape)
    assert (net(x)[0] - net(x)[1]).abs().max() > 0  # the outputs depend on the input: the comparison says something
    assert _relative(net(x), _onnxruntime(tmp_path / "m.onnx", x.numpy())) <= TOLERANCE
    assert _relative(net(x), original(x).detach().numpy()) <= TOLERANCE


def _graph_with(tmp: Path, op: Any, opsets: list | None = None) -> Path:
    """input 3x8x8 -> Conv 4 k3 p1 -> `op` -> Conv 4 k1 -> Relu, saved as g.onnx."""
    w1 = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w1")
    w2 = numpy_helper.from_array(np.ones((4, 4, 1, 1), np.float32), "w2")
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], name="stem/Conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]), op,
             helper.make_node("Conv", ["b", "w2"], ["c"], name="head/Conv", kernel_shape=[1, 1]),
             helper.make_node("Relu", ["c"], ["y"], name="head/Relu")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", 4, 8, 8])], [w1, w2])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)] + (opsets or []))
    onnx.save(model, str(tmp / "g.onnx"))
    return tmp / "g.onnx"


def test_unsupported_operator_is_refused_by_node_and_nothing_written(tmp_path: Path) -> None:
    path = _graph_with(tmp_path, helper.make_node("Elu", ["a"], ["b"], name="body/Elu"))
    run = _cli("import", str(path), "-o", "m.arch", "--weights", "w.pt", cwd=tmp_path)
    assert run.returncode == 1 and not (tmp_path / "m.arch").exists() and not (tmp_path / "w.pt").exists()
    assert run.stderr == (GOLDEN / "import_onnx_refused.txt").read_text()


def test_partial_writes_the_part_before_the_unsupported_operator(tmp_path: Path) -> None:
    path = _graph_with(tmp_path, helper.make_node("Elu", ["a"], ["b"], name="body/Elu"))
    run = _cli("import", str(path), "--partial", "-o", "m.arch", cwd=tmp_path)
    assert run.returncode == 1
    assert run.stderr == "warning: stopped at `body/Elu`: the text holds the layers before it\n"
    text = (tmp_path / "m.arch").read_text()
    assert text.endswith("conv 4 k3 p1 nobias\n# stopped here: `body/Elu` uses ONNX Elu\n")
    assert not checked(text, CheckOptions(classes=None)).errors


def test_custom_operator_is_refused_in_one_line(tmp_path: Path) -> None:
    op = helper.make_node("Frobnicate", ["a"], ["b"], name="body/Frobnicate", domain="com.example")
    path = _graph_with(tmp_path, op, [helper.make_opsetid("com.example", 1)])
    run = _cli("import", str(path), cwd=tmp_path)
    assert run.returncode == 1 and not run.stdout
    assert run.stderr == (GOLDEN / "import_onnx_custom.txt").read_text()


@pytest.mark.parametrize("case", ["not_onnx", "truncated", "missing"])
def test_bad_files_get_one_clear_line(case: str, tmp_path: Path) -> None:
    if case == "not_onnx":
        (tmp_path / "m.onnx").write_text("input 3x32x32\nconv 6 k5\n")
    elif case == "truncated":
        export_onnx(source_from_arch(ROOT / "examples" / "lenet.arch"), tmp_path / "full.onnx")
        data = (tmp_path / "full.onnx").read_bytes()
        (tmp_path / "m.onnx").write_bytes(data[: len(data) // 2])
    run = _cli("import", "m.onnx", "--weights", "w.pt", cwd=tmp_path)
    assert run.returncode != 0 and "Traceback" not in run.stderr and not (tmp_path / "w.pt").exists()
    assert run.stderr == (GOLDEN / f"import_onnx_{case}.txt").read_text()


def test_input_size_comes_from_the_file_or_from_input(tmp_path: Path) -> None:
    path = _graph_with(tmp_path, helper.make_node("Relu", ["a"], ["b"], name="body/Relu"))
    run = _cli("import", str(path), cwd=tmp_path)
    assert run.returncode == 0 and "input 3x8x8" in run.stdout, run.stderr
    wrong = _cli("import", str(path), "--input", "3x16x16", cwd=tmp_path)
    assert wrong.returncode != 0
    assert wrong.stderr.splitlines()[0] == "error: --input 3x16x16 does not fit the model's input 3x8x8"


def test_without_onnx_installed_one_line_says_how_to_install(tmp_path: Path) -> None:
    code = "import sys; sys.modules['onnx'] = None\nfrom archspec.cli import main\nsys.exit(main(['import', 'm.onnx']))"
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode != 0 and run.stderr == (
        "error: `archspec import MODEL.onnx` needs onnx, which is not installed\n"
        "help: install the extras: pip install 'archspec-cnn[torch,onnx]'\n")


def _operators_graph(path: Path) -> None:
    """One graph through the rarer operators: Pad+Conv, Clip, x*HardSigmoid(x), ConvTranspose, Resize,
    Split and Concat, MaxPool, AveragePool, a [C,1,1] scale, GlobalAveragePool, Flatten, Gemm, MatMul+Add."""
    rng = np.random.default_rng(0)

    def const(name: str, *shape: int) -> Any:
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)
    n = helper.make_node
    nodes = [
        n("Pad", ["x", "pads"], ["p"], name="stem/Pad"),
        n("Conv", ["p", "w1", "b1"], ["c"], name="stem/Conv", kernel_shape=[3, 3]),
        n("Clip", ["c", "lo", "hi"], ["r6"], name="stem/Clip"),
        n("HardSigmoid", ["r6"], ["hs"], name="act/HardSigmoid", alpha=1 / 6, beta=0.5),
        n("Mul", ["r6", "hs"], ["hw"], name="act/Mul"),
        n("ConvTranspose", ["hw", "w2"], ["up"], name="up/ConvTranspose", kernel_shape=[2, 2], strides=[2, 2]),
        n("Resize", ["up", "", "scales"], ["big"], name="up/Resize", mode="nearest",
          coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
        n("Split", ["big", "halves"], ["h0", "h1"], name="mix/Split", axis=1),
        n("Relu", ["h0"], ["a0"], name="mix/Relu"),
        n("Sigmoid", ["h1"], ["a1"], name="mix/Sigmoid"),
        n("Concat", ["a0", "a1"], ["cat"], name="mix/Concat", axis=1),
        n("MaxPool", ["cat"], ["mp"], name="pool/MaxPool", kernel_shape=[2, 2], strides=[2, 2]),
        n("AveragePool", ["mp"], ["ap"], name="pool/AveragePool", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        n("Mul", ["ap", "gamma"], ["ls"], name="scale/Mul"),
        n("GlobalAveragePool", ["ls"], ["g"], name="head/GlobalAveragePool"),
        n("Flatten", ["g"], ["f"], name="head/Flatten"),
        n("Gemm", ["f", "w3", "b3"], ["l1"], name="head/Gemm", transB=1),
        n("MatMul", ["l1", "w4"], ["l2"], name="head/MatMul"),
        n("Add", ["l2", "b4"], ["y"], name="head/Add"),
    ]
    inits = [numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads"),
             const("w1", 8, 3, 3, 3), const("b1", 8), numpy_helper.from_array(np.array(0, np.float32), "lo"),
             numpy_helper.from_array(np.array(6, np.float32), "hi"), const("w2", 8, 4, 2, 2),
             numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
             numpy_helper.from_array(np.array([2, 2], np.int64), "halves"), const("gamma", 4, 1, 1),
             const("w3", 6, 4), const("b3", 6), const("w4", 6, 3), const("b4", 3)]
    graph = helper.make_graph(nodes, "ops", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", 3])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_rarer_operators_read_as_their_layers_and_match_onnxruntime(tmp_path: Path) -> None:
    _operators_graph(tmp_path / "ops.onnx")
    text, net = _imported(tmp_path / "ops.onnx", tmp_path)
    body = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert body == ["input 3x8x8",
                    "conv 8 k3 p1 | relu6 | hardswish",
                    "convtranspose 4 k2 s2 nobias | upsample 2",
                    "split { relu } { sigmoid }",
                    "maxpool 2 | avgpool 3 s1 p1 noinclude | layerscale | gap | flatten",
                    "linear 6",
                    "linear 3"]
    x = torch.randn(2, 3, 8, 8)
    assert _relative(net(x), _onnxruntime(tmp_path / "ops.onnx", x.numpy())) <= TOLERANCE


def test_slices_into_equal_channel_parts_are_a_split(tmp_path: Path) -> None:
    """Two Slices cutting the channels in halves, each through its own layers, concatenated back in order."""
    n = helper.make_node
    ints = {name: numpy_helper.from_array(np.array([v], np.int64), name) for name, v in
            (("zero", 0), ("half", 2), ("end", 4), ("axis", 1))}
    nodes = [n("Slice", ["x", "zero", "half", "axis"], ["a"], name="cut/Slice"),
             n("Slice", ["x", "half", "end", "axis"], ["b"], name="cut/Slice_1"),
             n("Relu", ["a"], ["ra"], name="left/Relu"), n("Sigmoid", ["b"], ["sb"], name="right/Sigmoid"),
             n("Concat", ["ra", "sb"], ["y"], name="join/Concat", axis=1)]
    graph = helper.make_graph(nodes, "slices", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 4, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", 4, 4, 4])], list(ints.values()))
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "s.onnx"))
    text, net = _imported(tmp_path / "s.onnx", tmp_path)
    assert text.splitlines()[-1] == "split { relu } { sigmoid }"
    x = torch.randn(2, 4, 4, 4)
    assert _relative(net(x), _onnxruntime(tmp_path / "s.onnx", x.numpy())) <= TOLERANCE


def test_a_tensor_times_or_over_a_number_is_a_scale(tmp_path: Path) -> None:
    """torch.onnx's Mul and Div by a scalar constant (Inception-ResNet's residual scale, RepViT's mean of two heads)."""
    from test_import import _ConstantFactors

    torch.manual_seed(0)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(_ConstantFactors().eval(), (torch.randn(1, 3, 16, 16),), None, dynamo=True,
                          verbose=False).save(str(tmp_path / "m.onnx"))
    text, net = _imported(tmp_path / "m.onnx", tmp_path)
    body = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert body == ["input 3x16x16", "conv 4 k3 p1 | scale 2 | scale 0.5", "residual project { conv 4 k3 p1 | scale 0.17 }",
                    "scale {1/3} | scale 1.5 | scale 0.25 | gap | flatten", "add { linear 10 } { linear 10 }", "scale 0.5"]
    x = torch.randn(1, 3, 16, 16)  # torch.onnx's batch of 1
    assert _relative(net(x), _onnxruntime(tmp_path / "m.onnx", x.numpy())) <= TOLERANCE
