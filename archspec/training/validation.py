"""The validation split: a stratified hold-out of the training set, chosen from the labels alone.

The split depends on the labels only (never on the images, nor on the training seed), so runs that
differ in their seed or settings are compared on the same held-out images, and a dataset that can
give its labels without decoding (`.targets`) is split before any image is touched.
"""
from __future__ import annotations

from typing import Any

import torch

from archspec.language.errors import ArchspecError

SPLIT_SEED = 0  # fixed: the held-out images are the same for every run on the same data


def holdout_count(val: float, n: int) -> int:
    """How many of n training images `val` holds out: a fraction (< 1) of them, or a count (>= 1)."""
    return int(val) if val >= 1 else round(val * n)


def training_labels(dataset: Any) -> torch.Tensor:
    """A dataset's training labels without decoding an image: `.train_y`, else torchvision's `.targets`."""
    labels = getattr(dataset, "train_y", None)
    if labels is None:
        labels = getattr(dataset, "targets")
    return torch.as_tensor(labels, dtype=torch.int64).cpu()


def stratified_split(labels: torch.Tensor, val: float, classes: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(training indices, validation indices), both sorted: each class keeps its share of the held-out images.

    The count per class is its share of the total, rounded by largest remainder so that the counts add
    up to exactly `holdout_count(val, n)`; which images of a class are held out is a fixed random draw.
    """
    labels = labels.cpu()
    n = len(labels)
    k = holdout_count(val, n)
    if k == 0:
        return torch.arange(n), torch.zeros(0, dtype=torch.int64)
    if k >= n:
        raise ArchspecError(f"--val {val:g} holds out {k:,} images but the training set has {n:,}",
                            "pass a smaller --val (a fraction such as 0.1, or a count below the training set's size)")
    counts = torch.bincount(labels, minlength=len(classes))
    take = _largest_remainder(counts, k)
    emptied = [c for c in range(len(counts)) if counts[c] and take[c] >= counts[c]]
    if emptied:
        c = emptied[0]
        raise ArchspecError(f"--val {val:g} holds out every training image of class {classes[c]!r} (all {int(counts[c]):,})",
                            "pass a smaller --val, so that every class keeps training images")
    g = torch.Generator().manual_seed(SPLIT_SEED)
    held = []
    for c in range(len(counts)):
        members = (labels == c).nonzero().flatten()
        held.append(members[torch.randperm(len(members), generator=g)[: int(take[c])]])
    val_idx = torch.cat(held).sort().values
    keep = torch.ones(n, dtype=torch.bool)
    keep[val_idx] = False
    return keep.nonzero().flatten(), val_idx


def _largest_remainder(counts: torch.Tensor, k: int) -> list[int]:
    """Split k over the classes in proportion to `counts`, in whole numbers that add up to k."""
    n = int(counts.sum())
    shares = [int(c) * k / n for c in counts]
    take = [int(s) for s in shares]
    by_remainder = sorted(range(len(shares)), key=lambda c: (take[c] - shares[c], c))
    for c in by_remainder[: k - sum(take)]:
        take[c] += 1
    return take
