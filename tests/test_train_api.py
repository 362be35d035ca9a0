"""archspec.train (the train path from Python) and the lazy facade that keeps `import archspec` light."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import EXAMPLES, REPO

LENET = (EXAMPLES / "lenet.arch").read_text()


def _fresh_modules(code: str) -> set[str]:
    """The archspec/torch modules a fresh interpreter has loaded after `code`."""
    cp = subprocess.run([sys.executable, "-c", code + "\nimport sys; print(' '.join(sys.modules))"],
                        capture_output=True, text=True, check=True, cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    return set(cp.stdout.split())


def test_import_archspec_loads_neither_torch_nor_the_checker():
    loaded = _fresh_modules("import archspec")
    assert "torch" not in loaded and "archspec.language.check" not in loaded and "lark" not in loaded


def test_the_lazy_names_still_import_and_work():
    import archspec
    from archspec import ArchError, ArchspecError, CheckReport, Model, UsageError, load, parse

    report = archspec.check(parse(LENET))
    assert isinstance(report, CheckReport) and isinstance(load(EXAMPLES / "lenet.arch"), Model)
    assert issubclass(ArchError, ArchspecError) and issubclass(UsageError, ArchspecError)
    assert archspec.CheckReport is CheckReport
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        archspec.nope  # noqa: B018


def test_the_language_server_answers_initialize_before_loading_the_checker():
    pytest.importorskip("pygls")
    loaded = _fresh_modules("import archspec.cli, archspec.lsp.server")
    assert "archspec.lsp.server" in loaded and "archspec.language.check" not in loaded


torch = pytest.importorskip("torch")

from archspec.training.data import load_data  # noqa: E402
from test_data import real_subset  # noqa: E402


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = real_subset(tmp_path_factory.mktemp("api_subset"), 20, 10)
    return load_data(str(root), tmp_path_factory.mktemp("cache"), lambda _: None)


def test_settings_are_validated_like_the_cli_before_any_data_is_read(tmp_path):
    import archspec

    with pytest.raises(archspec.UsageError, match="unknown training setting.*learning_rate"):
        archspec.train(LENET, data=str(tmp_path / "missing"), learning_rate=0.1)
    with pytest.raises(archspec.UsageError, match="epochs must be of type float"):
        archspec.train(LENET, data=str(tmp_path / "missing"), epochs="one")


def test_a_spec_that_does_not_check_raises_its_diagnostics(tmp_path):
    import archspec

    with pytest.raises(archspec.ArchError) as info:
        archspec.train("input 3x4x4\nconv 6 k5\nflatten\nlinear 10", data=str(tmp_path), out=tmp_path / "run")
    assert info.value.diagnostics[0].code == "E101"
    with pytest.raises(archspec.UsageError, match="not int"):
        archspec.train(42)


def test_train_from_python_returns_the_report_and_the_trained_model(small, tmp_path, capsys):
    import archspec

    result = archspec.train(archspec.check(LENET), data=small, out=tmp_path / "run", epochs=1, batch_size=50, device="cpu")
    written = json.loads((tmp_path / "run" / "report.json").read_text())
    assert result.report == json.loads(json.dumps(result.report)) and result["test_accuracy"] == written["test_accuracy"]
    assert [m["epoch"] for m in result.metrics] == [1] and result.model.training is False
    # The returned model is the trained one: it predicts what report.json says on the test images.
    with torch.no_grad():
        x = (small.test_x.float() / 255 - torch.tensor(written["normalize"]["mean"]).view(1, 3, 1, 1)) \
            / torch.tensor(written["normalize"]["std"]).view(1, 3, 1, 1)
        accuracy = (result.model(x).argmax(1) == small.test_y).float().mean().item()
    assert accuracy == pytest.approx(written["test_accuracy"], abs=0.02)  # bf16 autocast in training's evaluation
    assert repr(result).startswith(f"<TrainResult model: test accuracy {written['test_accuracy']:.2%} after 1 epoch")
    assert "<table>" in result._repr_html_()
    printed = capsys.readouterr().out
    assert "\r" not in printed and "epoch   1/1" in printed  # outside a notebook: plain lines
