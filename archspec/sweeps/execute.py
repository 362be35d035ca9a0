"""Where trials run: local worker processes (the default), or tasks on a Ray cluster.

Both take a job and an `on_epoch` (the pruner's verdict after each epoch) and give an Outcome.
A local trial is its own process, so one that dies (out of memory, a signal) fails that trial
alone; a Ray trial is a Ray task that sends each epoch's row to the driver through a small actor
and waits for the verdict, so pruning stops it between epochs exactly as it stops a local one.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from archspec.language.errors import ArchspecError

OnEpoch = Callable[[dict[str, Any]], bool]


@dataclass
class Outcome:
    state: str  # "done" | "pruned" | "failed"
    result: dict[str, Any]
    reason: str = ""


def outcome_of(message: dict[str, Any]) -> Outcome:
    if "done" in message:
        result = message["done"]
        return Outcome("pruned" if "stopped_after_epoch" in result else "done", result)
    help = f" (help: {message['help']})" if message.get("help") else ""
    return Outcome("failed", {}, f"{message['error']}{help}")


class LocalExecutor:
    """Each trial in a fresh `python -m archspec.sweeps.worker` process; its stderr goes to worker.log."""

    def __init__(self) -> None:
        self.running: set[subprocess.Popen] = set()
        self.lock = threading.Lock()

    def run(self, job: dict[str, Any], on_epoch: OnEpoch) -> Outcome:
        out = Path(job["out"])
        out.mkdir(parents=True, exist_ok=True)
        with (out / "worker.log").open("ab") as err:
            proc = subprocess.Popen([sys.executable, "-m", "archspec.sweeps.worker"], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True,
                                    env={**os.environ, "OMP_NUM_THREADS": str(job.get("threads") or 1)})
            with self.lock:
                self.running.add(proc)
            try:
                return self._talk(proc, job, on_epoch, out)
            finally:
                with self.lock:
                    self.running.discard(proc)

    def _talk(self, proc: subprocess.Popen, job: dict[str, Any], on_epoch: OnEpoch, out: Path) -> Outcome:
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(json.dumps(job) + "\n")
            proc.stdin.flush()
            for line in proc.stdout:
                message = json.loads(line)
                if "epoch" not in message:
                    proc.wait()
                    return outcome_of(message)
                proc.stdin.write("stop\n" if on_epoch(message["epoch"]) else "go\n")
                proc.stdin.flush()
        except (BrokenPipeError, json.JSONDecodeError):
            pass
        code = proc.wait()
        return Outcome("failed", {}, f"the worker died ({_exit_text(code)}); {_last_line(out / 'worker.log')}")

    def interrupt(self) -> None:
        """SIGINT to every running trial (each saves its last finished epoch, as `archspec train` does)."""
        with self.lock:
            for proc in self.running:
                try:
                    os.killpg(proc.pid, signal.SIGINT)
                except ProcessLookupError:
                    pass


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _last_line(log: Path) -> str:
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()] if log.is_file() else []
    return f"its log ends: {lines[-1].strip()}" if lines else f"nothing in {log}"


# --------------------------------------------------------------------------- Ray

class RayExecutor:
    """Trials as Ray tasks on a running cluster (`ray start --head`); archspec and the data must be on its nodes."""

    def __init__(self, address: str) -> None:
        self.ray = connect(address)
        self.mailbox = _mailbox_class(self.ray).remote()
        self.task = self.ray.remote(max_retries=0)(_ray_trial)
        self.refs: list[Any] = []

    def run(self, job: dict[str, Any], on_epoch: OnEpoch) -> Outcome:
        ray, key = self.ray, job["key"]
        ref = self.task.remote(job, self.mailbox)
        self.refs.append(ref)
        while True:
            row_ref = self.mailbox.next_row.remote(key)
            ready, _ = ray.wait([ref, row_ref], num_returns=1)
            if ref in ready and row_ref not in ready:
                return self._finish(ref)
            row = ray.get(row_ref)
            self.mailbox.verdict.remote(key, on_epoch(row))

    def _finish(self, ref: Any) -> Outcome:
        try:
            return outcome_of(self.ray.get(ref))
        except Exception as exc:  # the task's process died or the task raised: that trial fails, the sweep goes on
            return Outcome("failed", {}, f"the Ray task failed: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}")

    def interrupt(self) -> None:
        for ref in self.refs:
            self.ray.cancel(ref)


def connect(address: str) -> Any:
    """`ray.init` on an existing cluster, or one line saying why not (nothing started, nothing lost)."""
    try:
        import ray
    except ImportError:
        raise ArchspecError("--ray needs the ray package", "pip install 'archspec-cnn[sweep]'") from None
    if address != "auto":
        _reachable(address)
    try:
        ray.init(address=address, logging_level="ERROR", log_to_driver=False,
                 runtime_env={"env_vars": {k: v for k, v in os.environ.items() if k == "PYTHONPATH"}})
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ArchspecError(f"cannot connect to a Ray cluster at {address}: {first}",
                            "start one with `ray start --head`, or pass its address as --ray HOST:PORT") from None
    return ray


def _reachable(address: str) -> None:
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ArchspecError(f"--ray {address}: expected auto or HOST:PORT", "e.g. --ray 127.0.0.1:6379 (what `ray start --head` prints)")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise ArchspecError(f"no Ray cluster answers at {address}: {exc.strerror or exc}",
                            "start one with `ray start --head`, or check the address and port") from None


def _ray_trial(job: dict[str, Any], mailbox: Any) -> dict[str, Any]:
    import ray

    from archspec.sweeps.worker import run_trial

    def on_epoch(row: dict[str, Any]) -> bool:
        return ray.get(mailbox.report.remote(job["key"], row))

    try:
        return {"done": run_trial(job, on_epoch)}
    except ArchspecError as exc:
        return {"error": exc.message, "help": exc.help or ""}


def _mailbox_class(ray: Any) -> Any:
    """An async actor: a task posts a row and awaits the verdict; the driver awaits rows and posts verdicts."""
    import asyncio

    @ray.remote(num_cpus=0)
    class Mailbox:
        def __init__(self) -> None:
            self.rows: dict[str, asyncio.Queue] = {}
            self.verdicts: dict[str, asyncio.Queue] = {}

        def _queues(self, key: str) -> tuple[asyncio.Queue, asyncio.Queue]:
            if key not in self.rows:
                self.rows[key], self.verdicts[key] = asyncio.Queue(), asyncio.Queue()
            return self.rows[key], self.verdicts[key]

        async def report(self, key: str, row: dict[str, Any]) -> bool:
            rows, verdicts = self._queues(key)
            await rows.put(row)
            return await verdicts.get()

        async def next_row(self, key: str) -> dict[str, Any]:
            return await self._queues(key)[0].get()

        async def verdict(self, key: str, stop: bool) -> None:
            await self._queues(key)[1].put(stop)

    return Mailbox
