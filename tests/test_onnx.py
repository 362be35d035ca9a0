"""ONNX export checked against torch with onnxruntime, and predict on onnxruntime where torch cannot be imported."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxscript")

import archspec  # noqa: E402
from archspec.training.export import export_onnx, source_from_arch  # noqa: E402
from archspec.training.augment import normalize  # noqa: E402

from conftest import CIFAR, EXAMPLES, REPO  # noqa: E402
from test_packaging import BLOCK_TORCH  # noqa: E402

# Every example that defines a network (blocks.arch is a block library); the big ones take seconds each.
NETWORKS = sorted(p.stem for p in EXAMPLES.glob("*.arch") if archspec.check(p).input_shape is not None)
SLOW = {"resnet18", "mobilenet_v2", "vgg11_bn"}


@pytest.fixture(autouse=True)
def _one_thread_per_xdist_worker(monkeypatch):
    if "PYTEST_XDIST_WORKER" in os.environ:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        torch.set_num_threads(1)


def session(path: Path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _onnxruntime_and_torch(src, tmp_path: Path, seed: int) -> tuple:
    """`src` exported to ONNX and both run on one random batch of two: (onnxruntime's outputs, torch's)."""
    export_onnx(src, tmp_path / "m.onnx")
    x = torch.randn(2, *src.input_shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        expected = src.model(x).numpy()
    return session(tmp_path / "m.onnx").run(None, {"input": x.numpy()})[0], expected


def test_onnx_extra_has_no_torch_and_the_deploy_package_ships():
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    names = {re.split(r"[<>=!~\[ ]", req)[0] for req in config["project"]["optional-dependencies"]["onnx"]}
    assert {"onnxruntime", "numpy", "pillow"} <= names and not names & {"torch", "torchvision"}
    assert "archspec.deploy" in config["tool"]["setuptools"]["packages"]


def test_every_example_network_is_found():
    assert {"lenet", "resnet18", "mobilenet_v2", "fastcifar", "vgg11_bn", "uses_blocks"} <= set(NETWORKS)
    assert "blocks" not in NETWORKS


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in NETWORKS])
def test_example_network_matches_torch_on_onnxruntime(name, tmp_path):
    src = source_from_arch(EXAMPLES / f"{name}.arch")
    got, expected = _onnxruntime_and_torch(src, tmp_path, seed=7)
    assert got.shape == expected.shape == (2, len(src.classes))
    assert abs(got - expected).max() < 1e-4


@pytest.mark.parametrize("h, w", [(7, 9), (13, 5), (6, 8)])
def test_nearest_resize_exports_as_onnx_resize_and_picks_torchs_pixels(h, w, tmp_path):
    """`resize nearest` back up from a half-size gate and from a ceil-pooled third (odd sizes: the source index is
    floor(i * in / out)): onnxruntime's Resize gives torch's output, every pixel feeding the classifier."""
    path = tmp_path / "nearest.arch"
    path.write_text(f"input 3x{h}x{w}\nmul {{}} {{ resize nearest {{ avgpool 2 | conv 3 k1 | sigmoid }} }}\n"
                    "resize nearest { maxpool 3 s3 ceil | conv 4 k1 }\nflatten | linear 10\n")
    src = source_from_arch(path)
    got, expected = _onnxruntime_and_torch(src, tmp_path, seed=5)
    modes = {a.s for n in onnx.load(str(tmp_path / "m.onnx")).graph.node if n.op_type == "Resize" for a in n.attribute
             if a.name == "mode"}
    assert modes == {b"nearest"}
    assert got.shape == expected.shape and abs(got - expected).max() < 1e-5


def test_blurpool_exports_to_onnx_and_agrees_on_onnxruntime(tmp_path):
    """Reflect padding (ONNX Pad, mode reflect), zero padding, and the fixed binomial filters as constants."""
    path = tmp_path / "blur.arch"
    path.write_text("input 3x15x14\nconv 8 k3 p1 | blurpool | relu | blurpool k5 s1 zeros | blurpool k4\nflatten | linear 10\n")
    got, expected = _onnxruntime_and_torch(source_from_arch(path), tmp_path, seed=1)
    assert got.shape == expected.shape == (2, 10) and abs(got - expected).max() < 1e-5


def test_cli_export_from_arch_has_dynamic_batch_and_metadata(cli, tmp_path):
    out = tmp_path / "lenet.onnx"
    r = cli("export", str(EXAMPLES / "lenet.arch"), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert "weights are random (seed 0), the classes are 0..9 and the normalisation is mean 0, std 1" in r.stdout
    assert "onnxruntime vs torch on 2 random inputs: max abs difference" in r.stdout

    s = session(out)
    (inp,) = s.get_inputs()
    assert inp.name == "input" and inp.type == "tensor(float)" and isinstance(inp.shape[0], str) and inp.shape[1:] == [3, 32, 32]
    torch.manual_seed(0)  # the CLI's default --seed: the same random weights
    model = archspec.build(EXAMPLES / "lenet.arch").eval()
    for batch in (1, 5):
        x = torch.randn(batch, 3, 32, 32)
        with torch.no_grad():
            assert abs(s.run(None, {"input": x.numpy()})[0] - model(x).numpy()).max() < 1e-4

    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(meta["classes"]) == [str(i) for i in range(10)]
    assert json.loads(meta["mean"]) == [0.0] * 3 and json.loads(meta["std"]) == [1.0] * 3
    assert json.loads(meta["input_shape"]) == [3, 32, 32] and meta["preprocess"] == "none"
    assert meta["archspec_version"] == archspec.__version__
    assert meta["arch_source"] == (EXAMPLES / "lenet.arch").read_text()


AUX_NET = """input 3x32x32
conv 8 k3 p1 | relu
aux 0.3 { gap | flatten | linear 100 }
conv 16 k3 s2 p1 | relu | gap | flatten | linear 100
"""


def test_export_of_a_network_with_an_auxiliary_head_says_the_file_holds_the_eval_network(cli, tmp_path):
    (tmp_path / "aux.arch").write_text(AUX_NET)
    r = cli("export", str(tmp_path / "aux.arch"), "-o", str(tmp_path / "aux.onnx"))
    assert r.returncode == 0, r.stderr
    head = 8 * 100 + 100  # the head's linear
    assert (f"note: the network's 1 auxiliary head(s) ({head:,} parameters) run only in training and are not in the file"
            in r.stdout)
    stored = {t.name for t in onnx.load(str(tmp_path / "aux.onnx")).graph.initializer}
    params = dict(archspec.build(tmp_path / "aux.arch").named_parameters())
    in_head = {name for name in params if ".head." in name}
    assert sum(params[name].numel() for name in in_head) == head
    assert set(params) - in_head <= stored and not in_head & stored
    # 100 class names are not printed one by one
    assert "100 classes: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, ..., 99\n" in r.stdout


def test_embed_preprocess_takes_uint8_and_normalises_like_training(tmp_path):
    base = source_from_arch(EXAMPLES / "vgg_bn.arch")
    mean, std = [0.49, 0.48, 0.45], [0.25, 0.24, 0.26]  # not 0 and 1: the scaling must really happen
    src = replace(base, mean=mean, std=std)
    export_onnx(src, tmp_path / "u8.onnx", embed_preprocess=True)
    s = session(tmp_path / "u8.onnx")
    assert s.get_inputs()[0].type == "tensor(uint8)"
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():  # the oracle: the runner's own normalise, then the network
        expected = src.model(normalize(images, torch.tensor(mean), torch.tensor(std))).numpy()
    got = s.run(None, {s.get_inputs()[0].name: images.numpy()})[0]
    assert abs(got - expected).max() < 1e-4
    assert s.get_modelmeta().custom_metadata_map["preprocess"] == "embedded"


# ----------------------------------------------------------------------------- predict without torch


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A LeNet checkpoint trained for 2 epochs on 200 real CIFAR-10 JPEGs, exported plain and with --embed-preprocess."""
    from archspec.cli import main
    from test_data import real_subset

    root = tmp_path_factory.mktemp("onnx_run")
    data = real_subset(root / "data", 20, 2)
    code = main(["train", str(EXAMPLES / "lenet.arch"), "--data", str(data), "--data-dir", str(root / "cache"),
                 "--epochs", "2", "--batch-size", "32", "--lr", "0.05", "--device", "cpu", "--out", str(root / "run"), "--quiet",
                 "--val", "0"])  # all 200 images train: this checks ONNX against torch, not validation
    assert code == 0
    for name, extra in (("plain", []), ("embedded", ["--embed-preprocess"])):
        assert main(["export", str(root / "run" / "checkpoint.pt"), "-o", str(root / f"{name}.onnx"), *extra]) == 0
    return root


def held_out_images() -> list[Path]:
    """Three real test images per class (none of them used in training)."""
    if not CIFAR.is_dir():
        pytest.skip(f"real images not found at {CIFAR}")
    return [f for c in sorted((CIFAR / "test").iterdir()) for f in sorted(c.iterdir())[50:53]]


def run_without_torch(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK_TORCH + code], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def predictions(stdout: str) -> dict[str, list[tuple[str, float]]]:
    """`path: cls p%, cls p%, ...` lines -> {path: [(cls, p), ...]}."""
    out = {}
    for line in stdout.strip().splitlines():
        path, _, ranked = line.rpartition(": ")
        out[path] = [(c, float(p.rstrip("%"))) for c, p in (item.rsplit(" ", 1) for item in ranked.split(", "))]
    return out


@pytest.mark.slow
def test_onnx_predict_without_torch_agrees_with_the_checkpoint(trained, cli):
    """One test for both exports, so that under xdist a single worker trains the checkpoint."""
    images = [str(p) for p in held_out_images()]
    r = cli("predict", str(trained / "run" / "checkpoint.pt"), *images)
    assert r.returncode == 0, r.stderr
    with_torch = predictions(r.stdout)
    assert len({with_torch[p][0][0] for p in images}) > 1  # a trained model, not one answer for everything

    for variant in ("plain", "embedded"):
        cp = run_without_torch(
            "from archspec.cli import main\n"
            f"code = main(['predict', {str(trained / f'{variant}.onnx')!r}, *{images!r}])\n"
            "assert not [m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision')], 'torch was imported'\n"
            "sys.exit(code)\n")
        assert cp.returncode == 0, cp.stderr
        without = predictions(cp.stdout)
        assert list(without) == images and len(without[images[0]]) == 3
        assert [without[p][0][0] for p in images] == [with_torch[p][0][0] for p in images], variant  # the same top-1
        for p in images:  # and the same probabilities, to the printed 0.1%
            assert all(abs(a[1] - b[1]) <= 0.11 for a, b in zip(without[p], with_torch[p])), (variant, p)

    from archspec.training.checkpoint import Checkpoint

    ckpt = Checkpoint.load(trained / "run" / "checkpoint.pt")
    meta = session(trained / "plain.onnx").get_modelmeta().custom_metadata_map
    assert json.loads(meta["classes"]) == ckpt.classes == sorted(p.name for p in (CIFAR / "train").iterdir())
    assert json.loads(meta["mean"]) == pytest.approx(ckpt.mean) and json.loads(meta["std"]) == pytest.approx(ckpt.std)
    assert meta["arch_source"] == ckpt.arch_source and meta["weights"].startswith("trained")

    r = cli("predict", str(trained / "plain.onnx"), "no_such.png")
    assert r.returncode == 1 and "error: image no_such.png does not exist" in r.stderr


# ----------------------------------------------------------------------------- errors


def test_predict_without_onnxruntime_names_the_extra(tmp_path):
    blocker = BLOCK_TORCH.replace("('torch', 'torchvision')", "('torch', 'torchvision', 'onnxruntime')")
    cp = subprocess.run([sys.executable, "-c", blocker + "from archspec.cli import main\n"
                         f"sys.exit(main(['predict', {str(tmp_path / 'm.onnx')!r}, 'x.png']))\n"],
                        capture_output=True, text=True, cwd=REPO)
    assert cp.returncode == 1
    assert "error: `archspec predict MODEL.onnx` needs onnxruntime, which is not installed" in cp.stderr
    assert "help: install the extra: pip install 'archspec-cnn[onnx]'" in cp.stderr


def test_predict_on_an_onnx_file_without_archspec_metadata(cli, tmp_path):
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 32, 32])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "foreign.onnx"))
    r = cli("predict", str(tmp_path / "foreign.onnx"), "x.png")
    assert r.returncode == 1 and "has no archspec metadata (missing: classes" in r.stderr and "help: export the model" in r.stderr
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    r = cli("predict", str(tmp_path / "junk.onnx"), "x.png")
    assert r.returncode == 1 and "onnxruntime cannot load" in r.stderr and "help: re-export" in r.stderr


def test_export_errors(cli, tmp_path):
    r = cli("export", str(EXAMPLES / "lenet.arch"), "-o", str(tmp_path / "m.txt"))
    assert r.returncode == 2 and "should end in .onnx" in r.stderr
    r = cli("export", str(tmp_path / "nope.pt"), "-o", str(tmp_path / "m.onnx"))
    assert r.returncode == 2 and "no such file" in r.stderr
    r = cli("export", str(EXAMPLES / "blocks.arch"), "-o", str(tmp_path / "m.onnx"))
    assert r.returncode == 2 and "defines blocks only" in r.stderr
    r = cli("export", str(EXAMPLES / "broken" / "kernel_too_large.arch"), "-o", str(tmp_path / "m.onnx"))
    assert r.returncode == 1 and "error[E101]" in r.stderr
    (tmp_path / "mlp.arch").write_text("input 784\nlinear 10\n")
    r = cli("export", str(tmp_path / "mlp.arch"), "-o", str(tmp_path / "m.onnx"), "--embed-preprocess")
    assert r.returncode == 2 and "takes features [B, 784], not images" in r.stderr
    assert not list(tmp_path.glob("*.onnx*"))  # nothing half-written


# ----------------------------------------------------------------------------- tampered metadata
# An export of a small random-weight checkpoint (written by the project's own writer), its metadata then
# edited with the onnx package: each edit is one error naming the key (golden text), never a traceback.

GOLDEN = REPO / "tests" / "golden" / "onnx"

TAMPERED = {
    "input_shape_larger": {"input_shape": "[3, 64, 64]"},
    "input_shape_channels": {"input_shape": "[1, 8, 8]"},
    "input_shape_negative": {"input_shape": "[3, -8, 8]"},
    "input_shape_10_gib": {"input_shape": "[3, 60000, 60000]"},  # np.empty of it was 10 GiB
    "input_shape_not_json": {"input_shape": "3x8x8"},
    "classes_too_few": {"classes": '["cat", "dog", "ship"]'},
    "classes_not_json": {"classes": "cat, dog"},
    "classes_dict": {"classes": '{"0": "cat", "1": "dog"}'},
    "classes_duplicate": {"classes": json.dumps(["cat"] * 10)},
    "logit_scale_text": {"logit_scale": "hot"},
    "logit_scale_nan": {"logit_scale": "nan"},
    "preprocess_mismatch": {"preprocess": "embedded"},
    "preprocess_unknown": {"preprocess": "auto"},
    "std_zero": {"std": "[0, 0, 0]"},  # gave `nan%`
    "mean_one_channel": {"mean": "[0.5]"},
    "mean_text": {"mean": '["a", "b", "c"]'},
}


@pytest.fixture(scope="module")
def small_onnx(tmp_path_factory) -> Path:
    from test_checkpoint import small_checkpoint

    root = tmp_path_factory.mktemp("small_onnx")
    small_checkpoint(root / "small.pt")
    assert archspec.cli.main(["export", str(root / "small.pt"), "-o", str(root / "small.onnx")]) == 0
    return root


def tampered(source: Path, target: Path, changes: dict[str, str]) -> Path:
    model = onnx.load(str(source))
    meta = {p.key: p.value for p in model.metadata_props}
    del model.metadata_props[:]
    for key, value in {**meta, **changes}.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(target))
    return target


def red_png(path: Path, size: tuple[int, int] = (8, 8)) -> Path:
    from PIL import Image

    Image.new("RGB", size, (200, 10, 10)).save(path)
    return path


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_tampered_metadata_is_one_error_naming_the_key(case, small_onnx, cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tampered(small_onnx / "small.onnx", tmp_path / f"{case}.onnx", TAMPERED[case])
    red_png(tmp_path / "red.png")
    r = cli("predict", f"{case}.onnx", "red.png")
    text = f"exit {r.returncode}\n{r.stdout}{r.stderr}"
    golden = GOLDEN / f"{case}.txt"
    if os.environ.get("ARCHSPEC_REGEN"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text)
    assert text == golden.read_text()
    assert r.returncode == 1 and r.stdout == "" and f"metadata `{next(iter(TAMPERED[case]))}`" in r.stderr


def test_untampered_small_export_predicts_like_its_checkpoint(small_onnx, cli, tmp_path):
    """The control for the tampered files: the same file unedited (and re-saved by onnx) predicts as torch does."""
    red_png(tmp_path / "red.png")
    resaved = tampered(small_onnx / "small.onnx", tmp_path / "same.onnx", {})
    a = cli("predict", str(resaved), str(tmp_path / "red.png"), "--top", "10")
    b = cli("predict", str(small_onnx / "small.pt"), str(tmp_path / "red.png"), "--top", "10")
    assert a.returncode == b.returncode == 0, a.stderr + b.stderr
    assert predictions(a.stdout).keys() == predictions(b.stdout).keys()
    for x, y in zip(*(next(iter(predictions(o.stdout).values())) for o in (a, b))):
        assert x[0] == y[0] and abs(x[1] - y[1]) <= 0.11


def test_graph_with_an_undeclared_output_size_is_checked_when_it_runs(cli, tmp_path):
    """A graph whose output size is dynamic cannot be compared with `classes` up front: the run's output is."""
    from onnx import TensorProto, helper

    keep = helper.make_tensor("keep", TensorProto.BOOL, [192], [i < 5 for i in range(192)])  # 5 of the 192 features
    nodes = [helper.make_node("Flatten", ["input"], ["flat"]), helper.make_node("Compress", ["flat", "keep"], ["logits"], axis=1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 8, 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "n"])], initializer=[keep])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    for key, value in {"classes": json.dumps([str(i) for i in range(10)]), "mean": "[0, 0, 0]", "std": "[1, 1, 1]",
                       "input_shape": "[3, 8, 8]", "preprocess": "none"}.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(tmp_path / "flat.onnx"))
    r = cli("predict", str(tmp_path / "flat.onnx"), str(red_png(tmp_path / "red.png")))
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr == ("error: the model outputs [5] values per image but its metadata names 10 classes\n"
                        "help: re-export the model with `archspec export CHECKPOINT.pt -o MODEL.onnx`\n")


def test_nan_weights_in_the_graph_are_refused_not_printed_as_nan(small_onnx, cli, tmp_path):
    from onnx import numpy_helper

    model = onnx.load(str(small_onnx / "small.onnx"))
    weights = max(model.graph.initializer, key=lambda t: len(t.dims))  # a conv or linear weight
    array = numpy_helper.to_array(weights).copy()
    array.flat[0] = float("nan")
    weights.CopyFrom(numpy_helper.from_array(array, weights.name))
    onnx.save(model, str(tmp_path / "nan.onnx"))
    r = cli("predict", str(tmp_path / "nan.onnx"), str(red_png(tmp_path / "red.png")))
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == ("error: the model computed NaN or infinite class scores: its weights (or its graph) are damaged\n"
                        "help: re-export it from a checkpoint that `archspec eval` accepts\n")

def bomb_png(path: Path, width: int = 20000, height: int = 20000) -> Path:
    """A valid 1x1 PNG whose header claims width x height: PIL refuses it on open, nothing is decoded."""
    import struct
    import zlib

    red_png(path, (1, 1))
    data = bytearray(path.read_bytes())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4:ihdr + 12] = struct.pack(">II", width, height)
    data[ihdr + 17:ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr:ihdr + 17])))
    path.write_bytes(bytes(data))
    return path


def test_decompression_bomb_is_one_error_for_both_predicts(small_onnx, cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bomb_png(tmp_path / "bomb.png")
    from PIL import Image

    with pytest.raises(Image.DecompressionBombError):  # the oracle: PIL itself refuses the file
        Image.open(tmp_path / "bomb.png")
    results = [cli("predict", str(small_onnx / name), "bomb.png") for name in ("small.onnx", "small.pt")]
    assert [r.returncode for r in results] == [1, 1] and results[0].stderr == results[1].stderr
    assert results[0].stderr == (
        f"error: image bomb.png is too large to decode safely (more than {2 * Image.MAX_IMAGE_PIXELS:,} pixels; "
        "PIL refuses it as a possible decompression bomb)\nhelp: pass image files (PNG, JPEG, BMP, ...) that PIL can read\n")


@pytest.mark.parametrize("top", ["0", "-3", "two"])
@pytest.mark.parametrize("model", ["small.onnx", "small.pt"])
def test_top_below_one_is_an_argument_error(top, model, small_onnx, cli, tmp_path):
    r = cli("predict", str(small_onnx / model), str(red_png(tmp_path / "red.png")), "--top", top)
    assert r.returncode == 2 and r.stdout == ""
    assert f"error: argument --top: must be a whole number of at least 1, got '{top}'" in r.stderr


@pytest.mark.parametrize("model", ["small.onnx", "small.pt"])
def test_predict_on_a_folder_takes_its_images_recursively(model, small_onnx, cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("imgs/b/two.png", "imgs/a.png", "imgs/b/c/three.jpg", "imgs/.hidden/skip.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        red_png(tmp_path / name)
    (tmp_path / "imgs" / "notes.txt").write_text("not an image")
    r = cli("predict", str(small_onnx / model), "imgs", "imgs/a.png")
    assert r.returncode == 0, r.stderr
    assert [line.rpartition(": ")[0] for line in r.stdout.splitlines()] == [
        "imgs/a.png", "imgs/b/c/three.jpg", "imgs/b/two.png", "imgs/a.png"]
    # the oracle: the same files named one by one
    one_by_one = cli("predict", str(small_onnx / model), "imgs/a.png", "imgs/b/c/three.jpg", "imgs/b/two.png", "imgs/a.png")
    assert one_by_one.stdout == r.stdout
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    r = cli("predict", str(small_onnx / model), "empty")
    assert r.returncode == 2 and r.stderr.startswith("error: empty: a folder with no images in it (")


def test_select_join_matches_torch_on_onnxruntime(tmp_path):
    """SKNet's and ResNeSt's attention (`select`, with cardinal groups) exported and run on onnxruntime."""
    arch = tmp_path / "sk.arch"
    arch.write_text("input 3x12x12\nconv 16 k3 p1 | bn | relu\n"
                    "select { conv 8 k3 p1 | bn | relu } { conv 8 k3 p2 d2 | bn | relu } attend { gap | conv 4 k1 | bn | relu | conv 16 k1 }\n"
                    "conv 16 k1 | bn | relu\n"
                    "select g2 { slice 0:8 } { slice 8:16 } attend { gap | conv 8 k1 g2 | bn | relu | conv 16 k1 g2 }\n"
                    "gap | flatten | linear 10\n")
    got, expected = _onnxruntime_and_torch(source_from_arch(arch), tmp_path, seed=7)
    assert got.shape == expected.shape == (2, 10)
    assert abs(got - expected).max() < 1e-5
