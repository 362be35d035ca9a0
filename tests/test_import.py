"""`archspec import` / `archspec.from_torch`: torchvision models round-trip exactly, refusals are named.

Oracle: the original torch module. The imported text is checked, built, given the original's weights
(as `--weights` writes them) and must give the original's outputs in float64 (eval)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

import archspec
from archspec.importers.api import ImportRefused, import_module, imported_weights
from archspec.language.pipeline import CheckOptions, checked

ROOT = Path(__file__).resolve().parents[1]
SIZE = 64


def _round_trip(name: str) -> tuple[str, float]:
    torch.manual_seed(0)
    original = getattr(torchvision.models, name)(weights=None, num_classes=10).eval()
    result = import_module(original, (3, SIZE, SIZE), title=name)
    report = checked(result.text, CheckOptions(classes=10))
    assert not report.errors and not report.warnings, report.diagnostics
    net = archspec.build(result.text)
    net.load_state_dict(imported_weights(original, result))
    x = torch.randn(2, 3, SIZE, SIZE, dtype=torch.float64)
    with torch.no_grad():
        want, got = original.double()(x), net.double().eval()(x)
    return result.text, ((got - want).abs().max() / want.abs().max()).item()


@pytest.mark.parametrize("name,example", [("resnet18", "resnet18.arch"), ("densenet121", None)])
def test_round_trip_is_exact_and_short(name: str, example: str | None) -> None:
    text, diff = _round_trip(name)
    assert diff <= 1e-9
    if example is not None:
        assert len(text.splitlines()) <= 2 * len((ROOT / "examples" / example).read_text().splitlines())


def test_repeated_modules_become_one_block_with_calls() -> None:
    text, _ = _round_trip("resnet18")
    assert text.count("block basic_block(") == 1
    assert "# BasicBlock: layer1.0, layer1.1, ... (8 in all)" in text
    assert "basic_block(64, 1) * 2" in text and "residual project {" in text


def test_densenet_concat_folds_into_blocks() -> None:
    text, _ = _round_trip("densenet121")
    assert "block dense_block(n) { repeat {n} { concat {} { dense_layer() } } }" in text
    assert [line for line in text.splitlines() if line.startswith("dense_block(")] == [
        "dense_block(6)", "dense_block(12)", "dense_block(24)", "dense_block(16)"]


def test_convnext_is_refused_with_each_construct_named() -> None:
    with pytest.raises(ImportRefused) as info:
        import_module(torchvision.models.convnext_tiny(weights=None), (3, SIZE, SIZE))
    assert info.value.lines == [
        "`features.0.1` uses Tensor.permute (and in 9 more places)",
        "`features.0.1` uses torch.nn.functional.layer_norm (and in 4 more places)",
        "`features.1.0.block.1` uses torch.permute (and in 35 more places)",
        "`features.1.0.block.2` uses torch.nn.LayerNorm (and in 17 more places)",
        "`features.1.0.stochastic_depth` uses torchvision.ops.stochastic_depth.stochastic_depth (and in 17 more places)",
    ]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "archspec", *args], check=False, capture_output=True, text=True, cwd=cwd, timeout=300)


def test_cli_writes_text_and_weights_that_build_to_the_original(tmp_path: Path) -> None:
    run = _cli("import", "torchvision.models:resnet18", "--kwargs", '{"num_classes": 10}', "--input", "3x32x32",
               "-o", "r18.arch", "--weights", "r18.pt", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    torch.manual_seed(0)
    net = archspec.build(tmp_path / "r18.arch")
    net.load_state_dict(torch.load(tmp_path / "r18.pt"))
    assert _cli("check", "r18.arch", "-q", cwd=tmp_path).returncode == 0


def test_cli_refusal_writes_nothing(tmp_path: Path) -> None:
    run = _cli("import", "torchvision.models:convnext_tiny", "--input", "3x32x32", "-o", "c.arch", cwd=tmp_path)
    assert run.returncode == 1 and not (tmp_path / "c.arch").exists()
    assert run.stderr == (ROOT / "tests/golden/cli/import_refused.txt").read_text()


def test_cli_partial_writes_the_prefix_that_checks(tmp_path: Path) -> None:
    run = _cli("import", "torchvision.models:shufflenet_v2_x0_5", "--input", "3x32x32", "--partial", "-o", "s.arch", cwd=tmp_path)
    assert run.returncode == 1
    assert run.stderr == "warning: stopped at `stage2.0`: the text holds the layers before it\n"
    text = (tmp_path / "s.arch").read_text()
    assert text.endswith("# stopped here: `stage2.0` uses Tensor.view (and in 31 more places)\n")
    assert not checked(text, CheckOptions(classes=None)).errors


def test_views_take_module_callable(tmp_path: Path) -> None:
    run = _cli("summary", "torchvision.models:resnet18", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[0] == "torchvision.models:resnet18: [B, 3, 224, 224] -> [B, 1000]"
    assert "11,689,512" in run.stdout  # torchvision's resnet18 parameter count
