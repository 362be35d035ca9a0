"""The runner end to end on small real subsets: learning, outputs, exact resume, the CLI and its errors."""
from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from archspec import cli  # noqa: E402
from archspec.training.data import Dataset, load_data  # noqa: E402
from archspec.language.errors import ArchspecError  # noqa: E402
from archspec.training.recipes import make_config  # noqa: E402
from archspec.training.checkpoint import Checkpoint  # noqa: E402
from archspec.training.loop import build_model, check_against_data, check_spec, fit  # noqa: E402

from conftest import EXAMPLES  # noqa: E402
from test_data import real_subset, write_folder  # noqa: E402

LENET = (EXAMPLES / "lenet.arch").read_text()
FASTCIFAR = (EXAMPLES / "fastcifar.arch").read_text()


def quiet(_: str) -> None:
    pass


@pytest.fixture(autouse=True)
def _one_thread_per_xdist_worker(monkeypatch):
    """Under `pytest -n N` each worker gets one thread, so workers do not fight over the cores."""
    if "PYTEST_XDIST_WORKER" in os.environ:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        torch.set_num_threads(1)


@pytest.fixture(scope="module")
def subset_dir(tmp_path_factory) -> Path:
    """200 train and 100 test real CIFAR-10 JPEGs per class (2,000 / 1,000)."""
    return real_subset(tmp_path_factory.mktemp("cifar_subset"), 200, 100)


@pytest.fixture(scope="module")
def subset(subset_dir, tmp_path_factory) -> Dataset:
    return load_data(str(subset_dir), tmp_path_factory.mktemp("cache"), quiet)


def tiny(ds: Dataset, n_train: int, n_test: int) -> Dataset:
    """A class-balanced slice (files are sorted by class, so take every k-th image)."""
    k_train, k_test = len(ds.train_x) // n_train, len(ds.test_x) // n_test
    return replace(ds, train_x=ds.train_x[::k_train], train_y=ds.train_y[::k_train],
                   test_x=ds.test_x[::k_test], test_y=ds.test_y[::k_test])


def test_default_recipe_learns_lenet(subset, tmp_path):
    cfg = make_config("default", epochs=6, batch_size=64, lr=0.05)
    report = fit(build_model(LENET, "lenet.arch", cfg.seed), subset, cfg, tmp_path, arch_source=LENET,
                 arch_path="lenet.arch", log=quiet, quiet=True)
    assert report["test_accuracy"] >= 0.25, report["test_accuracy"]  # chance is 10%

    metrics = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == list(range(1, 7))
    assert {"epoch", "elapsed_s", "train_loss", "train_acc", "val_loss", "val_acc"} <= set(metrics[0])
    assert "test_acc" not in metrics[0]  # the test set is evaluated once, at the end
    saved = json.loads((tmp_path / "report.json").read_text())
    for key in ("test_accuracy", "per_class_accuracy", "confusion_matrix", "wall_time_s", "images_per_s", "epochs",
                "params", "device", "dtype", "settings"):
        assert key in saved
    assert saved["params"] == 62_006 and saved["settings"]["recipe"] == "default"
    assert sum(map(sum, saved["confusion_matrix"])) == 1000 and len(saved["per_class_accuracy"]) == 10
    state = Checkpoint.load(tmp_path / "checkpoint.pt")
    assert state.arch_source == LENET and state.epoch == 6 and state.config["batch_size"] == 64
    curves = tmp_path / "curves.png"
    if importlib.util.find_spec("matplotlib") is None:  # the plot extra is optional: no file and no crash
        assert not curves.exists()
    else:
        png = curves.read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000


@pytest.mark.slow
def test_fast_recipe_short_real_run_beats_chance(subset, tmp_path):
    cfg = make_config("fast", epochs=2, batch_size=250, tta=1, whiten_bias_epochs=1)
    model = build_model(FASTCIFAR, "fastcifar.arch", cfg.seed)
    report = fit(model, subset, cfg, tmp_path, arch_source=FASTCIFAR, arch_path="fastcifar.arch", log=quiet, quiet=True)
    assert report["test_accuracy"] >= 0.3, report["test_accuracy"]
    assert not model.conv1.weight.requires_grad  # whitening filters frozen
    assert not model.conv1.bias.requires_grad  # ... and its bias after whiten_bias_epochs
    assert report["settings"]["lookahead"] and report["settings"]["flip"] == "alternate"


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_resume_gives_exactly_the_uninterrupted_weights(subset, tmp_path, precision):
    data = tiny(subset, 400, 100)
    # lookahead, alternating flip and translation on: every piece of state must survive the restart
    cfg = make_config("default", epochs=3, batch_size=64, lookahead=True, flip="alternate", precision=precision)
    # The thread count changes the arithmetic: both runs use one (a resume keeps the count it began with).
    full = build_model(LENET, "l", cfg.seed)
    fit(full, data, cfg, tmp_path / "full", arch_source=LENET, log=quiet, quiet=True, threads=1)

    part = build_model(LENET, "l", cfg.seed)
    fit(part, data, cfg, tmp_path / "part", arch_source=LENET, log=quiet, quiet=True, stop_after_epoch=1, threads=1)
    resumed = build_model(LENET, "l", 123)  # a different init: everything must come from the checkpoint
    fit(resumed, data, cfg, tmp_path / "part", arch_source=LENET, log=quiet, quiet=True, resume=True)

    a, b = full.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    lines = (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]


def test_resume_refuses_other_settings(subset, tmp_path):
    data = tiny(subset, 200, 100)
    cfg = make_config("default", epochs=2, batch_size=100)
    fit(build_model(LENET, "l", 0), data, cfg, tmp_path, arch_source=LENET, log=quiet, quiet=True, stop_after_epoch=1)
    with pytest.raises(ArchspecError, match="other settings: lr"):
        fit(build_model(LENET, "l", 0), data, replace(cfg, lr=1.0), tmp_path, arch_source=LENET, log=quiet, resume=True)


def test_input_shape_mismatch_names_both(tmp_path):
    write_folder(tmp_path / "d", size=(32, 32))
    data = load_data(str(tmp_path / "d"), tmp_path / "cache", quiet)
    mnist = "input 1x28x28\nflatten\nlinear 2\n"
    with pytest.raises(ArchspecError, match="takes 1x28x28 inputs but the data .* is 3x32x32") as exc:
        check_against_data(check_spec(mnist, "mnist.arch"), "mnist.arch", data)
    assert "input 3x32x32" in exc.value.help


def test_class_count_mismatch(tmp_path):
    write_folder(tmp_path / "d", size=(32, 32))  # 2 classes; lenet has 10 outputs
    data = load_data(str(tmp_path / "d"), tmp_path / "cache", quiet)
    with pytest.raises(ArchspecError, match="outputs 10 values but the data has 2 classes") as exc:
        check_against_data(check_spec(LENET, "lenet.arch"), "lenet.arch", data)
    assert "linear 2" in exc.value.help


def test_cli_train_eval_predict(subset_dir, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", str(EXAMPLES / "lenet.arch"), "--data", str(subset_dir), "--data-dir", str(tmp_path / "cache"),
            "--epochs", "1", "--batch-size", "100", "--out", str(out), "--quiet", "--set", "translate=0"]
    assert cli.main(args) == 0
    text = capsys.readouterr().out
    assert "epoch   1/1" in text and "done: test accuracy" in text
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["translate"] == 0 and report["settings"]["batch_size"] == 100

    assert cli.main(["eval", str(out / "checkpoint.pt"), "--data-dir", str(tmp_path / "cache")]) == 0
    table = capsys.readouterr().out
    assert f"{report['test_accuracy']:.2%}" in table and "airplane" in table and "truck" in table

    images = sorted((subset_dir / "test" / "cat").iterdir())[:2]
    assert cli.main(["predict", str(out / "checkpoint.pt"), *map(str, images)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(str(images[0])) and lines[0].count("%") == 3


def test_cli_errors_are_messages_not_tracebacks(tmp_path, capsys):
    (tmp_path / "checkpoint.pt").write_bytes(b"garbage")
    assert cli.main(["eval", str(tmp_path / "checkpoint.pt")]) == 1
    err = capsys.readouterr().err
    assert "corrupt" in err and "help:" in err and "Traceback" not in err

    assert cli.main(["train", str(EXAMPLES / "lenet.arch"), "--data", str(tmp_path / "none"), "--out", str(tmp_path)]) == 1
    assert "does not exist" in capsys.readouterr().err

    assert cli.main(["train", str(EXAMPLES / "lenet.arch"), "--resume", "--out", str(tmp_path / "empty")]) == 1
    assert "no checkpoint" in capsys.readouterr().err

    broken = EXAMPLES / "broken" / "bad_numbers.arch"  # the spec is checked before any data is touched
    assert cli.main(["train", str(broken), "--data", str(tmp_path / "none"), "--out", str(tmp_path)]) == 1
    assert "does not check" in capsys.readouterr().err

    torch.save({"model": {}}, tmp_path / "other.pt")
    assert cli.main(["predict", str(tmp_path / "other.pt"), "x.png"]) == 1
    assert "not an archspec checkpoint" in capsys.readouterr().err


def test_train_refuses_a_mismatch_before_decoding(subset_dir, tmp_path, monkeypatch, capsys):
    """The spec is checked against the listing and one header per class: no image decoded, no data loaded."""
    import time

    from archspec.training import data as data_mod

    monkeypatch.setattr(data_mod, "_decode", lambda *a, **k: pytest.fail("decoded an image before refusing"))
    monkeypatch.setattr(data_mod, "load_data", lambda *a, **k: pytest.fail("loaded the data before refusing"))
    (tmp_path / "mnist.arch").write_text("input 1x28x28\nflatten\nlinear 10\n")
    (tmp_path / "seven.arch").write_text("input 3x32x32\nflatten\nlinear 7\n")
    t0 = time.perf_counter()
    assert cli.main(["train", str(tmp_path / "mnist.arch"), "--data", str(subset_dir), "--out", str(tmp_path / "o")]) == 1
    assert cli.main(["train", str(tmp_path / "seven.arch"), "--data", str(subset_dir), "--out", str(tmp_path / "o")]) == 1
    assert time.perf_counter() - t0 < 2.0
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"error: {tmp_path / 'mnist.arch'} takes 1x28x28 inputs but the data ({subset_dir.resolve()}) is 3x32x32",
        "help: change the spec's first line to `input 3x32x32`, or train on data of that shape",
        f"error: {tmp_path / 'seven.arch'} outputs 7 values but the data has 10 classes",
        "help: make the last layer `linear 10`",
    ]
    assert cli.main(["train", str(tmp_path / "seven.arch"), "--data", "cifar10", "--out", str(tmp_path / "o")]) == 1
    assert "but the data has 10 classes" in capsys.readouterr().err  # known without downloading


def test_preflight_reads_headers_only(tmp_path):
    from archspec.training.preflight import probe_data

    write_folder(tmp_path / "d", size=(12, 20))
    info = probe_data(str(tmp_path / "d"))
    assert info is not None and info.shape == (3, 12, 20) and info.classes == ("cat", "dog")
    assert probe_data(str(tmp_path / "missing")) is None  # the full load gives the layout error


def test_piped_progress_is_plain_lines(subset, tmp_path, capsys):
    """Not a terminal: a plain progress line (here every 0 s: every step), nothing on stderr, no \\r, no blank line."""
    lines: list[str] = []
    cfg = make_config("default", epochs=1, batch_size=50, translate=0, val=0)
    fit(build_model(LENET, "l", 0), tiny(subset, 200, 100), cfg, tmp_path, arch_source=LENET, log=lines.append,
        progress_every=0.0)
    assert lines[2] == "progress: a line every 0 s during an epoch (output is not a terminal; --quiet: epoch lines only)"
    steps = [line for line in lines if line.startswith("epoch 1/1  step ")]
    assert [s.split()[3] for s in steps] == ["1/4", "2/4", "3/4", "4/4"]
    assert all(" loss " in s and " acc " in s and s.endswith(" img/s") for s in steps)
    out, err = capsys.readouterr()
    assert err == "" and all(line.strip() and "\r" not in line for line in lines)


def test_the_log_counts_in_words_and_one_process_has_no_process_label(subset, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the thread count the run then uses
    lines: list[str] = []
    cfg = make_config("default", epochs=1, batch_size=50, translate=0, val=0)
    fit(build_model(LENET, "l", 0), tiny(subset, 200, 100), cfg, tmp_path, arch_source=LENET, log=lines.append, quiet=True)
    assert torch.get_num_threads() == 1
    assert ", 1 epoch x 4 steps of 50; " in lines[0] and lines[0].endswith(", 1 thread"), lines[0]
    epoch = next(line for line in lines if line.startswith("epoch "))
    assert " img/s  elapsed " in epoch and "process" not in epoch
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    lines.clear()
    fit(build_model(LENET, "l", 0), tiny(subset, 200, 100), make_config("default", epochs=0.5, batch_size=50, translate=0, val=0),
        tmp_path / "half", arch_source=LENET, log=lines.append, quiet=True)
    assert ", 0.5 epochs x 4 steps of 50; " in lines[0] and lines[0].endswith(", 2 threads"), lines[0]


@pytest.mark.slow
def test_piped_cli_output_has_no_blank_lines_or_carriage_returns(subset_dir, tmp_path):
    import subprocess
    import sys

    cp = subprocess.run([sys.executable, "-m", "archspec.cli", "train", str(EXAMPLES / "lenet.arch"), "--data", str(subset_dir),
                         "--data-dir", str(tmp_path / "cache"), "--epochs", "1", "--batch-size", "500", "--out", str(tmp_path / "o")],
                        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert cp.returncode == 0, cp.stderr
    assert cp.stderr == "" and "\r" not in cp.stdout
    assert all(line.strip() for line in cp.stdout.splitlines()) and "done: test accuracy" in cp.stdout


def test_curves_have_whole_epoch_ticks():
    pytest.importorskip("matplotlib")
    from archspec.training.loop import curves_figure

    metrics = [{"epoch": e, "train_loss": 2.0 / e, "train_acc": 0.2 * e, "test_acc": 0.2 * e} for e in (1, 2)]
    fig = curves_figure(metrics)
    fig.canvas.draw()
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks


def _predictions_through_the_course_path(model, transform, files: list[Path]) -> list[int]:
    from PIL import Image

    def load(f: Path) -> torch.Tensor:
        with Image.open(f) as im:
            return transform(im)

    with torch.no_grad():
        return model(torch.stack([load(f) for f in files])).argmax(1).tolist()


def test_load_checkpoint_predicts_like_eval(subset_dir, subset, tmp_path, capsys):
    """archspec.load_checkpoint + PIL images from disk gives eval's confusion matrix exactly, and `--normalize 0.5` is kept."""
    import archspec
    from archspec.training.loop import evaluate

    out = tmp_path / "run"
    assert cli.main(["train", str(EXAMPLES / "lenet.arch"), "--data", str(subset_dir), "--data-dir", str(tmp_path / "cache"),
                     "--epochs", "1", "--batch-size", "100", "--precision", "fp32", "--normalize", "0.5", "--out", str(out),
                     "--quiet"]) == 0
    assert "normalize: 0.5 (mean 0.500 0.500 0.500, std 0.500 0.500 0.500)" in capsys.readouterr().out
    state = Checkpoint.load(out / "checkpoint.pt")
    assert state.mean == state.std == [0.5] * 3 and state.normalize == state.config["normalize"] == "0.5"
    report = json.loads((out / "report.json").read_text())
    assert report["normalize"] == {"mode": "0.5", "mean": [0.5] * 3, "std": [0.5] * 3}

    model, transform, classes = archspec.load_checkpoint(out / "checkpoint.pt")
    assert not model.training and classes == subset.classes
    files = [f for c in classes for f in sorted((subset_dir / "test" / c).iterdir())]  # the loader's order
    preds = torch.tensor(_predictions_through_the_course_path(model, transform, files))
    confusion = torch.bincount(subset.test_y * 10 + preds, minlength=100).view(10, 10).tolist()
    ref = evaluate(state.build_model(), subset.test_x, subset.test_y, torch.tensor(state.mean),
                   torch.tensor(state.std), num_classes=10, device=torch.device("cpu"), dtype=torch.float32)
    assert confusion == ref.confusion and abs((preds == subset.test_y).float().mean().item() - report["test_accuracy"]) < 1e-6

    assert cli.main(["eval", str(out / "checkpoint.pt"), "--data-dir", str(tmp_path / "cache")]) == 0
    assert f"{report['test_accuracy']:.2%}" in capsys.readouterr().out


def test_checkpoint_without_normalize_field_still_loads_and_resumes(subset, tmp_path):
    """Checkpoints from before --normalize existed ran with the data's mean and std."""
    import archspec

    data = tiny(subset, 200, 100)
    cfg = make_config("default", epochs=2, batch_size=100, val=0)  # the mean and std of all 200 training images
    assert cfg.normalize == "data"
    fit(build_model(LENET, "l", 0), data, cfg, tmp_path, arch_source=LENET, log=quiet, quiet=True, stop_after_epoch=1)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    del state["normalize"], state["config"]["normalize"]
    torch.save(state, tmp_path / "checkpoint.pt")

    assert Checkpoint.load(tmp_path / "checkpoint.pt").normalize == "data"
    _, transform, _ = archspec.load_checkpoint(tmp_path / "checkpoint.pt")
    assert transform.transforms[-1].mean == state["mean"] == data.stats()[0]
    report = fit(build_model(LENET, "l", 0), data, cfg, tmp_path, arch_source=LENET, log=quiet, quiet=True, resume=True)
    assert report["normalize"]["mode"] == "data" and report["steps"] == 4


def test_normalize_choices(subset):
    from archspec.language.errors import UsageError

    assert make_config(normalize="none").normalization([0.4, 0.5, 0.6], [0.2] * 3) == ([0.0] * 3, [1.0] * 3)
    assert make_config(normalize="data").normalization([0.4, 0.5, 0.6], [0.2] * 3) == ([0.4, 0.5, 0.6], [0.2] * 3)
    with pytest.raises(UsageError, match="normalize must be one of"):
        make_config(normalize="0.25")


def test_every_command_takes_args_and_out():
    """main() calls every command as func(args, out): one signature, no inspection at dispatch."""
    import argparse
    import inspect

    parser = cli.make_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert {"check", "train", "eval", "predict", "summary"} <= set(commands)
    for name, sub in commands.items():
        func = sub.get_default("func")
        assert list(inspect.signature(func).parameters) == ["args", "out"], name
