"""A statement bound again under the same parameters (each turn of `repeat`, each call of `block(...) * N`)
reuses its first binding with its own module name. The oracle: the same network written out line by line,
checked and built with torch; and mistakes are still reported at every turn."""
from __future__ import annotations

import pytest

import archspec

REPEATED = """input 3x16x16
block stage(c, s) {
  conv c k3 s{s} p1 | bn | relu
  repeat 2 { conv c k3 p1 | bn | relu }
}
stage(8, 1) * 2
stage(16, 2)
stage(8, 1)
gap
flatten
linear 10
"""

WRITTEN_OUT = """input 3x16x16
conv 8 k3 s1 p1 | bn | relu
conv 8 k3 p1 | bn | relu
conv 8 k3 p1 | bn | relu
conv 8 k3 s1 p1 | bn | relu
conv 8 k3 p1 | bn | relu
conv 8 k3 p1 | bn | relu
conv 16 k3 s2 p1 | bn | relu
conv 16 k3 p1 | bn | relu
conv 16 k3 p1 | bn | relu
conv 8 k3 s1 p1 | bn | relu
conv 8 k3 p1 | bn | relu
conv 8 k3 p1 | bn | relu
gap
flatten
linear 10
"""


def _layers(text: str) -> list[dict]:
    report = archspec.check(text)
    assert report.ok, [d.message for d in report.diagnostics]
    return [{**row.layer.model_dump(exclude={"span", "trace", "name"}), "out": row.out_shape, "params": row.params}
            for row in report.rows]


def test_repeated_statements_bind_as_if_written_out():
    assert _layers(REPEATED) == _layers(WRITTEN_OUT)


def test_each_reused_layer_keeps_its_own_module_name():
    report = archspec.check(REPEATED)
    paths = [row.path for row in report.rows]
    assert len(paths) == len(set(paths)) == 40
    assert [row.layer.name for row in report.rows[1:4]] == ["conv1", "bn1", "relu1"]


def test_a_mistake_is_reported_under_the_parameters_that_make_it():
    """`b(8)` binds cleanly and is reused; `b(0)` is bound afresh and gets its error, at the call that makes it."""
    report = archspec.check("input 3x16x16\nblock b(c) { conv c k3 p1 | relu }\nb(8) * 2\nb(0)\nb(8)\ngap\nflatten\nlinear 10\n")
    assert [(d.code, d.message) for d in report.diagnostics] == [("E004", "`conv` out channels: must be at least 1, got 0")]
    (error,) = report.diagnostics
    assert error.trace[0][1].line == 4  # the `b(0)` call


def test_a_mistake_in_a_repeated_statement_is_still_reported():
    report = archspec.check("input 3x16x16\nrepeat 3 { conv 8 k3 p1 | bn | relu | conv 8 kk3 }\ngap\nflatten\nlinear 10\n")
    assert [(d.code, d.message) for d in report.diagnostics] == [
        ("E005", "`conv` needs kernel (`k`)"), ("E003", "unknown argument `kk3` for `conv`")]


def test_the_reused_network_builds_the_same_torch_module():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    repeated = archspec.build(REPEATED).eval()
    torch.manual_seed(0)
    written = archspec.build(WRITTEN_OUT).eval()
    assert [p.shape for p in repeated.parameters()] == [p.shape for p in written.parameters()]
    written.load_state_dict(dict(zip(written.state_dict(), repeated.state_dict().values())))
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(repeated(x), written(x))
