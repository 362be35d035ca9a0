"""`archspec sizes` and `check --input-sizes`: the accepted sizes per axis agree with torch size by
size on random networks; the rules read as the sets they stand for; the CLI."""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, event, given, settings

import archspec
from archspec.views.sizes import constraint, input_sizes
from conftest import EXAMPLES

torch = pytest.importorskip("torch")
from test_oracle import Renderer, TorchOracle, flat_archs, one_thread, structured_archs  # noqa: E402,F401 (one_thread: a fixture)


def test_rules():
    assert constraint("H", list(range(16, 65)), 64) == "H >= 16"
    assert constraint("H", list(range(1, 65)), 64) == "any H"
    assert constraint("H", list(range(32, 129, 32)), 128) == "H = 32k (k >= 1)"
    assert constraint("W", list(range(5, 65, 4)), 64) == "W = 4k + 1 (k >= 1)"
    assert constraint("H", [3, 4, 5, 9], 64) == "H in {3-5, 9}"
    assert constraint("H", [], 8) == "none in 1..8"


def test_lenet():
    sizes = input_sizes(archspec.load(EXAMPLES / "lenet.arch"), 64)
    h, w = sizes.axes
    assert h.valid == list(range(16, 65)) and w.valid == h.valid
    assert h.drop_free == list(range(16, 65, 4))  # conv k5 then pool 2, twice: (H - 4) and (H/2 - 4) even
    assert sizes.in_features["fc1"][0] == (16, 16, 16) and (32, 32, 400) in sizes.in_features["fc1"]


def _torch_runs(arch, dims) -> bool:
    r = Renderer("nl")
    r.render(arch)
    oracle = TorchOracle(r.line_of)
    try:
        with torch.no_grad():
            # Batch 2, as the main oracle: at batch 1 torch's GroupNorm refuses a group of one value,
            # a batch-size artefact the checker (batch symbolic) does not model.
            oracle.seq(arch.body, torch.zeros(2, *dims), {})
        return True
    except (RuntimeError, ValueError, IndexError):
        return False


LIMIT = 20


def _agrees(arch) -> int:
    """Compares every size of both axes with torch; returns how many sizes torch ran (0: none to compare)."""
    if len(arch.input) != 3:  # a feature input has no H or W
        return 0
    c = arch.input[0]
    sizes = input_sizes(archspec.parse(Renderer("nl").render(arch)), LIMIT)
    if sizes.anchor is None:  # nothing in range works: torch agrees on the diagonal
        assert not any(_torch_runs(arch, (c, n, n)) for n in range(1, LIMIT + 1))
        return 0
    ha, wa = sizes.anchor
    compared = 0
    for axis in sizes.axes:
        torch_valid = [n for n in range(1, LIMIT + 1) if _torch_runs(arch, (c, n, wa) if axis.name == "H" else (c, ha, n))]
        assert axis.valid == torch_valid, (axis.name, Renderer("nl").render(arch))
        compared += len(torch_valid)
    return compared


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(arch=flat_archs())
def test_valid_sizes_agree_with_torch_on_flat_networks(arch, one_thread):
    event(f"torch ran {'some' if _agrees(arch) else 'no'} sizes")


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(arch=structured_archs())
def test_valid_sizes_agree_with_torch_on_residuals_and_branches(arch, one_thread):
    event(f"torch ran {'some' if _agrees(arch) else 'no'} sizes")


def test_cli(cli):
    out = cli("sizes", str(EXAMPLES / "lenet.arch"), "--max", "40", "--format", "json")
    data = json.loads(out.stdout)
    assert out.returncode == 0 and data["axes"][0]["valid_rule"] == "H >= 16"
    assert data["axes"][0]["drop_free_rule"] == "H % 4 == 0 and H >= 16" and data["exact"]
    assert {"H": 32, "W": 32, "in_features": 400} in data["in_features"]["fc1"]
    assert data["in_features_rule"]["fc1"] == "16*(floor(H/4) - 3)*(floor(W/4) - 3)"
    text = cli("sizes", str(EXAMPLES / "lenet.arch"), "--max", "40").stdout
    assert "H accepted: H >= 16" in text and "64 at 20x20" in text
    checked = cli("check", str(EXAMPLES / "lenet.arch"), "--input-sizes", "3x32x32,3x8x8", "-q", "--format", "json")
    files = json.loads(checked.stdout)["files"]
    assert checked.returncode == 1 and [f["ok"] for f in files] == [True, False]
    assert files[1]["input_shape"] == [3, 8, 8] and files[1]["diagnostics"][0]["code"] == "E101"
    bad = cli("check", str(EXAMPLES / "lenet.arch"), "--input-sizes", "3x32")
    assert bad.returncode == 2 and "not CxHxW or F" in bad.stderr
    flat = cli("sizes", "-", stdin="input 784\nlinear 10\n")
    assert flat.returncode == 2 and "need an image input" in flat.stderr
