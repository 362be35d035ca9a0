"""The checker on the seed network and the CLI's contract (exit codes, JSON, stdin)."""
from __future__ import annotations

import json
import subprocess
import sys

import archspec
from conftest import EXAMPLES

LENET = (EXAMPLES / "lenet.arch").read_text()


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "archspec.cli", *args], input=stdin, capture_output=True, text=True)


def test_lenet_shapes_and_params_match_the_seed_net():
    report = archspec.check(LENET)
    assert report.ok and report.diagnostics == []
    assert report.output_shape == (10,)
    assert report.params == 62_006
    shapes = {r.path: r.out_shape for r in report.rows}
    assert shapes["pool2"] == (16, 5, 5) and shapes["flatten1"] == (400,)


def test_cli_exit_codes():
    assert run_cli("check", str(EXAMPLES / "lenet.arch")).returncode == 0
    bad = run_cli("check", "-", stdin="input 3x4x4\nconv 6 k5\n")
    assert bad.returncode == 1
    assert "<stdin>:2:1: error[E101]" in bad.stdout
    assert "H_out = floor((4 + 2*0 - 1*(5-1) - 1)/1 + 1) = 0" in bad.stdout
    missing = run_cli("check", "no/such/file.arch")
    assert missing.returncode == 2 and "no such file" in missing.stderr and "Traceback" not in missing.stderr
    usage = run_cli("check", "--classes", "ten", "x.arch")
    assert usage.returncode == 2 and "Traceback" not in usage.stderr


def test_warnings_fail_only_with_strict():
    src = "input 3x15x15\nmaxpool 2\nflatten\nlinear 10\n"
    assert run_cli("check", "-", stdin=src).returncode == 0
    strict = run_cli("check", "--strict", "-", stdin=src)
    assert strict.returncode == 1 and "warning[W201]" in strict.stdout


def test_json_schema():
    out = run_cli("check", "--format", "json", str(EXAMPLES / "lenet.arch"), "-", stdin="input 3x4x4\nconv 6 k5\nflatten\nlinear 10\n")
    assert out.returncode == 1
    files = json.loads(out.stdout)["files"]
    good, bad = files
    assert set(good) >= {"path", "ok", "input_shape", "output_shape", "params", "layers", "diagnostics"}
    assert good["ok"] and good["input_shape"] == [3, 32, 32] and good["output_shape"] == [10] and good["params"] == 62006
    assert set(good["layers"][1]) >= {"op", "line", "column", "output_shape", "params"}
    assert good["layers"][1] == {"name": "conv1", "op": "conv", "line": 3, "column": 1, "output_shape": [6, 28, 28], "params": 456}
    assert not bad["ok"] and bad["output_shape"] == [10]  # best effort: linear 10 still gives 10 features
    assert bad["layers"][1]["output_shape"] is None  # the conv that failed: spatial size unknown
    diag = bad["diagnostics"][0]
    assert {k: diag[k] for k in ("severity", "code", "line", "column", "end_line", "end_column")} == {
        "severity": "error", "code": "E101", "line": 2, "column": 1, "end_line": 2, "end_column": 10}
    assert diag["help"] and diag["message"]


def test_select_ignore_and_noqa():
    src = "input 3x15x15\nmaxpool 2\nrelu | relu\nflatten\nlinear 10\n"
    codes = lambda *a: [d["code"] for d in json.loads(run_cli("check", "--format", "json", *a, "-", stdin=src).stdout)["files"][0]["diagnostics"]]
    assert codes() == ["W201", "W203"]
    assert codes("--ignore", "W201") == ["W203"]
    assert codes("--select", "W2", "--ignore", "W203") == ["W201"]
    noqa = src.replace("maxpool 2", "maxpool 2  # noqa: W201")
    # the library applies `# noqa` as the command does (one pipeline); what it silenced stays on the report
    library = archspec.check(noqa)
    assert [d.code for d in library.diagnostics] == ["W203"]
    assert [d.code for d in library.silenced] == ["W201"]
    out = json.loads(run_cli("check", "--format", "json", "-", stdin=noqa).stdout)
    assert [d["code"] for d in out["files"][0]["diagnostics"]] == ["W203"]


def test_a_per_pixel_output_at_the_input_size_is_scored_by_its_channels():
    """Segmentation networks end with a class map at the input's size: W204 counts its channels, not features."""
    dense = "input 3x16x16\nconv 8 k3 p1 | relu\nconv 10 k1\n"
    assert [d.code for d in archspec.check(dense, classes=10).diagnostics] == []
    (wrong,) = archspec.check(dense, classes=5).diagnostics
    assert (wrong.code, wrong.message, wrong.help) == (
        "W204", "the network ends with per-pixel scores for 10 classes [B, 10, 16, 16], but there are 5 classes",
        "make the last layer `conv 5 k1` (or pass `--classes 10`)")
    (smaller,) = archspec.check("input 3x16x16\nconv 10 k3 s2 p1\n", classes=10).diagnostics  # not at the input's size
    assert smaller.message == "the network ends with a 4-D tensor [B, 10, 8, 8], not 10 class scores"
