"""`blurpool` against timm's BlurPool2d (the layer it stands for) and at every size of `input 3xHxW` (onnxruntime:
tests/test_onnx.py)."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import archspec  # noqa: E402
from archspec.pytorch.codegen import generate  # noqa: E402

CONFIGS = [(3, 2, False), (3, 2, True), (5, 2, False), (5, 1, True), (4, 2, False), (2, 3, False)]


@pytest.mark.parametrize("k, s, zeros", CONFIGS)
def test_blurpool_is_timms_blurpool2d_built_and_generated(k: int, s: int, zeros: bool) -> None:
    timm_blur = pytest.importorskip("timm.layers.blur_pool")
    text_of = lambda h, w: f"input 6x{h}x{w}\nblurpool k{k} s{s}{' zeros' if zeros else ''}\n"  # noqa: E731
    for h, w in ((9, 8), (7, 13)):
        text = text_of(h, w)
        report = archspec.check(text, classes=None)
        assert report.ok, report.diagnostics
        theirs = timm_blur.BlurPool2d(6, filt_size=k, stride=s, pad_mode="constant" if zeros else "reflect").eval()
        built = archspec.build(text).eval()
        namespace: dict = {}
        exec(compile(generate(text), "<generated>", "exec"), namespace)
        generated = namespace["Net"]().eval()
        assert built.state_dict().keys() == theirs.state_dict().keys() == set()  # the filter is a fixed buffer, not a weight
        x = torch.randn(2, 6, h, w, dtype=torch.float64)
        with torch.no_grad():
            want = theirs.double()(x)
            assert tuple(want.shape[1:]) == report.output_shape
            assert torch.equal(built.double()(x), want) and torch.equal(generated.double()(x), want)
        assert report.macs == 6 * want.shape[2] * want.shape[3] * k * k  # a depthwise conv with a k x k filter


def test_blurpool_accepts_exactly_the_sizes_torch_runs_on() -> None:
    """`input 3xHxW`: the solver's accepted sizes (reflect padding below the size: a condition on H and W) against the
    built network run at each size from 1 to 12 (torch refuses reflect padding as large as the map)."""
    from archspec.views.sizes import input_sizes

    text = "input 3xHxW\nconv 4 k3 s2 p1 | blurpool | blurpool k5 s1\n"
    sizes = input_sizes(archspec.parse(text, "m.arch"), 12)
    assert sizes.derivation.exact
    net = archspec.build(text.replace("HxW", "12x12")).eval()  # no layer depends on the size: one network runs at any
    runs = []
    for n in range(1, 13):
        try:
            with torch.no_grad():
                net(torch.randn(1, 3, n, n))
            runs.append(n)
        except RuntimeError:
            pass
    assert sizes.axes[0].valid == sizes.axes[1].valid == runs == list(range(9, 13))  # ceil(ceil(n/2)/2) above k5's padding of 2
    assert all(archspec.check(text.replace("HxW", f"{n}x{n}"), classes=None).ok == (n in runs) for n in range(1, 13))
