"""The sweep's driver: an Optuna study (its SQLite storage in the sweep directory is the record),
a sampler (grid, random or TPE over the variants the checker kept), a pruner on the validation
metric, and one thread per parallel trial handing jobs to an executor.

Grid and random enqueue the kept variants they will run (random: a seeded sample); TPE asks its
sampler, and a combination the checker removed is told to the study as pruned without training.
A rerun opens the same study: finished trials (complete or pruned) are not repeated, and trials an
interruption left running are marked failed and run again (their run directories resume).
"""
from __future__ import annotations

import math
import os
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from archspec.language.errors import ArchspecError, UsageError
from archspec.sweeps.space import Space, Variant
from archspec.sweeps.worker import metric_of

STUDY = "sweep"
DB = "sweep.db"
SAMPLERS = ("grid", "random", "tpe")
PRUNERS = ("none", "median", "asha", "hyperband")


@dataclass
class SweepConfig:
    arch_path: str
    out: Path
    data: str = "cifar10"
    data_dir: str | None = None
    recipe: str = "default"
    settings: dict[str, Any] = field(default_factory=dict)  # fixed training settings (every trial)
    sampler: str = "grid"
    pruner: str = "none"
    trials: int | None = None  # trained trials at most (random, tpe; grid: all kept variants)
    seed: int = 0
    workers: int | None = None  # parallel trials (default: split the cores)
    device: str = "auto"
    ray: str | None = None


@dataclass
class SweepResult:
    out: Path
    finished: int  # trained to the end in this call
    pruned: int
    failed: int
    interrupted: bool = False


def require_optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise ArchspecError("archspec sweep needs the optuna package", "pip install 'archspec-cnn[sweep]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def open_study(config: SweepConfig, epochs: int) -> Any:
    optuna = require_optuna()
    config.out.mkdir(parents=True, exist_ok=True)
    sampler = (optuna.samplers.TPESampler(seed=config.seed) if config.sampler == "tpe"
               else optuna.samplers.RandomSampler(seed=config.seed))
    pruner = {"none": optuna.pruners.NopPruner(),
              "median": optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
              "asha": optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3),
              "hyperband": optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1), reduction_factor=3),
              }[config.pruner]
    return optuna.create_study(study_name=STUDY, storage=f"sqlite:///{config.out / DB}", direction="maximize",
                               sampler=sampler, pruner=pruner, load_if_exists=True)


def recover(study: Any) -> int:
    """Trials a killed sweep left running or waiting: failed now, so their variants run again."""
    from optuna.trial import TrialState

    stale = [t for t in study.get_trials(deepcopy=False) if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    for t in stale:
        study._storage.set_trial_user_attr(t._trial_id, "reason", "interrupted")
        study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
    return len(stale)


def finished_keys(study: Any) -> set[str]:
    from optuna.trial import TrialState

    return {t.user_attrs.get("key", "") for t in study.get_trials(deepcopy=False)
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and t.user_attrs.get("trained")}


class Driver:
    """Hands out trials to `workers` threads and records each outcome in the study."""

    def __init__(self, study: Any, space: Space, config: SweepConfig, executor: Any, log: Callable[[str], None]) -> None:
        self.study, self.space, self.config, self.executor, self.log = study, space, config, executor, log
        self.lock = threading.Lock()
        self.stopping = False
        self.by_key = {v.key: v for v in space.kept}
        self.done = finished_keys(study)
        self.record_removed()
        self.plan = self._plan()
        self.asked = 0
        self.counts = {"done": 0, "pruned": 0, "failed": 0}
        self.threads = 1  # torch threads per trial

    def record_removed(self) -> None:
        """The variants the checker removed, in the record once (`archspec runs` lists them with their diagnostic)."""
        import optuna

        recorded = {t.user_attrs.get("key") for t in self.study.get_trials(deepcopy=False) if t.user_attrs.get("removed")}
        distributions = {a.name: optuna.distributions.CategoricalDistribution(list(a.values)) for a in self.space.axes}
        for variant in self.space.removed:
            if variant.key not in recorded:
                self.study.add_trial(optuna.trial.create_trial(
                    state=optuna.trial.TrialState.PRUNED, params=dict(variant.values), distributions=distributions,
                    user_attrs={"key": variant.key, "removed": variant.removed}))

    def _plan(self) -> list[Variant]:
        """Grid: every kept variant; random: a seeded sample of `trials` of them; minus the finished ones."""
        kept = self.space.kept
        if self.config.sampler == "random":
            kept = random.Random(self.config.seed).sample(kept, min(self.config.trials or 10, len(kept)))
        return [v for v in kept if v.key not in self.done]

    def budget(self) -> int:
        if self.config.sampler == "tpe":
            return max(0, min(self.config.trials or 20, len(self.space.kept)) - len(self.done))
        return len(self.plan)

    def next_trial(self) -> tuple[Any, Variant] | None:
        with self.lock:
            while not self.stopping:
                if self.config.sampler != "tpe":
                    if not self.plan:
                        return None
                    variant = self.plan.pop(0)
                    self.study.enqueue_trial(dict(variant.values))
                    return self._ask(), variant
                found = self._ask_tpe()
                if found is not None or self.asked >= self.budget() * 20 + 20:
                    return found
            return None

    def _ask(self) -> Any:
        trial = self.study.ask()
        for axis in self.space.axes:
            trial.suggest_categorical(axis.name, list(axis.values))
        return trial

    def _ask_tpe(self) -> tuple[Any, Variant] | None:
        """One TPE suggestion: a trial to train, or None after telling the study about a removed or finished one."""
        from optuna.trial import TrialState

        if len(self.done) >= min(self.config.trials or 20, len(self.space.kept)):
            self.asked = 10**9
            return None
        self.asked += 1
        trial = self._ask()
        key = Variant(trial.params, "").key
        removed = next((v for v in self.space.removed if v.key == key), None)
        if removed is not None:
            trial.set_user_attr("key", key)
            trial.set_user_attr("removed", removed.removed)
            self.study.tell(trial, state=TrialState.PRUNED)
        elif key in self.done:
            self.study.tell(trial, state=TrialState.FAIL)  # already tried: the sampler learns nothing new
        else:
            self.done.add(key)
            return trial, self.by_key[key]
        return None

    def run_slot(self) -> None:
        while True:
            picked = self.next_trial()
            if picked is None:
                return
            self.run_one(*picked)

    def run_one(self, trial: Any, variant: Variant) -> None:
        from optuna.trial import TrialState

        job = self.job(variant, trial.number)
        trial.set_user_attr("key", variant.key)
        trial.set_user_attr("run_dir", job["out"])
        trial.set_user_attr("params", variant.params)
        trial.set_user_attr("macs", variant.macs)
        started = time.monotonic()

        def on_epoch(row: dict[str, Any]) -> bool:
            with self.lock:
                trial.report(metric_of(row), step=int(math.ceil(row["epoch"])))
                return not self.stopping and trial.should_prune()

        outcome = self.executor.run(job, on_epoch)
        trial.set_user_attr("trained", True)
        trial.set_user_attr("seconds", round(time.monotonic() - started, 2))
        with self.lock:
            self.counts[outcome.state] += 1
            if outcome.state == "done":
                trial.set_user_attr("test_accuracy", outcome.result.get("test_accuracy"))
                self.study.tell(trial, _val_accuracy(outcome.result))
            elif outcome.state == "pruned":
                self.study.tell(trial, state=TrialState.PRUNED)
            else:
                trial.set_user_attr("reason", outcome.reason)
                self.study.tell(trial, state=TrialState.FAIL)
        self.log(_outcome_line(trial.number, variant, outcome))

    def job(self, variant: Variant, number: int) -> dict[str, Any]:
        settings = {**self.config.settings, **{k: v for k, v in variant.values.items() if k in self.space.setting_names}}
        return {"key": variant.key, "trial": number, "source": variant.text, "arch_path": self.config.arch_path,
                "settings": settings, "recipe": self.config.recipe, "data": self.config.data,
                "data_dir": self.config.data_dir, "out": str(self.config.out / "runs" / variant.key),
                "device": self.config.device, "threads": self.threads}


def _outcome_line(number: int, variant: Variant, outcome: Any) -> str:
    what = {"done": lambda: _acc(outcome.result), "pruned": lambda: f"pruned after epoch {outcome.result.get('stopped_after_epoch')}",
            "failed": lambda: f"failed: {outcome.reason}"}[outcome.state]()
    return f"trial {number} {variant.key}: {what}"


def _val_accuracy(result: dict[str, Any]) -> float:
    """A finished trial's score: the best epoch's validation accuracy (the weights its test accuracy is of)."""
    if result.get("val_accuracy") is not None:
        return result["val_accuracy"]
    return metric_of((result.get("metrics") or [{}])[-1])  # a clear error where the trial held out nothing


def _acc(result: dict[str, Any]) -> str:
    return f"val_acc {_val_accuracy(result):.2%}"


def require_validation(space: Space, config: SweepConfig, fixed_val: float) -> None:
    """Every trial is scored and pruned on its validation split, so none may hold out nothing (refused before any training)."""
    why = "a sweep compares its variants on a validation split, and"
    if "val" in space.setting_names:
        if 0 in space.setting_values("val"):
            raise UsageError(f"{why} --set val=0 holds none out", "give val only values above 0, e.g. --set val=0.1,0.2")
    elif fixed_val == 0:
        who = "--set val=0" if "val" in config.settings else f"the `{config.recipe}` recipe (val=0)"
        raise UsageError(f"{why} {who} holds none out", "hold out part of the training set: --set val=0.1 (or a count, val=5000)")


def default_workers(config: SweepConfig, trials: int) -> int:
    if config.workers is not None:
        if config.workers < 1:
            raise UsageError(f"--workers {config.workers}: must be at least 1", "e.g. --workers 2")
        return config.workers
    return max(1, min(os.cpu_count() or 1, trials))


def run_sweep(space: Space, config: SweepConfig, log: Callable[[str], None] = print) -> SweepResult:
    """Train the kept variants (resuming a sweep already in config.out); Ctrl-C stops between epochs and keeps the record."""
    from archspec.training.recipes import make_config

    fixed = make_config(config.recipe, **config.settings)
    require_validation(space, config, fixed.val)
    epochs = math.ceil(fixed.epochs)
    executor = _executor(config)  # an unreachable Ray cluster fails before the record is opened
    study = open_study(config, epochs)
    stale = recover(study)
    driver = Driver(study, space, config, executor, log)
    todo = driver.budget()
    workers = 1 if not todo else default_workers(config, todo)
    driver.threads = max(1, (os.cpu_count() or 1) // workers)
    again = f", {len(driver.done)} already finished" if driver.done else ""
    log(f"{todo} trial{'s' if todo != 1 else ''} to run{again}{f' ({stale} interrupted ones again)' if stale else ''}; "
        f"{workers} in parallel ({'Ray at ' + config.ray if config.ray else 'local processes'}); record: {config.out / DB}")
    threads = [threading.Thread(target=driver.run_slot, daemon=True) for _ in range(workers if todo else 0)]
    for t in threads:
        t.start()
    interrupted = False
    try:
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(timeout=0.2)
    except KeyboardInterrupt:
        interrupted = True
        driver.stopping = True
        executor.interrupt()
        for t in threads:
            t.join()
    return SweepResult(config.out, driver.counts["done"], driver.counts["pruned"], driver.counts["failed"], interrupted)


def _executor(config: SweepConfig) -> Any:
    from archspec.sweeps.execute import LocalExecutor, RayExecutor

    return RayExecutor(config.ray) if config.ray else LocalExecutor()
