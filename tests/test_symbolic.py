"""`input 3xHxW`: the derived sizes are exact. For random networks and every size 1..128 on each axis,
the derived accepted set agrees with torch (a forward pass on meta tensors), the no-drop subset with
the concrete checker's W201, and every layer's size expression with torch's output at that layer."""
from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, event, given, settings

from archspec.language.check import check
from archspec.language.expand import parse
from archspec.language.symbolic import derive, drops_on, with_input

torch = pytest.importorskip("torch")
from test_oracle import Renderer, TorchOracle, flat_archs, one_thread, structured_archs  # noqa: E402,F401 (one_thread: a fixture)

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


# Fast: every size 1..40 (torch on meta tensors takes ~25 ms a forward pass); slow: every size 1..128.
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(arch=flat_archs())
def test_flat_networks_agree_with_torch_at_every_size(arch, one_thread):
    event(f"torch ran {'some' if agrees(arch, 40) else 'no'} sizes")


@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck))
@given(arch=structured_archs())
def test_residuals_and_branches_agree_with_torch_at_every_size(arch, one_thread):
    event(f"torch ran {'some' if agrees(arch, 40) else 'no'} sizes")


@pytest.mark.slow
@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
@given(arch=flat_archs())
def test_flat_networks_every_size_to_128(arch, one_thread):
    agrees(arch)


@pytest.mark.slow
@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
@given(arch=structured_archs())
def test_structured_networks_every_size_to_128(arch, one_thread):
    agrees(arch)
