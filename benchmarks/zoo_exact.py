"""Every convolutional classification builder in torchvision.models, round-tripped through `archspec import`.

For each builder (torchvision.models.list_models(module=torchvision.models), less vit/swin/maxvit): build it
(weights=None, seeded), import it at a small input size, check the text, build it, load the original's
weights, and compare the outputs in eval, in float64, at two input sizes. The files written by hand, or
edited after the import (HAND_WRITTEN: GoogLeNet's and Inception v3's auxiliary heads, the segmentation
networks), are checked as they stand in examples/zoo/ instead: built, given the original's weights by
`archspec.load_weights`, compared in eval at both sizes (a segmentation network's "out"), and those with
auxiliary heads also in training, every output, with the same seed before each. Verdict: exact (relative
difference <= 1e-9 at both sizes), refused (the first construct the language lacks), wrong (anything
else: must be none), or not run (over --max-params, or past --timeout). Each model runs in its own
process, so memory goes back between models. Run from a checkout:

    python benchmarks/zoo_exact.py [--sizes 64 96] [--max-params 200e6] [--timeout 600] [--jobs 2] [--write DIR] [NAME ...]

It prints the table and writes it to benchmarks/results/zoo_exact.md and docs/benchmarks/zoo_exact.md;
--write DIR also writes each exact model's text to DIR/NAME.arch (`input 3x224x224`): examples/zoo/ is made so.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-9
SIZES = {"inception_v3": (96, 128)}  # its stem needs at least 75 pixels
# examples/zoo/ files that are not the import's text -> the input size of the training comparison (None: eval only).
HAND_WRITTEN: dict[str, int | None] = {
    "googlenet": 64,
    "inception_v3": 299,  # its auxiliary head's 5x5 convolution needs the 17x17 map of a 299x299 input
    "segmentation/fcn_resnet50": None,
    "segmentation/deeplabv3_resnet50": None,
    "segmentation/deeplabv3_mobilenet_v3_large": None,
    "segmentation/lraspp_mobilenet_v3_large": None,
}
PAPERS = {  # builder prefix -> the paper, for the head of each examples/zoo file (longest prefix first)
    "alexnet": "AlexNet (Krizhevsky et al., 2012), torchvision's one-tower variant",
    "convnext": "ConvNeXt (Liu et al., 2022, A ConvNet for the 2020s)",
    "densenet": "DenseNet (Huang et al., 2017, Densely Connected Convolutional Networks)",
    "efficientnet_v2": "EfficientNetV2 (Tan and Le, 2021)",
    "efficientnet": "EfficientNet (Tan and Le, 2019)",
    "googlenet": "GoogLeNet (Szegedy et al., 2015, Going Deeper with Convolutions)",
    "inception_v3": "Inception v3 (Szegedy et al., 2016)",
    "mnasnet": "MnasNet (Tan et al., 2019)",
    "mobilenet_v2": "MobileNetV2 (Sandler et al., 2018)",
    "mobilenet_v3": "MobileNetV3 (Howard et al., 2019, Searching for MobileNetV3)",
    "regnet": "RegNet (Radosavovic et al., 2020, Designing Network Design Spaces)",
    "resnext": "ResNeXt (Xie et al., 2017, Aggregated Residual Transformations)",
    "resnet": "ResNet (He et al., 2016, Deep Residual Learning for Image Recognition)",
    "shufflenet_v2": "ShuffleNet V2 (Ma et al., 2018)",
    "squeezenet": "SqueezeNet (Iandola et al., 2016)",
    "vgg": "VGG (Simonyan and Zisserman, 2015, Very Deep Convolutional Networks)",
    "wide_resnet": "Wide ResNet (Zagoruyko and Komodakis, 2016)",
}


def example_text(name: str, text: str, size: int) -> str:
    """The imported text as an examples/zoo file: the paper and the provenance on top, at the paper's input size."""
    paper = next((v for k, v in sorted(PAPERS.items(), key=lambda kv: -len(kv[0])) if name.startswith(k)), "")
    head = [f"# torchvision.models.{name}: {paper}" if paper else f"# torchvision.models.{name}",
            f"# Written by `archspec import torchvision.models:{name}`. Exact: given the builder's weights as",
            "# `archspec import --weights` writes them, the same outputs in float64 (benchmarks/zoo_exact.py).",
            "# ImageNet's 1000 classes: `archspec check --classes 1000`."]
    if "stochasticdepth" in text:
        head.append("# The stochastic depth rate grows linearly with the block's index (torchvision's schedule), so each call has its own.")
    paper_size = 299 if name == "inception_v3" else 224  # Inception v3 is laid out for 299x299
    body = text.split("\n", 1)[1].replace(f"input 3x{size}x{size}\n", f"input 3x{paper_size}x{paper_size}\n", 1)
    return "\n".join(head) + "\n\n" + body


def builders() -> list[str]:
    import torchvision

    classifiers = [m for m in torchvision.models.list_models(module=torchvision.models) if not m.startswith(("vit", "swin", "maxvit"))]
    return classifiers + [n for n in HAND_WRITTEN if n.startswith("segmentation/")]


def _relative_difference(got, want) -> float:  # torch tensors (torch is imported lazily)
    return ((got - want).abs().max() / want.abs().max()).item()


def zoo_file_row(name: str, sizes: tuple[int, int]) -> dict:
    """The row of a file in HAND_WRITTEN: the file as it stands, given the original's weights by load_weights."""
    import torch
    import torchvision

    import archspec
    from archspec.language.errors import ArchspecError
    from archspec.language.pipeline import CheckOptions, checked
    from archspec.pytorch.build import build_checked

    torch.manual_seed(0)
    if name.startswith("segmentation/"):
        original = getattr(torchvision.models.segmentation, name.split("/")[1])(weights=None, weights_backbone=None)
    else:
        original = getattr(torchvision.models, name)(weights=None, init_weights=True)
    path = ROOT / "examples" / "zoo" / f"{name}.arch"
    row: dict = {"model": name, "params": sum(p.numel() for p in original.parameters()), "sizes": list(sizes),
                 "lines": len(path.read_text().splitlines())}
    # Built at the file's own input size (Inception v3's head needs its 299x299), or at the first size where that
    # is symbolic (`input 3xHxW`); either runs at both sizes.
    report = checked(path, CheckOptions(classes=None))
    if report.symbolic is not None:
        report = checked(path, CheckOptions(classes=None, input_size=(3, sizes[0], sizes[0])))
    net = build_checked(report)
    try:
        archspec.load_weights(net, original)
    except ArchspecError as exc:
        return row | {"verdict": "wrong", "detail": f"load_weights: {exc.message}"}
    original, net = original.double().eval(), net.double().eval()
    diffs = []
    for size in sizes:
        x = torch.randn(2, 3, size, size, dtype=torch.float64)
        with torch.no_grad():
            want, got = original(x), net(x)
        diffs.append(_relative_difference(got, want["out"] if isinstance(want, dict) else want))
    train_size = HAND_WRITTEN[name]
    if train_size is not None:  # every output in training, the same dropout masks from the same seed
        original.train()
        net.train()
        x = torch.randn(2, 3, train_size, train_size, dtype=torch.float64)
        with torch.no_grad():
            torch.manual_seed(1)
            want = original(x)
            torch.manual_seed(1)
            got = net(x)
        if list(got._fields) != list(want._fields):
            return row | {"verdict": "wrong", "detail": f"training outputs {got._fields}, torchvision's {want._fields}"}
        diffs += [_relative_difference(a, b) for a, b in zip(got, want)]
        row["sizes"] = [*sizes, f"{train_size} (training)"]
    row["diff"] = max(diffs)
    return row | {"verdict": "exact" if row["diff"] <= TOLERANCE else "wrong", "detail": ""}


def round_trip(name: str, sizes: tuple[int, int], max_params: float, write: Path | None) -> dict:
    """One builder's row: params, verdict, max relative difference, lines of the imported text."""
    if name in HAND_WRITTEN:
        return zoo_file_row(name, sizes)
    import torch
    import torchvision

    from archspec.importers.api import ImportRefused, import_module, imported_weights
    from archspec.language.pipeline import CheckOptions, checked
    from archspec.pytorch.build import build

    torch.manual_seed(0)
    original = getattr(torchvision.models, name)(weights=None).eval()
    row: dict = {"model": name, "params": sum(p.numel() for p in original.parameters()), "sizes": list(sizes)}
    if row["params"] > max_params:
        return row | {"verdict": "not run", "detail": f"over --max-params {max_params:.0f}"}
    try:
        result = import_module(original, (3, sizes[0], sizes[0]), title=f"torchvision.models:{name}")
    except ImportRefused as exc:
        return row | {"verdict": "refused", "detail": exc.lines[0]}
    row["lines"] = len(result.text.splitlines())
    report = checked(result.text, CheckOptions(classes=None))
    if report.errors:
        return row | {"verdict": "wrong", "detail": f"check: {report.errors[0].message}"}
    net = build(result.text)
    net.load_state_dict(imported_weights(original, result))
    original, net = original.double(), net.double().eval()
    diffs = []
    for size in sizes:
        x = torch.randn(2, 3, size, size, dtype=torch.float64)
        with torch.no_grad():
            want, got = original(x), net(x)
        diffs.append(((got - want).abs().max() / want.abs().max()).item())
    row["diff"] = max(diffs)
    exact = row["diff"] <= TOLERANCE
    if exact and write is not None:
        write.mkdir(parents=True, exist_ok=True)
        (write / f"{name}.arch").write_text(example_text(name, result.text, sizes[0]))
    return row | {"verdict": "exact" if exact else "wrong", "detail": ""}


def run_one(name: str, args: argparse.Namespace) -> dict:
    """The row of one builder, computed in a child process (its memory is freed after)."""
    sizes = SIZES.get(name, tuple(args.sizes))
    command = [sys.executable, __file__, "--one", name, "--sizes", *map(str, sizes), "--max-params", str(args.max_params)]
    if args.write:
        command += ["--write", str(args.write)]
    return child_row(name, command, args.timeout)


def child_row(name: str, command: list[str], timeout: int, failed: str = "wrong") -> dict:
    """The JSON row the child process `command` prints last; `failed` with stderr's last line if it prints none."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"model": name, "verdict": "not run", "detail": f"past --timeout {timeout} s"}
    lines = [x for x in done.stdout.splitlines() if x.startswith("{")]
    if done.returncode != 0 or not lines:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"model": name, "verdict": failed, "detail": f"failed: {last}"}
    return json.loads(lines[-1])


def table(rows: list[dict]) -> list[str]:
    out = ["| model | params | verdict | max relative difference | lines | sizes |", "|---|---:|---|---:|---:|---|"]
    for r in rows:
        verdict = r["verdict"] + (f" ({r['detail']})" if r.get("detail") else "")
        diff = f"{r['diff']:.1e}" if "diff" in r else ""
        params = f"{r['params']:,}" if "params" in r else ""
        sizes = " and ".join(map(str, r.get("sizes", [])))
        out.append(f"| {r['model']} | {params} | {verdict} | {diff} | {r.get('lines', '')} | {sizes} |")
    return out


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    info = Path("/proc/cpuinfo")
    if info.exists():
        cpu = next((x.split(":", 1)[1].strip() for x in info.read_text().splitlines() if x.startswith("model name")), cpu)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{os.cpu_count()}-core VM ({cpu}), CPU only, load average {load:.1f} at the start"


def report(rows: list[dict], seconds: float, where: str, argv: list[str]) -> str:
    import torch
    import torchvision

    counts = {v: sum(r["verdict"] == v for r in rows) for v in ("exact", "refused", "wrong", "not run")}
    summary = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
    return "\n".join([
        "# Zoo: torchvision's convolutional classifiers and segmentation networks, exactly", "",
        f"Machine: {where}. torch {torch.__version__}, torchvision {torchvision.__version__}, {seconds / 60:.1f} minutes.", "",
        "Each builder (weights=None, seeded) is imported at the first size, checked, built, given the original's",
        "weights, and compared with the original in eval, in float64, at both sizes: exact means a relative",
        f"difference of at most {TOLERANCE:g} (max |ours - theirs| / max |theirs|) at both. The files written or",
        "edited by hand (googlenet and inception_v3 with their auxiliary heads, segmentation/*) are checked as they",
        "stand in examples/zoo/, given the original's weights by `archspec.load_weights`; the first two also in",
        "training (every output, the same seed before each), a segmentation network on its \"out\".", "",
        f"**{len(rows)} builders: {summary}.**", "",
        *table(rows), "",
        "Rerun (from a checkout, with torch and torchvision installed):", "",
        "```", f"python benchmarks/zoo_exact.py {' '.join(argv)}".rstrip(), "```", ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*")
    parser.add_argument("--sizes", type=int, nargs=2, default=[64, 96])
    parser.add_argument("--max-params", type=float, default=200e6)
    parser.add_argument("--timeout", type=int, default=600)
    parser.add_argument("--write", type=Path)
    parser.add_argument("--jobs", type=int, default=1, help="models run at once, each in its own process")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--no-results", action="store_true", help="print only; leave the results files as they are")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(round_trip(args.one, tuple(args.sizes), args.max_params, args.write)), flush=True)
        return
    where, start = machine(), time.perf_counter()
    names = args.names or builders()
    print("\n".join(table([])), flush=True)
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:  # threads that each wait on one model's process
        futures = [pool.submit(run_one, name, args) for name in names]
        for done in as_completed(futures):
            print(table([done.result()])[-1], flush=True)
    rows = [f.result() for f in futures]
    if not args.no_results:
        argv = [a for i, a in enumerate(sys.argv[1:]) if a != "--write" and (i == 0 or sys.argv[i] != "--write")]
        text = report(rows, time.perf_counter() - start, where, argv)
        for path in (ROOT / "benchmarks/results/zoo_exact.md", ROOT / "docs/benchmarks/zoo_exact.md"):
            path.write_text(text)


if __name__ == "__main__":
    main()
