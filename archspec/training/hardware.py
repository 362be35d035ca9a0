"""Hardware: which device, which dtype, how many CPU threads, and the device's name for the report."""
from __future__ import annotations

import math
import os
import platform
import time
from pathlib import Path
from typing import Callable

import torch

from archspec.language.errors import ArchspecError


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if name not in available:
        raise ArchspecError(f"unknown device {name!r}", "use --device auto, cpu, cuda or mps")
    if not available[name]:
        raise ArchspecError(f"device {name!r} is not available on this machine", "use --device auto (or cpu)")
    return torch.device(name)


def cpu_has_native_bf16() -> bool:
    """True on CPUs with bf16 dot-product instructions (AVX512-BF16 or AMX), where bf16 is ~2x fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def pick_dtype(device: torch.device, precision: str) -> torch.dtype:
    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if device.type == "cpu":
        return torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    return torch.float32


def physical_cores() -> int:
    """Physical cores (hyper-threads share one core's FMA units, so more threads only add contention)."""
    try:
        pairs = set()
        phys = core = None
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("physical id"):
                phys = line.split(":")[1].strip()
            elif line.startswith("core id"):
                core = line.split(":")[1].strip()
                pairs.add((phys, core))
        if pairs:
            return len(pairs)
    except OSError:
        pass
    return os.cpu_count() or 1


def cpu_threads() -> int:
    """OMP_NUM_THREADS when the user set it (e.g. several jobs sharing a machine), else the physical cores.

    Two processes each running one thread per core slow each other's OpenMP barriers several-fold.
    """
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else physical_cores()


def device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    if dev.type == "cpu":
        return f"cpu: {platform.processor() or platform.machine()}, {physical_cores()} cores"
    return dev.type


def thread_candidates(cores: int) -> list[int]:
    """The thread counts `--threads auto` tries: one, half the cores and all of them."""
    return sorted({1, max(1, cores // 2), cores})


def seconds_per_step(step: Callable[[], None], candidates: list[int], rounds: int = 3) -> dict[int, float]:
    """The fastest of `rounds` timed steps at each thread count, after one warm-up step each.

    The rounds interleave the counts, so a burst of load from another process hits them alike.
    """
    best = {t: math.inf for t in candidates}
    for threads in candidates:
        torch.set_num_threads(threads)
        step()
    for _ in range(rounds):
        for threads in candidates:
            torch.set_num_threads(threads)
            t0 = time.perf_counter()
            step()
            best[threads] = min(best[threads], time.perf_counter() - t0)
    return best


def choose_threads(requested: int | str, step: Callable[[], None], resumed_with: int = 0) -> tuple[int, str]:
    """(CPU threads to train with, why): `--threads N`, OMP_NUM_THREADS, the count a resumed run began with, or measured.

    Measured: the fastest per step on this machine now; on a machine busy with other work one thread is
    often several times faster than all cores, whose OpenMP barriers wait for the slowest core.
    """
    if requested != "auto":
        return int(requested), "as --threads asks"
    if os.environ.get("OMP_NUM_THREADS", "").isdigit() and int(os.environ["OMP_NUM_THREADS"]) > 0:
        return cpu_threads(), "from OMP_NUM_THREADS"
    if resumed_with:  # the arithmetic depends on the thread count: the same count continues the run exactly
        return resumed_with, "the count the run began with, for an exact continuation (--threads N to change it)"
    cores = physical_cores()
    if cores == 1:
        return 1, "one core"
    times = seconds_per_step(step, thread_candidates(cores))
    chosen = min(times, key=lambda t: (times[t], t))
    measured = ", ".join(f"{t} {'thread' if t == 1 else 'threads'} {s * 1000:,.0f} ms" for t, s in times.items())
    return chosen, f"the fastest per training step on this machine now (timed: {measured}; --threads N to choose)"
