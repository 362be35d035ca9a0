"""Benchmark: the seed's tutorial pipeline vs `archspec train` (default recipe), in ONE run on one machine.

(a) the seed pipeline (benchmarks/seed_pipeline.py), (b) examples/lenet.arch and (c) examples/vgg_bn.arch
with the default recipe: wall time (training only; the one-time decode and per-epoch test passes excluded),
images/s, test accuracy, time to reach the seed's final accuracy (and 85% for vgg_bn), and ratios to the
seed. Prints a markdown table and writes it to benchmarks/results/train_cifar10.md.

Rerun (about 1.5 + 1.5 + 25 minutes on a quiet 2-core CPU; nothing else should run meanwhile):
    python benchmarks/train_cifar10.py --data ../shared/data/cifar10
Quicker: --vgg-epochs 5, or --skip-vgg (3 minutes).
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from archspec.training.data import Dataset, load_data  # noqa: E402
from archspec.training.recipes import make_config  # noqa: E402
from archspec.training.loop import build_model, cpu_has_native_bf16, fit, physical_cores  # noqa: E402
from seed_pipeline import DEFAULT_DATA, run_seed_pipeline  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    # The model name alone ("AMD EPYC") hides what decides the speed here: the vector ISA and native bf16.
    isa = torch.backends.cpu.get_cpu_capability()
    bf16 = "native bf16" if cpu_has_native_bf16() else "no native bf16"
    return f"{cpu} ({isa}, {bf16}), {physical_cores()} cores{gpu}; torch {torch.__version__}"


def run_arch(arch: Path, data: Dataset, out: Path, recipe: str = "default", device: str = "auto", threads: int | str = "auto",
             **settings: Any) -> dict:
    """`archspec train ARCH --recipe RECIPE` in-process; returns report.json plus the per-epoch metrics."""
    import json

    source, name = arch.read_text(), str(arch.relative_to(REPO) if arch.is_relative_to(REPO) else arch)
    config = make_config(recipe, **settings)
    model = build_model(source, name, config.seed)
    report = fit(model, data, config, out, arch_source=source, arch_path=name, device=device, quiet=True, threads=threads)
    report["metrics"] = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return report


def time_to(metrics: list[dict], accuracy: float) -> float | None:
    """Training seconds at the end of the first epoch whose per-epoch accuracy reaches `accuracy` (epoch granularity):
    the validation accuracy (the test set is evaluated once, at the end); `test_acc` in older metrics and the seed's."""
    return next((m["elapsed_s"] for m in metrics if m.get("val_acc", m.get("test_acc", -1.0)) >= accuracy), None)


def fmt_s(seconds: float | None) -> str:
    return "not reached" if seconds is None else f"{seconds:.1f} s"


def fmt_ratio(seconds: float | None, seed_s: float) -> str:
    return "-" if seconds is None else f"{seconds / seed_s:.2f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=Path("runs/bench_train_cifar10"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--vgg-epochs", type=float, default=10, help="epochs for vgg_bn.arch (default: %(default)s)")
    parser.add_argument("--skip-vgg", action="store_true")
    args = parser.parse_args()

    started = time.strftime("%Y-%m-%d %H:%M")
    seed = run_seed_pipeline(args.data)
    print(f"seed: {seed['test_accuracy']:.2%} in {seed['wall_time_s']:.1f} s", flush=True)
    data = load_data(str(args.data))
    rows = [("seed pipeline: tutorial Net, batch 4, SGD 0.001, 2 epochs", seed["wall_time_s"], seed["images_per_s"],
             seed["test_accuracy"], seed["wall_time_s"], None)]
    lenet = run_arch(REPO / "examples" / "lenet.arch", data, args.out / "lenet", device=args.device)
    rows.append((f"archspec train examples/lenet.arch ({lenet['epochs']:g} epochs, {lenet['dtype']})", lenet["wall_time_s"],
                 lenet["images_per_s"], lenet["test_accuracy"], time_to(lenet["metrics"], seed["test_accuracy"]), None))
    vgg_path = REPO / "examples" / "vgg_bn.arch"
    notes = []
    if args.skip_vgg or not vgg_path.exists():
        notes.append("vgg_bn.arch: skipped" + ("" if vgg_path.exists() else " (examples/vgg_bn.arch not found)"))
    else:
        vgg = run_arch(vgg_path, data, args.out / "vgg_bn", device=args.device, epochs=args.vgg_epochs)
        rows.append((f"archspec train examples/vgg_bn.arch ({vgg['epochs']:g} epochs, {vgg['dtype']})", vgg["wall_time_s"],
                     vgg["images_per_s"], vgg["test_accuracy"], time_to(vgg["metrics"], seed["test_accuracy"]),
                     time_to(vgg["metrics"], 0.85)))

    s = seed["wall_time_s"]
    lines = [
        f"## archspec train vs the seed pipeline (CIFAR-10 JPEG copy, {started})",
        "",
        f"Machine: {machine()}. Device: {lenet['device']}.",
        "",
        f"| run | wall time | vs seed | images/s | test accuracy | time to {seed['test_accuracy']:.1%} (seed's final) | vs seed | time to 85% |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, wall, ips, acc, t_seed, t85 in rows:
        lines.append(f"| {name} | {wall:.1f} s | {wall / s:.2f}x | {ips:,.0f} | {acc:.2%} | {fmt_s(t_seed)} | "
                     f"{fmt_ratio(t_seed, s)} | {fmt_s(t85) if name.startswith('archspec train examples/vgg') else '-'} |")
    lines += ["", "Wall time is training only: the one-time JPEG decode and the per-epoch test passes are excluded "
              "(archspec caches the decoded set; the seed re-decodes JPEGs every epoch, which is part of its pipeline). "
              "Time-to-accuracy is read at epoch ends.", *notes, "",
              "Rerun: `python benchmarks/train_cifar10.py --data ../shared/data/cifar10`", ""]
    table = "\n".join(lines)
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "train_cifar10.md").write_text(table)


if __name__ == "__main__":
    main()
