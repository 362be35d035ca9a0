"""`archspec import` on torchvision's classification builders: each imported, checked, built, given the
original's weights and compared with it (eval, float64). Prints a table; run from a checkout:

    python benchmarks/import_coverage.py [--size 64] [NAME ...]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torchvision

from archspec.importers.api import ImportRefused, import_module, imported_weights
from archspec.language.pipeline import CheckOptions, checked
from archspec.pytorch.build import build

MODELS = ["alexnet", "vgg11", "vgg11_bn", "resnet18", "resnet50", "densenet121", "squeezenet1_0", "mobilenet_v2",
          "regnet_x_400mf", "resnext50_32x4d", "wide_resnet50_2", "mnasnet0_5", "googlenet", "efficientnet_b0",
          "mobilenet_v3_small", "shufflenet_v2_x0_5", "convnext_tiny"]
EXAMPLES = {"resnet18": "resnet18.arch", "vgg11_bn": "vgg11_bn.arch", "mobilenet_v2": "mobilenet_v2.arch"}


def round_trip(name: str, size: int) -> tuple[str, str]:
    """(outcome, detail): exact (with the relative difference and line count), refused (the construct), or wrong."""
    torch.manual_seed(0)
    original = getattr(torchvision.models, name)(weights=None).eval()
    try:
        result = import_module(original, (3, size, size), title=f"torchvision.models:{name}")
    except ImportRefused as exc:
        return "refused", exc.lines[0]
    report = checked(result.text, CheckOptions(classes=None))
    if report.errors:
        return "wrong", f"check: {report.errors[0].message}"
    warned = f", warning {report.warnings[0].code} (the original's too)" if report.warnings else ""
    net = build(result.text)
    net.load_state_dict(imported_weights(original, result))
    x = torch.randn(2, 3, size, size, dtype=torch.float64)
    with torch.no_grad():
        want, got = original.double()(x), net.double().eval()(x)
    diff = ((got - want).abs().max() / want.abs().max()).item()
    lines = len(result.text.splitlines())
    example = EXAMPLES.get(name)
    budget = f", example {len((Path('examples') / example).read_text().splitlines())}" if example else ""
    return ("exact" if diff <= 1e-9 else "wrong"), f"rel diff {diff:.1e}, {lines} lines{budget}{warned}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("names", nargs="*", default=MODELS)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    print("| model | outcome | detail | seconds |\n|---|---|---|---|")
    for name in args.names:
        start = time.perf_counter()
        outcome, detail = round_trip(name, args.size)
        print(f"| {name} | {outcome} | {detail} | {time.perf_counter() - start:.1f} |", flush=True)


if __name__ == "__main__":
    main()
