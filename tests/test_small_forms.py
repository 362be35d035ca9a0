"""Small forms met writing modern networks: a repeat count of 0, W202 on a joined-back 1x1 branch,
and `archspec sizes` naming the file's own size and an empty set without "never"."""
from __future__ import annotations

import pytest

import archspec
from archspec.views.sizes import input_sizes


def test_a_count_of_zero_makes_nothing_and_torch_agrees():
    torch = pytest.importorskip("torch")
    text = ("input 3x8x8\nblock b(c) { conv c k3 p1 }\nconv 4 k1\nb(5) * 0\nrepeat 0 { relu | conv 7 k1 }\n"
            "gap | flatten | linear 10\n")
    report = archspec.check(text)
    assert report.ok and not report.diagnostics
    assert [r.op for r in report.rows] == ["input", "conv", "gap", "flatten", "linear"]
    net = archspec.build(text).eval()
    reference = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                    torch.nn.Linear(4, 10))
    reference.load_state_dict(dict(zip(reference.state_dict(), net.state_dict().values())))
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(net(x), reference(x))
    (d,) = archspec.check(text.replace("* 0", "* -1")).errors
    assert (d.code, d.message) == ("E004", "a repeat count must be a whole number of at least 0, got `-1`")


def test_no_w202_for_a_global_context_branch_joined_back():
    # ASPP's image pooling: gap to 1x1, conv, upsample back; the later conv sees 8x8 again.
    aspp = "input 8x8x8\nconcat { conv 4 k1 } { gap | conv 4 k1 | upsample 8 }\nconv 8 k3 p1 | gap | flatten | linear 10\n"
    assert archspec.check(aspp).diagnostics == []
    collapsed = "input 8x8x8\nmaxpool 8 | conv 8 k3 p1 | gap | flatten | linear 10\n"  # the whole network at 1x1
    assert [d.code for d in archspec.check(collapsed).diagnostics] == ["W202"]


def test_sizes_names_the_files_own_size_and_reaches_it():
    sizes = input_sizes(archspec.parse("input 3x200x40\nconv 8 k3 s2\ngap | flatten | linear 10\n", "n.arch"), 64)
    assert sizes.limit == 200 and 200 in sizes.axes[0].valid and sizes.own_accepted()
    assert sizes.render().endswith("  the file's own size 200x40: accepted\n")
    assert sizes.to_dict()["own"] == {"H": 200, "W": 40, "accepted": True}
    none = input_sizes(archspec.parse("input 3x8x8\nconv 8 k3 s2\nadd { conv 8 k1 } { conv 8 k3 }\n", "n.arch"), 16)
    text = none.render()
    assert "H accepted: none at any size" in text and "never" not in text
    assert text.endswith("the file's own size 8x8: not accepted\n")
    assert none.to_dict()["axes"][0]["valid"] == []


RECTANGULAR = """input 3x16x16
block factorised(kh, kw, c=8) { conv c k{kh}x{kw} p{kh//2}x{kw//2} | conv c k{kh}x3 s1x{kh} | conv c k1x{kw} }
block square_or_not(k) { conv 4 k{k} }
factorised(1, 7)
factorised(3, 1, c=6)
square_or_not(3x1)
"""


def test_rectangular_kernels_from_block_parameters_build_torchs_convs():
    torch = pytest.importorskip("torch")
    report = archspec.check(RECTANGULAR, classes=None)
    assert report.ok, [d.message for d in report.errors]
    convs = [m for m in archspec.build(RECTANGULAR).modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(m.kernel_size, m.stride, m.padding) for m in convs] == [
        ((1, 7), (1, 1), (0, 3)), ((1, 3), (1, 1), (0, 0)), ((1, 7), (1, 1), (0, 0)),
        ((3, 1), (1, 1), (1, 0)), ((3, 3), (1, 3), (0, 0)), ((1, 1), (1, 1), (0, 0)),
        ((3, 1), (1, 1), (0, 0))]
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        y = archspec.build(RECTANGULAR)(x)
    assert tuple(y.shape[1:]) == report.output_shape
    # A pair divided like a number is refused at the argument, not by torch.
    (d,) = archspec.check("input 3x8x8\nblock b(k) { conv 4 k{k} p{k//2} }\nb(3x3)\n", classes=None).errors
    assert (d.code, d.message) == ("E004", "`//` needs numbers")


def test_fmt_keeps_a_pair_written_glued():
    from archspec.views.fmt import format_text

    assert format_text(RECTANGULAR) == RECTANGULAR
    assert format_text("input 3x8x8\nblock b(k) { conv 4 k{k} }\nb( 1x7 )\n") == "input 3x8x8\nblock b(k) { conv 4 k{k} }\nb(1x7)\n"


def test_a_block_without_parameters_takes_a_count():
    from archspec.views.fmt import format_text

    bare = "input 3x8x8\nblock dense { conv 4 k1 | relu }\ndense * 3\nrepeat 2 { dense * {1+1} }\n"
    called = bare.replace("dense * 3", "dense() * 3").replace("dense * {1+1}", "dense() * {1+1}")
    mine, theirs = archspec.check(bare, classes=None), archspec.check(called, classes=None)
    assert mine.ok and [(r.path, r.out_shape) for r in mine.rows] == [(r.path, r.out_shape) for r in theirs.rows]
    assert len([r for r in mine.rows if r.op == "conv"]) == 7
    assert format_text(bare) == bare
    (d,) = archspec.check("input 3x8x8\nrelu * 3\n", classes=None).errors
    assert (d.code, d.message) == ("E007", "`relu` is an op, not a block")
