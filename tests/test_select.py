"""`select` (selective kernel / split attention): its syntax messages, its E123 cases, and the receptive field of
its attention (which runs on the branches' sum) against autograd."""
from __future__ import annotations

import pytest

import archspec


def _messages(text: str) -> list[tuple[str, str]]:
    return [(d.code, d.message) for d in archspec.check(text, classes=None).diagnostics]


@pytest.mark.parametrize("line, expected", [
    ("select { conv 4 k1 } { conv 4 k1 }", ("E001", "`select` needs its attention body after the branches: `attend { ... }`")),
    ("select { conv 4 k1 } attend { gap | conv 4 k1 }", ("E001", "`select` needs at least 2 branches, got 1")),
    ("select { conv 4 k1 } { conv 4 k1 } shortcut { gap | conv 8 k1 }",
     ("E001", "`select` names its last body `attend { ... }`, not `shortcut`")),
    ("residual { conv 3 k1 } attend { conv 3 k1 }", ("E001", "`residual` names its last body `shortcut { ... }`, not `attend`")),
    ("concat { conv 3 k1 } { conv 3 k1 } attend { conv 3 k1 }", ("E001", "`concat` takes no `attend { ... }`")),
    ("select g0 { conv 4 k1 } { conv 4 k1 } attend { gap | conv 8 k1 }", ("E003", "unknown select option `g0`")),
    ("select g3 { conv 4 k1 } { conv 4 k1 } attend { gap | conv 8 k1 }",
     ("E123", "`select g3` cannot cut the branches' 4 channels into 3 groups")),
    ("select { conv 4 k1 } { conv 4 k1 } attend { gap | conv 4 k1 }",
     ("E123", ("`select`'s attention gives [B, 4, 1, 1] but its 2 branches of [B, 4, 8, 8] need [B, 8, 1, 1] or [B, 8, 8, 8] "
              "(2 branches x 4 channels)"))),
    ("select { conv 4 k1 } { conv 4 k1 } attend { maxpool 2 | conv 8 k1 }",
     ("E123", ("`select`'s attention gives [B, 8, 4, 4] but its 2 branches of [B, 4, 8, 8] need [B, 8, 1, 1] or [B, 8, 8, 8] "
              "(2 branches x 4 channels)"))),
])
def test_select_reports_each_wrong_form_once(line: str, expected: tuple[str, str]) -> None:
    assert _messages(f"input 3x8x8\n{line}\n") == [expected]


def test_select_written_over_lines_checks() -> None:
    text = "input 3x8x8\nselect\n  { conv 4 k3 p1 }\n  { conv 4 k1 }\nattend { gap | conv 8 k1 }\n"
    report = archspec.check(text, classes=None)
    assert report.ok and report.output_shape == (4, 8, 8)


def test_select_receptive_field_matches_autograd() -> None:
    """The attention (two 3x3 convs, no pooling) runs on the sum of a 3x3 branch and the input: one output pixel
    depends on 7x7 input pixels, as the gradient shows (the branches differ, so the weights' gradient is not 0)."""
    torch = pytest.importorskip("torch")
    from archspec.views.summary import summarize

    text = "input 2x16x16\nselect { conv 2 k3 p1 } {} attend { conv 2 k3 p1 | conv 4 k3 p1 }\n"
    row = next(r for r in summarize(text).rows if r.name == "select1" and r.kind == "join")
    net = archspec.build(text).double().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(0.1)
    x = torch.ones(1, 2, 16, 16, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(net(x)[0, :, 8, 8].sum(), x)
    nz = g[0].abs().sum(0).nonzero()
    assert (int(nz[:, 0].max() - nz[:, 0].min()) + 1, int(nz[:, 1].max() - nz[:, 1].min()) + 1) == row.rf == (7, 7)
