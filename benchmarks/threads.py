"""Benchmark: `--threads auto` against 1 thread and all cores, and the time to the seed pipeline's accuracy.

1. Time per epoch of examples/lenet.arch (default recipe) and examples/fastcifar.arch (fast recipe) at the
   thread count `auto` chooses, at 1 thread and at all physical cores, in one process one after the other
   (so the machine's load is alike for the three; the ratios are the result). Each row trains a short
   fraction of an epoch on the real training set (`--lenet-steps`, `--fast-steps`) and scales the measured
   images/s to a whole epoch.
2. Time to the seed pipeline's final accuracy (54.04%, benchmarks/results/train_cifar10.md, or
   `--seed-accuracy`) for lenet with the default recipe at `auto`: the training seconds at the end of the
   first epoch whose validation accuracy reaches it (at most `--max-epochs`).

Writes benchmarks/results/threads.md with the machine and its load average before and after. About two to
four minutes on a busy 2-core machine:
    python benchmarks/threads.py --data ../shared/data/cifar10
    python benchmarks/threads.py --parts 1 --lenet-steps 20 --fast-steps 2      # quicker
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seed_pipeline import DEFAULT_DATA  # noqa: E402
from train_cifar10 import REPO, RESULTS, machine, run_arch  # noqa: E402

from archspec.training.data import Dataset, load_data  # noqa: E402
from archspec.training.hardware import cpu_threads  # noqa: E402
from archspec.training.validation import holdout_count  # noqa: E402

LENET = REPO / "examples" / "lenet.arch"
FASTCIFAR = REPO / "examples" / "fastcifar.arch"
SEED_ACCURACY = 0.5404  # the seed pipeline's final test accuracy on this JPEG copy


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def epoch_seconds(arch: Path, data: Dataset, recipe: str, steps: int, threads: int | str, out: Path) -> tuple[float, int]:
    """(seconds per training epoch, thread count used): `steps` steps on the real data, scaled to a whole epoch."""
    from archspec.training.recipes import make_config

    config = make_config(recipe)
    train_images = len(data.train_x) - holdout_count(config.val, len(data.train_x))
    epochs = steps * config.batch_size / train_images
    report = run_arch(arch, data, out, recipe, threads=threads, epochs=round(epochs, 4))
    return train_images / report["images_per_s"], report["threads"]


def part_threads(data: Dataset, tmp: Path, lenet_steps: int, fast_steps: int) -> list[str]:
    lines = ["| network, recipe | threads | chosen by | time per epoch | vs auto |", "|---|---:|---|---:|---:|"]
    for arch, recipe, steps in ((LENET, "default", lenet_steps), (FASTCIFAR, "fast", fast_steps)):
        rows = []
        for label, threads in (("auto", "auto"), ("1", 1), ("all cores", cpu_threads())):
            seconds, used = epoch_seconds(arch, data, recipe, steps, threads, tmp / f"{arch.stem}-{label}")
            rows.append((label, used, seconds))
            print(f"{arch.name} {recipe} threads {label} ({used}): {seconds:.1f} s per epoch", flush=True)
        auto = rows[0][2]
        lines += [f"| {arch.name}, {recipe} | {used} | {label} | {seconds:,.1f} s | {seconds / auto:.2f}x |" for label, used, seconds in rows]
    return lines


def part_time_to_seed(data: Dataset, tmp: Path, target: float, max_epochs: int) -> list[str]:
    """lenet, default recipe, auto threads: epochs one at a time (resumed) until the validation accuracy reaches target."""
    from archspec.training.api import read_metrics
    from archspec.training.loop import build_model, fit
    from archspec.training.recipes import make_config

    config = make_config("default")
    source, out = LENET.read_text(), tmp / "lenet-seed"
    for epoch in range(1, max_epochs + 1):
        fit(build_model(source, "examples/lenet.arch", config.seed), data, config, out, arch_source=source,
            arch_path="examples/lenet.arch", quiet=True, resume=epoch > 1, stop_after_epoch=epoch, log=lambda _: None)
        row = read_metrics(out)[-1]
        print(f"lenet epoch {row['epoch']}: val_acc {row['val_acc']:.2%} after {row['elapsed_s']:.1f} s", flush=True)
        if row["val_acc"] >= target:
            return [f"lenet.arch, default recipe, `--threads auto`: validation accuracy {row['val_acc']:.2%} >= {target:.2%} "
                    f"(the seed pipeline's final) after epoch {row['epoch']}, **{row['elapsed_s']:.1f} s** of training."]
    return [f"lenet.arch did not reach {target:.2%} in {max_epochs} epochs here."]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="CIFAR-10 in ImageFolder layout, or cifar10")
    parser.add_argument("--parts", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--lenet-steps", type=int, default=40)
    parser.add_argument("--fast-steps", type=int, default=3)
    parser.add_argument("--seed-accuracy", type=float, default=SEED_ACCURACY)
    parser.add_argument("--max-epochs", type=int, default=4)
    args = parser.parse_args()
    os.environ.pop("OMP_NUM_THREADS", None)  # auto must measure, not take a count from the environment
    before = load()
    data = load_data(args.data, None, lambda _: None)
    out = [f"# --threads auto, and time to the seed's accuracy\n", f"Machine: {machine()}. Load average before: {before}.\n"]
    with tempfile.TemporaryDirectory() as tmp:
        if 1 in args.parts:
            out += part_threads(data, Path(tmp), args.lenet_steps, args.fast_steps) + [""]
        if 2 in args.parts:
            out += part_time_to_seed(data, Path(tmp), args.seed_accuracy, args.max_epochs) + [""]
    out.append(f"Load average after: {load()}.")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "threads.md").write_text("\n".join(out) + "\n")
    print("\n".join(out))


if __name__ == "__main__":
    main()
