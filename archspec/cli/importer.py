"""`archspec import MODULE:CALLABLE|MODEL.onnx`: an existing PyTorch or ONNX network as .arch text (and its weights)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

from archspec.language.errors import ArchspecError


def add_parsers(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "import", help="write the .arch text of an existing network: MODULE:CALLABLE (PyTorch) or MODEL.onnx (needs archspec-cnn[torch], "
                       "and [onnx] for .onnx)",
        description="Trace a torch.nn.Module with torch.fx, or read an ONNX graph, and write the .arch text a person would "
                    "have written: blocks for repeated modules, `* N` for runs, a comment naming the module each part came from. "
                    "An ONNX file made of the operators the language has (Conv, ConvTranspose, BatchNormalization, the "
                    "activations, pools, Gemm/MatMul after a flatten, Add, Mul, Concat, Resize, Split, ...) reads back as "
                    "its network; `archspec export`'s files read back with their blocks.")
    p.add_argument("spec", metavar="MODULE:CALLABLE|MODEL.onnx",
                   help="e.g. torchvision.models:resnet18, mypkg.nets:Net, or model.onnx")
    p.add_argument("--kwargs", metavar="JSON", help="arguments for the callable, e.g. '{\"num_classes\": 10}'")
    p.add_argument("--input", metavar="CxHxW",
                   help="the input size to trace at (default 3x224x224; for .onnx the file's, needed where it leaves it open)")
    p.add_argument("-o", "--output", type=Path, metavar="OUT.arch", help="output file (default: standard output)")
    p.add_argument("--weights", type=Path, metavar="OUT.pt",
                   help="also write the weights (the module's, or the ONNX initializers) as the state dict of the imported "
                        "network (for train --init, eval, export)")
    p.add_argument("--partial", action="store_true", help="when something cannot be expressed, write the part before it and say where it stopped")
    p.set_defaults(func=cmd_import)


def cmd_import(args: argparse.Namespace, out: TextIO) -> int:
    from archspec.pytorch.extra import require_torch

    require_torch()
    from archspec.cli import write_atomically
    from archspec.importers.api import (
        import_module,
        import_onnx,
        imported_weights,
        load_spec,
    )
    from archspec.importers.onnx_graph import is_onnx_path

    title = f"{args.spec}, imported by `archspec import`"
    if is_onnx_path(args.spec):
        if args.kwargs is not None:
            raise ArchspecError("--kwargs is for MODULE:CALLABLE, not an ONNX file", "leave --kwargs out")
        result, module = import_onnx(Path(args.spec), args.input, title=title, partial=args.partial)
    else:
        module = load_spec(args.spec, args.kwargs)
        result = import_module(module, args.input or "3x224x224", title=title, partial=args.partial)
    if args.weights is not None:
        _save_weights(imported_weights(module, result), args.weights)
    if args.output is not None:
        write_atomically(args.output, result.text)
    else:
        out.write(result.text)
    for note in result.imported.notes:  # also in the text's header; said here for whoever reads only the terminal
        print(f"warning: {note}", file=sys.stderr)
    if result.stopped_at is not None:
        print(f"warning: stopped at `{result.stopped_at}`: the text holds the layers before it", file=sys.stderr)
        return 1
    return 0


def _save_weights(state: dict, target: Path) -> None:
    import os
    import tempfile

    import torch

    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent if str(target.parent) else ".", prefix=f".{target.name}.", suffix=".tmp")
        os.close(fd)
        torch.save(state, tmp)
        os.replace(tmp, target)
    except OSError as exc:
        raise ArchspecError(f"{target}: cannot write ({exc.strerror})", "check the folder exists and is writable") from None
