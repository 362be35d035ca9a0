"""How fast the static checker is (issue 13): every figure printed beside what it is compared with.

How to rerun: from the repository root, `PYTHONPATH=$PWD python benchmarks/checker_speed.py`
(add `--quick` for smaller sizes and fewer repeats, `--repeat N` to change the number of cold runs
per median, `--timeout S` for the per-run limit). Every measurement is a fresh `archspec ...`
subprocess (the wall time a user sees, start-up included), timed with time.perf_counter; the
median of the repeats is printed. A case that runs past the limit prints "> N s (timed out)"
instead of hanging the run. The machine (CPU model, avx2 / avx512_bf16) heads the output, which
is also written to benchmarks/results/checker_speed.md. The generated inputs go to a temp dir;
the DenseNet-121 and ResNet-50 sources are benchmarks/data/*.arch.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "data"
RESULTS = ROOT / "benchmarks" / "results" / "checker_speed.md"
TORCHVISION_DENSENET121_PARAMS = 7_978_856  # documented figure; recomputed below when torchvision is present

lines_out: list[str] = []


def emit(s: str = "") -> None:
    print(s, flush=True)
    lines_out.append(s)


def machine() -> str:
    model, flags = "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model == "unknown CPU":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        model = platform.processor() or model
    isa = ", ".join(f"{f}: {'yes' if f in flags else 'no'}" for f in ("avx2", "avx512_bf16"))
    return f"{model} ({isa}); {os.cpu_count()} logical CPUs; Python {platform.python_version()}"


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    return e


def archspec_cmd(*args: str) -> list[str]:
    # The console script's entry point, run with this interpreter so PYTHONPATH's checkout wins.
    return [sys.executable, "-c", "import sys; from archspec.cli import main; sys.exit(main())", *args]


def timed(cmd: list[str], repeat: int, timeout: float, ok_codes=(0,)) -> tuple[float | None, str]:
    """Median wall seconds of `repeat` runs, or None when one ran past `timeout`."""
    times = []
    out = ""
    for _ in range(repeat):
        t0 = time.perf_counter()
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env(), cwd=ROOT)
        except subprocess.TimeoutExpired:
            return None, ""
        times.append(time.perf_counter() - t0)
        if p.returncode not in ok_codes:
            raise SystemExit(f"{' '.join(cmd[3:] or cmd)}: exit {p.returncode}\n{p.stderr[-2000:]}")
        out = p.stdout
    return statistics.median(times), out


def fmt_t(t: float | None, timeout: float) -> str:
    return f"> {timeout:g} s (timed out)" if t is None else f"{t:.3f} s"


def verdict(t: float | None, target: float) -> str:
    return "FAIL (timed out)" if t is None else ("ok" if t < target else "FAIL")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes (1k, 10k, 30k lines; 5,000 layers on a line)")
    ap.add_argument("--repeat", type=int, default=None, help="runs per median for the cold start-up (default 7, quick 3)")
    ap.add_argument("--timeout", type=float, default=60.0, help="per-run limit in seconds (default 60)")
    ap.add_argument("--no-write", action="store_true", help=f"do not write {RESULTS.relative_to(ROOT)}")
    a = ap.parse_args()
    rep = a.repeat or (3 if a.quick else 7)
    big_rep = max(1, rep // 2)
    T = a.timeout

    emit("# Checker speed (issue 13)")
    emit("")
    emit(f"Machine: {machine()}")
    emit(f"Run: {time.strftime('%Y-%m-%d %H:%M:%S')}; `{' '.join(['python', 'benchmarks/checker_speed.py', *sys.argv[1:]])}`; "
         f"median of {rep} fresh subprocesses for start-up, {big_rep} for the big inputs; limit {T:g} s per run")
    emit("")

    # 1. Cold start-up against the import floor.
    emit("## Cold start-up: `archspec check examples/lenet.arch`")
    emit("")
    t_check, _ = timed(archspec_cmd("check", "examples/lenet.arch"), rep, T)
    t_floor, _ = timed([sys.executable, "-c", "import lark, pydantic, rich.console"], rep, T)
    t_py, _ = timed([sys.executable, "-c", "pass"], rep, T)
    t_torch, _ = timed([sys.executable, "-c", "import torch"], rep, T)
    emit("| what | wall (median) | ratio to floor |")
    emit("|---|---|---|")
    emit(f"| `python -c pass` | {fmt_t(t_py, T)} | {t_py / t_floor:.2f}x |" if t_py and t_floor else f"| `python -c pass` | {fmt_t(t_py, T)} | - |")
    emit(f"| floor: `python -c \"import lark, pydantic, rich.console\"` | {fmt_t(t_floor, T)} | 1.00x |")
    ratio = t_check / t_floor if t_check and t_floor else None
    emit(f"| `archspec check examples/lenet.arch` | {fmt_t(t_check, T)} | "
         f"{'-' if ratio is None else f'{ratio:.2f}x'} (target <= 1.25x: {'ok' if ratio and ratio <= 1.25 else 'FAIL'}) |")
    emit(f"| `python -c \"import torch\"` (what check avoids) | {fmt_t(t_torch, T)} | "
         f"{t_torch / t_floor:.2f}x |" if t_torch and t_floor else f"| `python -c \"import torch\"` | {fmt_t(t_torch, T)} | - |")
    emit("")

    sizes = [1_000, 10_000, 30_000] if a.quick else [1_000, 10_000, 100_000]
    one_line = 5_000 if a.quick else 20_000
    with tempfile.TemporaryDirectory(prefix="archspec-speed-") as tmp:
        tmpd = Path(tmp)
        # 2. Linearity in the number of lines.
        emit("## Long files: `input 8x32x32` then N lines of `conv 8 k3 p1 | relu`")
        emit("")
        emit("| lines | layers | text check | per 1k lines, start-up taken off | JSON check | per 1k lines, start-up taken off | target |")
        emit("|---|---|---|---|---|---|---|")
        for n in sizes:
            f = tmpd / f"lines{n}.arch"
            f.write_text("input 8x32x32\n" + "conv 8 k3 p1 | relu\n" * n)
            r = 1 if n >= 100_000 else (big_rep if n >= 10_000 else rep)
            tt, _ = timed(archspec_cmd("check", "-q", "--classes", "0", str(f)), r, T, ok_codes=(0, 1))
            tj, _ = timed(archspec_cmd("check", "--format", "json", "--classes", "0", str(f)), r, T, ok_codes=(0, 1))
            per = lambda t: "-" if t is None or t_check is None else f"{(t - t_check) / n * 1000:.3f} s"  # noqa: E731
            target = "10k < 1 s: " + (verdict(max(tt or 1e9, tj or 1e9), 1.0)) if n == 10_000 else ""
            emit(f"| {n:,} | {2 * n + 1:,} | {fmt_t(tt, T)} | {per(tt)} | {fmt_t(tj, T)} | {per(tj)} | {target} |")
        emit("")
        emit("(Start-up = the cold lenet check above. `--classes 0` is passed only so that the last layer's channel count is not compared with a class count;"
             " exit 1 is accepted, the text run uses -q so the time is the checker's, not the table printer's.)")
        emit("")

        # 3. One very long line.
        emit(f"## One line of {one_line:,} layers: `input 8x32x32` then `relu | relu | ...`")
        emit("")
        f = tmpd / "oneline.arch"
        f.write_text("input 8x32x32\n" + " | ".join(["relu"] * one_line) + "\n")
        t1, _ = timed(archspec_cmd("check", "-q", "--classes", "0", str(f)), big_rep, T, ok_codes=(0, 1))
        emit(f"| layers on one line | check -q | target < 2 s |")
        emit("|---|---|---|")
        emit(f"| {one_line:,} | {fmt_t(t1, T)} | {verdict(t1, 2.0)} |")
        emit("")

    # 4. Real networks.
    emit("## Real networks")
    emit("")
    dn = DATA / "densenet121.arch"
    rn = DATA / "resnet50.arch"
    ts, _ = timed(archspec_cmd("summary", "--classes", "1000", str(dn)), rep, T)
    import json as _json
    _, sj = timed(archspec_cmd("summary", "--classes", "1000", "--format", "json", str(dn)), 1, T)
    dn_params = _json.loads(sj)["total_params"] if sj else None
    n_rows = len(_json.loads(sj)["layers"]) if sj else None
    tc_dn, _ = timed(archspec_cmd("check", "-q", "--classes", "1000", str(dn)), rep, T)
    tc_rn, _ = timed(archspec_cmd("check", "-q", "--classes", "1000", str(rn)), rep, T)
    tv = None
    try:
        p = subprocess.run([sys.executable, "-c",
                            "import torchvision; m = torchvision.models.densenet121(weights=None, num_classes=1000);"
                            "print(sum(p.numel() for p in m.parameters()))"], capture_output=True, text=True, timeout=120)
        tv = int(p.stdout.strip()) if p.returncode == 0 else None
    except (subprocess.TimeoutExpired, ValueError):
        tv = None
    emit("| what | wall (median) | target | compared with |")
    emit("|---|---|---|---|")
    emit(f"| `archspec summary` DenseNet-121 ({n_rows} rows) | {fmt_t(ts, T)} | < 0.5 s: {verdict(ts, 0.5)} | "
         f"floor {fmt_t(t_floor, T)} |")
    emit(f"| `archspec check` DenseNet-121 | {fmt_t(tc_dn, T)} | | floor {fmt_t(t_floor, T)} |")
    emit(f"| `archspec check` ResNet-50 | {fmt_t(tc_rn, T)} | | floor {fmt_t(t_floor, T)} |")
    emit("")
    src = "torchvision.models.densenet121(weights=None, num_classes=1000), counted here" if tv else \
        "torchvision not importable: the documented figure"
    emit(f"DenseNet-121 params: archspec {dn_params:,} vs torchvision {(tv or TORCHVISION_DENSENET121_PARAMS):,} ({src}): "
         f"{'equal' if dn_params == (tv or TORCHVISION_DENSENET121_PARAMS) else 'DIFFERENT'}")
    emit("")

    if not a.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text("\n".join(lines_out) + "\n")
        print(f"(written to {RESULTS.relative_to(ROOT)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
