"""Training that helps improve the accuracy: the validation split, the test set once at the end, early stopping
and best.pt, resume from the run directory alone, --threads auto, TensorBoard event files, file modes."""
from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from archspec import cli  # noqa: E402
from archspec.language.errors import ArchspecError, UsageError  # noqa: E402
from archspec.training.checkpoint import Checkpoint, write_text_atomic  # noqa: E402
from archspec.training.data import Dataset, load_data  # noqa: E402
from archspec.training.hardware import choose_threads  # noqa: E402
from archspec.training.loop import build_model, evaluate, fit  # noqa: E402
from archspec.training.recipes import RECIPES, make_config  # noqa: E402
from archspec.training.validation import stratified_split  # noqa: E402

from conftest import EXAMPLES, REPO  # noqa: E402
from test_data import real_subset  # noqa: E402

LENET_PATH = EXAMPLES / "lenet.arch"
LENET = LENET_PATH.read_text()


def quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def subset_dir(tmp_path_factory) -> Path:
    """40 train and 10 test real CIFAR-10 JPEGs per class (400 / 100)."""
    return real_subset(tmp_path_factory.mktemp("cifar_small"), 40, 10)


@pytest.fixture(scope="module")
def cache(subset_dir, tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("cache")
    load_data(str(subset_dir), cache, quiet)
    return cache


@pytest.fixture(scope="module")
def subset(subset_dir, cache) -> Dataset:
    return load_data(str(subset_dir), cache, quiet)


def run_cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "archspec", *args], capture_output=True, text=True, env=env, timeout=300, cwd=cwd)


# ----------------------------------------------------------------------------- the split


@pytest.mark.parametrize("val", [0.1, 0.25, 37, 1])
def test_the_split_is_stratified_disjoint_and_fixed(val):
    g = torch.Generator().manual_seed(5)
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate((50, 30, 17, 3))])[torch.randperm(100, generator=g)]
    train, held = stratified_split(labels, val, ["a", "b", "c", "d"])
    k = int(val) if val >= 1 else round(val * 100)
    assert len(held) == k and len(train) + len(held) == 100
    assert sorted(torch.cat([train, held]).tolist()) == list(range(100))  # disjoint, and every image in one of them
    for c, n in enumerate((50, 30, 17, 3)):  # each class holds out its share, within one image
        assert abs(int((labels[held] == c).sum()) - n * k / 100) < 1
    again = stratified_split(labels, val, ["a", "b", "c", "d"])
    assert torch.equal(again[1], held)  # the same images for every run on these labels


def test_a_split_that_empties_a_class_or_the_set_is_refused():
    labels = torch.tensor([0] * 9 + [1])
    with pytest.raises(ArchspecError, match=r"--val 0.6 holds out every training image of class 'b' \(all 1\)"):
        stratified_split(labels, 0.6, ["a", "b"])
    with pytest.raises(ArchspecError, match="--val 10 holds out 10 images but the training set has 10"):
        stratified_split(labels, 10, ["a", "b"])


def test_every_recipe_states_its_validation_default_and_bad_values_are_refused():
    assert RECIPES["default"].val == 0.1 and RECIPES["fast"].val == 0 and RECIPES["default"].patience == 0
    with pytest.raises(UsageError) as exc:
        make_config("fast", patience=2)
    assert (exc.value.message, exc.value.help) == ("patience 2 needs a validation set, and val is 0",
                                                   "pass --val FRACTION (e.g. --val 0.1) with --patience, or drop --patience")
    with pytest.raises(UsageError, match="val must be a fraction below 1 or a whole number of images, not 2.5"):
        make_config(val=2.5)
    assert cli.main(["train", str(LENET_PATH), "--val", "1.5"]) == 2


# ----------------------------------------------------------------------------- validation, test once, patience


def test_validation_every_epoch_and_the_test_set_once_on_the_best_weights(subset, tmp_path):
    cfg = make_config("default", epochs=3, batch_size=60, precision="fp32")
    model = build_model(LENET, "lenet.arch", cfg.seed)
    report = fit(model, subset, cfg, tmp_path, arch_source=LENET, arch_path="lenet.arch", log=quiet, quiet=True, threads=1)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert all({"val_loss", "val_acc"} <= set(r) and "test_acc" not in r for r in rows)
    _, held = stratified_split(subset.train_y, 0.1, subset.classes)
    assert report["val_images"] == len(held) == 40 and report["train_images"] == 360 and report["test_images"] == 100

    best = max(rows, key=lambda r: (r["val_acc"], -r["epoch"]))
    assert report["best_epoch"] == report["tested_epoch"] == best["epoch"]
    saved = Checkpoint.load(tmp_path / "best.pt")
    assert saved.epoch == best["epoch"] and saved.optimizer is None  # weights for eval, predict and export
    # Independently: best.pt's weights on the held-out images and on the test set give the reported figures.
    net = saved.build_model()
    mean, std = torch.tensor(saved.mean), torch.tensor(saved.std)
    on = dict(num_classes=10, device=torch.device("cpu"), dtype=torch.float32)
    val = evaluate(net, subset.train_x[held], subset.train_y[held], mean, std, **on)
    test = evaluate(net, subset.test_x, subset.test_y, mean, std, **on)
    assert val.accuracy == best["val_acc"] == report["val_accuracy"]
    assert test.accuracy == report["test_accuracy"] and test.confusion == report["confusion_matrix"]
    logits = net((subset.test_x.float() / 255 - mean.view(3, 1, 1)) / std.view(3, 1, 1)).float()
    assert report["test_loss"] == pytest.approx(torch.nn.functional.cross_entropy(logits, subset.test_y).item(), rel=1e-4)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in saved.model.items())  # the model returned is the tested one


def test_patience_stops_early_and_tests_the_best_epoch(subset, tmp_path):
    # lr 5 diverges after the first epoch: validation accuracy falls to chance and stays there.
    cfg = make_config("default", epochs=8, batch_size=60, lr=5.0, patience=2, precision="fp32")
    lines: list[str] = []
    report = fit(build_model(LENET, "l", 0), subset, cfg, tmp_path, arch_source=LENET, log=lines.append, quiet=True, threads=1)
    best = report["best_epoch"]
    assert report["stopped_early"] and report["epochs_run"] == best + 2 < 8
    assert Checkpoint.load(tmp_path / "checkpoint.pt").epoch == best + 2 and Checkpoint.load(tmp_path / "best.pt").epoch == best
    assert f"early stop: no better val_acc for 2 epochs (--patience 2); the best, {report['val_accuracy']:.2%}, was epoch {best} " \
           f"({tmp_path / 'best.pt'})" in lines
    # A resume of a run that stopped early stops at once, on the same figures.
    again = fit(build_model(LENET, "l", 0), subset, cfg, tmp_path, arch_source=LENET, log=quiet, quiet=True, resume=True)
    assert again["epochs_run"] == report["epochs_run"] and again["test_accuracy"] == report["test_accuracy"]


# ----------------------------------------------------------------------------- resume from the directory alone


def test_resume_from_the_directory_alone_continues_exactly(subset_dir, cache, tmp_path):
    common = ["--data-dir", str(cache), "--batch-size", "60", "--precision", "fp32", "--quiet", "--val", "40"]
    full = run_cli("train", str(LENET_PATH), "--data", str(subset_dir), "--epochs", "3", "--out", str(tmp_path / "full"), *common)
    assert full.returncode == 0, full.stderr
    # The interrupted run: epoch 1 saved, then stopped (what an interruption leaves).
    cfg = make_config("default", epochs=3, batch_size=60, precision="fp32", val=40)
    data = load_data(str(subset_dir), cache, quiet)
    fit(build_model(LENET, str(LENET_PATH), 0), data, cfg, tmp_path / "part", arch_source=LENET, arch_path=str(LENET_PATH),
        log=quiet, quiet=True, stop_after_epoch=1, threads=1)
    # From another directory, with neither the .arch file nor the data given: the checkpoint holds them.
    resumed = run_cli(*shlex.split(f"train --resume --out {tmp_path / 'part'} --data-dir {cache}"), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from {tmp_path / 'part'}/checkpoint.pt after epoch 1" in resumed.stdout
    a, b = (Checkpoint.load(tmp_path / d / "checkpoint.pt").model for d in ("full", "part"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    reports = [json.loads((tmp_path / d / "report.json").read_text()) for d in ("full", "part")]
    assert reports[0]["test_accuracy"] == reports[1]["test_accuracy"] and reports[1]["data"] == str(subset_dir.resolve())

    differs = run_cli("train", "--resume", "--out", str(tmp_path / "part"), "--epochs", "5", "--data-dir", str(cache))
    assert differs.returncode == 1 and differs.stderr.splitlines() == [
        f"error: {tmp_path / 'part'}/checkpoint.pt was written with other settings: epochs 3 -> 5.0",
        "help: resume with the same flags as the interrupted run"]
    other = run_cli("train", "--resume", "--out", str(tmp_path / "part"), "--data", "cifar10")
    assert other.returncode == 1 and other.stderr.splitlines() == [
        f"error: {tmp_path / 'part'}/checkpoint.pt was trained on {subset_dir.resolve()}, not cifar10",
        "help: drop --data: a resume reads the data the run was trained on"]
    assert cli.main(["train"]) == 2  # a usage error: neither a spec nor a run to resume


def test_the_python_api_resumes_from_the_directory_alone(subset, tmp_path):
    import archspec

    cfg = make_config("default", epochs=2, batch_size=60, precision="fp32")
    fit(build_model(LENET, str(LENET_PATH), 0), subset, cfg, tmp_path, arch_source=LENET, arch_path=str(LENET_PATH),
        log=quiet, quiet=True, stop_after_epoch=1, threads=1)
    result = archspec.train(out=tmp_path, resume=True, data=subset, quiet=True, threads=1)
    assert result.report["epochs_run"] == 2 and result.report["settings"] == cfg.to_dict() and result.name == "lenet"
    with pytest.raises(ArchspecError, match="written with other settings: lr 0.08 -> 0.5"):
        archspec.train(out=tmp_path, resume=True, data=subset, quiet=True, lr=0.5)


def test_a_checkpoint_from_before_validation_resumes_without_it(subset, tmp_path):
    cfg = make_config("default", epochs=2, batch_size=100, precision="fp32", val=0)
    fit(build_model(LENET, "l", 0), subset, cfg, tmp_path, arch_source=LENET, log=quiet, quiet=True, stop_after_epoch=1, threads=1)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    for key in ("val", "patience"):
        del state["config"][key]
    del state["threads"]
    state["metrics"][0]["test_acc"] = 0.1  # the old rows had a per-epoch test accuracy
    torch.save(state, tmp_path / "checkpoint.pt")
    report = fit(build_model(LENET, "l", 0), subset, make_config("default", epochs=2, batch_size=100, precision="fp32", val=0),
                 tmp_path, arch_source=LENET, log=quiet, quiet=True, resume=True)
    assert report["epochs_run"] == 2 and report["val_accuracy"] is None and report["best_epoch"] is None
    assert (tmp_path / "curves.png").is_file()


# ----------------------------------------------------------------------------- threads


def test_auto_threads_takes_the_fastest_count_it_timed(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("archspec.training.hardware.physical_cores", lambda: 4)
    before = torch.get_num_threads()
    try:
        # A step that is slower the more threads it has (a busy machine): 1 thread must win.
        chosen, why = choose_threads("auto", lambda: time.sleep(0.002 * torch.get_num_threads()))
        assert chosen == 1 and why.startswith("the fastest per training step on this machine now (timed: 1 thread ")
        assert ", 2 threads " in why and ", 4 threads " in why
        chosen, _ = choose_threads("auto", lambda: time.sleep(0.02 / torch.get_num_threads()))  # a quiet one: all
        assert chosen == 4
    finally:
        torch.set_num_threads(before)
    assert choose_threads(3, lambda: pytest.fail("timed an explicit count")) == (3, "as --threads asks")
    assert choose_threads("auto", lambda: pytest.fail("timed"), resumed_with=2)[0] == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert choose_threads("auto", lambda: pytest.fail("timed")) == (1, "from OMP_NUM_THREADS")


def test_auto_threads_leaves_the_run_as_a_fixed_count_would(subset, tmp_path, monkeypatch):
    """The timing steps run on a copy: the weights are those of a run told the count it chose."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cfg = make_config("default", epochs=1, batch_size=60, precision="fp32")
    lines: list[str] = []
    auto = build_model(LENET, "l", 0)
    fit(auto, subset, cfg, tmp_path / "auto", arch_source=LENET, log=lines.append, quiet=True)
    chosen = Checkpoint.load(tmp_path / "auto" / "checkpoint.pt").threads
    assert any(line.startswith(f"threads: {chosen}, the fastest per training step") for line in lines), lines
    fixed = build_model(LENET, "l", 0)
    fit(fixed, subset, cfg, tmp_path / "fixed", arch_source=LENET, log=quiet, quiet=True, threads=chosen)
    assert all(torch.equal(a, b) for a, b in zip(auto.state_dict().values(), fixed.state_dict().values()))


# ----------------------------------------------------------------------------- TensorBoard


def test_tensorboard_event_files_read_back_with_tensorboards_own_reader(subset, tmp_path):
    pytest.importorskip("tensorboard")
    pytest.importorskip("matplotlib")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    cfg = make_config("default", epochs=2, batch_size=60, precision="fp32")
    lines: list[str] = []
    report = fit(build_model(LENET, "l", 0), subset, cfg, tmp_path, arch_source=LENET, arch_path="lenet.arch",
                 log=lines.append, quiet=True, threads=1)
    assert f"tensorboard: `tensorboard --logdir {tmp_path}` (event files in {tmp_path / 'tensorboard'})" in lines
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    # Step-level: the loss and learning rate at every step (6 steps an epoch), the lr as the schedule set it.
    assert [e.step for e in events.Scalars("step/train_loss")] == list(range(1, 13))
    assert events.Scalars("step/lr")[-1].value == pytest.approx(rows[-1]["lr"])
    for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
        assert [(e.step, e.value) for e in events.Scalars(f"epoch/{key}")] == \
               [(r["epoch"], pytest.approx(r[key], rel=1e-6)) for r in rows]
    assert {"curves/epochs", "validation/confusion_matrix", "validation/most_confident_mistakes"} <= set(tags["images"])
    picture = events.Images("validation/confusion_matrix")[0]
    assert picture.encoded_image_string[:8] == b"\x89PNG\r\n\x1a\n" and picture.width > 200
    assert events.Scalars("hparam/test_accuracy")[0].value == pytest.approx(report["test_accuracy"])
    assert tags["graph"]
    session = plugin_data_pb2.HParamsPluginData.FromString(
        events.SummaryMetadata("_hparams_/session_start_info").plugin_data.content).session_start_info
    assert session.hparams["lr"].number_value == pytest.approx(0.08) and session.hparams["arch"].string_value == "lenet.arch"


def test_most_confident_mistakes_are_the_wrong_answers_of_highest_probability():
    from archspec.training.board import most_confident_mistakes

    g = torch.Generator().manual_seed(0)
    labels, predicted, confidence = torch.randint(0, 3, (50,), generator=g), torch.randint(0, 3, (50,), generator=g), torch.rand(50, generator=g)
    oracle = sorted((i for i in range(50) if predicted[i] != labels[i]), key=lambda i: -confidence[i].item())[:16]
    assert most_confident_mistakes(predicted, confidence, labels) == oracle


# ----------------------------------------------------------------------------- file modes


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_respect_the_umask_like_open(tmp_path, umask):
    previous = os.umask(umask)
    try:
        with open(tmp_path / "plain", "w") as f:  # the oracle: what any tool's new file gets
            f.write("x")
        write_text_atomic(tmp_path / "atomic.json", "{}")
    finally:
        os.umask(previous)
    mode = stat.S_IMODE((tmp_path / "plain").stat().st_mode)
    assert stat.S_IMODE((tmp_path / "atomic.json").stat().st_mode) == mode == 0o666 & ~umask


def test_a_runs_files_have_the_modes_of_any_new_file(subset_dir, cache, tmp_path):
    out = tmp_path / "run"
    result = run_cli("train", str(LENET_PATH), "--data", str(subset_dir), "--data-dir", str(cache), "--epochs", "1",
                     "--batch-size", "100", "--quiet", "--out", str(out))
    assert result.returncode == 0, result.stderr
    (tmp_path / "plain").write_text("x")
    expected = stat.S_IMODE((tmp_path / "plain").stat().st_mode)
    for name in ("checkpoint.pt", "best.pt", "metrics.jsonl", "report.json", "curves.png"):
        assert stat.S_IMODE((out / name).stat().st_mode) == expected, name
