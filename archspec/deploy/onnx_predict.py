"""`archspec predict model.onnx IMAGES`: top classes on onnxruntime, with numpy and pillow only.

This module must never import torch (tests/test_onnx.py runs it where `import torch` fails): it
reads everything the model needs from the metadata `archspec export` wrote (class names, mean, std,
input shape, whether normalisation is inside the graph) and decodes images the way the runner does.
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence, TextIO

from archspec.language.errors import ArchspecError
from archspec.training.preflight import GREY_MODES

EXTRA_HELP = "install the extra: pip install 'archspec-cnn[onnx]' (onnxruntime, numpy and pillow; no torch)"
REQUIRED_KEYS = ("classes", "mean", "std", "input_shape", "preprocess")
IMAGE_HELP = "pass image files (PNG, JPEG, BMP, ...) that PIL can read"


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
    return _classifier(session, _Metadata(path, meta))


class _Metadata:
    """The metadata `archspec export` wrote, each value read and checked against the graph it describes.

    Edited or damaged values (a shape the graph does not take, class names for another number of
    outputs, a zero std) gave tracebacks, 10 GiB allocations or `nan%`: each is one error naming the key."""

    def __init__(self, path: Path, meta: dict[str, str]) -> None:
        self.path, self.meta = path, meta

    def error(self, key: str, problem: str) -> ArchspecError:
        return ArchspecError(f"{self.path}: metadata `{key}` {problem}",
                             "the metadata was edited or damaged; re-export the model with `archspec export CHECKPOINT.pt -o MODEL.onnx`")

    def json(self, key: str) -> Any:
        try:
            return json.loads(self.meta[key])
        except ValueError:
            raise self.error(key, f"is not JSON: {self.meta[key][:60]!r}") from None

    def classes(self, outputs: Any) -> list[str]:
        v = self.json("classes")
        if not (isinstance(v, list) and v and all(isinstance(c, str) and c for c in v) and len(set(v)) == len(v)):
            raise self.error("classes", f"must be a JSON list of distinct class names, not {_short(v)}")
        if isinstance(outputs, int) and outputs != len(v):
            raise self.error("classes", f"has {len(v)} names but the graph outputs {outputs} class scores")
        return v

    def input_shape(self, graph_shape: list[Any]) -> tuple[int, ...]:
        v = self.json("input_shape")
        if not (isinstance(v, list) and 1 <= len(v) <= 3 and all(type(d) is int and 1 <= d <= 65536 for d in v)):
            raise self.error("input_shape", f"must be 1 to 3 sizes in 1..65536, not {_short(v)}")
        if list(graph_shape[1:]) != v:
            raise self.error("input_shape", f"is {v} but the graph's input is {_dims(graph_shape)}")
        return tuple(v)

    def stats(self, key: str, channels: int) -> list[float]:
        v = self.json(key)
        if not (isinstance(v, list) and len(v) == channels
                and all(type(x) in (int, float) and math.isfinite(x) for x in v)):
            raise self.error(key, f"must be a JSON list of {channels} finite numbers (one per channel), not {_short(v)}")
        if key == "std" and not all(x > 0 for x in v):
            raise self.error(key, f"must be > 0 in every channel (it divides the pixels), not {_short(v)}")
        return [float(x) for x in v]

    def embedded(self, input_type: str) -> bool:
        v = self.meta["preprocess"]
        wanted = {"embedded": "tensor(uint8)", "none": "tensor(float)"}
        if v not in wanted:
            raise self.error("preprocess", f"must be `none` or `embedded`, not {_short(v)}")
        if wanted[v] != input_type:
            raise self.error("preprocess", f"is `{v}`, which takes {wanted[v]}, but the graph's input is {input_type}")
        return v == "embedded"

    def logit_scale(self) -> float:
        text = self.meta.get("logit_scale", "1.0")
        try:
            v = float(text)
        except ValueError:
            v = math.nan
        if not (math.isfinite(v) and 0 < v <= 1000):
            raise self.error("logit_scale", f"must be a number in (0, 1000], not {_short(text)}")
        return v


def _classifier(session: Any, meta: _Metadata) -> OnnxClassifier:
    graph_in, graph_out = session.get_inputs()[0], session.get_outputs()[0]
    shape = meta.input_shape(graph_in.shape)
    channels = shape[0] if len(shape) == 3 else 1
    outputs = graph_out.shape[1] if len(graph_out.shape) == 2 else None
    return OnnxClassifier(session=session, input_name=graph_in.name, classes=meta.classes(outputs),
                          mean=meta.stats("mean", channels), std=meta.stats("std", channels), input_shape=shape,
                          embedded=meta.embedded(graph_in.type), logit_scale=meta.logit_scale())


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _dims(shape: list[Any]) -> str:
    return "[" + ", ".join("B" if i == 0 else str(d) for i, d in enumerate(shape)) + "]"


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
    except pil.DecompressionBombError:  # as training/data.py's _decode words it
        raise ArchspecError(f"image {path} is too large to decode safely (more than {2 * pil.MAX_IMAGE_PIXELS:,} pixels; "
                            "PIL refuses it as a possible decompression bomb)", IMAGE_HELP) from None
    except (pil.UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ArchspecError(f"cannot decode image {path}: {exc}", IMAGE_HELP) from None
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
    if logits.ndim != 2 or logits.shape[1] != len(model.classes):  # a graph whose output size is not declared
        raise ArchspecError(f"the model outputs {list(logits.shape[1:])} values per image but its metadata names "
                            f"{len(model.classes)} classes", "re-export the model with `archspec export CHECKPOINT.pt -o MODEL.onnx`")
    if not np.isfinite(logits).all():  # softmax would print `nan%` for every class
        raise ArchspecError("the model computed NaN or infinite class scores: its weights (or its graph) are damaged",
                            "re-export it from a checkpoint that `archspec eval` accepts")
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
