"""Data-parallel training on PyTorch's own engine: torchrun (torch.distributed.run) and DistributedDataParallel.

`World` says which process this is (torchrun's RANK, WORLD_SIZE and LOCAL_RANK) and does the few
collectives the loop needs. One process is the world of size 1 and every method is then a
no-op, so the single-process path stays exactly as it was.

The recipe means the same thing at any world size: every rank draws the same (seed, epoch)
permutation and per-image augmentation, and takes its contiguous shard of each *global* batch;
DDP averages the gradients, so a step is the step one process takes on the whole batch.
`--sync-bn` computes BatchNorm statistics over the global batch (torch's SyncBatchNorm on CUDA;
`GlobalBatchNorm` below on CPU, where torch's refuses to run). Rank 0 alone writes files and logs.
"""
from __future__ import annotations

import os
import re
import signal
import sys
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Sequence

import torch
import torch.distributed as dist
from torch import nn

from archspec.language.errors import ArchspecError

# A rank that waits longer than this in a collective gives up (a peer that hangs rather than exits).
TIMEOUT_ENV = "ARCHSPEC_DDP_TIMEOUT_S"
# For tests: the rank named here reads its data from a path that does not exist, a real per-rank fault.
FAULT_RANK_ENV = "ARCHSPEC_TEST_BAD_DATA_RANK"


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, n: int) -> slice:
        """This rank's contiguous part of n items (n divisible by the world size)."""
        per = n // self.size
        return slice(self.rank * per, (self.rank + 1) * per)

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum over ranks (a copy; the input is left alone)."""
        if not self.distributed:
            return tensor
        out = tensor.clone()
        dist.all_reduce(out)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank (pickled; tensors come back on the CPU)."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def sync_buffers(self, model: nn.Module) -> None:
        """Rank 0's buffers (BatchNorm statistics) everywhere: each rank updated its own from its shard."""
        if self.distributed:
            for buffer in model.buffers():
                dist.broadcast(buffer, src=0)

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def world_from_env() -> World:
    """The process's place in a torchrun job, or the world of one when not started by torchrun."""
    try:
        return World(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0)))
    except ValueError:
        raise ArchspecError("RANK, WORLD_SIZE and LOCAL_RANK must be integers", "start the job with torchrun or `archspec train --nproc-per-node N`") from None


def timeout_s() -> float:
    value = os.environ.get(TIMEOUT_ENV, "")
    return float(value) if value.replace(".", "", 1).isdigit() else 600.0


def init(device: str) -> World:
    """Join torchrun's process group (gloo on CPU, nccl on CUDA); a no-op outside torchrun."""
    world = world_from_env()
    if not world.distributed:
        return world
    cuda = device in ("auto", "cuda") and torch.cuda.is_available()
    if cuda:
        if world.local_rank >= torch.cuda.device_count():
            raise ArchspecError(f"process {world.local_rank} on this machine has no GPU of its own ({torch.cuda.device_count()} visible)",
                                f"pass --nproc-per-node {torch.cuda.device_count()} (one process per GPU), or --device cpu")
        torch.cuda.set_device(world.local_rank)  # "cuda" now means this rank's GPU
    dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(seconds=timeout_s()))
    return world


def shutdown(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def lost_peer(exc: BaseException) -> bool:
    """Whether a collective failed because another rank exited (gloo: closed connection) or never answered."""
    if isinstance(exc, dist.DistError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(
        s in text for s in ("Connection closed by peer", "Connection reset by peer", "remote worker", "Timed out", "timed out"))


def peer_loss(exc: BaseException) -> str:
    """The first sentence of a lost-peer error, without gloo's source location and advice."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = re.sub(r"^\[[^\]]*\.(cc|cpp|h):\d+\]\s*", "", text)
    return text.split(". ")[0].rstrip(".")


def data_source(world: World, source: str) -> str:
    """The data path this rank reads: `source`, except on the rank a test names as faulty."""
    if os.environ.get(FAULT_RANK_ENV) == str(world.rank):
        return os.path.join(source, f"missing-on-rank-{world.rank}")
    return source


def check_batch(world: World, batch: int) -> None:
    if batch % world.size:
        raise ArchspecError(f"the global batch of {batch} images does not split evenly over {world.size} processes",
                            f"pass a --batch-size divisible by {world.size} (it stays the global batch at any world size)")


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """Each rank's seed for the global RNG (dropout) in an epoch: different per rank, and the same after a resume."""
    return (seed * 1_000_003 + epoch) * 1009 + rank


# ----------------------------------------------------------------------------- synchronised BatchNorm


class _SumOverRanks(torch.autograd.Function):
    """all_reduce(SUM) with its gradient: d(sum of every rank's loss)/d(input) is the sum of the ranks' output gradients."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return _SumOverRanks.apply(grad)


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the global batch: all-reduced sums, on any device.

    torch's SyncBatchNorm refuses CPU tensors; this is the same computation through a
    differentiable all_reduce (whose backward all-reduces the gradients, as SyncBatchNorm's does).
    Two passes (mean, then squared deviations) keep it as exact as BatchNorm.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        all_reduce = _SumOverRanks.apply
        dims = [d for d in range(x.dim()) if d != 1]
        shape = [1, -1] + [1] * (x.dim() - 2)
        xf = x.float()
        count = all_reduce(torch.tensor([xf.numel() / xf.shape[1]], device=x.device))
        mean = all_reduce(xf.sum(dims)) / count
        var = all_reduce((xf - mean.view(shape)).square().sum(dims)) / count
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach(), count.item())
        out = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out.to(x.dtype)

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, var: torch.Tensor, count: float) -> None:
        self.num_batches_tracked.add_(1)
        momentum = 1.0 / self.num_batches_tracked.item() if self.momentum is None else self.momentum
        unbiased = var * count / max(count - 1, 1)  # BatchNorm keeps the unbiased variance
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), momentum)
        self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)


def convert_sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """BatchNorm -> global-batch BatchNorm; parameters, buffers and state-dict keys stay the same."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for m in model.modules():
        if type(m) in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d):
            m.__class__ = GlobalBatchNorm  # same attributes, another forward: the module keeps its place and state
    return model


def wrap(model: nn.Module, world: World, device: torch.device, *, params_may_freeze: bool = False) -> nn.Module:
    """DistributedDataParallel around the model (it broadcasts rank 0's weights at construction).

    `params_may_freeze`: some parameters stop training mid-run (the whitening biases), so DDP must
    look for parameters without a gradient each step instead of waiting for them forever.
    """
    if not world.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [torch.cuda.current_device()] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=params_may_freeze)


# ----------------------------------------------------------------------------- the launcher


def launch(nproc: int, worker_args: Sequence[str]) -> int:
    """`archspec train ... --nproc-per-node N`: torchrun's elastic agent, in this process, on one machine.

    The agent starts N workers (`python -m archspec train ...`) with a c10d rendezvous on a free
    local port, and when one exits non-zero it stops the rest and raises; the worker has already
    printed its own error, so the launcher adds one line naming the rank.
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if nproc < 1:
        raise ArchspecError(f"--nproc-per-node {nproc}: need at least 1 process", "pass --nproc-per-node 1 or more")
    # One process per core by default: N processes each with every core's threads contend in OpenMP barriers.
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=str(uuid.uuid4()),
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.1,
                          start_method="spawn")
    try:
        elastic_launch(config, entrypoint=sys.executable)("-m", "archspec", *worker_args)
    except SignalException as exc:  # the agent passed the signal on to the workers, which said what was saved
        code = 128 + int(exc.sigval)
        raise _Stopped(f"interrupted ({exc.sigval.name}): the workers were stopped (what they saved is above)", code) from None
    except ChildFailedError as exc:
        raise first_failure({rank: f.exitcode for rank, f in exc.failures.items()}, nproc) from None
    return 0


def first_failure(exit_codes: dict[int, int], nproc: int) -> ArchspecError:
    """The launcher's line for a failed job: the rank that ended it, with its exit code or signal.

    `exit_codes` is in the order the agent saw the ranks end: the rank that failed first, then those it
    stopped (with SIGTERM, which their handler turns into 143). A rank that only lost its peers exits
    with LostPeer's code and is passed over.
    """
    causes = [(rank, code) for rank, code in exit_codes.items() if code != LostPeer.exit_code]
    if not causes:  # the agent saw only ranks that stopped because a peer failed: the failure's own line is above
        return ArchspecError(f"a rank of {nproc} failed and the job was stopped (its error is above)", "fix that rank's error and run again")
    rank, code = causes[0]
    if code < 0:  # killed by a signal: the rank printed nothing of its own
        return ArchspecError(f"rank {rank} of {nproc} was killed by {_signal_name(-code)} (signal {-code}); the job was stopped",
                             "something outside the job ended that process (SIGKILL is also the kernel's out-of-memory killer: "
                             "see `dmesg`); run again, or continue from the last checkpoint with --resume")
    return ArchspecError(f"rank {rank} of {nproc} exited with code {code}; the job was stopped (its error is above)",
                         "fix that rank's error and run again")


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class _Stopped(ArchspecError):
    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class LostPeer(ArchspecError):
    """A collective failed because another rank went away; its own exit code lets the launcher name the rank that failed first."""

    exit_code = 3
