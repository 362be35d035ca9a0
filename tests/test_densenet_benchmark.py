"""The language-server benchmark's big network (benchmarks/data/densenet121.arch) is DenseNet-121:
torchvision's densenet121() (no weights) is the oracle for its params, convs and batch norms."""
from __future__ import annotations

from conftest import REPO


def test_densenet121_arch_matches_torchvision():
    import torch
    import torchvision

    from archspec.language.pipeline import CheckOptions, checked

    report = checked(REPO / "benchmarks" / "data" / "densenet121.arch", CheckOptions(classes=1000)).raise_for_errors()
    net = torchvision.models.densenet121(weights=None)
    assert report.params == sum(p.numel() for p in net.parameters()) == 7_978_856
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [r.op for r in report.rows].count("conv") == len(convs)
    assert [r.out_shape[0] for r in report.rows if r.op == "conv"] == [c.out_channels for c in convs]
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert [r.out_shape[0] for r in report.rows if r.op == "bn"] == [b.num_features for b in bns]
    assert report.diagnostics == []
