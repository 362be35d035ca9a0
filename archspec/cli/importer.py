"""`archspec import MODULE:CALLABLE`: an existing PyTorch network as .arch text (and its weights)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

from archspec.language.errors import ArchspecError


def add_parsers(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "import", help="write the .arch text of an existing PyTorch network (MODULE:CALLABLE; needs archspec-cnn[torch])",
        description="Trace a torch.nn.Module with torch.fx and write the .arch text a person would have written: "
                    "blocks for repeated modules, `* N` for runs, a comment naming the module each part came from.")
    p.add_argument("spec", metavar="MODULE:CALLABLE", help="e.g. torchvision.models:resnet18 or mypkg.nets:Net")
    p.add_argument("--kwargs", metavar="JSON", help="arguments for the callable, e.g. '{\"num_classes\": 10}'")
    p.add_argument("--input", default="3x224x224", metavar="CxHxW", help="the input size to trace at (default 3x224x224)")
    p.add_argument("-o", "--output", type=Path, metavar="OUT.arch", help="output file (default: standard output)")
    p.add_argument("--weights", type=Path, metavar="OUT.pt",
                   help="also write the module's weights as the state dict of the imported network (for train --init, eval, export)")
    p.add_argument("--partial", action="store_true", help="when something cannot be expressed, write the part before it and say where it stopped")
    p.set_defaults(func=cmd_import)


def cmd_import(args: argparse.Namespace, out: TextIO) -> int:
    from archspec.pytorch.extra import require_torch

    require_torch()
    from archspec.cli import write_atomically
    from archspec.importers.api import import_module, imported_weights, load_spec

    module = load_spec(args.spec, args.kwargs)
    result = import_module(module, args.input, title=f"{args.spec}, imported by `archspec import`", partial=args.partial)
    if args.weights is not None:
        _save_weights(imported_weights(module, result), args.weights)
    if args.output is not None:
        write_atomically(args.output, result.text)
    else:
        out.write(result.text)
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
