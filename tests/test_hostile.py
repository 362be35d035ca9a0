"""Hostile input (issue 14, the static side): each reproducer class gives a diagnostic or one
`error:` + `help:` line, fast, never a traceback, a hang or a blow-up of memory.

Most cases run in-process (archspec.check / fmt / the CLI's main); the few that need a real
process (a terminal encoding, a FIFO that would block an open) run one with a timeout.
"""
from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

import archspec
from archspec.cli import main
from archspec.language import codes
from archspec.language.diagnostics import filter_diagnostics
from archspec.language.expand import MAX_LAYERS, MAX_USE_DEPTH
from archspec.language.files import MAX_FILE_BYTES
from archspec.language.syntax import MAX_NESTING
from archspec.views.fmt import format_text
from conftest import EXAMPLES, REPO

NINES = "9" * 150


def diagnostics(text: str) -> list[tuple[str, str]]:
    return [(d.code, d.message) for d in archspec.check(text).diagnostics]


def codes_of(text: str) -> list[str]:
    return [code for code, _ in diagnostics(text)]


def timed_check(text: str, limit_s: float = 10.0):
    """The check within `limit_s` of CPU time (what the work costs, steady on a shared machine), and
    within 6x that of wall time (a hang that waits instead of working still fails)."""
    start, start_cpu = time.perf_counter(), time.process_time()
    report = archspec.check(text)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    assert cpu < limit_s, f"check took {cpu:.1f} s of CPU"
    assert elapsed < 6 * limit_s, f"check took {elapsed:.1f} s"
    return report


def run_cli(argv: list[str], capsys, stdin: bytes | None = None, monkeypatch=None) -> tuple[int, str, str]:
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8"))
    rc = main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return rc, out, err


# ------------------------------------------------------------------------------------- numbers
@pytest.mark.parametrize("text, shown", [
    (f"input 1x{NINES}\nflatten\nlinear 10\n", "1x1e+150"),
    (f"input 3x32x32\nflatten\nlinear {NINES}\n", "1e+150"),
    ("input 3x32x32\nconv {1e400/1} k3\n", "1e400"),
    ("input 3x32x32\nleakyrelu 1e400\n", "1e400"),
    ("input 3x32x32\nconv 8 k3 p" + "9" * 5000 + "\n", "inf"),
    ("input 3x32x32\nconv 8 k3 s" + "9" * 30 + "\n", "1e+30"),
])
def test_numbers_torch_cannot_take_are_E004(text, shown):
    found = diagnostics(text)
    assert found and all(code == codes.INVALID_VALUE for code, _ in found), found
    assert any(shown in message for _, message in found), found


def test_out_of_range_number_points_at_itself():
    report = archspec.check("input 3x32x32\nconv {1e400/1} k3\n")
    (d,) = report.diagnostics
    assert (d.span.line, d.span.column, d.span.end_column) == (2, 7, 12)  # `1e400`


def test_nan_from_an_expression_is_E004():
    found = codes_of("block b(c) { conv {c-c} k3 }\ninput 3x32x32\nb(1e400)\n")
    assert codes.INVALID_VALUE in found and set(found) == {codes.INVALID_VALUE}


def test_expression_squaring_bomb_stops_at_int64():
    blocks = "block s0(c) { conv {c} k1 }\n" + "".join(f"block s{i}(c) {{ s{i - 1}(c*c) }}\n" for i in range(1, 30))
    report = timed_check(blocks + "input 3x32x32\ns29(3)\n", 5)
    assert [d.code for d in report.errors] == [codes.INVALID_VALUE]


def test_infinite_leakyrelu_slope_is_refused_not_built():
    assert codes_of("input 8\nleakyrelu 1e400\n") == [codes.INVALID_VALUE]


def test_summary_of_huge_but_valid_sizes(tmp_path, capsys):
    big = 2 ** 62
    path = tmp_path / "big.arch"
    path.write_text(f"input {big}x{big}x{big}\nconv {big} k3\nflatten\nlinear {big}\nlinear {big}\n")
    rc, out, err = run_cli(["summary", str(path)], capsys)
    assert rc == 0 and "Model size" in out, err


def test_huge_adaptive_pool_is_constant_time(tmp_path, capsys):
    path = tmp_path / "pool.arch"
    path.write_text("input 3x999999999x999999999\nadaptiveavgpool 99999999x99999999\nflatten\nlinear 10\n")
    start = time.perf_counter()
    rc, out, err = run_cli(["summary", str(path)], capsys)
    assert rc == 0 and time.perf_counter() - start < 10


def test_widest_adaptive_window_matches_the_loop():
    from archspec.language.ops.pool import widest_adaptive_window

    for n in range(1, 40):
        for o in range(1, 40):
            loop = max(-(-(i + 1) * n // o) - i * n // o for i in range(o))
            assert widest_adaptive_window(n, o) == loop, (n, o)


# ------------------------------------------------------------------------------------- nesting
@pytest.mark.parametrize("text", [
    "input 3x32x32\n" + "residual {" * 10000 + " relu " + "}" * 10000 + "\n",
    "input 3x32x32\n" + "concat { } { " * 3000 + "relu" + " }" * 3000 + "\n",
    "block b(c) { conv {" + "-" * 10000 + "1} k3 }\ninput 3x32x32\nb(1)\n",
    "block b(c) { conv {" + "1-" * 5000 + "1} k3 }\ninput 3x32x32\nb(1)\n",
], ids=["residual", "concat", "negation", "subtraction"])
def test_deep_nesting_is_one_E009(text):
    (d,) = timed_check(text).diagnostics
    assert d.code == codes.TOO_LARGE and f"past the limit of {MAX_NESTING}" in d.message


def test_nesting_made_by_block_calls_is_bounded():
    blocks = "block r0() { relu }\n" + "".join(f"block r{i}() {{ residual {{ r{i - 1}() }} }}\n" for i in range(1, 60))
    (d,) = timed_check(blocks + "input 3x32x32\nr59()\n").diagnostics
    assert d.code == codes.TOO_LARGE and "once blocks are expanded" in d.message


def test_nesting_within_the_limit_checks():
    depth = MAX_NESTING - 2
    report = archspec.check("input 3x32x32\n" + "residual {" * depth + " relu " + "}" * depth + "\n", classes=None)
    assert report.ok, report.diagnostics


def test_fmt_refuses_deep_nesting_with_an_error():
    with pytest.raises(archspec.ArchspecError, match="levels deep"):
        archspec.fmt("input 3x32x32\n" + "residual {" * 10000 + " relu " + "}" * 10000 + "\n")


# ----------------------------------------------------------------------------------- expansion
@pytest.mark.parametrize("text, reach", [
    ("input 3x32x32\nrepeat 1000000000 { relu }\n", "1,000,000,001"),
    ("input 3x32x32\nrepeat 1000 { repeat 1000 { repeat 1000 { relu } } }\n", "1,000,001"),
    ("block b() { relu }\ninput 3x32x32\nb() * 1000000000\n", "2,000,000,001"),
])
def test_expansion_is_refused_with_the_number_it_would_reach(text, reach):
    (d,) = timed_check(text, 5).diagnostics
    assert d.code == codes.TOO_LARGE and f"would make {reach} layers" in d.message, d.message
    assert f"{MAX_LAYERS:,}" in d.message


def test_block_expansion_bomb_stops_at_the_limit():
    bomb = "block b0() { relu }\n" + "".join(f"block b{i}() {{ b{i - 1}() | b{i - 1}() }}\n" for i in range(1, 41))
    (d,) = timed_check(bomb + "input 3x32x32\nb40()\n").diagnostics
    assert d.code == codes.TOO_LARGE


@pytest.mark.parametrize("text", [
    "input 3x32x32\n" + " | ".join(["relu"] * 100000) + "\n",
    "input 3x32x32\nconv 8 " + "k3 " * 100000 + "\n",
    "block b(c) { relu }\ninput 3x32x32\nb(" + "1," * 100000 + ")\n",
], ids=["layers", "arguments", "call-arguments"])
def test_huge_texts_are_refused_before_parsing(text):
    (d,) = timed_check(text, 5).diagnostics
    assert d.code == codes.TOO_LARGE and "words and symbols" in d.message


def test_too_many_arguments_on_one_layer():
    (d,) = archspec.check("input 3x32x32\nconv 8 " + "k3 " * 300 + "\n").diagnostics
    assert d.code == codes.UNKNOWN_ARGUMENT and "301 arguments" in d.message  # `8` and 300 `k3`


def test_many_branches_are_refused_quickly():
    (d,) = timed_check("input 3x32x32\nrepeat 6 { concat " + "{ relu } " * 10000 + "}\n").diagnostics
    assert d.code == codes.TOO_LARGE and "60,007 layers" in d.message  # the input + 6 x (10,000 relus + the concat)


def test_ten_thousand_branches_are_checked_quickly():
    report = timed_check("input 3x32x32\nconcat " + "{ relu } " * 10000 + "\n")
    assert not report.errors and report.output_shape == (30000, 32, 32)


def test_the_limit_is_a_number_of_layers_not_a_guess():
    ok = archspec.check(f"input 3x32x32\nrepeat {MAX_LAYERS - 1} {{ relu }}\n", classes=None)
    assert not any(d.code == codes.TOO_LARGE for d in ok.diagnostics)
    refused = archspec.check(f"input 3x32x32\nrepeat {MAX_LAYERS} {{ relu }}\n", classes=None)
    assert [d.code for d in refused.errors] == [codes.TOO_LARGE]


# ----------------------------------------------------------------------------------- files
def test_sparse_file_is_refused_before_reading(tmp_path, capsys):
    big = tmp_path / "big.arch"
    with open(big, "wb") as f:
        f.truncate(1 << 30)  # 1 GB, sparse: reading it would take 1 GB of memory
    rc, out, err = run_cli(["check", str(big)], capsys)
    assert rc == 2 and f"over the limit of {MAX_FILE_BYTES:,} bytes" in err and "help:" in err
    with pytest.raises(archspec.UsageError, match="over the limit"):
        archspec.load(big)
    main_file = tmp_path / "main.arch"
    main_file.write_text('use "big.arch"\ninput 3x32x32\n')
    found = archspec.check(main_file).diagnostics
    assert [d.code for d in found] == [codes.IMPORT_ERROR] and "over the limit" in found[0].message


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_use_of_a_device_is_E008(device, tmp_path):
    if not os.path.exists(device):
        pytest.skip(f"no {device}")
    path = tmp_path / "main.arch"
    path.write_text(f'use "{device}"\ninput 3x32x32\nrelu\n')
    (d,) = archspec.check(path).diagnostics
    assert d.code == codes.IMPORT_ERROR and "not a regular file" in d.message


def test_api_fmt_of_a_device_path_is_a_usage_error():
    with pytest.raises(archspec.UsageError, match="not a regular file"):
        archspec.fmt(Path("/dev/zero"))


def test_fifo_is_refused_without_blocking(tmp_path, capsys):
    fifo = tmp_path / "pipe.arch"
    os.mkfifo(fifo)
    rc, out, err = run_cli(["check", str(fifo)], capsys)  # an open() would block forever
    assert rc == 2 and "not a regular file" in err
    main_file = tmp_path / "main.arch"
    main_file.write_text('use "pipe.arch"\ninput 3x32x32\n')
    assert [d.code for d in archspec.check(main_file).diagnostics] == [codes.IMPORT_ERROR]


def test_symlink_loops(tmp_path, capsys):
    loop = tmp_path / "loop.arch"
    loop.symlink_to(loop)
    rc, out, err = run_cli(["check", str(loop)], capsys)
    assert rc == 2 and "symbolic links" in err
    main_file = tmp_path / "main.arch"
    main_file.write_text('use "loop.arch"\ninput 3x32x32\nrelu\n')
    (d,) = archspec.check(main_file).diagnostics
    assert d.code == codes.IMPORT_ERROR and "symbolic links" in d.message


def test_a_long_use_chain_is_E008(tmp_path):
    for i in range(1000):
        (tmp_path / f"f{i}.arch").write_text((f'use "f{i + 1}.arch"\n' if i < 999 else "") + f"block b{i}() {{ relu }}\n")
    main_file = tmp_path / "main.arch"
    main_file.write_text('use "f0.arch"\ninput 3x32x32\nb1()\n')
    found = [d for d in archspec.check(main_file).diagnostics if d.code == codes.IMPORT_ERROR]
    assert len(found) == 1 and f"past the limit of {MAX_USE_DEPTH}" in found[0].message


def test_use_of_a_directory_is_E008(tmp_path):
    path = tmp_path / "main.arch"
    path.write_text('use "/"\ninput 3x32x32\nrelu\n')
    (d,) = archspec.check(path).diagnostics
    assert d.code == codes.IMPORT_ERROR and "directory" in d.message


# ------------------------------------------------------------------------------------- the CLI
def test_invalid_utf8_on_stdin(capsys, monkeypatch):
    rc, out, err = run_cli(["check", "-"], capsys, stdin=b"input 3x32x32\n\xff\xfe conv 8 k3\n", monkeypatch=monkeypatch)
    assert rc == 2 and err.startswith("error: standard input: not UTF-8 text")


def test_compile_output_errors(tmp_path, capsys):
    lenet = str(EXAMPLES / "lenet.arch")
    rc, out, err = run_cli(["compile", lenet, "-o", str(tmp_path / "missing" / "net.py")], capsys)
    assert rc == 1 and "cannot write (No such file or directory)" in err
    rc, out, err = run_cli(["compile", lenet, "-o", str(tmp_path)], capsys)
    assert rc == 1 and "is a directory" in err and "help:" in err


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
def test_compile_to_a_full_device_is_an_error_and_leaves_the_device(capsys):
    before = os.stat("/dev/full").st_mode
    assert stat.S_ISCHR(before)
    rc, out, err = run_cli(["compile", str(EXAMPLES / "lenet.arch"), "-o", "/dev/full"], capsys)
    assert rc == 1 and "No space left on device" in err
    assert os.stat("/dev/full").st_mode == before  # not replaced by a regular file


def test_explain_layer_with_a_superscript_digit(capsys):
    rc, out, err = run_cli(["explain", str(EXAMPLES / "lenet.arch"), "--layer", "²"], capsys)
    assert rc == 2 and err.startswith("error: no layer named ²") and "help:" in err


def test_terminal_that_cannot_show_a_character(tmp_path):
    path = tmp_path / "accents.arch"
    path.write_text("input 3x32x32\ncnov 8 k3  # é²\n", encoding="utf-8")
    cp = subprocess.run([sys.executable, "-m", "archspec", "check", str(path)], capture_output=True, timeout=60,
                        env={**os.environ, "PYTHONIOENCODING": "ascii", "PYTHONPATH": str(REPO), "NO_COLOR": "1"})
    assert cp.returncode == 1 and b"Traceback" not in cp.stderr
    assert b"cnov 8 k3  # ??" in cp.stdout


# ------------------------------------------------------------------------------- lines and lexer
def test_noqa_after_a_form_feed_stays_on_its_line():
    text = "input 3x32x32\nrelu\f# noqa\ncnov 8 k3\n"  # str.splitlines would make `# noqa` line 3
    report = archspec.check(text)
    assert [d.code for d in filter_diagnostics(report.diagnostics, report.sources)] == [codes.UNKNOWN_OP]


def test_noqa_on_a_line_with_form_feeds_applies_to_it():
    report = archspec.check("input 3x32x32\n\f\fcnov 8 k3 \f# noqa\n")
    assert filter_diagnostics(report.diagnostics, report.sources) == []


def _kept_codes(text: str) -> list[str]:
    report = archspec.check(text)
    return sorted(d.code for d in filter_diagnostics(report.diagnostics, report.sources))


def test_noqa_ending_a_continued_line_covers_the_lines_it_continues():
    """Found by benchmarks/fuzz.py: fmt joins `\\`-continued lines, which moved a `# noqa` from the
    continuation onto the code before it: `check` of fmt's output lost an E003. The joined lines are one
    line of code, so the noqa covers them all, before fmt as after."""
    text = "input 3x32x32\nconv 8 k3 bogus \\\n  p1  # noqa\nflatten\n"
    out = format_text(text)
    assert out == "input 3x32x32\nconv 8 k3 bogus p1  # noqa\nflatten\n"
    assert _kept_codes(text) == _kept_codes(out) == []
    # without the continuation the noqa stays on its own line; a backslash ending a comment continues nothing
    assert _kept_codes("input 3x32x32\nconv 8 k3 bogus\n  # noqa\n") == [codes.UNKNOWN_ARGUMENT]
    assert _kept_codes("input 3x32x32\nconv 8 k3 bogus  # c \\\n# noqa\n") == [codes.UNKNOWN_ARGUMENT]


@pytest.mark.parametrize("text", [
    "input 3x32x32\ncnov \\\n# noqa\nrelu\n",  # a comment alone after a continuation: it ends that line of code
    "#\\\r\n use\"\"\\\r\n# noqa\r",  # the same after a comment ending in `\\` (no continuation) and CRLFs
    "conv()|use\".\"\\\r\n# noqa\r",
    "input 3x32x32\nrelu \\\n\n# noqa\ncnov\n",  # a blank line ends the line of code: the noqa is its own line
])
def test_fmt_keeps_a_noqa_after_a_continuation_on_the_same_code(text):
    """Found by benchmarks/fuzz.py: fmt wrote a comment that followed code through a `\\` continuation on
    a line of its own, where the `# noqa` no longer covered that code."""
    out = format_text(text)
    assert _kept_codes(out) == _kept_codes(text)
    assert format_text(out) == out


def test_a_file_without_statements_reports_e006_at_its_first_comment():
    """Found by benchmarks/fuzz.py: E006 sat on line 1 even when line 1 was blank, and fmt drops
    leading blank lines, so a `# noqa` on line 2 silenced it only after fmt."""
    text = "\r\n# noqa|\\\r"
    report = archspec.check(text)  # the `# noqa` silences it: where it sits is on report.silenced
    assert report.diagnostics == [] and [(d.code, d.span.line) for d in report.silenced] == [(codes.INPUT_LAYER, 2)]
    out = format_text(text)
    assert _kept_codes(text) == _kept_codes(out) == []
    assert [(d.code, d.span.line) for d in archspec.check("\n\n# just a note\n").diagnostics] == \
        [(codes.INPUT_LAYER, 3)]
    assert [(d.code, d.span.line) for d in archspec.check("").diagnostics] == [(codes.INPUT_LAYER, 1)]
    text = "\\\r\n\n# noqa"  # a `\\`-newline is a blank to the grammar, and fmt drops it
    assert [(d.code, d.span.line) for d in archspec.check(text).silenced] == [(codes.INPUT_LAYER, 3)]
    assert _kept_codes(text) == _kept_codes(format_text(text)) == []


def test_use_of_a_path_with_a_nul_character_is_e008(tmp_path):
    """Found by benchmarks/fuzz.py: `use "\\x00..."` raised ValueError (embedded null byte) from the
    path resolution, a traceback in every command."""
    text = 'use "\x00no_such_blocks.arch"\ninput 3x32x32\nrelu\n'
    assert codes_of(text) == [codes.IMPORT_ERROR]
    path = tmp_path / "nul.arch"
    path.write_text(text)
    err = io.StringIO()
    assert main(["check", str(path)], out=err) == 1
    assert "NUL character" in err.getvalue() and "Traceback" not in err.getvalue()


def test_keywords_are_whole_words():
    report = archspec.check("block adder(c) { conv c k1 }\nblock concat2() { relu }\nblock shortcuts() { relu }\n"
                            "input 3x32x32\nadder(4) | concat2() | shortcuts()\nconcat { } { relu }\nadd { } { relu }\n"
                            "residual { relu } shortcut { }\ngap | flatten | linear 10\n")
    assert report.ok and not report.diagnostics, report.diagnostics
    assert report.output_shape == (10,)


def test_byte_order_mark_is_dropped(tmp_path):
    text = "\ufeffinput 3x32x32\nconv 8 k3 | relu\nflatten\nlinear 10\n"
    assert archspec.check(text).ok
    path = tmp_path / "bom.arch"
    path.write_bytes(text.encode("utf-8"))
    assert archspec.check(path).ok
    assert not archspec.fmt(text).startswith("\ufeff")


@pytest.mark.parametrize("text", [
    "t\n|#\\\nu",
    '  block\t  softmax (){\n|\\\n\n}#\\\n\r\nuse "blocks.arch" |',
    'input 3x32x32\nconv 8 \\\n k3 | relu  # a comment\n',
])
def test_fmt_is_idempotent_with_backslashes(text):
    once = archspec.fmt(text)
    assert archspec.fmt(once) == once
