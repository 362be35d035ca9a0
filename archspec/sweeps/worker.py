"""One trial: the `archspec train` path on one variant, writing the same run directory.

`run_trial(job, on_epoch)` is what a local worker process (`python -m archspec.sweeps.worker`,
reading the job as one JSON line on stdin) and a Ray task both run. After each epoch `on_epoch`
gets the metrics row and says whether the sweep prunes the trial there.

The process protocol, one JSON object a line: the worker writes {"epoch": row} after each epoch and
reads `stop` or `go`; at the end it writes {"done": result} or {"error": message, "help": help}.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable

from archspec.language.errors import ArchspecError

OnEpoch = Callable[[dict[str, Any]], bool]


def metric_of(row: dict[str, Any]) -> float:
    """The per-epoch value a sweep optimises and prunes on: the validation accuracy (never the test set's)."""
    if "val_acc" not in row:
        raise ArchspecError("this trial holds out no validation images (val=0): a sweep compares its variants on them",
                            "give every trial a validation split, e.g. --set val=0.1")
    return row["val_acc"]


def run_trial(job: dict[str, Any], on_epoch: OnEpoch) -> dict[str, Any]:
    """Train the job's variant into job["out"]; an interrupted run there is resumed, its epochs replayed to on_epoch."""
    from archspec.training.api import read_metrics
    from archspec.training.data import load_data
    from archspec.training.loop import build_model, check_against_data, fit, prepare_out_dir
    from archspec.training.preflight import check_against_source, check_spec
    from archspec.training.recipes import make_config

    threads = job.get("threads") or "auto"  # the sweep splits the cores between its workers
    source, arch_path, run_dir = job["source"], job["arch_path"], Path(job["out"])
    config = make_config(job["recipe"], **job["settings"])
    report = check_spec(source, arch_path)
    check_against_source(report, arch_path, job["data"])
    prepare_out_dir(run_dir)
    (run_dir / "variant.arch").write_text(source, encoding="utf-8")  # the variant, values filled in (`archspec runs` copies the best)
    log = _file_log(run_dir / "train.log")
    data = load_data(job["data"], Path(job["data_dir"]) if job.get("data_dir") else None, log)
    check_against_data(report, arch_path, data)
    resume = (run_dir / "checkpoint.pt").is_file() and not (run_dir / "report.json").is_file()
    for row in read_metrics(run_dir) if resume else []:
        if on_epoch(row):
            return {"stopped_after_epoch": row["epoch"]}
    model = build_model(source, arch_path, config.seed)
    result = fit(model, data, config, run_dir, arch_source=source, arch_path=arch_path, device=job.get("device", "auto"),
                 resume=resume, log=log, quiet=True, on_epoch=on_epoch, threads=threads)
    return {**result, "metrics": read_metrics(run_dir)}


def _file_log(path: Path) -> Callable[[str], None]:
    def log(line: str) -> None:
        with path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")
    return log


def _send(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main() -> int:
    job = json.loads(sys.stdin.readline())

    def on_epoch(row: dict[str, Any]) -> bool:
        _send({"epoch": row})
        return sys.stdin.readline().strip() == "stop"

    try:
        _send({"done": run_trial(job, on_epoch)})
    except ArchspecError as exc:
        _send({"error": exc.message, "help": getattr(exc, "help", "") or ""})
    return 0


if __name__ == "__main__":
    sys.exit(main())
