"""Data-parallel scaling: training images/s at 1 and 2 processes (`archspec train --nproc-per-node N`).

Every run is the real command on a subset of the real CIFAR-10 JPEGs, with the same global batch;
the figure is report.json's images_per_s (training steps only: no decoding, start-up or evaluation).
On a CUDA machine the same runs go on the GPU(s) (one process per GPU; nccl).

Run alone:  python benchmarks/ddp_scaling.py [--data ../shared/data/cifar10] [--arch examples/vgg_bn.arch]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "cifar10"


def subset(source: Path, root: Path, train: int, test: int) -> Path:
    """An ImageFolder of symlinks to the first images per class (what the runner decodes)."""
    for split, n in (("train", train), ("test", test)):
        for c in sorted(p.name for p in (source / split).iterdir() if p.is_dir()):
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for f in sorted((source / split / c).iterdir())[:n]:
                (root / split / c / f.name).symlink_to(f)
    return root


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def train(arch: Path, data: Path, cache: Path, out: Path, nproc: int, device: str, threads: int | None,
          args: argparse.Namespace) -> dict:
    cmd = [sys.executable, "-m", "archspec", "train", str(arch), "--data", str(data), "--data-dir", str(cache),
           "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--device", device, "--quiet",
           "--out", str(out), "--nproc-per-node", str(nproc), *(["--sync-bn"] if nproc > 1 else [])]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("OMP_NUM_THREADS", None)  # the launcher gives each process cores // N threads ...
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)  # ... unless the row fixes it
    result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if result.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{result.stderr[-2000:]}")
    return json.loads((out / "report.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--arch", type=Path, default=REPO / "examples" / "vgg_bn.arch")
    parser.add_argument("--train-per-class", type=int, default=500)
    parser.add_argument("--epochs", type=float, default=1)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--max-procs", type=int, default=2)
    args = parser.parse_args()

    import torch

    gpus = torch.cuda.device_count()
    # 1 process x 1 thread as well: the 2-process row's per-process share of the cores.
    targets = [("cpu", 1, 1)] + [("cpu", n, None) for n in range(1, args.max_procs + 1)]
    targets += [("cuda", n, None) for n in range(1, min(gpus, args.max_procs) + 1)]
    with tempfile.TemporaryDirectory() as tmp:
        data = subset(args.data, Path(tmp) / "data", args.train_per_class, 10)
        rows = []
        for i, (device, nproc, threads) in enumerate(targets):
            report = train(args.arch, data, Path(tmp) / "cache", Path(tmp) / f"run{i}", nproc, device, threads, args)
            rows.append((device, nproc, report))
    load = os.getloadavg()[0]
    cores = os.cpu_count()
    print(f"machine: {cpu_model()}, {cores} logical cores; torch {torch.__version__}; "
          f"{'GPUs: ' + ', '.join(torch.cuda.get_device_name(i) for i in range(gpus)) if gpus else 'no GPU'}; "
          f"load average {load:.1f} at the end (other jobs share the machine when it is above the core count)")
    print(f"network: {args.arch.name}; {args.train_per_class * 10:,} training images, {args.epochs:g} epochs, "
          f"global batch {args.batch_size}, --sync-bn at 2+ processes\n")
    print("| device | processes | threads/process | images/s | speed-up | test acc |")
    print("|---|---:|---:|---:|---:|---:|")
    base = {}
    for device, nproc, report in rows:
        base.setdefault(device, report["images_per_s"])  # the first row of each device
        print(f"| {report['device']} | {nproc} | {report['threads']} | {report['images_per_s']:,.0f} | "
              f"{report['images_per_s'] / base[device]:.2f}x | {report['test_accuracy']:.1%} |")


if __name__ == "__main__":
    main()
