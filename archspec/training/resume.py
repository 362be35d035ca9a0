"""Resuming from the run directory alone: `archspec train --resume --out DIR` and `archspec.train(out=DIR, resume=True)`.

The checkpoint stores the architecture (self-contained .arch text), every setting and the data
source; a resume takes them from there. What is given again must agree: a setting that differs is
refused by `restore` (loop.py) with both values, and so is other data (here) or another .arch source.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archspec.language.errors import ArchspecError
from archspec.training.checkpoint import FILENAME, Checkpoint
from archspec.training.distributed import World
from archspec.training.recipes import TrainConfig, make_config


@dataclass(frozen=True)
class Continuation:
    """What a resumed run trains: the stored spec and data, the stored settings with any given again on top."""

    arch_path: str
    source: str
    config: TrainConfig
    data: str


def continuation(run_dir: Path, arch: tuple[str, str] | None, recipe: str | None, settings: dict[str, Any],
                 data: str | None, world: World = World()) -> Continuation:
    """The run in `run_dir` as it was stored, with `arch` (path, text), `recipe`, `settings` and `data` where given.

    Rank 0 reads the checkpoint and sends what is needed on (under torchrun only its --out must hold the file).
    """
    path = Path(run_dir) / FILENAME
    stored = world.broadcast(_stored(path) if world.main else None)
    arch_path, source = arch if arch is not None else (stored["arch_path"] or "<checkpoint>", stored["arch_source"])
    config = make_config(recipe or stored["config"].get("recipe", "default"),
                         **{**{k: v for k, v in stored["config"].items() if k != "recipe"}, **settings})
    return Continuation(arch_path, source, config, _same_data(path, data, stored["data_source"] or "cifar10"))


def _stored(path: Path) -> dict[str, Any]:
    ckpt = Checkpoint.load(path)
    return {"arch_path": ckpt.arch_path, "arch_source": ckpt.arch_source, "config": ckpt.config, "data_source": ckpt.data_source}


def _same_data(path: Path, given: str | None, stored: str) -> str:
    """The stored data source; `given` must name the same (a folder by any path to it)."""
    if given is None or given == stored or (Path(given).exists() and str(Path(given).resolve()) == stored):
        return stored
    raise ArchspecError(f"{path} was trained on {stored}, not {given}",
                        "drop --data: a resume reads the data the run was trained on")
