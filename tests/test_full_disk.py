"""A full disk anywhere a run writes (decode cache, checkpoint.pt with metrics.jsonl, report, ONNX export)
is one `error:`/`help:` pair naming the file and the space left; nothing half-written stays, and
checkpoint.pt and metrics.jsonl always hold the same epochs.

Real full disks: tmpfs mounts of a few hundred KB to 2 MB (the tests run as root; skipped, saying
why, where mounting is not permitted). Fault injection: the writer raises as torch does on a full
disk (its zip writer's RuntimeError) and as Python does (OSError ENOSPC).
"""
from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest

torch = pytest.importorskip("torch")

from archspec.language.errors import ArchspecError  # noqa: E402
from archspec.training import checkpoint as ckpt_mod  # noqa: E402
from archspec.training import data as data_mod  # noqa: E402
from archspec.training import loop  # noqa: E402
from archspec.training.checkpoint import Checkpoint  # noqa: E402
from archspec.training.data import load_data  # noqa: E402
from archspec.training.export import _save_atomically  # noqa: E402
from archspec.training.loop import build_model, fit  # noqa: E402
from archspec.training.recipes import make_config  # noqa: E402

from conftest import EXAMPLES, REPO  # noqa: E402
from test_data import real_subset  # noqa: E402

LENET = EXAMPLES / "lenet.arch"
# What torch.save raises when the disk fills under it (the OSError is only its __context__, if kept at all).
TORCH_FULL = "[enforce fail at inline_container.cc:672] . unexpected pos 960 vs 854"


@pytest.fixture
def tiny_disk(tmp_path) -> Iterator[Callable[[str, str], Path]]:
    """mount(name, size): a fresh tmpfs of that size (`2m`, `100k`) at tmp_path/name, unmounted afterwards."""
    mounted: list[Path] = []

    def mount(name: str, size: str) -> Path:
        where = tmp_path / name
        where.mkdir()
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"mounting a {size} tmpfs is not permitted here (needs root): {result.stderr.strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", str(where)], check=False)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """80 train and 10 test real JPEGs per class: 900 images, 2.7 MB once decoded."""
    return real_subset(tmp_path_factory.mktemp("cifar"), 80, 10)


def archspec(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "archspec", *args], capture_output=True, text=True, env=env, timeout=300)


def train_args(images: Path, cache: Path, out: Path, epochs: int = 3) -> list[str]:
    return ["train", str(LENET), "--data", str(images), "--data-dir", str(cache), "--epochs", str(epochs),
            "--batch-size", "256", "--precision", "fp32", "--val", "0", "--quiet", "--out", str(out)]  # val 0: no best.pt


def free_mb(message: str, directory: Path) -> None:
    """The free space the message states is the file system's (statvfs, read independently), to 0.1 MB."""
    stated = re.search(r"\(([\d.]+) (KB|MB) free in ", message)
    assert stated, message
    value = float(stated.group(1)) / (1024 if stated.group(2) == "KB" else 1)
    st = os.statvfs(directory)
    assert abs(value - st.f_bavail * st.f_frsize / 2**20) < 0.1, message


def no_temp_files(directory: Path) -> None:
    assert not [p.name for p in directory.rglob("*.tmp")]


# ----------------------------------------------------------------------------- real full disks


def test_a_full_cache_disk_costs_only_the_cache(images, tiny_disk, tmp_path):
    cache = tiny_disk("cache", "2m")  # the decoded set is 2.7 MB
    result = archspec(*train_args(images, cache, tmp_path / "run", epochs=1))
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("data: decoded "))
    assert re.fullmatch(rf"data: decoded 800 train and 100 test images from {re.escape(str(images))}; not cached \(cannot "
                        rf"write {re.escape(str(cache / 'decoded'))}/\S+\.pt: No space left on device \([\d.]+ MB free in "
                        rf"{re.escape(str(cache / 'decoded'))}\)\)", line), line
    free_mb(line, cache)
    assert os.listdir(cache / "decoded") == []  # no half-written entry, no temp file
    assert Checkpoint.load(tmp_path / "run" / "checkpoint.pt").epoch == 1


def test_a_full_run_directory_stops_with_the_pair_intact_and_resumes_exactly(images, tiny_disk, tmp_path):
    cache = tmp_path / "cache"
    full = archspec(*train_args(images, cache, tmp_path / "full"))
    assert full.returncode == 0, full.stderr[-3000:]
    size = (tmp_path / "full" / "checkpoint.pt").stat().st_size
    out = tiny_disk("out", "2m")
    # Room for one checkpoint and its metrics, not for the next one beside it: epoch 1 saves, epoch 2 cannot.
    st = os.statvfs(out)
    (out / "filler").write_bytes(b"\0" * (st.f_bavail * st.f_frsize - int(1.5 * size)))
    result = archspec(*train_args(images, cache, out))
    # The epoch-2 line comes before its save, which fails.
    assert result.returncode == 1 and result.stdout.count("\nepoch ") == 2, result.stdout + result.stderr
    error, help_line = result.stderr.splitlines()
    assert re.fullmatch(rf"error: cannot write {re.escape(str(out))}/checkpoint\.pt: No space left on device "
                        rf"\([\d.]+ (KB|MB) free in {re.escape(str(out))}\)", error), error
    free_mb(error, out)
    assert help_line == (f"help: free space in {out} (a save needs room for the new checkpoint beside the old); "
                         f"{out}/checkpoint.pt holds epoch 1/3; then continue with `archspec train --resume "
                         f"--out {out} --data-dir {cache}`")
    saved = Checkpoint.load(out / "checkpoint.pt")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert saved.epoch == 1 and rows == saved.metrics  # the pair holds the same epoch
    assert sorted(os.listdir(out)) == ["checkpoint.pt", "filler", "metrics.jsonl", "tensorboard"]
    (out / "filler").unlink()  # space freed, as the help says: the run continues to the uninterrupted weights
    resumed = archspec(*train_args(images, cache, out), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = Checkpoint.load(tmp_path / "full" / "checkpoint.pt").model, Checkpoint.load(out / "checkpoint.pt").model
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_full_disk_under_an_onnx_export_names_the_file(tiny_disk):
    out = tiny_disk("onnx", "100k")  # LeNet's graph is about 250 KB
    result = archspec("export", str(LENET), "-o", str(out / "lenet.onnx"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    error, help_line = result.stderr.splitlines()
    assert re.fullmatch(rf"error: cannot write {re.escape(str(out))}/lenet\.onnx: No space left on device "
                        rf"\([\d.]+ KB free in {re.escape(str(out))}\)", error), error
    assert help_line == f"help: free space or fix the permissions in {out}; the previous file is kept"
    assert os.listdir(out) == []


# ----------------------------------------------------------------------------- injected faults

FAULTS = {
    "torch": lambda: RuntimeError(TORCH_FULL),
    "oserror": lambda: OSError(errno.ENOSPC, "No space left on device"),
}
REASONS = {"torch": "the write stopped short (torch: unexpected pos 960 vs 854)", "oserror": "No space left on device"}


@pytest.fixture(scope="module")
def small(images, tmp_path_factory):
    data = load_data(str(images), tmp_path_factory.mktemp("cache"), lambda _: None)
    return data


def train(small, out: Path, epochs: int = 3) -> dict:
    config = make_config("default", epochs=epochs, batch_size=256, precision="fp32", val=0)  # no best.pt: one file per save
    source = LENET.read_text()
    return fit(build_model(source, str(LENET), config.seed), small, config, out, arch_source=source, arch_path=str(LENET),
               device="cpu", log=lambda _: None, quiet=True)


def failing_on_call(n: int, real: Callable, fault: Callable[[], BaseException]) -> Callable:
    """`real`, except that call number n writes part of the file and then raises `fault()`."""
    calls = []

    def write(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            f.write(b"PK\x03\x04 half a file")
            raise fault()
        return real(obj, f, *args, **kwargs)

    return write


@pytest.mark.parametrize("form", sorted(FAULTS))
def test_a_checkpoint_that_cannot_be_written_keeps_the_previous_pair(form, small, tmp_path, monkeypatch):
    monkeypatch.setattr(ckpt_mod.torch, "save", failing_on_call(2, torch.save, FAULTS[form]))
    with pytest.raises(ArchspecError) as exc:
        train(small, tmp_path)
    assert exc.value.message.startswith(f"cannot write {tmp_path}/checkpoint.pt: {REASONS[form]} (")
    assert exc.value.message.endswith(f" free in {tmp_path})")
    assert f"{tmp_path}/checkpoint.pt holds epoch 1/3; then continue with `archspec train --resume --out {tmp_path}`" in exc.value.help
    monkeypatch.undo()
    saved = Checkpoint.load(tmp_path / "checkpoint.pt")
    assert saved.epoch == 1 and [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()] == saved.metrics
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.pt", "metrics.jsonl", "tensorboard"]


@pytest.mark.parametrize("form", sorted(FAULTS))
def test_metrics_that_cannot_be_written_keep_the_previous_checkpoint_too(form, small, tmp_path, monkeypatch):
    real, calls = loop.write_atomic_all, []

    def metrics_fail_on_the_second_save(files):
        calls.append(1)
        if len(calls) == 2:  # checkpoint.pt's temp file is whole; metrics.jsonl's fails half-way
            (checkpoint, write_checkpoint), (metrics, _) = files

            def half(f):
                f.write(b'{"epoch": 1, ')
                raise FAULTS[form]()

            files = [(checkpoint, write_checkpoint), (metrics, half)]
        real(files)

    monkeypatch.setattr(loop, "write_atomic_all", metrics_fail_on_the_second_save)
    with pytest.raises(ArchspecError) as exc:
        train(small, tmp_path)
    assert exc.value.message.startswith(f"cannot write {tmp_path}/metrics.jsonl: {REASONS[form]} (")
    assert Checkpoint.load(tmp_path / "checkpoint.pt").epoch == 1  # not renamed over: the pair stays at epoch 1
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 1
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.pt", "metrics.jsonl", "tensorboard"]


@pytest.mark.parametrize("form", sorted(FAULTS))
def test_a_cache_entry_that_cannot_be_written_leaves_nothing(form, images, tmp_path, monkeypatch):
    monkeypatch.setattr(data_mod.torch, "save", failing_on_call(1, torch.save, FAULTS[form]))
    lines: list[str] = []
    data = load_data(str(images), tmp_path, lines.append)
    assert len(data.train_x) == 800
    assert f"; not cached (cannot write {tmp_path / 'decoded'}/" in lines[-1]
    assert f".pt: {REASONS[form]} (" in lines[-1] and lines[-1].endswith(f" free in {tmp_path / 'decoded'}))")
    assert os.listdir(tmp_path / "decoded") == []


@pytest.mark.parametrize("form", sorted(FAULTS))
def test_an_export_that_cannot_be_written_leaves_nothing(form, tmp_path):
    class Program:  # torch.onnx's ONNXProgram.save(path), failing part-way
        def save(self, path: str) -> None:
            Path(path).write_bytes(b"\x08\x07 half a model")
            raise FAULTS[form]()

    target = tmp_path / "net.onnx"
    target.write_bytes(b"previous")
    with pytest.raises(ArchspecError) as exc:
        _save_atomically(Program(), target)
    assert exc.value.message.startswith(f"cannot write {target}: {REASONS[form]} (")
    assert target.read_bytes() == b"previous" and os.listdir(tmp_path) == ["net.onnx"]


def test_an_unrelated_error_inside_a_write_is_not_called_a_full_disk(tmp_path):
    def broken(f):
        raise RuntimeError("a bug, not the disk")

    with pytest.raises(RuntimeError, match="a bug, not the disk"):
        ckpt_mod.write_atomic(tmp_path / "x.pt", broken)
    assert os.listdir(tmp_path) == []
