"""Data-parallel training on torchrun: 2 gloo ranks on localhost against one process, on real CIFAR-10 JPEGs.

The oracle is the single-process run: with the global batch split over two ranks (and BatchNorm
statistics over the global batch under --sync-bn), K steps must end on the same weights.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from archspec.cli import make_parser  # noqa: E402
from archspec.cli.train import worker_argv  # noqa: E402
from archspec.training.checkpoint import Checkpoint  # noqa: E402
from archspec.training.data import load_data  # noqa: E402

from conftest import EXAMPLES, REPO  # noqa: E402
from test_data import real_subset  # noqa: E402

pytestmark = pytest.mark.slow

# BatchNorm makes a rank's shard statistics differ from the global batch's.
BN_NET = """input 3x32x32
conv 8 k3 p1 nobias | bn | relu | maxpool 2
conv 16 k3 p1 nobias | bn | relu | gap | flatten | linear 10
"""
# A whitening stem whose bias stops training after epoch 1 (`--set whiten_bias_epochs=1`): DDP must not
# wait for its gradient from then on. (Whitening amplifies float rounding, ~1e-5 after a few steps, so
# this net is compared 2 ranks against 2 ranks, where the arithmetic is the same and equality exact.)
WHITEN_NET = """input 3x32x32
conv 24 k2 init whiten | gelu
conv 6 k5 | relu | maxpool 2
conv 16 k5 | relu | maxpool 2
flatten | linear 84 | relu | linear 10
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, Path]:
    """80 train and 10 test real JPEGs per class (800 / 100: 3 steps of 256 per epoch, 2 with the default --val 0.1),
    decoded once into a cache."""
    root = real_subset(tmp_path_factory.mktemp("cifar"), 80, 10)
    cache = tmp_path_factory.mktemp("cache")
    load_data(str(root), cache, lambda _: None)
    return root, cache


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def command(arch: Path, data: tuple[Path, Path], out: Path, epochs: int, *extra: str) -> list[str]:
    return ["train", str(arch), "--data", str(data[0]), "--data-dir", str(data[1]), "--epochs", str(epochs),
            "--batch-size", "256", "--precision", "fp32", "--quiet", "--out", str(out), *extra]


def env(**extra: str) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), **extra}


def archspec(args: list[str], **extra_env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "archspec", *args], capture_output=True, text=True, env=env(**extra_env), timeout=120)


def torchrun(args: list[str]) -> subprocess.CompletedProcess:
    """The same run started by torchrun itself, with a c10d rendezvous as on several nodes."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
                "--rdzv-backend", "c10d", "--rdzv-endpoint", f"localhost:{free_port()}", "-m", "archspec"]
    return subprocess.run(launcher + args, capture_output=True, text=True, env=env(), timeout=120)


def weights(out: Path) -> dict[str, torch.Tensor]:
    return Checkpoint.load(out / "checkpoint.pt").model


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_two_ranks_of_128_match_one_process_of_256(data, tmp_path):
    lenet = EXAMPLES / "lenet.arch"  # no BatchNorm, no dropout; flips and translation stay on (per image)
    ok(archspec(command(lenet, data, tmp_path / "one", 1)))
    two = ok(archspec(command(lenet, data, tmp_path / "two", 1, "--nproc-per-node", "2")))
    assert max_difference(weights(tmp_path / "one"), weights(tmp_path / "two")) < 1e-5
    assert Checkpoint.load(tmp_path / "two" / "checkpoint.pt").step == 2  # 720 images train, 80 are held out
    # Validation is sharded and summed like the test set: the same figures as one process, on all 80 images.
    one_rows, two_rows = ([json.loads(line) for line in (tmp_path / d / "metrics.jsonl").read_text().splitlines()] for d in ("one", "two"))
    assert [r["val_acc"] for r in one_rows] == [r["val_acc"] for r in two_rows]
    assert two_rows[0]["val_loss"] == pytest.approx(one_rows[0]["val_loss"], abs=1e-5)
    # Rank 0 alone logs: one epoch line, one summary; and the sharded evaluation sums to the whole test set.
    lines = two.stdout.splitlines()
    assert sum(line.startswith("epoch ") for line in lines) == 1 and sum(line.startswith("done:") for line in lines) == 1
    assert "distributed: 2 processes x 128 images per step (global batch 256)" in two.stdout
    one_report, two_report = (json.loads((tmp_path / d / "report.json").read_text()) for d in ("one", "two"))
    assert two_report["world_size"] == 2 and one_report["world_size"] == 1
    assert two_report["val_accuracy"] == one_report["val_accuracy"] and two_report["val_images"] == 80
    assert two_report["confusion_matrix"] == one_report["confusion_matrix"]
    assert sum(map(sum, two_report["confusion_matrix"])) == 100
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())


# fit() under torchrun with a progress line at every step (the CLI's lines come every 10 s).
PROGRESS_SCRIPT = """
import sys
from pathlib import Path
from archspec.training import distributed
from archspec.training.data import load_data
from archspec.training.loop import build_model, fit
from archspec.training.recipes import make_config

arch, data, cache, out = sys.argv[1:]
world = distributed.init("cpu")
source = Path(arch).read_text()
config = make_config("default", epochs=1, batch_size=256, precision="fp32", val=0)
fit(build_model(source, arch, config.seed), load_data(data, Path(cache), lambda _: None), config, Path(out),
    arch_source=source, arch_path=arch, device="cpu", world=world, progress_every=0.0)
distributed.shutdown(world)
"""


def test_progress_and_epoch_lines_both_count_every_process_and_say_so(data, tmp_path):
    script = tmp_path / "progress.py"
    script.write_text(PROGRESS_SCRIPT)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
                "--rdzv-backend", "c10d", "--rdzv-endpoint", f"localhost:{free_port()}", str(script)]
    result = ok(subprocess.run(launcher + [str(EXAMPLES / "lenet.arch"), str(data[0]), str(data[1]), str(tmp_path / "run")],
                               capture_output=True, text=True, env=env(), timeout=120))
    lines = result.stdout.splitlines()
    steps = [line for line in lines if line.startswith("epoch 1/1  step ")]
    epoch = [line for line in lines if line.startswith("epoch   1/1 ")]
    assert [s.split()[3] for s in steps] == ["1/3", "2/3", "3/3"] and len(epoch) == 1  # rank 0 alone logs
    assert all(s.endswith(" img/s (2 processes)") and " (rank 0) " in s for s in steps), steps
    assert " img/s (2 processes)  elapsed " in epoch[0]
    assert " img/s (2 processes), fp32); outputs in " in lines[-1]
    assert "img/s counts the images of all processes" in result.stdout
    # Both are global figures: the end of the epoch's progress agrees with the epoch line (per process is half).
    progress_rate = float(steps[-1].split()[-4].replace(",", ""))
    epoch_rate = float(epoch[0].split(" img/s")[0].split()[-1].replace(",", ""))
    metrics_rate = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])["images_per_s"]
    assert round(metrics_rate) == epoch_rate
    assert 0.75 < progress_rate / epoch_rate < 1.33, (steps[-1], epoch[0])


def test_sync_bn_under_torchrun_matches_one_process_and_plain_bn_does_not(data, tmp_path):
    arch = tmp_path / "bn.arch"
    arch.write_text(BN_NET)
    ok(archspec(command(arch, data, tmp_path / "one", 1)))
    ok(torchrun(command(arch, data, tmp_path / "sync", 1, "--sync-bn")))
    ok(torchrun(command(arch, data, tmp_path / "plain", 1)))
    one = weights(tmp_path / "one")
    assert max_difference(one, weights(tmp_path / "sync")) < 1e-5  # running statistics included
    assert max_difference(one, weights(tmp_path / "plain")) > 1e-4  # per-shard statistics: the control differs


def test_resume_under_two_ranks_ends_on_the_uninterrupted_weights(data, tmp_path):
    arch, epochs = tmp_path / "whiten.arch", 12
    arch.write_text(WHITEN_NET)
    extra = ("--nproc-per-node", "2", "--set", "whiten_bias_epochs=1")
    ok(archspec(command(arch, data, tmp_path / "full", epochs, *extra)))
    args = command(arch, data, tmp_path / "part", epochs, *extra)
    proc = subprocess.Popen([sys.executable, "-m", "archspec", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env())
    try:
        for line in proc.stdout:  # type: ignore[union-attr]
            if line.startswith(f"epoch   2/{epochs}"):
                proc.send_signal(signal.SIGINT)  # to the launcher: torchrun's agent passes it on to the workers
                break
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "error: interrupted (SIGINT)" in err
    saved = Checkpoint.load(tmp_path / "part" / "checkpoint.pt").epoch
    assert 1 <= saved < epochs  # the epoch-2 line comes just before its save
    ok(archspec(args + ["--resume"]))
    assert max_difference(weights(tmp_path / "full"), weights(tmp_path / "part")) == 0.0


def test_a_failing_rank_ends_the_job_with_its_error(data, tmp_path):
    t0 = time.monotonic()
    result = archspec(command(EXAMPLES / "lenet.arch", data, tmp_path / "run", 1, "--nproc-per-node", "2"),
                      ARCHSPEC_TEST_BAD_DATA_RANK="1")
    seconds = time.monotonic() - t0
    assert result.returncode == 1
    assert "error: rank 1/2: data directory" in result.stderr and "missing-on-rank-1 does not exist" in result.stderr
    # The launcher's line: it names rank 1, or (when the agent saw only the peer that stopped because rank 1
    # failed) says a rank failed; it never blames the rank that only lost its peer.
    assert ("error: rank 1 of 2 exited with code 1" in result.stderr
            or "error: a rank of 2 failed and the job was stopped" in result.stderr)
    assert "rank 0 of 2 exited" not in result.stderr
    assert "Traceback" not in result.stderr
    assert seconds < 60, seconds  # not the process group's timeout (600 s): the others saw the rank go
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def rank_pids(launcher: int) -> dict[int, int]:
    """The launcher's worker processes by their RANK (read from /proc)."""
    ranks = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            environ = (stat.parent / "environ").read_bytes().split(b"\0") if ppid == launcher else []
        except (OSError, IndexError, ValueError):  # a process that ended meanwhile
            continue
        for var in environ:
            if var.startswith(b"RANK="):
                ranks[int(var[5:])] = int(stat.parent.name)
    return ranks


def test_a_rank_killed_from_outside_is_named_with_its_signal(data, tmp_path):
    epochs = 200  # far more than the test waits for
    args = command(EXAMPLES / "lenet.arch", data, tmp_path / "run", epochs, "--nproc-per-node", "2")
    proc = subprocess.Popen([sys.executable, "-m", "archspec", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env())
    try:
        for line in proc.stdout:  # type: ignore[union-attr]
            if line.startswith(f"epoch   1/{epochs}"):
                break
        ranks = rank_pids(proc.pid)
        assert sorted(ranks) == [0, 1], ranks
        t0 = time.monotonic()
        os.kill(ranks[1], signal.SIGKILL)  # as the out-of-memory killer would: the rank prints nothing
        _, err = proc.communicate(timeout=60)
        seconds = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err[-3000:]
    assert "error: rank 1 of 2 was killed by SIGKILL (signal 9); the job was stopped\n" in err, err[-3000:]
    assert "help: something outside the job ended that process" in err
    assert "rank 0 of 2 exited" not in err and "Traceback" not in err and "GLHF" not in err
    assert seconds < 30, seconds  # the agent sees the rank go: not the collectives' timeout (600 s)
    saved = Checkpoint.load(tmp_path / "run" / "checkpoint.pt")  # rank 0's last save is whole, its pair consistent
    assert 1 <= saved.epoch < epochs
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == saved.epoch


@pytest.mark.parametrize("exit_codes, line", [
    ({1: -9, 0: 143}, "rank 1 of 2 was killed by SIGKILL (signal 9); the job was stopped"),  # 0: the agent's SIGTERM
    ({0: 3, 1: 1}, "rank 1 of 2 exited with code 1; the job was stopped (its error is above)"),  # 0 only lost its peer
    ({1: 1, 0: 143}, "rank 1 of 2 exited with code 1; the job was stopped (its error is above)"),
    ({0: 3}, "a rank of 2 failed and the job was stopped (its error is above)"),
])
def test_the_launcher_names_the_rank_the_agent_saw_end_first(exit_codes, line):
    from archspec.training.distributed import first_failure

    assert first_failure(exit_codes, 2).message == line


def test_a_batch_that_does_not_split_over_the_ranks_is_refused(data, tmp_path):
    args = command(EXAMPLES / "lenet.arch", data, tmp_path / "run", 1, "--nproc-per-node", "2")
    args[args.index("--batch-size") + 1] = "255"
    result = archspec(args)
    assert result.returncode == 1
    assert "the global batch of 255 images does not split evenly over 2 processes" in result.stderr
    assert "help: pass a --batch-size divisible by 2" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("extra", [[], ["--sync-bn", "--set", "flip=none", "--set", "lr=0.1", "--resume", "--seed", "3"]])
def test_workers_get_the_launchers_command_line_without_nproc(extra, tmp_path):
    argv = ["train", "examples/lenet.arch", "--out", str(tmp_path), *extra]
    args = make_parser().parse_args(argv[:2] + ["--nproc-per-node", "2"] + argv[2:])
    rebuilt = worker_argv(args)
    assert "--nproc-per-node" not in rebuilt
    reparsed = make_parser().parse_args(rebuilt)
    assert {k: v for k, v in vars(reparsed).items() if k != "nproc_per_node"} == \
           {k: v for k, v in vars(args).items() if k != "nproc_per_node"}
