"""Benchmark: time to accuracy, throughput and an ablation of the fast recipe, in ONE run on one machine.

1. Time to accuracy: the seed pipeline, examples/lenet.arch (default recipe) and examples/fastcifar.arch
   (--recipe fast): wall time, images/s, final accuracy, time to 60/80/85/90%, ratios to the seed.
2. Throughput of a fastcifar.arch training step (batch 1024, synthetic data, so augmentation is excluded)
   for fp32/bf16 x NCHW/channels_last, with and without torch.compile.
3. Ablation: the fast recipe on a SHORT schedule (--ablation-epochs, default 2), each ingredient switched
   off in turn; the full recipe on the same schedule is the reference row.

Writes benchmarks/results/time_to_accuracy.md. Durations on a quiet 2-core CPU (avx512_bf16): part 1
about 20 minutes, part 2 about 7, part 3 about 4.5 minutes per ablation row at 2 epochs (10 rows). Nothing
else should run meanwhile: two processes sharing two cores slow each other's OpenMP barriers several-fold.
    python benchmarks/time_to_accuracy.py --data ../shared/data/cifar10             # everything
    python benchmarks/time_to_accuracy.py --parts 1                                 # only time to accuracy
    python benchmarks/time_to_accuracy.py --parts 2 3 --ablation-epochs 1           # quicker extras
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seed_pipeline import DEFAULT_DATA, run_seed_pipeline  # noqa: E402
from train_cifar10 import REPO, RESULTS, fmt_ratio, fmt_s, machine, run_arch, time_to  # noqa: E402

from archspec.training.data import Dataset, load_data  # noqa: E402
from archspec.training.loop import build_model, pick_device, pick_dtype, physical_cores  # noqa: E402

FASTCIFAR = REPO / "examples" / "fastcifar.arch"
LENET = REPO / "examples" / "lenet.arch"
TARGETS = (0.6, 0.8, 0.85, 0.9)

# (label, settings that switch one ingredient off); "whitening init" is switched off in the .arch text.
ABLATIONS = [
    ("full fast recipe (reference)", {}),
    ("- whitening init (a plain learned 2x2 conv)", {"_no_whiten": True}),
    ("- identity (dirac) init", {"identity_init": False}),
    ("- lookahead / EMA", {"lookahead": False}),
    ("- alternating flip (random flip instead)", {"flip": "random"}),
    ("- translation", {"translate": 0}),
    ("- label smoothing", {"label_smoothing": 0.0}),
    ("- BN bias lr x64", {"bias_lr_scale": 1.0}),
    ("- frozen BN weights (trained)", {"freeze_bn_weights": False}),
    ("- bf16 autocast (fp32)", {"precision": "fp32"}),
]


def part_time_to_accuracy(data_dir: Path, data: Dataset, out: Path, device: str) -> list[str]:
    seed = run_seed_pipeline(data_dir)
    print(f"seed: {seed['test_accuracy']:.2%} in {seed['wall_time_s']:.1f} s", flush=True)
    s = seed["wall_time_s"]
    seed_metrics = [{"elapsed_s": t, "test_acc": a} for t, a in zip(seed["epoch_elapsed_s"], seed["epoch_test_acc"])]
    runs = [("seed pipeline (tutorial Net, batch 4, 2 epochs, fp32)", seed["wall_time_s"], seed["images_per_s"],
             seed["test_accuracy"], seed_metrics)]
    for arch, recipe in ((LENET, "default"), (FASTCIFAR, "fast")):
        r = run_arch(arch, data, out / f"{arch.stem}_{recipe}", recipe=recipe, device=device)
        tta = f", tta {r['settings']['tta']}" if r["settings"]["tta"] else ""
        runs.append((f"`archspec train {arch.relative_to(REPO)} --recipe {recipe}` ({r['epochs']:g} epochs, {r['dtype']}{tta})",
                     r["wall_time_s"], r["images_per_s"], r["test_accuracy"], r["metrics"]))
    lines = ["| run | wall time | vs seed | images/s | final accuracy | " + " | ".join(f"to {t:.0%}" for t in TARGETS) + " |",
             "|---|---:|---:|---:|---:|" + "---:|" * len(TARGETS)]
    for name, wall, ips, acc, metrics in runs:
        cells = [f"{fmt_s(time_to(metrics, t))} ({fmt_ratio(time_to(metrics, t), s)})" if time_to(metrics, t) else "-"
                 for t in TARGETS]
        lines.append(f"| {name} | {wall:.1f} s | {wall / s:.1f}x | {ips:,.0f} | {acc:.2%} | " + " | ".join(cells) + " |")
    return lines + ["", "Wall time is training only (for the fast recipe it includes the whitening init and the final TTA "
                    "pass); the one-time decode and per-epoch test passes are excluded. Time to X% is read at epoch ends, "
                    "without TTA; the final accuracy of the fast recipe is with TTA."]


def part_throughput(device: str, steps: int) -> list[str]:
    dev = pick_device(device)
    source = FASTCIFAR.read_text()
    x_cpu, y_cpu = torch.randn(1024, 3, 32, 32), torch.randint(0, 10, (1024,))
    lines = ["| precision | memory format | torch.compile | images/s | compile time |", "|---|---|---|---:|---:|"]
    for dtype in (torch.float32, torch.bfloat16):
        for channels_last in (False, True):
            for compiled in (False, True):
                model = build_model(source, "fastcifar.arch", 0).to(dev)
                fmt = torch.channels_last if channels_last else torch.contiguous_format
                model = model.to(memory_format=fmt)
                x, y = x_cpu.to(dev).contiguous(memory_format=fmt), y_cpu.to(dev)
                opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.85, nesterov=True)
                fn = torch.compile(model) if compiled else model

                def step() -> None:
                    with torch.autocast(dev.type, dtype=dtype, enabled=dtype != torch.float32):
                        loss = torch.nn.functional.cross_entropy(fn(x).float(), y)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()

                t0 = time.perf_counter()
                for _ in range(3):  # warm-up (and compilation)
                    step()
                sync(dev)
                warm = time.perf_counter() - t0
                t0 = time.perf_counter()
                for _ in range(steps):
                    step()
                sync(dev)
                ips = steps * 1024 / (time.perf_counter() - t0)
                name = "bf16 autocast" if dtype == torch.bfloat16 else "fp32"
                lines.append(f"| {name} | {'channels_last' if channels_last else 'NCHW'} | {'yes' if compiled else 'no'} | "
                             f"{ips:,.0f} | {f'{warm:.0f} s' if compiled else '-'} |")
                print(lines[-1], flush=True)
    return lines + ["", f"fastcifar.arch training steps (forward, backward, SGD) on a synthetic batch of 1024, {steps} "
                    f"steps after 3 warm-up steps, {dev.type}, {physical_cores()} threads."]


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def part_ablation(data: Dataset, out: Path, device: str, epochs: float) -> list[str]:
    lines = [f"| fast recipe, {epochs:g} epochs | test accuracy (tta 2) | without TTA | wall time |", "|---|---:|---:|---:|"]
    # Ask the runner which precision the reference gets rather than remembering what a previous row did.
    reference_is_fp32 = pick_dtype(pick_device(device), "auto") == torch.float32
    for i, (label, settings) in enumerate(ABLATIONS):
        settings = dict(settings)
        if settings.get("precision") == "fp32" and reference_is_fp32:
            # Without native bf16 the reference already ran in fp32: this row would repeat it.
            lines.append(f"| {label} | same as the reference: this CPU has no native bf16 | | |")
            print(lines[-1], flush=True)
            continue
        arch = FASTCIFAR
        if settings.pop("_no_whiten", False):
            arch = out / "fastcifar_no_whiten.arch"
            arch.parent.mkdir(parents=True, exist_ok=True)
            arch.write_text(re.sub(r"\s+init whiten", "", FASTCIFAR.read_text()))
        r = run_arch(arch, data, out / f"ablation_{i}", recipe="fast", device=device, epochs=epochs, **settings)
        lines.append(f"| {label} | {r['test_accuracy']:.2%} | {r['test_accuracy_no_tta']:.2%} | {r['wall_time_s']:.1f} s |")
        print(lines[-1], flush=True)
    return lines + ["", f"Each row switches one ingredient off, on a short {epochs:g}-epoch schedule (the full recipe is 9.9): "
                    "differences of a few tenths of a percent are within run-to-run noise here. The TTA ingredient is "
                    "the gap between the two accuracy columns."]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=Path("runs/bench_time_to_accuracy"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--parts", type=int, nargs="+", default=[1, 2, 3], choices=(1, 2, 3))
    parser.add_argument("--throughput-steps", type=int, help="measured steps per row (default: 10 on CPU, 300 on GPU)")
    parser.add_argument("--ablation-epochs", type=float, default=2.0)
    args = parser.parse_args()

    data = load_data(str(args.data)) if {1, 3} & set(args.parts) else None
    device_name = pick_device(args.device)
    steps = args.throughput_steps or (300 if device_name.type == "cuda" else 10)
    sections = [f"## Time to accuracy, throughput and ablation (CIFAR-10 JPEG copy, {time.strftime('%Y-%m-%d %H:%M')})", "",
                f"Machine: {machine()}; device {device_name.type}.", ""]
    if 1 in args.parts:
        sections += ["### Time to accuracy", "", *part_time_to_accuracy(args.data, data, args.out, args.device), ""]
    if 2 in args.parts:
        sections += ["### Training throughput (fastcifar.arch)", "", *part_throughput(args.device, steps), ""]
    if 3 in args.parts:
        sections += ["### Ablation of the fast recipe", "", *part_ablation(data, args.out, args.device, args.ablation_epochs), ""]
    rerun = f"python benchmarks/time_to_accuracy.py --data {args.data} --parts {' '.join(map(str, args.parts))}"
    if 3 in args.parts:
        rerun += f" --ablation-epochs {args.ablation_epochs:g}"
    sections += [f"Rerun: `{rerun}`", ""]
    table = "\n".join(sections)
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.parts == [1, 2, 3] else "_part" + "".join(map(str, args.parts))
    (RESULTS / f"time_to_accuracy{suffix}.md").write_text(table)


if __name__ == "__main__":
    main()
