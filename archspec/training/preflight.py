"""The checks `archspec train` makes before it imports torch or decodes an image: the spec on its own,
then the spec against what the data holds (its class names and image shape), so a spec written for
other data is refused in a moment. A named dataset's shape and classes come from its table entry
(archspec.training.datasets: nothing is read or downloaded); a folder's class names from the directory
listing of train/, the shape from image headers (PIL reads the size and mode without decoding
pixels). The full load checks again on the decoded tensor.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from archspec.language import codes
from archspec.language.check import CheckReport
from archspec.language.pipeline import CheckOptions, checked
from archspec.language.errors import ArchspecError
from archspec.training.datasets import NAMED

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
GREY_MODES = ("1", "L", "I", "I;16", "F")


@dataclass(frozen=True)
class DataInfo:
    source: str
    shape: tuple[int, int, int]  # C, H, W
    classes: tuple[str, ...]


def probe_data(source: str) -> DataInfo | None:
    """A named dataset or an ImageFolder directory -> its shape and classes; None when it cannot tell cheaply.

    A named dataset's come from its table entry (its files may not be downloaded yet). None (a missing
    folder, no readable image) leaves the clear error to the full load.
    """
    if source in NAMED:
        return DataInfo(source, NAMED[source].shape, NAMED[source].classes)
    train = Path(source) / "train"
    if not train.is_dir():
        return None
    try:
        classes = class_folders(train.iterdir())
        shapes = [s for s in (_first_image_shape(train / c) for c in classes) if s is not None]
    except OSError:
        return None  # unreadable folders: the full load names them
    if not shapes:
        return None
    # The most common shape among each class's first image, as the full load takes the most common.
    return DataInfo(str(Path(source).resolve()), Counter(shapes).most_common(1)[0][0], tuple(classes))


def class_folders(entries: Iterable[Path]) -> list[str]:
    """The class folder names among the entries of train/ or test/ (sorted, hidden ones skipped). An entry that cannot be
    followed (a symlink loop, a dangling link) is an error naming it: `is_dir()` says False for it, and
    the class was dropped without a word."""
    names = []
    for entry in sorted(entries):
        if entry.name.startswith("."):
            continue
        try:
            entry.stat()
        except OSError as exc:
            raise ArchspecError(f"cannot read {entry}: {exc.strerror or exc}",
                                "remove the link, or point it at an existing class folder") from None
        if entry.is_dir():
            names.append(entry.name)
    return names


def _first_image_shape(folder: Path) -> tuple[int, int, int] | None:
    from PIL import Image, UnidentifiedImageError

    with_suffix = (p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES)
    for path in with_suffix:
        try:
            with Image.open(path) as im:  # reads the header only
                return (1 if im.mode in GREY_MODES else 3, im.height, im.width)
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError):
            return None  # the full load names the broken file
    return None


def check_input(input_shape: Sequence[int] | None, output_shape: Sequence[int] | None, arch_path: str,
                shape: Sequence[int], classes: Sequence[str], source: str) -> None:
    """The spec's input shape and class count must match the data's; raises ArchspecError if not."""
    fmt = lambda s: "x".join(map(str, s))  # noqa: E731
    if input_shape is not None and tuple(input_shape) != tuple(shape):
        raise ArchspecError(
            f"{arch_path} takes {fmt(input_shape)} inputs but the data ({source}) is {fmt(shape)}",
            f"change the spec's first line to `input {fmt(shape)}`, or train on data of that shape")
    if output_shape is not None and tuple(output_shape) != (len(classes),):
        raise ArchspecError(
            f"{arch_path} outputs {fmt(output_shape)} values but the data has {len(classes)} classes",
            f"make the last layer `linear {len(classes)}`")


def check_spec(arch_source: str, arch_path: str) -> CheckReport:
    """Check the spec on its own (before any data is loaded); raises ArchError with every diagnostic."""
    return checked(arch_source, CheckOptions(classes=None), name=arch_path).raise_for_errors()


def check_against_source(report: CheckReport, arch_path: str, source: str) -> None:
    """Refuse a spec whose input shape or class count the data cannot match, from the listing and headers only."""
    info = probe_data(source)
    if info is not None:
        check_input(report.input_shape, report.output_shape, arch_path, info.shape, info.classes, info.source)


def refuse_final_softmax(report: CheckReport, override: str = "pass --allow-softmax") -> None:
    """Raise on the check report's W205: a final softmax before cross-entropy trains at chance."""
    for d in report.diagnostics:
        if d.code == codes.SOFTMAX_BEFORE_LOSS:
            where = f"{d.span.path}:{d.span.line}:{d.span.column}: " if d.span else ""
            raise ArchspecError(f"{where}{d.message} [W205]", f"{d.help}; or {override} to train it anyway")
