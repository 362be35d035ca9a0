"""`archspec export`: a checkpoint or a .arch file to ONNX (needs the torch and onnx extras).

torch is imported inside the command (after require_torch), so registering it costs nothing.
`archspec predict model.onnx` lives with predict in cli/train.py and runs without torch.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, TextIO

from archspec.language.errors import UsageError
from archspec.pytorch.extra import require_torch


def add_parsers(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "export", help="export a checkpoint (or a .arch file) to ONNX for onnxruntime (needs archspec-cnn[torch,onnx])",
        description="Export to ONNX through torch.onnx.export with a dynamic batch axis. The model's metadata holds "
                    "the class names, normalisation (mean, std), input shape, archspec version and the .arch text; "
                    "`archspec predict model.onnx IMAGES` reads them and needs no torch.")
    p.add_argument("source", type=Path, metavar="CHECKPOINT.pt|MODEL.arch",
                   help="a checkpoint from `archspec train`, or a .arch file (random-initialised weights)")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="MODEL.onnx")
    p.add_argument("--embed-preprocess", action="store_true",
                   help="normalise inside the graph: the model takes uint8 images [B, C, H, W] in 0..255")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights when exporting a .arch file (default 0)")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace, out: TextIO) -> int:
    if args.output.suffix.lower() != ".onnx":
        raise UsageError(f"-o {args.output}: the output should end in .onnx", f"e.g. -o {args.output.with_suffix('.onnx')}")
    if not args.source.is_file():
        raise UsageError(f"{args.source}: no such file", "pass a checkpoint.pt from `archspec train --out DIR`, or a .arch file")
    require_torch()
    from archspec.training.export import export_onnx, load_source, max_difference, require_exporter

    require_exporter()  # before the (slow) load: a missing extra fails at once
    src = load_source(args.source, args.seed)
    export_onnx(src, args.output, args.embed_preprocess)
    size_mb = args.output.stat().st_size / 1e6
    shape = ", ".join(map(str, src.input_shape))
    takes = (f"uint8 [B, {shape}] in 0..255 (normalisation inside the graph)" if args.embed_preprocess
             else f"float32 [B, {shape}], normalised: (pixels/255 - mean) / std")
    out.write(f"wrote {args.output} ({size_mb:.1f} MB): {src.arch_path}, batch axis dynamic\n"
              f"  input: {takes}\n  mean {_floats(src.mean)}, std {_floats(src.std)}\n"
              f"  {len(src.classes)} classes: {_listed(src.classes)}\n")
    heads = _aux_heads(src.model)
    if heads:
        out.write(f"  note: the network's {heads[0]} auxiliary head(s) ({heads[1]:,} parameters) run only in training and "
                  "are not in the file: it holds the network as it runs in eval\n")
    if not src.trained:
        out.write(f"  note: {args.source} is not a checkpoint: the weights are random (seed {args.seed}), the classes are "
                  f"0..{len(src.classes) - 1} and the normalisation is mean 0, std 1\n")
    diff = max_difference(src, args.output, args.embed_preprocess)
    if diff is None:
        out.write("  not verified: onnxruntime is not installed (pip install 'archspec-cnn[onnx]')\n")
        return 0
    out.write(f"  onnxruntime vs torch on 2 random inputs: max abs difference {diff:.1e}\n")
    return 0 if diff < 1e-4 else 1


def _listed(names: list[str], most: int = 12) -> str:
    """Every name up to `most`; beyond, the first few and the last (a 1000-class list is not read)."""
    if len(names) <= most:
        return ", ".join(names)
    return f"{', '.join(names[:most - 2])}, ..., {names[-1]}"


def _aux_heads(model: Any) -> tuple[int, int] | None:
    """How many auxiliary heads (`aux` joins) the network has and their parameters; None without."""
    from archspec.pytorch.runtime import Aux

    heads = [m for m in model.modules() if isinstance(m, Aux)]
    return (len(heads), sum(p.numel() for h in heads for p in h.parameters())) if heads else None


def _floats(values: list[float]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"
