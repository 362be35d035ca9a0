"""ONNX export: a checkpoint (or a bare .arch file) to a self-describing model.onnx.

The exporter is torch's own `torch.onnx.export(..., dynamo=True)` (torch.export + onnxscript), the
default since PyTorch 2.9; the TorchScript exporter it replaces warns that it will be removed. The
file carries everything `archspec predict model.onnx` needs without torch, in its metadata_props:
class names, normalisation, input shape, the archspec version and the .arch text.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from archspec.language.errors import ArchspecError, UsageError
from archspec.training.checkpoint import WriteFailed, new_file_mode, write_failure

INPUT_FLOAT = "input"   # float32 [B, C, H, W], already normalised
INPUT_UINT8 = "image"   # uint8 [B, C, H, W] in 0..255, normalised inside the graph (--embed-preprocess)
OUTPUT = "logits"


@dataclass(frozen=True)
class ExportSource:
    """A network and what a consumer needs to feed it: the checkpoint's, or defaults for a bare .arch."""

    model: nn.Module
    classes: list[str]
    mean: list[float]
    std: list[float]
    input_shape: tuple[int, ...]
    arch_source: str
    arch_path: str
    logit_scale: float = 1.0
    trained: bool = True


def load_source(path: Path, seed: int = 0) -> ExportSource:
    """A checkpoint.pt from `archspec train`, or a .arch file (random-initialised weights from `seed`)."""
    path = Path(path)
    if path.suffix.lower() == ".arch":
        return source_from_arch(path, seed)
    return source_from_checkpoint(path)


def source_from_checkpoint(path: Path) -> ExportSource:
    from archspec.training.checkpoint import Checkpoint  # the one type that knows the format

    ckpt = Checkpoint.load(path)
    return ExportSource(model=ckpt.build_model(str(path)).float(), classes=list(ckpt.classes),
                        mean=list(ckpt.mean), std=list(ckpt.std), input_shape=tuple(ckpt.input_shape),
                        arch_source=ckpt.arch_source, arch_path=ckpt.arch_path or str(path),
                        logit_scale=float(ckpt.config.get("logit_scale", 1.0)), trained=True)


def source_from_arch(path: Path, seed: int = 0) -> ExportSource:
    """Random weights, classes "0".."N-1", mean 0 and std 1: the network's plumbing, not a trained model."""
    from archspec.language.pipeline import CheckOptions, checked
    from archspec.language.expand import load
    from archspec.pytorch.build import build_checked
    from archspec.training.checkpoint import self_contained_source

    model_spec = load(path)  # the same file guards as `archspec check`
    display, text = model_spec.path, model_spec.text
    report = checked(model_spec, CheckOptions(classes=None)).raise_for_errors()
    if report.input_shape is None:
        raise UsageError(f"{display} defines blocks only, no network (it has no `input` line)",
                         "export a file that builds a network, e.g. one that `use`s this one")
    if len(report.output_shape) != 1:
        raise ArchspecError(f"{display}: the network's output is [B, {', '.join(map(str, report.output_shape))}], not class scores [B, N]",
                            "export needs a classifier: end the network with `flatten` (or `gap | flatten`) and `linear N`")
    torch.manual_seed(seed)
    model = build_checked(report).eval()
    channels = report.input_shape[0] if len(report.input_shape) == 3 else 1
    return ExportSource(model=model, classes=[str(i) for i in range(report.output_shape[0])],
                        mean=[0.0] * channels, std=[1.0] * channels, input_shape=tuple(report.input_shape),
                        arch_source=self_contained_source(text, display), arch_path=display, trained=False)


class EmbeddedPreprocess(nn.Module):
    """uint8 images [B, C, H, W] in 0..255 -> the network's normalised float input, inside the graph.

    The same arithmetic, in the same order, as training's `augment.normalize`: /255, -mean, /std.
    """

    def __init__(self, model: nn.Module, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model(image.to(torch.float32).div(255).sub(self.mean).div(self.std))


def exported_module(src: ExportSource, embed_preprocess: bool) -> nn.Module:
    """The module that goes into the graph: the network, or the network behind its normalisation."""
    if not embed_preprocess:
        return src.model.eval()
    if len(src.input_shape) != 3:
        raise UsageError(f"--embed-preprocess: the network takes features [B, {src.input_shape[0]}], not images",
                         "export without --embed-preprocess; the model then takes float32 features")
    return EmbeddedPreprocess(src.model, src.mean, src.std).eval()


def example_input(src: ExportSource, embed_preprocess: bool, batch: int = 2, seed: int = 0) -> torch.Tensor:
    """Random inputs of the exported model's type: uint8 images, or normal floats."""
    g = torch.Generator().manual_seed(seed)
    if embed_preprocess:
        return torch.randint(0, 256, (batch, *src.input_shape), generator=g, dtype=torch.uint8)
    return torch.randn((batch, *src.input_shape), generator=g)


def metadata(src: ExportSource, embed_preprocess: bool) -> dict[str, str]:
    """metadata_props: strings only (ONNX's rule), lists as JSON. onnx_predict reads these keys."""
    from archspec._version import VERSION as __version__

    return {
        "archspec_version": __version__,
        "classes": json.dumps(src.classes),
        "mean": json.dumps(src.mean),
        "std": json.dumps(src.std),
        "input_shape": json.dumps(list(src.input_shape)),
        "preprocess": "embedded" if embed_preprocess else "none",
        "input_format": ("uint8 [B, C, H, W] in 0..255; normalisation is in the graph" if embed_preprocess
                         else "float32 [B, ...]: (pixels/255 - mean) / std"),
        "logit_scale": repr(src.logit_scale),
        "weights": "trained (checkpoint)" if src.trained else "random-initialised (exported from a .arch file)",
        "arch_path": src.arch_path,
        "arch_source": src.arch_source,
    }


def require_exporter() -> None:
    """torch.onnx's dynamo exporter needs onnx and onnxscript (the `onnx` extra)."""
    for name in ("onnx", "onnxscript"):
        try:
            __import__(name)
        except ImportError:
            raise ArchspecError(f"`archspec export` needs {name}, which is not installed",
                                "install the extras: pip install 'archspec-cnn[torch,onnx]'") from None


def export_onnx(src: ExportSource, output: Path, embed_preprocess: bool = False) -> None:
    """Write `output` (atomically: a failed export leaves no partial file) with a dynamic batch axis."""
    require_exporter()
    module = exported_module(src, embed_preprocess)
    x = example_input(src, embed_preprocess)
    name = INPUT_UINT8 if embed_preprocess else INPUT_FLOAT
    program = _run_exporter(module, x, name)
    program.model.metadata_props.update(metadata(src, embed_preprocess))
    program.model.doc_string = f"archspec export of {src.arch_path}"
    _save_atomically(program, Path(output))


def _run_exporter(module: nn.Module, x: torch.Tensor, input_name: str) -> Any:
    import warnings

    batch = torch.export.Dim("batch")
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the exporter's own notices; a failure raises
            program = torch.onnx.export(module, (x,), None, dynamo=True, input_names=[input_name], output_names=[OUTPUT],
                                        dynamic_shapes=({0: batch},), verbose=False, optimize=False)
            _fold_constants(program)
            return program
    except Exception as exc:  # torch.onnx raises its own error types for unsupported graphs
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ArchspecError(f"torch.onnx.export failed: {type(exc).__name__}: {first}",
                            "please report it with the .arch file; `archspec build FILE` shows whether torch runs it") from None


def _fold_constants(program: Any) -> None:
    """Constant folding only: the default optimiser also fuses each BatchNormalization into the conv before
    it, and the graph would no longer be the .arch's layers (`archspec import model.onnx` reads them back;
    onnxruntime fuses them itself when it loads the model)."""
    import onnxscript.optimizer

    onnxscript.optimizer.fold_constants(program.model)
    onnxscript.optimizer.remove_unused_nodes(program.model)


def _save_atomically(program: Any, target: Path) -> None:
    if not target.parent.is_dir():
        raise UsageError(f"-o {target}: there is no folder {target.parent}", "create the folder first, or pick another path")
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        os.close(fd)
        os.chmod(tmp, new_file_mode())  # mkstemp's 0600 is for secrets; a model file is like any other
        program.save(tmp)  # by path: onnx writes the file itself
        os.replace(tmp, target)
    except BaseException as exc:  # an interruption too: no temp file stays
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        reason = write_failure(exc) if isinstance(exc, Exception) else None
        if reason is None:
            raise
        raise WriteFailed(target, reason) from None


def max_difference(src: ExportSource, path: Path, embed_preprocess: bool, batch: int = 2, seed: int = 1) -> float | None:
    """Max |torch - onnxruntime| on random inputs; None when onnxruntime is not installed."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    module = exported_module(src, embed_preprocess)
    x = example_input(src, embed_preprocess, batch, seed)
    with torch.no_grad():
        expected = module(x).float().numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    return float(abs(expected - got).max())
