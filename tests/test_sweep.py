"""`param` statements and `archspec sweep` / `archspec runs`: static pruning through the pipeline,
real trials in worker processes and on a real local Ray head, resuming, a dying worker, bad input."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import assert_golden

import archspec
from archspec.language.expand import parse, with_param_values
from archspec.language.limits import make_limit
from archspec.language.pipeline import CheckOptions, checked

GOLDEN = Path(__file__).parent / "golden" / "sweep"

NET = """\
param width = 8
param depth = 1
input 3x32x32
conv {width} k3 p1 | bn | relu
repeat depth { conv {width} k3 p1 | relu }
maxpool 4
flatten
linear 10
"""


# --------------------------------------------------------------------------- the language

def test_a_param_checks_alone_with_its_default():
    report = archspec.check(NET)
    literal = "input 3x32x32\nconv 8 k3 p1 | bn | relu\nconv 8 k3 p1 | relu\nmaxpool 4\nflatten\nlinear 10\n"
    assert report.ok and report.rows[1].layer.out_channels == 8 and report.params == archspec.check(literal).params
    assert {n: p.value for n, p in report.model.sweep_params.items()} == {"width": 8, "depth": 1}


def test_a_variant_is_the_file_with_its_values_written_in():
    text = with_param_values(parse(NET), {"width": 16, "depth": 3})
    assert text.startswith("param width = 16\nparam depth = 3\n")
    report = archspec.check(text)
    assert report.ok and [r.layer.out_channels for r in report.rows if hasattr(r.layer, "out_channels")] == [16] * 4


@pytest.mark.parametrize("text, message", [
    ("param w = 8\nparam w = 4\ninput 3x8x8\nflatten\nlinear 10", "param `w` is defined twice"),
    ("param w = relu\ninput 3x8x8\nflatten\nlinear 10", "`relu` is not a block parameter here"),
    ("input 3x8x8\nrepeat 1 { param w = 3 }\nflatten\nlinear 10", "`param` is only allowed at the top level of a file"),
])
def test_a_wrong_param_is_a_diagnostic(text, message):
    assert [d.message for d in archspec.check(text).errors] == [message]


def test_fmt_prints_a_param():
    assert archspec.fmt("param   width=4*2 # wide\ninput 3x32x32\nconv {width} k3\nflatten\nlinear 10\n") == \
        "param width = 4 * 2  # wide\ninput 3x32x32\nconv {width} k3\nflatten\nlinear 10\n"


# --------------------------------------------------------------------------- bad input (nothing trains)

@pytest.fixture
def net(tmp_path) -> Path:
    path = tmp_path / "net.arch"
    path.write_text(NET)
    return path


MILLION = ",".join(map(str, range(1, 1001)))

BAD_INPUT = {  # golden name: the flags after `archspec sweep net.arch`
    "wrong_value_type": ["--grid", "width=4,8.5"],
    "unknown_param": ["--grid", "wdith=4,8"],
    "million_variant_grid": ["--grid", f"width={MILLION}", "--grid", f"depth={MILLION}"],
    "unknown_set_key": ["--grid", "width=4", "--set", "learning_rate=0.1,0.2"],
    "recipe_without_validation": ["--grid", "width=4,8", "--recipe", "fast"],
    "set_val_zero": ["--grid", "width=4", "--set", "val=0"],
    "val_axis_with_zero": ["--grid", "width=4", "--set", "val=0,0.1"],
}


@pytest.mark.parametrize("name", BAD_INPUT)
def test_bad_sweep_input_is_one_clear_line(cli, net, name, monkeypatch):
    """Exact stdout+stderr and exit code (tests/golden/sweep/, ARCHSPEC_REGEN=1 rewrites); nothing is written."""
    monkeypatch.chdir(net.parent)
    result = cli("sweep", "net.arch", *BAD_INPUT[name], "--out", "sw")
    assert_golden(GOLDEN / f"{name}.txt", result)
    assert not Path("sw").exists()


def test_max_trials_samples_a_huge_grid_and_checks_each_variant(cli, net):
    values = ",".join(map(str, range(0, 1000)))
    result = cli("sweep", str(net), "--grid", f"width={values}", "--grid", f"depth={values}", "--max-trials", "40",
                 "--max-params", "20k", "--dry-run")
    first = result.stdout.splitlines()[0]
    assert first.startswith("40 variants (sampled from a grid of 1,000,000), ") and first.endswith(" to train"), first
    # the oracle: each removed variant really fails the pipeline with the diagnostic listed
    removed = [line for line in result.stdout.splitlines() if line.startswith("  removed ")]
    for line in removed[:5]:
        key, why = line.removeprefix("  removed ").split(": ", 1)
        values = dict(pair.split("=") for pair in key.split("_"))
        report = checked(with_param_values(parse(NET), {k: int(v) for k, v in values.items()}),
                         CheckOptions(limits=(make_limit("params", "max", "20k", "--max-params 20k"),)))
        assert why.startswith(report.errors[0].code)


def test_a_ray_address_that_does_not_answer_is_one_line(cli, net, monkeypatch):
    monkeypatch.chdir(net.parent)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = cli("sweep", "net.arch", "--grid", "width=4", "--ray", f"127.0.0.1:{port}", "--out", "sw")
    result.stderr = result.stderr.replace(f":{port}", ":PORT")  # the golden names any free port PORT
    assert_golden(GOLDEN / "ray_address_not_answering.txt", result)
    assert not Path("sw").exists()


# --------------------------------------------------------------------------- real trials

pytest.importorskip("torch")
pytest.importorskip("optuna")


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    from test_data import real_subset

    return real_subset(tmp_path_factory.mktemp("sweep_subset"), 20, 10)  # 200 train, 100 test real CIFAR-10 JPEGs


def _sweep(net: Path, images: Path, *flags: str, **popen) -> subprocess.Popen:
    env = {**os.environ, "ARCHSPEC_CACHE": str(net.parent / "cache"), "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen([sys.executable, "-m", "archspec", "sweep", str(net), "--data", str(images), "--device", "cpu",
                             "--set", "batch_size=50", "--out", str(net.parent / "sw"), *flags],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=net.parent, **popen)


@pytest.mark.slow
def test_sweep_prunes_statically_trains_the_rest_and_runs_compares_them(net, images):
    proc = _sweep(net, images, "--grid", "width=4,8,0", "--set", "lr=0.02,0.05", "--epochs", "1", "--max-params", "6k")
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert lines[0] == "6 variants, 2 removed by the checker (2 E004 invalid-value), 4 to train"
    assert "  removed width=0_lr=0.02: E004 `conv` out channels: must be at least 1, got 0 (line 4)" in lines
    runs = archspec.runs(net.parent / "sw")
    done = [r for r in runs.rows if r.state == "complete"]
    assert len(done) == 4 and {r.values["width"] for r in done} == {4, 8}
    for r in done:  # each trial wrote the same run directory as `archspec train`, with its own variant
        metrics = [json.loads(x) for x in (Path(r.run_dir) / "metrics.jsonl").read_text().splitlines()]
        report = json.loads((Path(r.run_dir) / "report.json").read_text())
        assert r.test_acc == report["test_accuracy"] and report["settings"]["lr"] == r.values["lr"]
        assert r.params == report["params"] == archspec.check((Path(r.run_dir) / "variant.arch").read_text()).params
        assert r.val_acc == report["val_accuracy"] and r.val_acc == max(m["val_acc"] for m in metrics)
    assert [r.state for r in runs.rows].count("removed") == 2
    # rerun: nothing trained again
    again = _sweep(net, images, "--grid", "width=4,8,0", "--set", "lr=0.02,0.05", "--epochs", "1", "--max-params", "6k")
    out2, _ = again.communicate(timeout=300)
    assert "0 trials to run, 4 already finished" in out2
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    table = subprocess.run([sys.executable, "-m", "archspec", "runs", "sw"], capture_output=True, text=True, cwd=net.parent, env=env)
    assert table.returncode == 0 and table.stdout.splitlines()[0].split() == \
        ["trial", "state", "width", "lr", "params", "macs", "val_acc", "test_acc", "seconds"]
    best = max(done, key=lambda r: r.val_acc)
    best_arch = (net.parent / "sw" / "best.arch").read_text()
    assert f"param width = {best.values['width']}\n" in best_arch and archspec.check(best_arch).ok
    assert (net.parent / "sw" / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    as_json = subprocess.run([sys.executable, "-m", "archspec", "runs", "sw", "--format", "json", "--sort", "params"],
                             capture_output=True, text=True, cwd=net.parent, env=env)
    params = [r["params"] for r in json.loads(as_json.stdout) if r["params"] is not None]
    assert params == sorted(params) and len(params) == 4
    assert "<table>" in runs._repr_html_()


@pytest.fixture(scope="module")
def more_images(tmp_path_factory) -> Path:
    from test_data import real_subset

    return real_subset(tmp_path_factory.mktemp("prune_subset"), 100, 10)  # 1,000 train (200 held out), 100 test


@pytest.mark.slow
def test_tpe_with_the_median_pruner_stops_a_clearly_worse_trial_after_its_first_epoch(net, more_images):
    """lr=1e-5 leaves the weights where they started (about chance), while lr 0.02 and 0.1 learn in one epoch.
    The median pruner lets the first two trials finish; seed 0's TPE order puts the bad one third, so it is
    pruned after epoch 1. The oracle is Optuna's own record, read with Optuna's API."""
    import optuna

    proc = _sweep(net, more_images, "--grid", "width=8", "--set", "lr=0.00001,0.02,0.1", "--set", "val=0.2",
                  "--epochs", "2", "--sampler", "tpe", "--pruner", "median", "--workers", "1", "--seed", "0")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    study = optuna.load_study(study_name="sweep", storage=f"sqlite:///{net.parent / 'sw' / 'sweep.db'}")
    trained = {t.params["lr"]: t for t in study.get_trials() if t.intermediate_values}
    bad, good = trained.pop(1e-05), list(trained.values())
    assert bad.number > max(t.number for t in good), f"seed 0's TPE order changed: {out}"
    assert bad.state == optuna.trial.TrialState.PRUNED and list(bad.intermediate_values) == [1]
    assert all(t.state == optuna.trial.TrialState.COMPLETE and list(t.intermediate_values) == [1, 2] for t in good)
    assert bad.intermediate_values[1] < min(t.intermediate_values[1] for t in good)  # why the median pruned it
    assert f"trial {bad.number} width=8_lr=1e-05: pruned after epoch 1" in out.splitlines()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    listed = subprocess.run([sys.executable, "-m", "archspec", "runs", "sw", "--format", "json"],
                            capture_output=True, text=True, cwd=net.parent, env=env, check=True)
    rows = {r["trial"]: r for r in json.loads(listed.stdout)}
    assert sorted(rows) == sorted(t.number for t in [bad, *good])
    for t in [bad, *good]:
        row, steps = rows[t.number], t.intermediate_values
        assert (row["state"], row["epochs"]) == (t.state.name.lower(), len(steps))
        assert row["val_acc"] == (t.value if t.state.name == "COMPLETE" else steps[max(steps)])
        written = (Path(row["run_dir"]) / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(x)["val_acc"] for x in written] == [steps[e] for e in sorted(steps)]
        assert (Path(row["run_dir"]) / "report.json").is_file() == (t.state.name == "COMPLETE")


def _children(pid: int) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            stat = (proc / "stat").read_text()
            cmdline = (proc / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if proc.name.isdigit() and int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"archspec.sweeps.worker" in cmdline:
            found.append(int(proc.name))
    return found


def _wait_for_worker(pid: int, timeout: float = 120) -> int:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        kids = _children(pid)
        if kids:
            return kids[0]
        time.sleep(0.2)
    raise AssertionError("no worker process started")


@pytest.mark.slow
def test_a_dying_worker_fails_its_trial_and_the_sweep_goes_on(net, images):
    proc = _sweep(net, images, "--grid", "width=4,8", "--epochs", "3", "--workers", "1")
    os.kill(_wait_for_worker(proc.pid), signal.SIGKILL)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert "trial 0 width=4: failed: the worker died (killed by SIGKILL)" in out
    assert "trial 1 width=8: val_acc " in out
    states = {r.values["width"]: r.state for r in archspec.runs(net.parent / "sw").rows}
    assert states == {4: "fail", 8: "complete"}


@pytest.mark.slow
def test_an_interrupted_sweep_continues_without_repeating_finished_trials(net, images):
    proc = _sweep(net, images, "--grid", "width=4,5,6", "--epochs", "1", "--workers", "1")
    first = proc.stdout.readline() + proc.stdout.readline()
    line = proc.stdout.readline()  # the first trial's outcome
    assert line.startswith("trial 0 width=4: "), first + line
    _wait_for_worker(proc.pid)  # the second trial is running
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1 and err.startswith("error: interrupted: the finished trials are recorded in"), err
    again = _sweep(net, images, "--grid", "width=4,5,6", "--epochs", "1", "--workers", "1")
    out, err = again.communicate(timeout=600)
    assert again.returncode == 0, err
    assert "2 trials to run, 1 already finished" in out and "width=4:" not in out.split("record:")[1]
    complete = sorted(r.values["width"] for r in archspec.runs(net.parent / "sw").rows if r.state == "complete")
    assert complete == [4, 5, 6]


@pytest.mark.slow
def test_a_sweep_on_a_real_local_ray_head(net, images, tmp_path):
    ray_cli = shutil.which("ray")
    if ray_cli is None:
        pytest.skip("ray is not installed (pip install 'archspec-cnn[sweep]')")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "RAY_USAGE_STATS_ENABLED": "0"}
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    start = subprocess.run([ray_cli, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
                            "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"],
                           capture_output=True, text=True, env=env, timeout=180)
    try:
        assert start.returncode == 0, start.stderr
        proc = _sweep(net, images, "--grid", "width=4,8", "--epochs", "1", "--ray", f"127.0.0.1:{port}")
        out, err = proc.communicate(timeout=400)
        assert proc.returncode == 0, err
        assert f"2 in parallel (Ray at 127.0.0.1:{port})" in out
        rows = archspec.runs(net.parent / "sw").rows
        assert sorted(r.values["width"] for r in rows if r.state == "complete") == [4, 8]
        assert all((Path(r.run_dir) / "report.json").is_file() for r in rows)
    finally:
        subprocess.run([ray_cli, "stop"], capture_output=True, env=env, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)


def test_fit_calls_on_epoch_with_each_row_and_stops_when_it_says_so(images, tmp_path):
    from archspec.training.data import load_data
    from archspec.training.loop import build_model, fit
    from archspec.training.recipes import make_config

    data = load_data(str(images), tmp_path / "cache", lambda _: None)
    config = make_config("default", epochs=3, batch_size=50)
    seen: list[dict] = []
    result = fit(build_model(NET, "net.arch", 0), data, config, tmp_path / "run", arch_source=NET, device="cpu",
                 log=lambda _: None, quiet=True, on_epoch=lambda row: seen.append(row) or len(seen) == 2)
    written = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert result == {"stopped_after_epoch": 2} and seen == written and [r["epoch"] for r in seen] == [1, 2]
    assert not (tmp_path / "run" / "report.json").exists()


def test_python_api_records_removed_variants_with_their_diagnostic(net, tmp_path):
    lines: list[str] = []
    runs = archspec.sweep(net, grid={"width": [0], "depth": [1, 2]}, out=tmp_path / "sw", log=lines.append, epochs=1)
    assert lines[0] == "2 variants, 2 removed by the checker (2 E004 invalid-value), 0 to train"
    assert [(r.values, r.state) for r in runs.rows] == [({"width": 0, "depth": 1}, "removed"), ({"width": 0, "depth": 2}, "removed")]
    assert runs.best is None and "removed" in runs._repr_html_()
    with pytest.raises(archspec.UsageError, match="has no param `height`"):
        archspec.sweep(net, grid={"height": [1]}, out=tmp_path / "sw2")


@pytest.mark.parametrize("sampler, pruner", [("tpe", "hyperband"), ("random", "none"), ("grid", "none")])
def test_python_api_defaults_its_pruner_as_the_command_line_does(cli, net, tmp_path, monkeypatch, sampler, pruner):
    from archspec.sweeps import api
    from archspec.sweeps.study import SweepResult

    seen: list[str] = []
    monkeypatch.setattr(api, "run_sweep", lambda space, config, log: seen.append(config.pruner) or SweepResult(config.out, 0, 0, 0))
    monkeypatch.setattr(api, "read_runs", lambda out: None)  # nothing ran, so there is no record to read
    assert cli("sweep", str(net), "--grid", "width=4,8", "--sampler", sampler, "--out", str(tmp_path / "a")).returncode == 0
    archspec.sweep(net, grid={"width": [4, 8]}, sampler=sampler, out=tmp_path / "b", log=lambda _: None)
    assert seen == [pruner, pruner]
