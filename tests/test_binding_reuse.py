"""The same statement text bound again under the same parameters (each turn of `repeat`, each call of
`block(...) * N`, a line written twice) reuses its first binding with its own module name and span. The
oracles: the network written by hand in torch, and its layers' places in the file; mistakes are still
reported where they are made."""
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


def test_each_reused_layer_keeps_where_it_is_written():
    report = archspec.check(WRITTEN_OUT)
    lines = [row.layer.span.line for row in report.rows]
    assert lines == [1] + [line for line in range(2, 14) for _ in range(3)] + [14, 15, 16]
    assert [row.layer.span.column for row in report.rows[1:7]] == [1, 19, 24, 1, 16, 21]


def _by_hand(torch):
    """The network of WRITTEN_OUT in torch, written from its text."""
    nn = torch.nn
    layers, c_in = [], 3
    for c, s in [(8, 1)] * 6 + [(16, 2), (16, 1), (16, 1)] + [(8, 1)] * 3:
        layers += [nn.Conv2d(c_in, c, 3, s, 1), nn.BatchNorm2d(c), nn.ReLU()]
        c_in = c
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))


@pytest.mark.parametrize("text", [REPEATED, WRITTEN_OUT], ids=["repeated", "written-out"])
def test_the_reused_network_is_the_network_written_by_hand(text):
    torch = pytest.importorskip("torch")
    built = archspec.build(text).eval()
    reference = _by_hand(torch).eval()
    assert [p.shape for p in built.state_dict().values()] == [p.shape for p in reference.state_dict().values()]
    torch.manual_seed(0)
    weights = {k: torch.randn(v.shape) if v.is_floating_point() else v for k, v in built.state_dict().items()}
    weights = {k: v.abs() + 0.5 if k.endswith("running_var") else v for k, v in weights.items()}
    built.load_state_dict(weights)
    reference.load_state_dict(dict(zip(reference.state_dict(), weights.values())))
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(built(x), reference(x), rtol=1e-5, atol=1e-5)
