"""The checker against PyTorch on many random architectures: the bigger run of tests/test_oracle.py.

Flat chains, structured nets (residuals, projections, shortcuts, concat/add branches, blocks with
parameters, repetition) and invalid nets (kernel too large, pool too small, pool padding, `p same`
with stride, groups, conv after flatten, residual and branch mismatches): each rendered to .arch
for archspec and translated independently into torch.nn; every disagreement is counted (shape or
params of a layer, error vs torch raising, where, or the compiled module differing).

Run:  python benchmarks/oracle_agreement.py [--n 2000] [--seed 0] [--no-build] [--show 3]
Prints per family and in total: "N architectures, K disagreements".
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import torch  # noqa: E402

import test_oracle as oracle  # noqa: E402

FAMILIES = {
    "flat": (oracle.flat_archs, ("nl", "pipe")),
    "structured": (oracle.structured_archs, ("nl", "pipe")),
    "invalid": (oracle.invalid_archs, ("nl",)),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="architectures per family (default 2000)")
    ap.add_argument("--seed", type=int, default=None, help="fixed random seed (default: a fresh one)")
    ap.add_argument("--families", default=",".join(FAMILIES), help="comma-separated: " + ", ".join(FAMILIES))
    ap.add_argument("--no-build", action="store_true", help="skip comparing archspec.build's modules")
    ap.add_argument("--show", type=int, default=3, help="print this many disagreeing architectures")
    args = ap.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message="Using padding='same' with even kernel")
    total, total_bad = 0, 0
    failures: list = []
    for name in args.families.split(","):
        strategy, seps = FAMILIES[name]
        stats: Counter = Counter()
        start = time.perf_counter()
        oracle.run_property(strategy(), args.n, stats, sep_choices=seps, derandomize=False, seed=args.seed,
                            build=not args.no_build and name != "invalid", strict=False, failures=failures)
        secs = time.perf_counter() - start
        n, bad = stats["architectures"], stats["disagreements"]
        total, total_bad = total + n, total_bad + bad
        outcome = f"torch runs {stats['torch runs']}, torch raises {stats['torch raises']}"
        known = sum(v for k, v in stats.items() if k.startswith("known: "))
        if known:
            outcome += f"; {known} of the disagreements are the reported projection-stride bug"
        print(f"{name:>10}: {n} architectures, {bad} disagreements  ({stats['layers']} layers; {outcome}; {secs:.1f} s)")
    print(f"{'total':>10}: {total} architectures, {total_bad} disagreements")
    for text, problems in failures[: args.show]:
        print("\n--- disagreement:", *problems, sep="\n  ")
        print(text)
    return 1 if total_bad else 0


if __name__ == "__main__":
    sys.exit(main())
