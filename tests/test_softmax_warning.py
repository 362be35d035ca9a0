"""W205: a final softmax before cross-entropy (issue 10.4); `archspec train` refuses it unless told."""
from __future__ import annotations

import pytest

import archspec
from archspec.language.errors import ArchspecError
from conftest import EXAMPLES

FINAL_SOFTMAX = EXAMPLES / "broken" / "final_softmax.arch"


def test_final_softmax_warns_and_inner_softmax_does_not():
    report = archspec.check("input 100\nlinear 10\nsoftmax\n")
    assert report.ok and [d.code for d in report.diagnostics] == ["W205"]
    assert "log-softmax" in report.diagnostics[0].message
    assert archspec.check("input 100\nsoftmax\nlinear 10\n").diagnostics == []
    assert [d.code for d in archspec.check("input 100\nlinear 10 | softmax\n", classes=None).diagnostics] == ["W205"]


def test_train_refuses_a_final_softmax_before_loading_data(cli, monkeypatch):
    pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    import archspec.training.data

    def no_data(*args, **kwargs):
        raise ArchspecError("data would be loaded now")

    monkeypatch.setattr(archspec.training.data, "load_data", no_data)
    refused = cli("train", str(FINAL_SOFTMAX), "--out", "/nonexistent/run")
    assert refused.returncode == 1
    assert "the network ends with `softmax`" in refused.stderr and "[W205]" in refused.stderr
    assert "--allow-softmax" in refused.stderr and "data would be loaded" not in refused.stderr
    allowed = cli("train", str(FINAL_SOFTMAX), "--allow-softmax", "--out", "/nonexistent/run")
    assert "data would be loaded now" in allowed.stderr
