"""Help that points at the real mistake (issue 10): channels-last inputs, the axis that needs
padding, one diagnostic per mistake, tabs under the caret, folders and missing files."""
from __future__ import annotations

import archspec
from archspec.language.diagnostics import caret_line


def codes(text: str) -> list[str]:
    return [d.code for d in archspec.check(text).diagnostics]


def test_channels_last_input_says_channels_first():
    [d] = archspec.check("input 32x32x3\nconv 6 k5\nflatten\nlinear 10\n").diagnostics
    assert d.code == "E101" and d.help == "write the channels first: `input 3x32x32`"
    assert any("inputs are C x H x W" in n for n in d.notes)


def test_channels_first_input_keeps_the_padding_help():
    [d] = archspec.check("input 3x4x4\nconv 6 k5\nflatten\nlinear 10\n").diagnostics
    assert "`p1`" in d.help and not any("C x H x W" in n for n in d.notes)


def test_padding_suggestion_uses_the_axis_that_is_too_small():
    [d] = archspec.check("input 3x32x2\nconv 6 k5 p1\nflatten\nlinear 10\n").diagnostics
    assert "`p1x2`" in d.help
    fixed = archspec.check("input 3x32x2\nconv 6 k5 p1x2\nflatten\nlinear 10\n")
    assert fixed.ok and fixed.rows[1].out_shape == (6, 30, 2)
    [tall] = archspec.check("input 3x2x9\nconv 6 k7\nflatten\nlinear 10\n").diagnostics
    assert "`p3x0`" in tall.help


def test_bad_input_dims_are_one_error():
    assert codes("input 4x4\nconv 6 k3\nflatten\nlinear 10\n") == ["E004"]


def test_fractional_padding_is_one_clear_error():
    [d] = archspec.check("input 3x32x32\nconv 6 k3 p2.5\nflatten\nlinear 10\n").diagnostics
    assert d.message == "`conv` padding (`p`): must be N or NxM, or 'same' or 'valid', got `2.5`"


def test_glued_word_value_suggests_the_spaced_form():
    [d] = archspec.check("input 3x32x32\nconv 6 k3 psame\nflatten\nlinear 10\n").diagnostics
    assert d.code == "E003" and d.help.startswith("did you mean `p same`?")


def test_caret_keeps_the_tabs_of_the_source_line():
    assert caret_line("\tconv 6 k5", 2, 11) == "\t^^^^^^^^^"
    assert caret_line("\t\tconv 6\tk5 x", 10, 12) == "\t\t      \t^^"
    assert caret_line("conv 6\tk5", 1, 10) == "^^^^^^\t^^"


def test_check_a_folder_checks_every_arch_file_under_it(cli, tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "good.arch").write_text("input 3x32x32\nflatten\nlinear 10\n")
    (tmp_path / "sub" / "bad.arch").write_text("input 3x4x4\nconv 6 k5\nflatten\nlinear 10\n")
    out = cli("check", "-q", str(tmp_path))
    assert out.returncode == 1
    assert "2 files checked: 1 ok, 1 error" in out.stdout
    assert f"{tmp_path / 'sub' / 'bad.arch'}:2:1: error[E101]" in out.stdout


def test_check_a_folder_without_arch_files_says_so(cli, tmp_path):
    out = cli("check", str(tmp_path))
    assert out.returncode == 2
    assert f"{tmp_path}: a folder with no .arch files in it" in out.stderr and "help: " in out.stderr


def test_missing_file_has_help_with_the_closest_name(cli, tmp_path):
    (tmp_path / "lenet.arch").write_text("input 3x32x32\n")
    out = cli("check", str(tmp_path / "lenett.arch"))
    assert out.returncode == 2 and "no such file" in out.stderr
    assert f"help: check the path: did you mean {tmp_path / 'lenet.arch'}?" in out.stderr
    far = cli("check", str(tmp_path / "nothing_like_it.arch"))
    assert "help: check the path" in far.stderr and "did you mean" not in far.stderr


# ---- PyTorch habits (issue 10.5)

def only(text: str):
    [d] = archspec.check(text).diagnostics
    return d


def test_torch_positional_order_gets_the_language_form():
    for layer in ("conv 6 5", "conv 3 6 5"):
        d = only(f"input 3x32x32\n{layer}\nflatten\nlinear 10\n")
        assert d.code == "E003" and d.help == "write `conv 6 k5`", layer
        assert "in-channels come from the previous layer" in d.message
    assert only("input 400\nlinear 400 120\n").help == "write `linear 120`"
    assert only("input 3x32x32\nmaxpool 2 2\nflatten\nlinear 10\n").help == "write `maxpool 2 s2`"


def test_language_form_maps_torch_keywords():
    from archspec.language.binding import language_form

    assert language_form("conv", ["3", "6", "5", "2", "1"]) == "conv 6 k5 s2 p1"
    assert language_form("conv", ["3", "6", "kernel_size=3", "padding='same'", "bias=False"]) == "conv 6 k3 p same nobias"


def test_an_op_called_like_a_block_gets_the_op_form():
    d = only("input 3x32x32\nconv(6, k5)\nflatten\nlinear 10\n")
    assert (d.code, d.message, d.help) == ("E007", "`conv` is an op, not a block", "write `conv 6 k5`")
    d = only("input 3x32x32\nflatten\nLinear(3072, 120)\n")
    assert d.message == "`Linear` is not a block: the op is `linear`"
    assert d.help.startswith("write `linear 120`")


def test_torch_and_keras_names_suggest_the_op():
    names = {"ReLU": "relu", "fc": "linear", "dense": "linear", "batchnorm": "bn", "BatchNorm2d": "bn",
             "view": "flatten", "reshape": "flatten", "nn.Conv2d": "conv", "MaxPool2d": "maxpool"}
    for word, op in names.items():
        d = only(f"input 3x32x32\n{word}\n")
        assert (d.code, d.help) == ("E002", f"did you mean `{op}`?"), word


def test_hardsigmoid_typos_never_suggest_sigmoid():
    # sigmoid is a different function: a typo of hardsigmoid (or MobileNetV3's h-sigmoid) gets hardsigmoid.
    for word in ("hsigmoid", "hsigmod", "hsgmoid", "hardsigmod", "hardsigmiod", "hrdsigmoid", "hard_sigmoid", "Hardsigmoid"):
        d = only(f"input 3x32x32\n{word}\n")
        assert (d.code, d.help) == ("E002", "did you mean `hardsigmoid`?"), word
    assert only("input 3x32x32\nsigmod\n").help == "did you mean `sigmoid`?"


def test_a_forgotten_pipe_is_one_diagnostic():
    d = only("input 3x32x32\nconv 6 k5 relu maxpool 2\nflatten\nlinear 10\n")
    assert (d.code, d.message) == ("E003", "missing `|` before `relu`?")
    assert d.help == "separate layers with `|` or a newline: `conv 6 k5 | relu | maxpool 2`"
    assert (d.span.line, d.span.column) == (2, 11)


def test_rendered_caret_lines_up_under_a_tab_indented_layer():
    # (not an examples/broken file: `archspec fmt` keeps examples free of tabs)
    from archspec.language.diagnostics import render_text

    report = archspec.check(archspec.parse("input 3x4x4\n\tconv 6 k5\n\t\tflatten | linear 10\n", "tabs.arch"))
    text = render_text(report.diagnostics[0], report.model.sources)
    assert text.splitlines()[:4] == [
        "tabs.arch:2:2: error[E101]: kernel 5 is larger than the padded input 4x4; output size would be below 1",
        "  |",
        "2 | \tconv 6 k5",
        "  | \t^^^^^^^^^",
    ]
