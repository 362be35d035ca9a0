"""`archspec predict model.onnx IMAGES`: top classes on onnxruntime, with numpy and pillow only.

This module must never import torch (tests/test_onnx.py runs it where `import torch` fails): it
reads everything the model needs from the metadata `archspec export` wrote (class names, mean, std,
input shape, whether normalisation is inside the graph) and decodes images the way the runner does.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence, TextIO

from archspec.language.errors import ArchspecError
from archspec.training.preflight import GREY_MODES

EXTRA_HELP = "install the extra: pip install 'archspec-cnn[onnx]' (onnxruntime, numpy and pillow; no torch)"
REQUIRED_KEYS = ("classes", "mean", "std", "input_shape", "preprocess")


@dataclass(frozen=True)
class OnnxClassifier:
    """An onnxruntime session with the metadata that says how to feed it."""

    session: Any
    input_name: str
    classes: list[str]
    mean: list[float]
    std: list[float]
    input_shape: tuple[int, ...]
    embedded: bool  # normalisation inside the graph: the input is uint8
    logit_scale: float


def _import(name: str) -> Any:
    try:
        return __import__(name)
    except ImportError:
        raise ArchspecError(f"`archspec predict MODEL.onnx` needs {name}, which is not installed", EXTRA_HELP) from None


def load_classifier(path: Path) -> OnnxClassifier:
    ort = _import("onnxruntime")
    path = Path(path)
    if not path.is_file():
        raise ArchspecError(f"model {path} does not exist", "pass the .onnx file that `archspec export ... -o MODEL.onnx` wrote")
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own types (InvalidProtobuf, Fail, ...) for bad files
        raise ArchspecError(f"onnxruntime cannot load {path}: {type(exc).__name__}: {str(exc).strip()[:200]}",
                            "re-export it with `archspec export CHECKPOINT.pt -o MODEL.onnx`") from None
    meta = session.get_modelmeta().custom_metadata_map
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise ArchspecError(f"{path} has no archspec metadata (missing: {', '.join(missing)}); predict needs the class "
                            "names and normalisation stored there", "export the model with `archspec export CHECKPOINT.pt -o MODEL.onnx`")
    return OnnxClassifier(session=session, input_name=session.get_inputs()[0].name, classes=json.loads(meta["classes"]),
                          mean=json.loads(meta["mean"]), std=json.loads(meta["std"]),
                          input_shape=tuple(json.loads(meta["input_shape"])), embedded=meta["preprocess"] == "embedded",
                          logit_scale=float(meta.get("logit_scale", "1.0")))


def load_images(paths: Sequence[Path], shape: tuple[int, ...]) -> Any:
    """Image files as uint8 [N, C, H, W], converted and resized to `shape` as the runner's decoder does."""
    np = _import("numpy")
    if len(shape) != 3 or shape[0] not in (1, 3):
        raise ArchspecError(f"the model takes input {list(shape)}; only 1 (grey) or 3 (RGB) channel images can be made from an image file",
                            "predict works with models whose input has 1 or 3 channels")
    c, h, w = shape
    batch = np.empty((len(paths), h, w, c), dtype=np.uint8)
    for i, path in enumerate(paths):
        batch[i] = _decode(Path(path), c, h, w).reshape(h, w, c)
    return batch.transpose(0, 3, 1, 2).copy()


def _decode(path: Path, c: int, h: int, w: int) -> Any:
    np = _import("numpy")
    pil = _import("PIL.Image").Image
    if not path.is_file():
        raise ArchspecError(f"image {path} does not exist", "pass paths of existing image files")
    try:
        with pil.open(path) as im:
            a = np.asarray(im.convert("L" if im.mode in GREY_MODES else "RGB"))
    except (pil.UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ArchspecError(f"cannot decode image {path}: {exc}", "pass image files (PNG, JPEG, BMP, ...) that PIL can read") from None
    if a.shape[:2] != (h, w) or (a.ndim == 3) != (c == 3):  # as training/data.py's _stack: convert, then bilinear resize
        a = np.asarray(pil.fromarray(a).convert("RGB" if c == 3 else "L").resize((w, h), pil.BILINEAR))
    return a


def probabilities(model: OnnxClassifier, images: Any) -> Any:
    """uint8 [N, C, H, W] -> softmax probabilities [N, classes] (the logit scale the recipe trained with)."""
    np = _import("numpy")
    if model.embedded:
        x = images
    else:  # float32 throughout, the order of training's normalize: /255, -mean, /std
        mean = np.asarray(model.mean, dtype=np.float32).reshape(1, -1, 1, 1)
        std = np.asarray(model.std, dtype=np.float32).reshape(1, -1, 1, 1)
        x = ((images.astype(np.float32) / np.float32(255)) - mean) / std
    logits = model.session.run(None, {model.input_name: x})[0].astype(np.float32) * np.float32(model.logit_scale)
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def print_predictions(model_path: Path, image_paths: Sequence[Path], top: int = 3, out: TextIO | None = None) -> int:
    """One line per image: `path: class p%, ...`, the format of the checkpoint predict."""
    model = load_classifier(model_path)
    probs = probabilities(model, load_images(image_paths, model.input_shape))
    k = min(top, probs.shape[1])
    for path, p in zip(image_paths, probs):
        order = p.argsort()[::-1][:k]
        print(f"{path}: " + ", ".join(f"{model.classes[i]} {p[i]:.1%}" for i in order), file=out or sys.stdout)
    return 0
