"""Interruptions and unusable outputs: SIGINT/SIGTERM end with one line and a consistent run directory."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from archspec import cli  # noqa: E402
from archspec.training.checkpoint import Checkpoint  # noqa: E402

from test_data import write_folder  # noqa: E402

NET = "input 3x32x32\nconv 8 k3 p1 | relu | maxpool 2\nflatten\nlinear 2\n"


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("interrupt")
    write_folder(root / "d", per_class=(250, 10), size=(32, 32))
    (root / "net.arch").write_text(NET)
    return root, root / "net.arch"


def _train_then_kill(root: Path, arch: Path, out: Path, sig: int, after: str) -> tuple[int, list[str]]:
    """Start `archspec train`, send `sig` once a stdout line starts with `after`; (exit status, stderr lines)."""
    cmd = [sys.executable, "-m", "archspec.cli", "train", str(arch), "--data", str(root / "d"), "--data-dir", str(root / "cache"),
           "--epochs", "200", "--batch-size", "50", "--out", str(out), "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        for line in proc.stdout:  # type: ignore[union-attr]
            if line.startswith(after):
                proc.send_signal(sig)
                break
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, err.splitlines()


def test_sigterm_after_an_epoch_says_what_was_saved(setup, tmp_path):
    root, arch = setup
    code, err = _train_then_kill(root, arch, tmp_path / "run", signal.SIGTERM, "epoch   2/200")  # epoch 1 is saved by then
    assert code == 143 and len(err) == 1, err
    assert err[0].startswith("error: interrupted (SIGTERM) in epoch ") and "Traceback" not in err[0]
    ckpt = Checkpoint.load(tmp_path / "run" / "checkpoint.pt")
    assert f"checkpoint.pt holds epoch {ckpt.epoch}/200; continue with `archspec train --resume --out {tmp_path / 'run'} " \
           f"--data-dir {root / 'cache'}`" in err[0]  # the command as it works, without the flags the checkpoint stores
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == list(range(1, ckpt.epoch + 1)) and ckpt.metrics == metrics
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["best.pt", "checkpoint.pt", "metrics.jsonl", "tensorboard"]  # no temp file


def test_sigint_before_any_epoch_saves_nothing(setup, tmp_path):
    root, arch = setup
    code, err = _train_then_kill(root, arch, tmp_path / "run", signal.SIGINT, "train: ")
    assert code == 130 and len(err) == 1, err
    assert err[0].startswith("error: interrupted (SIGINT)")
    if "nothing saved" not in err[0]:  # the first epoch can finish before the signal lands
        assert "holds epoch 1/200" in err[0]
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")]


def test_out_that_is_a_file_fails_before_decoding(setup, tmp_path, capsys):
    root, arch = setup
    (tmp_path / "taken").write_text("")
    assert cli.main(["train", str(arch), "--data", str(root / "d"), "--data-dir", str(tmp_path / "c"), "--out", str(tmp_path / "taken")]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [f"error: --out {tmp_path / 'taken'} is a file, not a directory", "help: pass a directory for the run's outputs"]
    assert not (tmp_path / "c").exists()  # refused before the data was decoded into the cache


def test_cache_dir_that_is_a_file_fails_before_decoding(setup, tmp_path, capsys):
    root, arch = setup
    (tmp_path / "cache").write_text("")
    assert cli.main(["train", str(arch), "--data", str(root / "d"), "--data-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "o")]) == 1
    assert f"error: the cache directory {tmp_path / 'cache'} is a file" in capsys.readouterr().err


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_out_fails_before_decoding(setup, tmp_path, capsys):
    root, arch = setup
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o500)
    try:
        assert cli.main(["train", str(arch), "--data", str(root / "d"), "--out", str(tmp_path / "ro")]) == 1
    finally:
        (tmp_path / "ro").chmod(0o700)
    assert "is not writable" in capsys.readouterr().err
