"""`archspec.train(...)`: the `archspec train` path as a Python call, for notebooks.

    result = archspec.train(lenet, data="cifar10", epochs=1)   # lenet from `%%arch lenet`
    result                      # shows the accuracy, the epochs and the settings as a table
    result.model                # the trained nn.Module (eval mode)
    result["test_accuracy"]     # report.json's fields

The same checks as the CLI run first (the spec, then the spec against the data), and the settings
are the recipe settings `--set` takes, validated by `make_config`. In a Jupyter kernel progress is
one display that updates in place (not a stream of carriage returns); elsewhere it is what
`archspec train` shows (a bar on a terminal, plain lines otherwise).
"""
from __future__ import annotations

import html
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from torch import nn

from archspec.language.check import CheckReport
from archspec.language.errors import ArchspecError, UsageError
from archspec.training.data import Dataset, load_data
from archspec.training.loop import Reporter, build_model, check_against_data, counted, fit
from archspec.training.preflight import check_against_source, check_spec, refuse_final_softmax
from archspec.training.recipes import make_config
from archspec.training.resume import continuation


def train(model_or_path: "CheckReport | str | Path | None" = None, data: "str | Path | Dataset | None" = None,
          out: "str | Path | None" = None, *, recipe: str | None = None, device: str = "auto",
          data_dir: "str | Path | None" = None, limit: int | None = None, resume: bool = False, quiet: bool = False,
          allow_softmax: bool = False, threads: int | str = "auto", **settings: Any) -> "TrainResult":
    """Train a spec (a path, .arch text, or a CheckReport such as `%%arch NAME` binds) and return its report.

    `data`: a dataset name (`mnist`, `fashion-mnist`, `cifar10` (the default), `cifar100`, `svhn`), an ImageFolder
    directory with train/ and test/, or a loaded Dataset. `limit`: at most that many images per split, stratified by class.
    `out`: the run directory (default runs/NAME), with the same files as `archspec train --out`.
    `resume=True` continues the run in `out` with the spec, settings and data its checkpoint stores
    (`archspec.train(out="runs/lenet", resume=True)`); anything given again must agree.
    `threads`: CPU threads, or "auto" (the fastest of 1, half and all cores, timed on the first steps).
    `settings`: recipe settings (epochs=1, batch_size=64, lr=0.05, val=0.1, patience=3, ...), as `--set KEY=VALUE` takes them.
    """
    if model_or_path is None and not (resume and out is not None):
        raise UsageError("archspec.train needs a spec", "pass a path, .arch text or a CheckReport, or out=DIR with resume=True")
    given = spec_source(model_or_path) if model_or_path is not None else None
    run_dir = Path(out) if out is not None else Path("runs") / run_name(given[0])  # type: ignore[index]
    if resume and not (run_dir / "checkpoint.pt").is_file():
        raise ArchspecError(f"resume: no checkpoint in {run_dir}", "pass the `out` directory of the interrupted run")
    if resume:
        plan = continuation(run_dir, given, recipe, settings, None if isinstance(data, Dataset) or data is None else str(data))
        arch_path, source, config = plan.arch_path, plan.source, plan.config
        data = data if isinstance(data, Dataset) else plan.data
    else:
        (arch_path, source), config = given, make_config(recipe or "default", **settings)  # type: ignore[misc]
        data = "cifar10" if data is None else data
    report = check_spec(source, arch_path)
    if not allow_softmax:
        refuse_final_softmax(report, "pass allow_softmax=True")
    if not isinstance(data, Dataset):
        check_against_source(report, arch_path, str(data))
    elif limit is not None:
        raise UsageError("limit applies to data loaded by name or from a folder, not to a Dataset",
                         "pass data='mnist' (a name) or a folder with limit=N, or pass the Dataset alone")
    progress = NotebookProgress.create() if in_notebook() and not quiet else None
    log: Callable[[str], None] = progress.log if progress else print
    if not isinstance(data, Dataset):
        data = load_data(str(data), Path(data_dir) if data_dir else None, log, limit=limit, live=False if quiet or progress else None)
    check_against_data(report, arch_path, data)
    model = build_model(source, arch_path, config.seed)
    result = fit(model, data, config, run_dir, arch_source=source, arch_path=arch_path, device=device, resume=resume,
                 log=log, quiet=quiet, reporter=progress, threads=threads)
    model.eval()
    return TrainResult(run_name(arch_path), result, model.cpu(), run_dir, read_metrics(run_dir))


def spec_source(spec: "CheckReport | str | Path") -> tuple[str, str]:
    """(path, .arch text) of a CheckReport, a path (a Path, or a one-line str ending in .arch), or .arch text."""
    if isinstance(spec, CheckReport):
        return spec.path, spec.sources[spec.path]
    if isinstance(spec, Path) or (isinstance(spec, str) and "\n" not in spec and spec.endswith(".arch")):
        from archspec.language.files import Unreadable, read_arch_file

        try:
            return str(spec), read_arch_file(Path(spec))
        except FileNotFoundError:
            raise UsageError(f"{spec}: no such file", "pass a path to an .arch file, .arch text, or a checked report") from None
        except Unreadable as exc:
            raise UsageError(f"{spec}: {exc.reason}", exc.help or "check the path") from None
    if isinstance(spec, str):
        return "<string>", spec
    raise UsageError(f"archspec.train takes a path, .arch text or a CheckReport, not {type(spec).__name__}",
                     "e.g. archspec.train('examples/lenet.arch', data='cifar10', epochs=1)")


def run_name(arch_path: str) -> str:
    """`lenet` for `examples/lenet.arch` and for a `%%arch lenet` cell (`<cell lenet>`); `model` for text."""
    if arch_path.startswith("<cell ") and arch_path.endswith(">"):
        return arch_path[len("<cell "):-1]
    return "model" if arch_path.startswith("<") else Path(arch_path).stem


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def in_notebook() -> bool:
    """True inside a Jupyter kernel (an IPython shell with a kernel), not in terminal IPython or a script."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return getattr(get_ipython(), "kernel", None) is not None


@dataclass
class TrainResult:
    """What `archspec.train` returns: report.json's content, the per-epoch metrics and the trained model."""

    name: str
    report: dict[str, Any]
    model: nn.Module = field(repr=False)
    out_dir: Path
    metrics: list[dict[str, Any]] = field(default_factory=list)

    @property
    def test_accuracy(self) -> float:
        return self.report["test_accuracy"]

    def __getitem__(self, key: str) -> Any:
        return self.report[key]

    def __repr__(self) -> str:
        r = self.report
        return (f"<TrainResult {self.name}: test accuracy {r['test_accuracy']:.2%} after {counted(r['epochs'], 'epoch')}, "
                f"{r['params']:,} params, {r['wall_time_s']:.1f}s on {r['device']}; outputs in {self.out_dir}>")

    def _repr_html_(self) -> str:
        r = self.report
        rows = "".join(
            f"<tr><td>{m['epoch']}</td><td>{m['train_loss']:.4f}</td><td>{m['train_acc']:.2%}</td>"
            f"<td>{_percent(m.get('val_acc'))}</td><td>{m['images_per_s']:,.0f}</td><td>{m['elapsed_s']:.1f}</td></tr>"
            for m in self.metrics)
        per_class = ", ".join(f"{html.escape(c)} {a:.0%}" for c, a in r["per_class_accuracy"].items())
        return (f"<div><b>{html.escape(self.name)}</b>: test accuracy <b>{r['test_accuracy']:.2%}</b> "
                f"on {r['test_images']:,} images after {counted(r['epochs'], 'epoch')} &middot; {r['params']:,} params &middot; "
                f"{r['wall_time_s']:.1f}s on {html.escape(r['device'])} ({r['dtype']})"
                "<table><tr><th>epoch</th><th>train loss</th><th>train acc</th><th>val acc</th><th>img/s</th>"
                f"<th>elapsed s</th></tr>{rows}</table>"
                f"<small>per class: {per_class}<br>recipe {html.escape(r['settings']['recipe'])}; "
                f"outputs in <code>{html.escape(str(self.out_dir))}</code></small></div>")


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


@dataclass
class NotebookProgress(Reporter):
    """Progress as one Jupyter display updated in place: the log lines so far, then a bar for the epoch.

    An update is sent at most every `every_s` seconds (and at each epoch's end), so a long epoch
    costs a handful of messages, not one per step.
    """

    every_s: float = 0.5
    handle: Any = None
    lines: list[str] = field(default_factory=list)
    status: str = ""  # the epoch's progress line; empty between epochs
    done: int = 0

    @classmethod
    def create(cls) -> "NotebookProgress":
        from IPython.display import display

        progress = cls(live=True)
        progress.log = progress.add_line
        progress.handle = display(progress.bundle(), raw=True, display_id=True)
        return progress

    def add_line(self, line: str) -> None:
        self.lines.append(line)
        self.refresh()

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        self._epoch, self._steps, self._last = f"epoch {epoch + 1}/{epochs}", steps, time.monotonic()
        self.done, self.status = 0, f"{self._epoch}  step 0/{steps}"
        self.refresh()

    def step(self, done: int, stats: Callable[[], str]) -> None:
        if done != self._steps and time.monotonic() - self._last < self.every_s:
            return
        self._last, self.done = time.monotonic(), done
        self.status = f"{self._epoch}  step {done}/{self._steps}  {stats()}"
        self.refresh()

    def end_epoch(self, line: str) -> None:
        self.status = ""
        self.add_line(line)

    def stop(self) -> None:
        if self.status:
            self.status = ""
            self.refresh()

    def bundle(self) -> dict[str, str]:
        text = "\n".join(self.lines + ([self.status] if self.status else []))
        bar = ""
        if self.status:
            bar = f'<progress value="{self.done}" max="{self._steps}" style="width: 40em"></progress><br>'
        return {"text/plain": text, "text/html": f"<div>{bar}<pre>{html.escape(text)}</pre></div>"}

    def refresh(self) -> None:
        if self.handle is not None:
            self.handle.update(self.bundle(), raw=True)
