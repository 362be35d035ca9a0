"""`archspec summary`: params and MACs against torch, receptive fields against hand derivations
and against autograd, the memory arithmetic, the JSON schema and the CLI."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

import archspec
from archspec.language.errors import ArchError, UsageError
from archspec.views.summary import summarize
from conftest import EXAMPLES

LENET = EXAMPLES / "lenet.arch"

# Every structure and the ops with unusual windows: projected and explicit shortcuts, an identity
# residual, concat (with an empty branch) and add branches, dilation, groups, rectangular kernels,
# `p same`, a ceil-mode pool, adaptive pooling.
MIXED = """\
input 3x32x32
conv 16 k3 p1 | bn | relu
block basic(c, s=1) {
  residual project { conv c k3 s{s} p1 nobias | bn | relu | conv c k3 p1 nobias | bn } | relu
}
basic(16)
basic(32, s=2)
concat { conv 8 k1 } { conv 8 k3 p same d2 | relu } { }
add { conv 16 k1x3 p0x1 g8 } { conv 16 k3x1 p1x0 }
residual { conv 16 k3 p1 } shortcut { conv 16 k1 }
avgpool 3 s2 ceil
adaptiveavgpool 2x2
flatten | linear 10
"""


# Structures inside structures: their rows must carry their real module paths.
NESTED = "input 3x8x8\nresidual { concat { relu } { add { bn } { relu } } | conv 3 k1 }\nflatten | linear 10\n"


def python(*code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "\n".join(code)], capture_output=True, text=True)


# --------------------------------------------------------------------------- receptive fields by hand

def test_lenet_receptive_fields_by_hand():
    rows = {r.name: r for r in summarize(LENET).rows}
    expected = {"input1": (1, 1), "conv1": (5, 1), "relu1": (5, 1), "pool1": (6, 2), "conv2": (14, 2),
                "pool2": (16, 4), "flatten1": (32, 20), "fc3": (32, 20)}
    for name, (rf, jump) in expected.items():
        assert (rows[name].rf, rows[name].jump) == ((rf, rf), (jump, jump)), name
    # flatten sees the whole 5x5 grid of pool2: 16 + (5-1)*4 = 32, the full image.


def test_receptive_fields_through_structures_by_hand():
    rows = {r.name: r for r in summarize(MIXED).rows}
    # stem conv k3: 3; basic1: two k3 convs: 7; the identity skip (3) loses to the body (7).
    assert rows["conv1"].rf == (3, 3)
    assert rows["basic1.res1"].rf == (7, 7) and rows["basic1.res1"].jump == (1, 1)
    # basic2: k3 s2 (7 + 2*1 = 9, jump 2), k3 (9 + 2*2 = 13); the 1x1 s2 projection (7) loses.
    assert rows["basic2.res1.body.conv1"].rf == (9, 9) and rows["basic2.res1.body.conv1"].jump == (2, 2)
    assert rows["basic2.res1.shortcut.conv1"].rf == (7, 7)
    assert rows["basic2.res1"].rf == (13, 13) and rows["basic2.res1"].jump == (2, 2)
    # concat: 1x1 (13), k3 d2 = an effective 5x5 (13 + 4*2 = 21), empty branch (13): the max.
    assert rows["concat1.branch2.conv1"].rf == (21, 21)
    assert rows["concat1"].rf == (21, 21)
    # add: 1x3 and 3x1 kernels: (21, 25) and (25, 21) -> (25, 25) per axis.
    assert rows["add1.branch1.conv1"].rf == (21, 25) and rows["add1.branch2.conv1"].rf == (25, 21)
    assert rows["add1"].rf == (25, 25)
    assert rows["res1"].rf == (29, 29)
    assert rows["pool1"].rf == (33, 33) and rows["pool1"].jump == (4, 4)
    # adaptive 8x8 -> 2x2: windows of 4, stride 4: 33 + 3*4 = 45, jump 4*4 = 16.
    assert rows["pool2"].rf == (45, 45) and rows["pool2"].jump == (16, 16)


def test_nested_structures_have_their_module_paths():
    rows = summarize(NESTED).rows
    assert [(r.name, r.label, r.kind) for r in rows if r.kind != "layer"] == [
        ("res1", "res1", "group"),
        ("res1.body.concat1", "body.concat1", "group"),
        ("res1.body.concat1.branch2.add1", "branch2.add1", "group"),
        ("res1.body.concat1.branch2.add1", "branch2.add1", "join"),
        ("res1.body.concat1", "body.concat1", "join"),
        ("res1", "res1", "join"),
    ]
    headers: list[str] = []
    for r in rows:  # every row sits under the header rows above it, and its label is relative to the nearest
        del headers[r.depth:]
        if headers:
            assert r.name == f"{headers[-1]}.{r.label}", r
        if r.kind == "group":
            headers.append(r.name)


def test_feature_input_has_no_receptive_field():
    s = summarize("input 784\nlinear 100 | relu\nlinear 10\n")
    assert all(r.rf is None and r.jump is None for r in s.rows)
    assert s.to_dict()["layers"][1]["receptive_field"] is None


def test_rectangular_rf_in_json_is_a_pair():
    layers = summarize("input 3x32x32\nconv 4 k3x5 p1x2\ngap | flatten | linear 10\n").to_dict()["layers"]
    assert layers[1]["receptive_field"] == [3, 5] and layers[1]["jump"] == 1


# --------------------------------------------------------------------------- torch parity

@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def _flops(torch, net, shape) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    net.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(torch.zeros(1, *shape))
    return counter.get_total_flops()


def test_lenet_params_and_macs_match_a_hand_built_torch_net(torch):
    nn = torch.nn
    net = nn.Sequential(
        nn.Conv2d(3, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )
    s = summarize(LENET)
    assert s.total_params == sum(p.numel() for p in net.parameters()) == 62_006
    assert 2 * s.total_macs == _flops(torch, net, (3, 32, 32))  # FLOPs = 2 x MACs for conv and linear
    learnable = [r.params for r in s.rows if r.params]
    assert learnable == [sum(p.numel() for p in m.parameters()) for m in net if any(True for _ in m.parameters())]


@pytest.mark.parametrize("name", ["mixed", "nested", "uses_blocks.arch"])
def test_params_per_layer_and_macs_match_the_compiled_net(torch, name):
    source = {"mixed": MIXED, "nested": NESTED}.get(name, EXAMPLES / name)
    if isinstance(source, Path) and not source.exists():
        pytest.skip(f"{name} is not among the examples")
    s = summarize(source)
    net = archspec.build(source)
    modules = dict(net.named_modules())
    for r in s.rows:
        if r.kind == "layer" and r.op != "input":
            assert sum(p.numel() for p in modules[r.name].parameters()) == r.params, r.name
        elif r.kind != "layer":
            assert r.name in modules, r.name  # blocks, residuals and branches are modules too
    assert sum(p.numel() for p in net.parameters()) == s.total_params
    assert _flops(torch, net, s.report.input_shape) == 2 * s.total_macs


def test_upsampling_gives_a_fractional_jump():
    """upsample 2 halves the jump (neighbouring outputs are half an input pixel apart); a later
    stride 2 makes it whole again; text shows 1/2, JSON 0.5."""
    s = summarize("input 1x8x8\nupsample 2\nconv 1 k3 p1\nmaxpool 2\n")
    rows = {r.name: r for r in s.rows}
    assert rows["up1"].jump == (0.5, 0.5) and rows["up1"].rf == (1, 1)
    assert rows["conv1"].rf == (2, 2)  # 1 + (3 - 1) * 1/2
    assert rows["pool1"].jump == (1, 1) and rows["pool1"].rf == (5 / 2, 5 / 2)
    layers = {d["name"]: d for d in s.to_dict()["layers"]}
    assert layers["up1"]["jump"] == 0.5 and layers["pool1"]["jump"] == 1 and isinstance(layers["pool1"]["jump"], int)
    row = next(line for line in s.render(width=200).splitlines() if " up1 " in line)
    assert row.split()[-4:-2] == ["1", "1/2"]  # RF, jump (then the memory, "1.02 kB")


RF_NET = """\
input 1x64x64
conv 2 k3 p1 | relu
residual { conv 2 k3 p1 | relu | conv 2 k3 p1 } | relu
conv 4 k3 s2 p1 | relu
concat { conv 2 k5 p4 d2 } { avgpool 3 s1 p1 } { }
add { conv 6 k1x3 p0x1 } { conv 6 k3x1 p1x0 }
avgpool 2
conv 4 k3 s2 p1
gap | flatten | linear 10
"""


def _support(grad) -> tuple[tuple[int, int], tuple[int, int]]:
    """(first, last) row and column where the input gradient is non-zero."""
    nz = grad.abs().sum(0).nonzero()
    return (int(nz[:, 0].min()), int(nz[:, 0].max())), (int(nz[:, 1].min()), int(nz[:, 1].max()))


def test_receptive_field_and_jump_match_autograd(torch):
    """With positive weights and inputs nothing cancels: the input gradient of one output pixel
    is non-zero exactly on its receptive field; the next pixel's is shifted by the jump."""
    s = summarize(RF_NET)
    net = archspec.build(RF_NET).double().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(0.1)
    modules = dict(net.named_modules())
    rows = [r for r in s.rows if r.kind != "group" and r.op not in ("input", "flatten", "linear", "gap")]
    outputs = {}
    for r in rows:  # one forward pass records every layer's and join's output
        modules[r.name].register_forward_hook(lambda m, i, o, name=r.name: outputs.__setitem__(name, o))
    x = torch.ones(1, *s.report.input_shape, dtype=torch.float64, requires_grad=True)
    net(x)
    for r in rows:
        y = outputs[r.name]
        h, w = y.shape[2] // 2, y.shape[3] // 2
        (g0,) = torch.autograd.grad(y[0, :, h, w].sum(), x, retain_graph=True)
        (g1,) = torch.autograd.grad(y[0, :, h + 1, w + 1].sum(), x, retain_graph=True)
        rows0, cols0 = _support(g0[0])
        rows1, cols1 = _support(g1[0])
        assert (rows0[1] - rows0[0] + 1, cols0[1] - cols0[0] + 1) == r.rf, r.name
        assert (rows1[0] - rows0[0], cols1[0] - cols0[0]) == r.jump, r.name
    assert len(rows) == 17  # every conv, pool and activation, and the residual, concat and add joins


# --------------------------------------------------------------------------- memory and JSON

def test_memory_arithmetic():
    s = summarize(LENET, batch_size=64)
    per_sample = 4 * sum(math.prod(r.out_shape) for r in s.report.rows)  # every layer's output, fp32
    assert s.activation_bytes_per_sample == per_sample == 72_296
    assert s.model_size_mb == pytest.approx(62_006 * 4 / 1e6)
    # weights + gradients + one momentum buffer + 64 samples' activations
    assert s.estimated_training_bytes == 3 * 4 * 62_006 + 64 * per_sample
    adam = summarize(LENET, batch_size=64, optimizer="adam")
    assert adam.estimated_training_bytes - s.estimated_training_bytes == 4 * 62_006
    joins = summarize(MIXED)
    join_rows = [r for r in joins.rows if r.kind == "join"]
    assert len(join_rows) == 5 and all(r.activation_bytes == 4 * math.prod(r.output_shape) for r in join_rows)


def test_json_schema():
    d = summarize(MIXED, batch_size=32).to_dict()
    assert set(d) >= {"layers", "total_params", "total_macs", "model_size_mb", "activation_bytes_per_sample",
                      "estimated_training_bytes", "batch_size", "assumptions", "input_shape", "output_shape"}
    assert d["batch_size"] == 32 and d["assumptions"]
    for layer in d["layers"]:
        assert set(layer) >= {"name", "op", "output_shape", "params", "macs", "receptive_field", "jump", "activation_bytes"}
    assert d["total_params"] == sum(layer["params"] for layer in d["layers"])
    assert [layer["op"] for layer in d["layers"] if layer["kind"] == "join"] == ["residual", "residual", "concat", "add", "residual"]
    json.dumps(d)


def test_text_table_indents_structures_and_has_a_footer():
    text = summarize(MIXED, batch_size=128).render()
    lines = text.splitlines()
    assert lines[1].split()[:3] == ["line", "layer", "op"]
    body = next(line for line in lines if "body.conv1" in line)
    top = next(line for line in lines if " basic1 " in line)
    assert body.index("body.conv1") - top.index("basic1") == 4  # block -> residual -> body: 2 levels
    assert "= 8 + 8 + 32 channels" in text
    assert "Total params: " in text and "Estimated training memory at batch size 128 (sgd)" in text
    assert "The estimate assumes:" in text


def test_mistakes_are_user_errors():
    with pytest.raises(ArchError):
        summarize("input 3x4x4\nconv 6 k5\n")
    with pytest.raises(UsageError):
        summarize(LENET, batch_size=0)
    with pytest.raises(UsageError):
        summarize(LENET, optimizer="lion")




def test_cli_summary(cli):
    out = cli("summary", str(LENET), "--batch-size", "128", "--format", "json")
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    assert d["total_params"] == 62_006 and d["total_macs"] == 651_720 and d["batch_size"] == 128
    text = cli("summary", "-", stdin=LENET.read_text())
    assert text.returncode == 0 and "fc3" in text.stdout and "Total MACs: 651,720" in text.stdout
    bad = cli("summary", str(LENET), "--batch-size", "0")
    assert bad.returncode == 2 and "at least 1" in bad.stderr and "Traceback" not in bad.stderr
    broken = cli("summary", "-", stdin="input 3x4x4\nconv 6 k5\n")
    assert broken.returncode == 1 and "E101" in broken.stderr + broken.stdout and "Traceback" not in broken.stderr


def test_views_never_import_torch(tmp_path):
    """summary, graph, explain, fmt and SARIF run in a fresh interpreter without importing torch."""
    arch = tmp_path / "net.arch"
    arch.write_text(MIXED)
    out = python(
        "import io, sys, archspec",
        "from archspec.cli import main",
        f"p = {str(arch)!r}",
        "for argv in (['summary', p], ['summary', p, '--format', 'json'], ['graph', p, '-o', p + '.dot'],",
        "             ['explain', p], ['explain', p, '--layer', '4'], ['fmt', '--check', p],",
        "             ['check', '--format', 'sarif', p]):",
        "    assert main(argv, out=io.StringIO()) in (0, 1), argv",
        "archspec.summary(p); archspec.graph(p); archspec.explain(p); archspec.fmt(open(p).read())",
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))",
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_api_names_stay_functions_after_the_view_modules_are_imported():
    import archspec.views.explain
    import archspec.views.fmt
    import archspec.views.graph
    import archspec.views.summary  # noqa: F401

    assert all(callable(f) and f.__module__ == "archspec" for f in (archspec.summary, archspec.graph, archspec.explain, archspec.fmt))
    assert archspec.summary(LENET).total_params == 62_006
    assert archspec.fmt("conv  6 k 5") == "conv 6 k5\n"
