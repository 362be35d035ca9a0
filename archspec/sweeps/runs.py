"""`archspec runs DIR`: every trial of a sweep as a table (text, JSON, CSV), a Pareto picture of
accuracy against MACs, params and time (PNG and HTML), and the best variant as its own .arch file.

Read from the sweep's Optuna record (sweep.db) and each run directory's metrics; the best variant
is chosen on the validation metric, as the sweep's pruning is.
"""
from __future__ import annotations

import csv
import html
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archspec.language.errors import UsageError
from archspec.sweeps.study import DB, STUDY, require_optuna
from archspec.sweeps.worker import metric_of

COLUMNS = ("trial", "state", "values", "params", "macs", "val_acc", "test_acc", "seconds", "epochs")


@dataclass
class RunRow:
    trial: int
    state: str  # complete | pruned | failed | removed
    values: dict[str, Any]
    params: int | None
    macs: int | None
    val_acc: float | None
    test_acc: float | None
    seconds: float | None
    run_dir: str = ""
    note: str = ""  # why it failed or was removed
    epochs: int | None = None  # epochs trained (rows in metrics.jsonl): where a pruned trial stopped

    def flat(self) -> dict[str, Any]:
        return {"trial": self.trial, "state": self.state, **self.values, "params": self.params, "macs": self.macs,
                "val_acc": self.val_acc, "test_acc": self.test_acc, "seconds": self.seconds, "epochs": self.epochs,
                "run_dir": self.run_dir, "note": self.note}


@dataclass
class Runs:
    """A sweep's trials; `best` the complete one with the highest validation metric."""

    out: Path
    rows: list[RunRow] = field(default_factory=list)

    @property
    def best(self) -> RunRow | None:
        done = [r for r in self.rows if r.state == "complete" and r.val_acc is not None]
        return max(done, key=lambda r: r.val_acc) if done else None  # type: ignore[arg-type,return-value]

    def sorted(self, key: str) -> "Runs":
        names = set(COLUMNS) | {k for r in self.rows for k in r.values}
        if key not in names:
            raise UsageError(f"--sort {key}: no such column", f"columns: {', '.join(sorted(names))}")
        ascending = key in ("trial", "params", "macs", "seconds", "epochs") or key in {k for r in self.rows for k in r.values}
        present = [r for r in self.rows if r.flat().get(key) is not None]
        missing = [r for r in self.rows if r.flat().get(key) is None]
        present.sort(key=lambda r: r.flat()[key], reverse=not ascending)
        return Runs(self.out, present + missing)

    def to_json(self) -> str:
        return json.dumps([r.flat() for r in self.rows], indent=2) + "\n"

    def to_csv(self) -> str:
        names = list(dict.fromkeys(k for r in self.rows for k in r.flat()))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=names, lineterminator="\n")
        writer.writeheader()
        for r in self.rows:
            writer.writerow(r.flat())
        return buffer.getvalue()

    def table(self) -> str:
        head = ["trial", "state", *self._value_names(), "params", "macs", "val_acc", "test_acc", "seconds"]
        body = [[str(r.trial), r.state, *(_text(r.values.get(k)) for k in self._value_names()), _count(r.params),
                 _count(r.macs), _pct(r.val_acc), _pct(r.test_acc), _text(r.seconds)] for r in self.rows]
        widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
        lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths)).rstrip() for row in [head, *body]]
        notes = [f"trial {r.trial}: {r.note}" for r in self.rows if r.note]
        return "\n".join(lines + notes) + "\n"

    def _value_names(self) -> list[str]:
        return list(dict.fromkeys(k for r in self.rows for k in r.values))

    def _repr_html_(self) -> str:
        names = self._value_names()
        head = "".join(f"<th>{html.escape(h)}</th>" for h in ["trial", "state", *names, "params", "MACs", "val acc", "test acc", "s"])
        best = self.best
        bold = ' style="font-weight:bold"'
        body = "".join(
            f"<tr{bold if r is best else ''}><td>{r.trial}</td><td>{r.state}</td>"
            + "".join(f"<td>{html.escape(_text(r.values.get(k)))}</td>" for k in names)
            + f"<td>{_count(r.params)}</td><td>{_count(r.macs)}</td><td>{_pct(r.val_acc)}</td><td>{_pct(r.test_acc)}</td>"
            f"<td>{_text(r.seconds)}</td></tr>" for r in self.rows)
        return f"<table><tr>{head}</tr>{body}</table>"

    def __repr__(self) -> str:
        return self.table()


def read_runs(out: str | Path) -> Runs:
    """The trials recorded in DIR/sweep.db; a UsageError when DIR holds no sweep."""
    out = Path(out)
    if not (out / DB).is_file():
        raise UsageError(f"{out}: no sweep here (no {DB})", "pass the --out directory of `archspec sweep`")
    optuna = require_optuna()
    try:
        study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{out / DB}")
    except Exception as exc:  # a damaged or foreign database: one line, not SQLAlchemy's traceback
        raise UsageError(f"{out / DB}: not a sweep record ({type(exc).__name__})", "run `archspec sweep` with --out here") from None
    listed: set[str] = set()
    rows = []
    for trial in study.get_trials(deepcopy=False):
        if _shown(trial, listed):
            rows.append(_row(trial))
    return Runs(out, rows)


def _shown(trial: Any, listed: set[str]) -> bool:
    """Trained trials, and each removed variant once (TPE may suggest one again: it is told so, not retrained)."""
    attrs = trial.user_attrs
    if attrs.get("removed"):
        fresh = attrs.get("key", str(trial.params)) not in listed
        listed.add(attrs.get("key", str(trial.params)))
        return fresh
    return bool(attrs.get("trained"))


def _row(trial: Any) -> RunRow:
    attrs = trial.user_attrs
    state = "removed" if attrs.get("removed") else trial.state.name.lower()
    metrics = _metrics(Path(attrs["run_dir"])) if attrs.get("run_dir") else []
    # a finished trial: its score (the best epoch's validation accuracy); a pruned one: where it stopped
    val = trial.value if state == "complete" else (metric_of(metrics[-1]) if metrics else None)
    return RunRow(trial.number, state, dict(trial.params), attrs.get("params"), attrs.get("macs"),
                  val if state in ("complete", "pruned") else None, attrs.get("test_accuracy"), attrs.get("seconds"),
                  attrs.get("run_dir", ""), attrs.get("removed") or attrs.get("reason", ""),
                  len(metrics) if attrs.get("run_dir") else None)


def _metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def write_best(runs: Runs, path: Path) -> Path | None:
    """The best variant's .arch text (its checkpoint's source: the values filled in) at `path`."""
    best = runs.best
    if best is None:
        return None
    source = (Path(best.run_dir) / "variant.arch").read_text(encoding="utf-8")
    values = ", ".join(f"{k}={v}" for k, v in best.values.items())
    path.write_text(f"# the best variant of {runs.out} (trial {best.trial}: {values}; validation accuracy {best.val_acc:.2%})\n"
                    + source, encoding="utf-8")
    return path


def write_pareto(runs: Runs, png: Path, html_path: Path) -> bool:
    """Validation accuracy against MACs, params and seconds, the Pareto front marked; False without matplotlib."""
    points = [r for r in runs.rows if r.state == "complete" and r.val_acc is not None]
    html_path.write_text(_pareto_html(runs, points), encoding="utf-8")
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 4), constrained_layout=True)
    for ax, cost in zip(axes, ("macs", "params", "seconds")):
        xs = [getattr(r, cost) or 0 for r in points]
        ys = [r.val_acc for r in points]
        ax.scatter(xs, ys, color="tab:blue")
        front = pareto_front(points, cost)
        ax.plot([getattr(r, cost) for r in front], [r.val_acc for r in front], color="tab:red", marker="o", label="Pareto front")
        for r in points:
            ax.annotate(str(r.trial), (getattr(r, cost) or 0, r.val_acc), fontsize=7)
        ax.set_xlabel(cost)
        ax.set_ylabel("validation accuracy")
        ax.legend(loc="lower right")
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return True


def pareto_front(points: list[RunRow], cost: str) -> list[RunRow]:
    """The points no other beats on both (lower cost, higher accuracy), by increasing cost."""
    front: list[RunRow] = []
    for r in sorted(points, key=lambda r: (getattr(r, cost) or 0, -(r.val_acc or 0))):
        if not front or (r.val_acc or 0) > (front[-1].val_acc or 0):
            front.append(r)
    return front


def _pareto_html(runs: Runs, points: list[RunRow]) -> str:
    fronts = {cost: {r.trial for r in pareto_front(points, cost)} for cost in ("macs", "params", "seconds")}
    rows = "".join(f"<tr><td>{r.trial}</td><td>{html.escape(json.dumps(r.values))}</td><td>{_count(r.macs)}</td>"
                   f"<td>{_count(r.params)}</td><td>{_text(r.seconds)}</td><td>{_pct(r.val_acc)}</td>"
                   f"<td>{', '.join(c for c, s in fronts.items() if r.trial in s)}</td></tr>" for r in points)
    return ("<!doctype html><meta charset=utf-8><title>sweep: Pareto</title>"
            "<h1>Validation accuracy against cost</h1><img src=\"pareto.png\" alt=\"Pareto picture\">"
            "<table border=1><tr><th>trial</th><th>values</th><th>MACs</th><th>params</th><th>seconds</th>"
            f"<th>val acc</th><th>on the front of</th></tr>{rows}</table>\n")


def _text(v: Any) -> str:
    return "-" if v is None else str(v)


def _count(v: int | None) -> str:
    return "-" if v is None else f"{v:,}"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.2%}"
