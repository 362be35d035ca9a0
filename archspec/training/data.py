"""Image data for the runner: decode once, hold as one uint8 tensor, cache the decoded set on disk.

Two kinds of source: a named dataset (MNIST, Fashion-MNIST, CIFAR-10, CIFAR-100, SVHN: torchvision's
classes read their official files in the cache directory, archspec.training.datasets) and a directory
in ImageFolder layout (`train/<class>/*.png|jpg`, `test/<class>/...`). Either way the result is a
`Dataset` of uint8 tensors [N, C, H, W] plus int64 labels; augmentation works on batches of it
(archspec.training.augment), never per image.
"""
from __future__ import annotations

import hashlib
import os
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from archspec.language.errors import ArchspecError
from archspec.training.datasets import NAMED, NamedData
from archspec.training.fetch import load_named
from archspec.training.preflight import GREY_MODES, IMAGE_SUFFIXES, class_folders

CACHE_VERSION = 1  # bump when the cached tensor format changes


def default_cache_dir() -> Path:
    return Path(os.environ.get("ARCHSPEC_CACHE", Path.home() / ".cache" / "archspec"))


@dataclass
class Dataset:
    train_x: torch.Tensor  # uint8 [N, C, H, W]
    train_y: torch.Tensor  # int64 [N]
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]
    source: str
    limit: int | None = None  # --limit: the per-split cap these tensors were taken with (None: every image)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])  # type: ignore[return-value]

    def stats(self) -> tuple[list[float], list[float]]:
        """Per-channel mean and std of the training images in [0, 1], for normalisation."""
        x = self.train_x[:: max(1, len(self.train_x) // 10_000)].float().div_(255)  # strided: files are sorted by class
        return x.mean(dim=(0, 2, 3)).tolist(), x.std(dim=(0, 2, 3)).tolist()


def check_cache_dir(cache_dir: Path | None) -> Path:
    """The cache directory (created if missing) when it is a writable directory; else an error naming it."""
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    if cache_dir.exists() and not cache_dir.is_dir():
        raise ArchspecError(f"the cache directory {cache_dir} is a file", "pass a directory with --data-dir (or set ARCHSPEC_CACHE)")
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ArchspecError(f"cannot create the cache directory {cache_dir}: {exc.strerror}",
                            "pass a writable directory with --data-dir (or set ARCHSPEC_CACHE)") from None
    if not os.access(cache_dir, os.W_OK | os.X_OK):
        raise ArchspecError(f"the cache directory {cache_dir} is not writable", "pass a writable directory with --data-dir (or set ARCHSPEC_CACHE)")
    return cache_dir


def load_data(source: str, cache_dir: Path | None = None, log: Callable[[str], None] = print, *,
              limit: int | None = None, live: bool | None = None) -> Dataset:
    """A named dataset (`mnist`, `cifar10`, ...: see datasets.NAMED) or an ImageFolder directory with train/ and
    test/ -> Dataset (a folder's decoded images are cached on disk).

    `limit`: at most that many images per split, the same share of each class (a quick try).
    `live`: a progress bar on stderr while a folder decodes (default: when stderr is a terminal); else plain lines.
    """
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    if source in NAMED:
        return _load_named(NAMED[source], cache_dir, log, limit)
    live = sys.stderr.isatty() if live is None else live
    return _load_folder(Path(source), cache_dir, log, limit, live)


def _load_named(spec: NamedData, cache_dir: Path, log: Callable[[str], None], limit: int | None) -> Dataset:
    train, test = load_named(spec, cache_dir)
    splits = [_split_tensors(spec, split) for split in (train, test)]
    classes = list(getattr(train, "classes", spec.classes))  # SVHN has no class names: its digits
    if limit is not None:
        splits = [(x[keep], y[keep]) for x, y in splits for keep in [stratified(y.tolist(), limit, len(classes))]]
    log(f"data: {spec.title} from {spec.where(cache_dir)}" + _limited(limit, len(splits[0][0]), len(splits[1][0])))
    (train_x, train_y), (test_x, test_y) = splits
    return Dataset(train_x, train_y, test_x, test_y, classes, spec.name, limit)


def _split_tensors(spec: NamedData, split: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """A torchvision dataset's images as uint8 [N, C, H, W] and its labels as int64 [N]."""
    if spec.name in ("mnist", "fashion-mnist"):  # uint8 tensor [N, H, W]
        return split.data.unsqueeze(1).contiguous(), split.targets.to(torch.int64)
    if spec.name == "svhn":  # numpy [N, C, H, W]
        return torch.from_numpy(np.ascontiguousarray(split.data)), torch.from_numpy(split.labels).to(torch.int64)
    return torch.from_numpy(split.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(split.targets, dtype=torch.int64)


def _limited(limit: int | None, train: int, test: int) -> str:
    return "" if limit is None else f" (--limit {limit:,}: {train:,} train and {test:,} test images, stratified by class)"


def stratified(labels: list[int], limit: int, num_classes: int) -> torch.Tensor:
    """Indices of at most `limit` items, each class keeping its share (largest remainders), the first ones of each
    class in their order: the same subset every run."""
    if limit < num_classes:
        raise ArchspecError(f"--limit {limit} is fewer than the data's {num_classes} classes",
                            f"pass --limit {num_classes} or more, so every class keeps at least one image")
    if limit >= len(labels):
        return torch.arange(len(labels))
    counts = Counter(labels)
    # Each class its share of `limit` (largest remainders); a class too rare for a share keeps one image,
    # taken from the class with the most.
    quota = {c: limit * n / len(labels) for c, n in counts.items()}
    take = {c: int(q) for c, q in quota.items()}
    for c in sorted(quota, key=lambda c: (take[c] - quota[c], c))[:limit - sum(take.values())]:
        take[c] += 1
    for c in [c for c in take if take[c] == 0]:
        take[max(take, key=lambda k: (take[k], -k))] -= 1
        take[c] = 1
    seen: Counter[int] = Counter()
    keep = []
    for i, label in enumerate(labels):
        if seen[label] < take[label]:
            seen[label] += 1
            keep.append(i)
    return torch.tensor(keep, dtype=torch.int64)


def _listing(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except OSError as exc:
        raise ArchspecError(f"cannot list {folder}: {exc.strerror}", "fix the folder's permissions or remove it") from None


def _scan_split(split_dir: Path) -> tuple[list[str], list[Path], list[int]]:
    classes = class_folders(_listing(split_dir))
    files, labels = [], []
    for label, name in enumerate(classes):
        found = [p for p in _listing(split_dir / name) if p.suffix.lower() in IMAGE_SUFFIXES]
        if not found:  # a class without images would train (or score) as if it did not exist
            raise ArchspecError(f"class folder {split_dir / name} has no images ({', '.join(sorted(IMAGE_SUFFIXES))})",
                                "add its images, or remove the folder from train/ and test/")
        files += found
        labels += [label] * len(found)
    return classes, files, labels


def _scan_folder(root: Path) -> tuple[list[str], dict[str, tuple[list[Path], list[int]]]]:
    layout_help = "use ImageFolder layout: DIR/train/<class>/<image> and DIR/test/<class>/<image>, the same classes in both"
    if root.exists() and not root.is_dir():
        raise ArchspecError(f"data path {root} is a file, not a directory", f"pass `--data cifar10` or a directory; {layout_help}")
    if not root.is_dir():
        raise ArchspecError(f"data directory {root} does not exist", f"pass `--data cifar10` or an existing directory; {layout_help}")
    missing = [s for s in ("train", "test") if not (root / s).is_dir()]
    if missing:
        raise ArchspecError(f"data directory {root} has no {' or '.join(s + '/' for s in missing)} folder", layout_help)
    scanned = {s: _scan_split(root / s) for s in ("train", "test")}
    train_classes, test_classes = scanned["train"][0], scanned["test"][0]
    for split, (classes, _, _) in scanned.items():
        if not classes:
            raise ArchspecError(f"{root / split} has no class folders", layout_help)
    if train_classes != test_classes:
        only_train = sorted(set(train_classes) - set(test_classes))
        only_test = sorted(set(test_classes) - set(train_classes))
        raise ArchspecError(
            f"train/ has {len(train_classes)} classes and test/ has {len(test_classes)}; they differ "
            f"(only in train: {only_train or '-'}; only in test: {only_test or '-'})",
            "give train/ and test/ the same class folders",
        )
    return train_classes, {s: (files, labels) for s, (_, files, labels) in scanned.items()}


def _cache_key(root: Path, splits: dict[str, tuple[list[Path], list[int]]]) -> str:
    """A hash of every source file's relative name and size: a changed file set means a new cache entry."""
    h = hashlib.sha256(f"v{CACHE_VERSION}".encode())
    for files, _ in splits.values():
        for f in files:
            try:
                size = f.stat().st_size
            except OSError as exc:  # a dangling link or a symlink loop
                raise ArchspecError(f"cannot read image {f}: {exc.strerror}", "delete or replace that file, then run again") from None
            h.update(f"{f.relative_to(root)}\0{size}\n".encode())
    return h.hexdigest()[:16]


def _decode(path: Path, help: str = "delete or replace that file, then run again") -> np.ndarray:
    try:
        with Image.open(path) as im:
            im = im.convert("L" if im.mode in GREY_MODES else "RGB")
            return np.asarray(im)
    except Image.DecompressionBombError:
        raise ArchspecError(f"image {path} is too large to decode safely (more than {2 * Image.MAX_IMAGE_PIXELS:,} pixels; "
                            "PIL refuses it as a possible decompression bomb)", help) from None
    except (UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise ArchspecError(f"cannot decode image {path}: {exc}", help) from None
    except OSError as exc:  # unreadable, a directory, a symlink loop, truncated
        raise ArchspecError(f"cannot {'read' if exc.errno else 'decode'} image {path}: {exc.strerror or exc}", help) from None


def _stack(arrays: list[np.ndarray], shape: tuple[int, int, int]) -> torch.Tensor:
    """Stack HxW(xC) arrays into uint8 [N, C, H, W]; images of another size or mode are converted to `shape`."""
    c, h, w = shape
    out = np.empty((len(arrays), h, w, c), dtype=np.uint8)
    for i, a in enumerate(arrays):
        if a.shape[:2] != (h, w) or (a.ndim == 3) != (c == 3):
            im = Image.fromarray(a).convert("RGB" if c == 3 else "L").resize((w, h), Image.BILINEAR)
            a = np.asarray(im)
        out[i] = a.reshape(h, w, c)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def _load_folder(root: Path, cache_dir: Path, log: Callable[[str], None], limit: int | None, live: bool) -> Dataset:
    classes, splits = _scan_folder(root)
    if limit is not None:  # before decoding: a quick try decodes only the images it uses
        splits = {s: ([files[i] for i in keep], [labels[i] for i in keep]) for s, (files, labels) in splits.items()
                  for keep in [stratified(labels, limit, len(classes)).tolist()]}
    limited = _limited(limit, len(splits["train"][0]), len(splits["test"][0]))
    cache_file = cache_dir / "decoded" / f"{root.resolve().name}-{_cache_key(root, splits)}.pt"
    if cache_file.exists():
        try:
            cached = torch.load(cache_file, weights_only=True)
            log(f"data: {root} (decoded cache {cache_file}){limited}")
            return Dataset(**cached, classes=classes, source=str(root.resolve()), limit=limit)
        except Exception:  # a truncated or stale cache entry is rebuilt, never trusted
            log(f"data: cache {cache_file} unreadable; decoding again")

    decoded = _decode_all(root, splits, log, live)
    # The most common size and mode decides the data shape; the rest are converted to it.
    shapes = Counter((a.shape[2] if a.ndim == 3 else 1, a.shape[0], a.shape[1]) for a in decoded["train"])
    shape = shapes.most_common(1)[0][0]
    if len(shapes) > 1:
        log(f"data: images differ in size or mode; converting all to {shape[0]}x{shape[1]}x{shape[2]}")
    tensors = {}
    for s, (_, labels) in splits.items():
        tensors[f"{s}_x"] = _stack(decoded[s], shape)
        tensors[f"{s}_y"] = torch.tensor(labels, dtype=torch.int64)

    stratified_by = "" if limit is None else f" (--limit {limit:,}, stratified by class)"
    log(f"data: decoded {len(splits['train'][0]):,} train and {len(splits['test'][0]):,} test images from {root}{stratified_by}; "
        + _write_cache(cache_file, tensors))
    return Dataset(**tensors, classes=classes, source=str(root.resolve()), limit=limit)


PLAIN_PROGRESS_EVERY_S = 10.0  # a plain progress line this often while decoding (output piped or logged)


def _decode_all(root: Path, splits: dict[str, tuple[list[Path], list[int]]], log: Callable[[str], None],
                live: bool) -> dict[str, list[np.ndarray]]:
    """Every split's images decoded (in file order) on all cores, with a progress bar or plain progress lines."""
    files = [f for split_files, _ in splits.values() for f in split_files]
    threads = os.cpu_count() or 1
    log(f"data: decoding {len(files):,} images from {root} on {threads} threads (once: the result is cached)")
    with ThreadPoolExecutor(max_workers=threads) as pool:  # PIL releases the GIL while decoding
        arrays = list(_with_progress(pool.map(_decode, files), len(files), log, live))
    decoded, start = {}, 0
    for s, (split_files, _) in splits.items():
        decoded[s], start = arrays[start:start + len(split_files)], start + len(split_files)
    return decoded


def _with_progress(items: Iterable[Any], total: int, log: Callable[[str], None], live: bool) -> Iterator[Any]:
    """`items`, reporting how many went by: a transient rich bar on stderr (a terminal), else a line every few seconds."""
    if live:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(TextColumn("data: decoding"), BarColumn(), MofNCompleteColumn(), TextColumn("eta"),
                      TimeRemainingColumn(), console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task("decode", total=total)
            for done, item in enumerate(items, 1):
                if done % 100 == 0 or done == total:  # not a redraw request per image
                    bar.update(task, completed=done)
                yield item
        return
    last = time.monotonic()
    for done, item in enumerate(items, 1):
        if done < total and time.monotonic() - last >= PLAIN_PROGRESS_EVERY_S:
            last = time.monotonic()
            log(f"data: decoded {done:,}/{total:,} images")
        yield item


def _write_cache(cache_file: Path, tensors: dict[str, torch.Tensor]) -> str:
    """Save the decoded tensors (temp file + rename: never a half-written entry); a failure only costs the next decode."""
    from archspec.training.checkpoint import write_atomic

    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(cache_file, lambda f: torch.save(tensors, f))
    except (OSError, ArchspecError) as exc:
        return f"not cached ({getattr(exc, 'message', None) or exc})"
    return f"cached in {cache_file}"


def load_image(path: Path, shape: tuple[int, int, int]) -> torch.Tensor:
    """One image file as uint8 [C, H, W], converted and resized to `shape` (for predict)."""
    c, h, w = shape
    if c not in (1, 3):
        raise ArchspecError(f"the model takes {c}-channel images; only 1 (grey) or 3 (RGB) can be made from an image file",
                            "predict works with models whose input has 1 or 3 channels")
    if not Path(path).is_file():
        raise ArchspecError(f"image {path} does not exist", "pass paths of existing image files")
    a = _decode(Path(path), help="pass image files (PNG, JPEG, BMP, ...) that PIL can read")
    return _stack([a], shape)[0]
