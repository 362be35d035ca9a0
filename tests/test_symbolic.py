"""`input 3xHxW`: the derived sizes are exact. For random networks and every size 1..128 on each axis,
the derived accepted set agrees with torch (a forward pass on meta tensors), the no-drop subset with
the concrete checker's W201, and every layer's size expression with torch's output at that layer."""
from __future__ import annotations

import json
import os
import re

import pytest
from hypothesis import HealthCheck, event, given, settings

from archspec.language.pipeline import CheckOptions, checked
from archspec.language.expand import parse
from archspec.language.symbolic import derive, drops_on, with_input
from conftest import REPO

torch = pytest.importorskip("torch")
from test_oracle import FIXED, Renderer, TorchOracle, flat_archs, one_thread, structured_archs  # noqa: E402,F401 (one_thread: a fixture)


def check(source, classes=10):
    """The front door, as every caller uses it: numbers or `input 3xHxW` alike."""
    return checked(source, CheckOptions(classes=classes))

LIMIT = 128


def symbolic_text(arch) -> str:
    """The network's text with its input written `input CxHxW`."""
    r = Renderer("nl")
    text = r.render(arch)
    return re.sub(r"^input (\d+)x\d+x\d+$", r"input \1xHxW", text, count=1, flags=re.M), r


class MetaOracle(TorchOracle):
    """The oracle on meta tensors: modules are made on the meta device (no weights to initialise) and run
    outside the device context (whose per-call dispatch costs more than the shapes)."""

    def leaf(self, op, module_factory, x):
        def on_meta():
            with torch.device("meta"):
                return module_factory()

        return super().leaf(op, on_meta, x)


def torch_shapes(arch, line_of, dims) -> list[tuple[int, ...]] | None:
    """Each leaf's output shape in execution order, or None when torch refuses the size."""
    oracle = MetaOracle(line_of)
    try:
        with torch.no_grad():
            oracle.seq(arch.body, torch.empty(2, *dims, device="meta"), {})
    except (RuntimeError, ValueError, IndexError):
        return None
    return [shape for _, shape, _, _ in oracle.records]


def agrees(arch, limit: int = LIMIT) -> int:
    """Every H (W held at an accepted size) and every W, 1..limit; returns how many sizes torch ran."""
    if len(arch.input) != 3:
        return 0
    text, renderer = symbolic_text(arch)
    model = parse(text)
    d = derive(model, limit)
    c = arch.input[0]
    if d.at is None:  # no accepted size: torch refuses every size on the diagonal too
        assert not any(torch_shapes(arch, renderer.line_of, (c, n, n)) for n in range(1, limit + 1)), text
        return 0
    ran = 0
    for axis in (0, 1):
        derived = d.axes[axis]
        for n in range(1, limit + 1):
            dims = (c, n, d.at[1]) if axis == 0 else (c, d.at[0], n)
            shapes = torch_shapes(arch, renderer.line_of, dims)
            assert (n in derived.valid) == (shapes is not None), (derived.name, n, derived.valid.rule("n"), text)
            if shapes is None:
                continue
            ran += 1
            report = check(with_input(model, dims), classes=None)
            assert report.ok
            assert (n in derived.drop_free) == (not drops_on(report, axis)), (derived.name, n, text)
            rows = [r for r in report.rows if r.op != "input"]
            assert len(rows) == len(shapes)
            for row, shape in zip(rows, shapes):
                if row.path in d.exprs:
                    ch, eh, ew = d.exprs[row.path]
                    assert (ch, eh.at(dims[1]), ew.at(dims[2])) == shape, (row.path, str(eh), str(ew), dims, text)
    return ran


# Fast: every size 1..40 (1..32 with residuals and branches; torch on meta tensors takes ~25 ms a
# forward pass, two per size); slow: every size 1..128.
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(arch=flat_archs())
def test_flat_networks_agree_with_torch_at_every_size(arch, one_thread):
    event(f"torch ran {'some' if agrees(arch, 40) else 'no'} sizes")


@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
@given(arch=structured_archs())
def test_residuals_and_branches_agree_with_torch_at_every_size(arch, one_thread):
    event(f"torch ran {'some' if agrees(arch, 32) else 'no'} sizes")


@pytest.mark.parametrize("name", [name for name, arch in FIXED.items() if len(arch.input) == 3])
def test_the_oracles_fixed_corners_agree_with_torch_at_every_size(name, one_thread):
    """The torch oracle's hand-picked corners (ceil windows, `p same`, grouped convs, a projected residual around an
    upsampling, `in.*` reads) read as `input CxHxW`: the accepted sizes, the W201-free ones and every layer's size
    agree with torch and the checker at every size 1..24, whatever the random networks happen to draw."""
    agrees(FIXED[name], 24)


@pytest.mark.slow
@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(arch=flat_archs())
def test_flat_networks_every_size_to_128(arch, one_thread):
    agrees(arch)


@pytest.mark.slow
@settings(max_examples=2, deadline=None, suppress_health_check=list(HealthCheck))
@given(arch=structured_archs())
def test_structured_networks_every_size_to_128(arch, one_thread):
    agrees(arch)


# --------------------------------------------------------------------------- goldens and rules

GOLDEN = REPO / "tests" / "golden" / "symbolic"


@pytest.mark.parametrize("name", ["lenet", "resnet18"])
def test_golden_check_output(cli, name):
    """`archspec check` on real examples with `input 3xHxW` (regenerate with ARCHSPEC_REGEN=1)."""
    result = cli("check", str(GOLDEN / f"{name}.arch"))
    text = result.stdout.replace(str(REPO) + "/", "")
    golden = GOLDEN / f"{name}.txt"
    if os.environ.get("ARCHSPEC_REGEN") == "1":
        golden.write_text(text)
    assert result.returncode == 0 and text == golden.read_text()


def test_lenet_rules_and_expressions():
    d = derive(parse((GOLDEN / "lenet.arch").read_text()))
    h, w = d.axes
    assert h.valid.rule("H") == "H >= 16" and h.drop_free.rule("H") == "H % 4 == 0 and H >= 16"
    assert d.shapes["pool2"] == ("16", "floor(H/4) - 3", "floor(W/4) - 3") and d.at == (32, 32)
    assert d.features_text("fc1") == "16*(floor(H/4) - 3)*(floor(W/4) - 3)" and d.features_at("fc1", 32, 32) == 400


def test_nested_floors_compose():
    """floor((floor((x+a)/s1)+b)/s2) = floor((x+a+b*s1)/(s1*s2)): four stride-2 padded convs are ceil(H/16)."""
    d = derive(parse("input 3xHxW\n" + "conv 8 k3 s2 p1\n" * 4))
    assert d.shapes["conv4"][1:] == ("ceil(H/16)", "ceil(W/16)")
    assert d.axes[0].valid.rule("H") == "any H" and d.axes[0].drop_free.rule("H") == "any H"


def test_five_halvings_need_a_multiple_of_32():
    d = derive(parse("input 3xHxW\n" + "conv 8 k3 p1 | maxpool 2\n" * 5))
    assert d.axes[0].valid.rule("H") == "H >= 32" and d.axes[0].drop_free.rule("H") == "H % 32 == 0"


def test_a_residual_pins_a_pattern_and_a_branch_pins_points():
    # maxpool 2 and a padded stride-2 conv agree only on even sizes: floor(H/2) = ceil(H/2).
    d = derive(parse("input 3xHxW\nadd { maxpool 2 } { conv 3 k3 s2 p1 }\n"))
    assert d.axes[0].valid.rule("H") == "H % 2 == 0"
    d = derive(parse("input 3xHxW\nconv 3 k2\nadd { maxpool 2 } { conv 3 k3 s2 p1 }\n"))
    assert d.axes[0].valid.rule("H") == "H = 3 + 2k (k >= 0)"
    # one branch keeps the size, the other halves it (rounding up): equal only at 1.
    d = derive(parse("input 3xHxW\nadd { relu } { conv 3 k3 s2 p1 }\n"))
    assert d.axes[0].valid.rule("H") == "H in {1}"


def test_ceil_mode_and_dilation():
    d = derive(parse("input 3xHxW\nmaxpool 3 s2 ceil\nmaxpool 3 d2\n"))
    pool1 = d.exprs["pool1"][1]
    assert [pool1.at(n) for n in range(3, 9)] == [1, 2, 2, 3, 3, 4]  # ceil((n - 3)/2) + 1, as torch
    assert d.axes[0].valid.rule("H") == "H >= 10"  # pool2's dilated window is 5 wide: pool1 must give 5


def test_one_concrete_axis():
    d = derive(parse("input 3xHx32\nconv 8 k5 | maxpool 2\n"))
    assert d.shapes["pool1"] == ("8", "floor(H/2) - 2", "14") and d.axes[1].size == 32
    bad = check("input 3xHx4\nconv 8 k5\n")
    assert [x.code for x in bad.errors] == ["E114", "E101"] and "W = 4 fails for every H" in bad.errors[0].message


@pytest.mark.parametrize("text, message", [
    ("input 3xHxW\nconv H k3\n", "`conv` H: a symbolic size can only be the height or width of `input`"),
    ("input HxW\nconv 6 k3\n", "`input HxW`: the channels must be a number"),
    ("input Cx32x32\nconv 6 k3\n", "`input Cx32x32`: the channels must be a number"),
    ("input 3xWxH\nconv 6 k3\n", "written H (second) and W (third)"),
    ("input 3xHxW\nadaptiveavgpool 7xH\n", "`adaptiveavgpool` 7xH: a symbolic size"),
])
def test_misplaced_symbols_are_diagnostics(text, message):
    report = check(text)
    assert not report.ok and message in report.errors[0].message and report.errors[0].help


def test_build_compile_and_views_need_numbers(cli):
    path = str(GOLDEN / "lenet.arch")
    for command in (["compile", path], ["build", path], ["graph", path]):  # summary, explain: tests below / test_summary_symbolic.py
        result = cli(*command)
        assert result.returncode == 1, command
        assert result.stderr.startswith("error: ") and "symbolic size" in result.stderr and "help: write the numbers" in result.stderr
    at = cli("check", path, "--input-sizes", "3x32x32,3x15x15", "-q")
    assert at.returncode == 1 and "E101" not in at.stdout and "error[E" in at.stdout


def test_json_and_inlay_hints(cli):
    data = json.loads(cli("check", str(GOLDEN / "lenet.arch"), "--format", "json").stdout)["files"][0]
    sym = data["symbolic"]
    assert sym["at"] == [32, 32] and sym["axes"][0]["valid"]["rule"] == "H >= 16"
    assert sym["shapes"]["conv1"] == ["6", "H - 4", "W - 4"]
    pytest.importorskip("pygls")
    from archspec.lsp.analysis import analyze, inlay_hints

    hints = inlay_hints(analyze(str(GOLDEN / "lenet.arch"), (GOLDEN / "lenet.arch").read_text()))
    assert "-> [B, 16, floor(H/4) - 3, floor(W/4) - 3]" in hints[3]


def test_layers_after_a_join_that_fails_at_the_probe_size_still_count():
    """The tree is read at a large size first; where a join fails there, the layers after it are read
    again at an accepted size (a layer reading `in.c` binds only then)."""
    d = derive(parse("input 3xHxW\nconv 3 k2\nadd { maxpool 2 } { conv 3 k3 s2 p1 }\nconv {in.c} k5\n"))
    assert d.axes[0].valid.rule("H") == "H = 11 + 2k (k >= 0)" and d.shapes["conv2"][1] == "ceil(H/2) - 5"
    assert derive(parse("input 3xHxW\nadd { relu } { conv 3 k3 s2 p1 }\nconv 3 k3\n")).axes[0].valid.empty


def test_a_condition_on_the_flattened_features_is_checked_size_by_size():
    """`groupnorm 3` after `flatten` needs 3 to divide C*(H+2)*(W+2): not one axis at a time, so
    the sizes are found by checking (and say so)."""
    d = derive(parse("input 1xHxW\nconv 1 k1 p1 nobias\nflatten\ngroupnorm 3\n"), 30)
    assert not d.exact and d.at is not None
    h = d.axes[0]
    assert all((n in h.valid) == ((n + 2) * (d.at[1] + 2) % 3 == 0) for n in range(1, 31))


def test_a_mistake_before_flatten_leaves_in_features_unknown():
    """Found by benchmarks/fuzz.py: an unknown op inside a residual before `flatten | linear` left the
    flatten's input shape unknown and the derivation raised TypeError (a traceback in every command)."""
    model = parse("input 3xHxW\nresidual { p1 }\nflatten | linear 10\n")
    report = check(model, classes=None)
    assert [d.code for d in report.errors] == ["E002"]
    d = derive(model)
    assert "fc1" not in d.in_features


@pytest.mark.parametrize("text", ["xHxW\ninput 3xHxW\nflatten\n", "relu\ninput 3xHxW\nconv 8 k3\n"])
def test_a_symbolic_input_that_is_not_first_is_e006_not_a_traceback(text):
    """Found by benchmarks/fuzz.py: a symbolic `input` after another line reached the concrete checker,
    and the next layer multiplied the string `H` (TypeError in every command)."""
    report = check(parse(text), classes=None)
    assert "E006" in [d.code for d in report.errors]


def test_hover_gives_the_shape_in_h_and_w_and_the_numbers_at_the_checked_size():
    pytest.importorskip("pygls")
    from archspec.lsp.analysis import analyze, hover

    text = (GOLDEN / "lenet.arch").read_text()
    line = next(i for i, s in enumerate(text.split("\n")) if s.startswith("conv 16"))
    shown = hover(analyze(str(GOLDEN / "lenet.arch"), text), line, 1, text.split("\n")[line])
    concrete = next(r for r in check(with_input(parse(text), (3, 32, 32)), classes=None).rows if r.path == "conv2")
    assert concrete.params == 2416
    assert (f"`-> [B, 16, floor(H/2) - 6, floor(W/2) - 6]`; at 32x32: `[B, 6, 14, 14] -> [B, 16, 10, 10]`, "
            f"{concrete.params:,} params, {concrete.macs:,} MACs") in shown


def test_explain_shows_the_arithmetic_at_the_checked_size_and_each_layer_in_h_and_w(cli):
    path = GOLDEN / "lenet.arch"
    text = cli("explain", str(path), "--layer", "conv2").stdout
    concrete = check(with_input(parse(path.read_text()), (3, 32, 32)), classes=None)
    conv2 = next(r for r in concrete.rows if r.path == "conv2")
    assert "the arithmetic below is at [B, 3, 32, 32], an accepted size" in text
    assert "[B, 6, 14, 14] -> [B, 16, 10, 10]" in text and f"= {conv2.params:,} (weights" in text
    assert "at every size: [B, 16, floor(H/2) - 6, floor(W/2) - 6]" in text


def test_a_join_that_fails_at_the_probe_size_is_derived_at_an_accepted_one():
    """`add {} { adaptiveavgpool 4x4 }` joins only where the map is 4x4: a traceback before (the flatten's
    channels were unknown at the probe size)."""
    model = parse("input 3xHxW\nconv 8 k3 s2 p1\nadd {} { adaptiveavgpool 4x4 }\ngap | flatten | linear 10\n")
    d = derive(model)
    assert d.exact and [a.valid.rule(a.name) for a in d.axes] == ["H in {7-8}", "W in {7-8}"]
    for h in range(1, 20):  # the checker at each size agrees
        report = check(with_input(model, (3, h, 8)), classes=None)
        assert report.ok == (h in (7, 8)), h


def test_mul_broadcasting_is_derived_exactly_and_agrees_size_by_size():
    """A squeeze-and-excitation gate ([C, 1, 1]) joins at every size; a [C, 1, 4] gate only where W' is 4 or 1."""
    model = parse("input 3xHxW\nconv 8 k3 s2 p1\nmul {} { gap | conv 2 k1 | relu | conv 8 k1 | sigmoid }\n"
                  "mul {} { adaptiveavgpool 1x4 }\ngap | flatten | linear 10\n")
    d = derive(model)
    assert d.exact and [a.valid.rule(a.name) for a in d.axes] == ["any H", "W in {1-2, 7-8}"]
    for w in range(1, 24):
        assert check(with_input(model, (3, 9, w)), classes=None).ok == (w in d.axes[1].valid), w


def test_resize_reads_its_size_from_the_network_so_a_segmentation_head_checks_at_every_size():
    """DeepLabV3's shape: a stride-4 backbone, an ASPP whose pooling branch is resized back to the map's size, and a
    final resize to the input's size. Every size is accepted, exactly, and the output is the input's size."""
    model = parse("input 3xHxW\nresize {\n  conv 8 k3 s2 p1 | relu | conv 8 k3 s2 p1 | relu\n"
                  "  concat { conv 4 k1 } { conv 4 k3 p2 d2 } { resize { gap | conv 4 k1 nobias | bn | relu } }\n"
                  "  conv 5 k1\n}\n")
    d = derive(model)
    assert d.exact and [a.valid.rule(a.name) for a in d.axes] == ["any H", "any W"]
    assert d.shapes["resize1"] == ("5", "H", "W")
    for h in (1, 2, 7, 30):
        report = check(with_input(model, (3, h, 9)), classes=None)
        assert report.ok and report.output_shape == (5, h, 9), h


SE_RESIDUALS = """input 4xHxW
conv 8 k3 p1
residual project { conv 8 k3 s2 p1 | mul {} { gap | conv 8 k1 | sigmoid } }
residual project { conv 16 k3 p1 | mul {} { gap | conv 16 k1 | sigmoid } }
"""


def test_squeeze_excitation_inside_projected_residuals_is_exact_and_agrees_with_torch(one_thread):
    """SE gates (a `mul` with a `gap` branch) inside `residual project`, as EfficientNet and MobileNetV3 write them:
    one check in H and W gives every size exactly (these were checked size by size), and torch runs at each size
    with the output size the derivation gives."""
    import archspec

    d = derive(parse(SE_RESIDUALS))
    assert d.exact and [a.valid.rule(a.name) for a in d.axes] == ["any H", "any W"]
    channels, eh, ew = d.exprs["res2"]
    assert d.shapes["res2"] == ("16", "ceil(H/2)", "ceil(W/2)")
    for h, w in ((1, 1), (2, 5), (7, 4), (16, 17)):
        net = archspec.build(SE_RESIDUALS.replace("HxW", f"{h}x{w}")).eval()
        with torch.no_grad():
            y = net(torch.zeros(1, 4, h, w))
        assert tuple(y.shape) == (1, channels, eh.at(h), ew.at(w)), (h, w)


BROKEN = sorted((REPO / "examples" / "broken").glob("*.arch"))


@pytest.mark.parametrize("path", BROKEN, ids=[p.stem for p in BROKEN])
def test_broken_examples_read_as_hxw_report_what_the_checker_finds_at_numbers(path):
    """Every broken example with its input written `CxHxW` checks, and reports the concrete checker's own
    diagnostics at the size it names, with E114 first when no size checks; its derivation's JSON and text (what
    `check --format json` and `sizes` print) come out too (after a join that fails, or an op whose arguments
    are wrong, they raised TypeError: the flatten's channels were unknown)."""
    from archspec.language import codes

    text = path.read_text()
    written = re.search(r"^input (\d+)x\d+x\d+", text, re.MULTILINE)
    if written is None:
        pytest.skip("no image input")
    report = check(text.replace(written.group(0), f"input {written.group(1)}xHxW"), classes=None)
    d = report.symbolic
    if d is None:
        pytest.skip("the file does not parse far enough to have an input")
    size = d.at or tuple(a.fits_from or 1 for a in d.axes)
    at = check(text.replace(written.group(0), f"input {written.group(1)}x{size[0]}x{size[1]}"), classes=None)
    one_size = (codes.FLOOR_DROPS_PIXELS, codes.SPATIAL_COLLAPSED)
    assert [x.message for x in report.diagnostics if x.code != codes.NO_INPUT_SIZE] == \
        [x.message for x in at.diagnostics if x.code not in one_size]
    assert (codes.NO_INPUT_SIZE in [x.code for x in report.diagnostics[:1]]) == (d.at is None)
    assert json.loads(json.dumps(d.to_dict()))["input"] == f"{written.group(1)}xHxW" and d.lines()[0].startswith("input sizes")


def test_sizes_of_a_failing_join_print_without_a_traceback(cli, tmp_path):
    """`archspec sizes` and `check --format json` on a network whose branches never join: E114, no traceback."""
    path = tmp_path / "branches.arch"
    path.write_text("input 3xHxW\nconcat { conv 16 k1 } { conv 16 k5 }\ngap | flatten | linear 10\n")
    sizes = cli("sizes", str(path))
    assert sizes.returncode == 0 and "Traceback" not in sizes.stderr
    assert "  H accepted: none at any size" in sizes.stdout and "  fc1: in_features = 32 at every size" in sizes.stdout
    report = cli("check", "--format", "json", str(path))
    assert report.returncode == 1 and [d["code"] for d in json.loads(report.stdout)["files"][0]["diagnostics"]] == ["E114", "E108"]


def test_a_rules_integer_arithmetic_on_h_is_the_size_expression():
    """A shape rule's own arithmetic (+, -, and * and // by whole numbers) works on H as on a number: the
    expression equals that arithmetic at every integer, and is the window the size functions build."""
    from itertools import product

    from archspec.language.sizemap import Sym, scaled_size, window_size

    h = Sym("H")
    for k, s, p, d in product((1, 2, 3, 5), (1, 2, 3), (0, 1, 2), (1, 2)):
        e = (h + 2 * p - d * (k - 1) - 1) // s + 1
        assert e == window_size(h, k, s, p, d), (k, s, p, d)
        assert all(e.at(x) == (x + 2 * p - d * (k - 1) - 1) // s + 1 for x in range(1, 60)), (k, s, p, d)
        t = (h - 1) * s - 2 * p + d * (k - 1) + 1  # a transposed conv
        assert t == scaled_size(h, s, -s - 2 * p + d * (k - 1) + 1) and t.at(7) == 6 * s - 2 * p + d * (k - 1) + 1
    with pytest.raises(TypeError, match="record it as a condition"):
        assert h < 1


def test_select_attention_sizes_are_derived_exactly_and_agree_size_by_size():
    """`select`'s weights broadcast where each size is 1 or the branches': a maxpool 2 attention fits at H in {2, 3}
    (1x1 weights) only; branches of stride 1 and 2 meet only at size 1."""
    model = parse("input 3xHxW\nconv 8 k3 p1\nselect { conv 8 k3 p1 } { conv 8 k1 } attend { maxpool 2 | conv 16 k1 }\n"
                  "gap | flatten | linear 10\n")
    d = derive(model)
    assert d.exact and [a.valid.rule(a.name) for a in d.axes] == ["H in {2-3}", "W in {2-3}"]
    for h in range(1, 12):
        assert check(with_input(model, (3, h, 3)), classes=None).ok == (h in d.axes[0].valid), h
    strided = parse("input 3xHxW\nselect { conv 8 k3 p1 } { conv 8 k3 s2 p1 } attend { gap | conv 16 k1 }\ngap | flatten | linear 10\n")
    d = derive(strided)
    assert d.exact and [a.valid.rule(a.name) for a in d.axes] == ["H in {1}", "W in {1}"]
    for h in range(1, 8):
        assert check(with_input(strided, (3, h, 1)), classes=None).ok == (h == 1), h
