"""examples/zoo/ through ONNX and back: `archspec export` each file, `archspec import` the .onnx, compare.

For each zoo file (fewest parameters first): its text at a small input size, exported to ONNX with random weights
(seed 0), imported back with its weights, checked, built, and compared: the same layers (the torch.nn
kind and tensor shapes of every layer holding tensors, in order), the same parameter count as the
original .arch, and outputs equal to onnxruntime's on the .onnx file (float32: a relative difference
of at most 1e-5). Verdict: same, refused (the first construct the importer cannot read), or differs
(anything else). Each file runs in its own process; files not reached within --budget are not run.

    python benchmarks/onnx_roundtrip.py [--size 64] [--budget 600] [--timeout 300] [NAME ...]

It prints the table and writes it to benchmarks/results/onnx_roundtrip.md and docs/benchmarks/onnx_roundtrip.md.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

from zoo_exact import child_row, machine

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "examples" / "zoo"
TOLERANCE = 1e-5
# Inception v3's auxiliary head (after Mixed_6e) needs the 299x299 it was made for. AlexNet's and VGG's
# adaptive pools are the identity at 224 (a 6x6 or 7x7 map); from a smaller map they upsample, which
# torch.onnx writes as gathers and transposes the language has no layer for.
SIZES = {"inception_v3": 299, "alexnet": 224, **{f"vgg{n}{bn}": 224 for n in (11, 13, 16, 19) for bn in ("", "_bn")}}


def round_trip(name: str, size: int) -> dict:
    """One zoo file's row: params, verdict, relative difference to onnxruntime, lines of both texts."""
    import numpy as np
    import onnxruntime as ort
    import torch

    from archspec.importers.api import ImportRefused, import_onnx, imported_weights
    from archspec.language.pipeline import CheckOptions, checked
    from archspec.pytorch.build import build
    from archspec.pytorch.runtime import Aux
    from archspec.pytorch.weights import torch_kind
    from archspec.training.export import export_onnx, source_from_arch

    original = (ZOO / f"{name}.arch").read_text()
    text = re.sub(r"^input 3x\d+x\d+", f"input 3x{size}x{size}", original, count=1, flags=re.MULTILINE)
    options = CheckOptions(classes=None)
    row: dict = {"model": name, "params": checked(text, options).params, "zoo_lines": len(original.splitlines())}
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / f"{name}.arch").write_text(text)
        start = time.perf_counter()
        src = source_from_arch(Path(tmp) / f"{name}.arch", seed=0)
        export_onnx(src, Path(tmp) / "m.onnx")
        row["export_s"] = round(time.perf_counter() - start, 1)
        start = time.perf_counter()
        try:
            result, module = import_onnx(Path(tmp) / "m.onnx")
        except ImportRefused as exc:
            return row | {"verdict": "refused", "detail": exc.lines[0]}
        row["import_s"] = round(time.perf_counter() - start, 1)
        row["lines"] = len(result.text.splitlines())
        report = checked(result.text, options)
        if report.errors:
            return row | {"verdict": "differs", "detail": f"check: {report.errors[0].message}"}
        net = build(result.text).eval()
        net.load_state_dict(imported_weights(module, result))
        x = torch.randn(2, 3, size, size)
        session = ort.InferenceSession(str(Path(tmp) / "m.onnx"), providers=["CPUExecutionProvider"])
        want = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        with torch.no_grad():
            got = net(x).numpy()
    row["diff"] = float(np.abs(got - want).max() / np.abs(want).max())
    # At random initialisation some deep networks' logits do not depend on the input (EfficientNet's gates
    # close): there the outputs agree trivially, and only the layers and the parameter count say anything.
    constant = bool(np.abs(got[0] - got[1]).max() == 0)

    # An ONNX file holds the network as it runs in eval: without the training-only auxiliary heads (GoogLeNet's,
    # Inception v3's), whose layers and parameters are left out of the comparison.
    heads = {s for m in src.model.modules() if isinstance(m, Aux) for s in m.head.modules()}

    def layers(m: torch.nn.Module) -> list:
        return [(torch_kind(s), [tuple(t.shape) for t in s.state_dict().values()])
                for s in m.modules() if not list(s.children()) and s.state_dict() and s not in heads]
    in_heads = sum(p.numel() for m in src.model.modules() if isinstance(m, Aux) for p in m.head.parameters())
    same_layers, same_params = layers(net) == layers(src.model), report.params == row["params"] - in_heads
    problems = [p for p, ok in (("other layers", same_layers), (f"{report.params:,} params", same_params),
                                (f"outputs {row['diff']:.1e} apart", row["diff"] <= TOLERANCE)) if not ok]
    notes = problems or (["logits independent of the input at this initialisation: outputs compared trivially"] if constant else [])
    if in_heads and not problems:
        notes.append(f"the eval network: the auxiliary heads' {in_heads:,} parameters, training only, are not in an ONNX file")
    return row | {"verdict": "differs" if problems else "same", "detail": ", ".join(notes)}


def run_one(name: str, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--one", name, "--size", str(SIZES.get(name, args.size))]
    return child_row(name, command, args.timeout, failed="differs")


def table(rows: list[dict]) -> list[str]:
    out = ["| model | params | verdict | relative difference to onnxruntime | lines (zoo file) | export s | import s |",
           "|---|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        verdict = r["verdict"] + (f" ({r['detail']})" if r.get("detail") else "")
        diff = f"{r['diff']:.1e}" if "diff" in r else ""
        params = f"{r['params']:,}" if "params" in r else ""
        lines = f"{r['lines']} ({r['zoo_lines']})" if "lines" in r else ""
        out.append(f"| {r['model']} | {params} | {verdict} | {diff} | {lines} | {r.get('export_s', '')} | {r.get('import_s', '')} |")
    return out


def report(rows: list[dict], seconds: float, where: str, args: argparse.Namespace, left: list[str]) -> str:
    import onnx
    import torch

    counts = {v: sum(r["verdict"] == v for r in rows) for v in ("same", "refused", "differs", "not run")}
    summary = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
    return "\n".join([
        "# The zoo through ONNX and back: `archspec export`, then `archspec import model.onnx`", "",
        f"Machine: {where}. torch {torch.__version__}, onnx {onnx.__version__}, {seconds / 60:.1f} minutes.", "",
        f"Each examples/zoo file, at a {args.size}x{args.size} input (Inception v3 at {SIZES['inception_v3']}, AlexNet and VGG at "
        f"{SIZES['alexnet']}, where their adaptive pools keep the size), is exported with",
        "random weights (seed 0), imported back with its weights, checked and built. *Same* means the same layers",
        "(kind and tensor shapes, in order), the same parameter count as the zoo file, and outputs within a relative",
        f"difference of {TOLERANCE:g} of onnxruntime's on the exported file (float32). Lines: the imported text's, and",
        "the zoo file's in brackets.", "",
        f"**{len(rows)} files: {summary}.**" + (f" Not reached within the {args.budget} s budget: {len(left)} files." if left else ""), "",
        *table(rows), "",
        "Rerun (from a checkout, with the torch and onnx extras installed):", "",
        "```", f"python benchmarks/onnx_roundtrip.py --size {args.size} --budget {args.budget}", "```", ""])


def by_params(names: list[str]) -> list[str]:
    """Fewest parameters first (the export writes every weight), so a budget covers the most files."""
    from archspec.language.pipeline import CheckOptions, checked

    return sorted(names, key=lambda n: checked((ZOO / f"{n}.arch").read_text(), CheckOptions(classes=None)).params or 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--budget", type=int, default=600, help="seconds for the whole run; files not started by then are left out")
    parser.add_argument("--timeout", type=int, default=300, help="seconds for one file")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--no-results", action="store_true", help="print only; leave the results files as they are")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(round_trip(args.one, args.size)), flush=True)
        return
    where, start = machine(), time.perf_counter()
    names = args.names or by_params([p.stem for p in ZOO.glob("*.arch")])
    rows: list[dict] = []
    print("\n".join(table([])), flush=True)
    for i, name in enumerate(names):
        if time.perf_counter() - start > args.budget:
            break
        rows.append(run_one(name, args))
        print(table(rows[-1:])[-1], flush=True)
    left = names[len(rows):]
    if not args.no_results:
        text = report(rows, time.perf_counter() - start, where, args, left)
        for path in (ROOT / "benchmarks/results/onnx_roundtrip.md", ROOT / "docs/benchmarks/onnx_roundtrip.md"):
            path.write_text(text)


if __name__ == "__main__":
    main()
