"""How fast the static checker is: every figure printed beside what it is compared with.

How to rerun: from the repository root, `PYTHONPATH=$PWD python benchmarks/checker_speed.py`
(add `--quick` for smaller sizes and fewer repeats, `--repeat N` to change the number of cold runs
per median, `--timeout S` for the per-run limit). Every measurement is a fresh `archspec ...`
subprocess (the wall time a user sees, start-up included), timed with time.perf_counter; the
median of the repeats is printed, with the median CPU time (user + sys) of the same runs beside it:
on a shared machine the wall time also counts waiting for a core. archspec is byte-compiled first,
as `pip install` does (PYTHONDONTWRITEBYTECODE would otherwise make every run compile it). A case that runs past the limit prints "> N s (timed out)"
instead of hanging the run. The machine (CPU model, avx2 / avx512_bf16) heads the output, which
is also written to benchmarks/results/checker_speed.md. The generated inputs go to a temp dir;
the DenseNet-121 and ResNet-50 sources are benchmarks/data/*.arch.
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
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


def unlimited_cmd(*args: str) -> list[str]:
    """The same command with the size limits (50,000 words, 50,000 layers) lifted, to measure how
    the cost grows past them; a user's file that large gets E009."""
    lift = ("import sys; import archspec.language.syntax as s, archspec.language.expand as e; "
            "s.MAX_TOKENS = e.MAX_LAYERS = 10**7; from archspec.cli import main; sys.exit(main())")
    return [sys.executable, "-c", lift, *args]


def refused(out: str) -> bool:
    """Whether a run answered E009 (past a size limit) instead of checking the file."""
    return "E009" in out


cpu_of: dict[tuple[str, ...], float] = {}  # median CPU seconds (user + sys) of the last timed() per command


def timed(cmd: list[str], repeat: int, timeout: float, ok_codes=(0,)) -> tuple[float | None, str]:
    """Median wall seconds of `repeat` runs, or None when one ran past `timeout`.

    The median CPU time (user + sys of the child) goes to cpu_of: on a shared machine the wall
    time also counts waiting for a core, the CPU time does not.
    """
    times, cpus = [], []
    out = ""
    for _ in range(repeat):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env(), cwd=ROOT)
        except subprocess.TimeoutExpired:
            return None, ""
        times.append(time.perf_counter() - t0)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
        if p.returncode not in ok_codes:
            raise SystemExit(f"{' '.join(cmd[3:] or cmd)}: exit {p.returncode}\n{p.stderr[-2000:]}")
        out = p.stdout + p.stderr
    cpu_of[tuple(cmd)] = statistics.median(cpus)
    return statistics.median(times), out


PAIRED_FLOOR = "import lark, rich.console; from pydantic import BaseModel"


def paired_startup(lenet: list[str], pairs: int, timeout: float) -> None:
    """`archspec check lenet` against its floor, run in alternation so both see the same machine:
    the median of the per-pair ratios (target <= 1.3x, CPU and wall)."""
    floor = [sys.executable, "-c", PAIRED_FLOOR]
    walls, cpus = [], []
    for _ in range(pairs):
        tf, tl = timed(floor, 1, timeout)[0], timed(lenet, 1, timeout)[0]
        cf, cl = cpu(floor), cpu(lenet)
        if None in (tf, tl, cf, cl):
            emit("Paired start-up: a run timed out")
            return
        walls.append(tl / tf)  # type: ignore[operator]
        cpus.append(cl / cf)  # type: ignore[operator]
    emit(f"Paired: `archspec check examples/lenet.arch` against `python -c \"{PAIRED_FLOOR}\"`, {pairs} pairs in alternation:")
    emit(f"median ratio {statistics.median(cpus):.2f}x in CPU time, {statistics.median(walls):.2f}x in wall time "
         f"(target <= 1.3x: {'met' if statistics.median(cpus) <= 1.3 else 'not met'} in CPU time)")
    emit("")


def cpu(cmd: list[str]) -> float | None:
    return cpu_of.get(tuple(cmd))


def byte_compile() -> None:
    """Write archspec's .pyc files first, as `pip install` does: with PYTHONDONTWRITEBYTECODE set
    (as on the development machines) every run would otherwise compile archspec from source."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "archspec")], check=True,
                   capture_output=True, env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"})


def fmt_t(t: float | None, timeout: float) -> str:
    return f"> {timeout:g} s (timed out)" if t is None else f"{t:.3f} s"


def ratio_text(t: float | None, base: float | None) -> str:
    return "-" if t is None or not base else f"{t / base:.2f}x"


def verdict(t: float | None, target: float) -> str:
    return "FAIL (timed out)" if t is None else ("ok" if t < target else "FAIL")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes (1k, 10k, 30k layers; 5,000 layers on a line)")
    ap.add_argument("--repeat", type=int, default=None, help="runs per median for the cold start-up (default 7, quick 3)")
    ap.add_argument("--timeout", type=float, default=120.0, help="per-run limit in seconds (default 120)")
    ap.add_argument("--no-write", action="store_true", help=f"do not write {RESULTS.relative_to(ROOT)}")
    a = ap.parse_args()
    rep = a.repeat or (3 if a.quick else 7)
    big_rep = max(1, rep // 2)
    T = a.timeout

    emit("# Checker speed")
    emit("")
    emit(f"Machine: {machine()}")
    emit(f"Run: {time.strftime('%Y-%m-%d %H:%M:%S')}; `{' '.join(['python', 'benchmarks/checker_speed.py', *sys.argv[1:]])}`; "
         f"median of {rep} fresh subprocesses for start-up, {big_rep} for the big inputs; limit {T:g} s per run")
    emit("")

    # 1. Cold start-up against the import floor.
    byte_compile()
    emit("## Cold start-up: `archspec check examples/lenet.arch`")
    emit("")
    lenet = archspec_cmd("check", "examples/lenet.arch")
    floor_cmd = [sys.executable, "-c", "import lark, pydantic, rich.console"]
    rows = [("`python -c pass`", [sys.executable, "-c", "pass"]),
            ("floor: `python -c \"import lark, pydantic, rich.console\"`", floor_cmd),
            ("floor and pydantic's models: `... ; from pydantic import BaseModel`",
             [sys.executable, "-c", "import lark, pydantic, rich.console; from pydantic import BaseModel"]),
            ("floor, exiting as archspec's CLI does (`gc.freeze()` at exit: no shutdown collections)",
             [sys.executable, "-c", "import atexit, gc; atexit.register(gc.freeze); import lark, pydantic, rich.console"]),
            ("`archspec check examples/lenet.arch` (output to a pipe)", lenet),
            ("`python -c \"import torch\"` (what check avoids)", [sys.executable, "-c", "import torch"])]
    got = {label: timed(cmd, rep, T)[0] for label, cmd in rows}
    t_floor, c_floor = got[rows[1][0]], cpu(floor_cmd)
    emit("| what | wall (median) | wall / floor | CPU user+sys (median) | CPU / floor |")
    emit("|---|---|---|---|---|")
    for label, cmd in rows:
        t, c = got[label], cpu(cmd)
        emit(f"| {label} | {fmt_t(t, T)} | {ratio_text(t, t_floor)} | {fmt_t(c, T)} | {ratio_text(c, c_floor)} |")
    emit("")
    emit("The target (<= 1.3x) is on the floor that includes pydantic's models, run in alternation with the check:")
    emit("")
    paired_startup(lenet, rep * 3, T)

    sizes = [1_000, 10_000, 30_000] if a.quick else [1_000, 10_000, 100_000]
    one_line = 5_000 if a.quick else 20_000
    with tempfile.TemporaryDirectory(prefix="archspec-speed-") as tmp:
        tmpd = Path(tmp)
        # 2. Linearity in the number of layers.
        emit("## Long files: `input 8x32x32` then N/2 lines of `conv 8 k3 p1 | relu` (N layers)")
        emit("")
        emit("Past 16,600 such layers a file has more than 50,000 words and gets E009 (the size limit, README \"Limits\");")
        emit("to measure how the cost grows, the rows marked *limits lifted* run the same command with the limits raised.")
        emit("")
        emit("| layers | text check (with its table) | CPU | CPU per 1k layers, start-up taken off | JSON check | CPU | CPU per 1k layers | target |")
        emit("|---|---|---|---|---|---|---|---|")
        c_check = cpu(lenet)
        for n in sizes:
            f = tmpd / f"layers{n}.arch"
            f.write_text("input 8x32x32\n" + "conv 8 k3 p1 | relu\n" * (n // 2))
            r = 1 if n >= 100_000 else (big_rep if n >= 10_000 else rep)
            make = unlimited_cmd if n > 10_000 else archspec_cmd
            text_cmd = make("check", "--classes", "0", str(f))
            json_cmd = make("check", "--format", "json", "--classes", "0", str(f))
            (tt, out_t), (tj, out_j) = timed(text_cmd, r, T, ok_codes=(0, 1)), timed(json_cmd, r, T, ok_codes=(0, 1))
            if refused(out_t) or refused(out_j):
                raise SystemExit(f"{n:,} layers: refused (E009); the benchmark would time the refusal, not the check")
            ct, cj = cpu(text_cmd) if tt else None, cpu(json_cmd) if tj else None
            per = lambda c: "-" if c is None or c_check is None else f"{(c - c_check) / n * 1000:.3f} s"  # noqa: E731
            target = "10k < 1 s: " + verdict(max(tt or 1e9, tj or 1e9), 1.0) + " (wall), " + \
                verdict(max(ct or 1e9, cj or 1e9), 1.0) + " (CPU)" if n == 10_000 else ""
            label = f"{n:,} (limits lifted)" if make is unlimited_cmd else f"{n:,}"
            emit(f"| {label} | {fmt_t(tt, T)} | {fmt_t(ct, T)} | {per(ct)} | {fmt_t(tj, T)} | {fmt_t(cj, T)} | {per(cj)} | {target} |")
        emit("")
        emit("(Start-up = the cold lenet check above. `--classes 0` is passed only so that the last layer's channel count is"
             " not compared with a class count. Linear means a constant CPU per 1k layers.)")
        emit("")

        # 3. One very long line, and the largest inputs the limits let through.
        emit("## At the size limits: every such file is answered within 2 s")
        emit("")
        words = tmpd / "words.arch"  # 6 words a line: 49,982 words, just under the 50,000-word limit
        words.write_text("input 8x32x32\n" + "conv 8 k3 p1 | relu\n" * 8_330)
        line = tmpd / "oneline.arch"
        line.write_text("input 8x32x32\n" + " | ".join(["relu"] * one_line) + "\n")
        repeated = tmpd / "repeat.arch"  # 1 + 16,600 x 3 = 49,801 layers: just under the 50,000-layer limit
        repeated.write_text("input 8x32x32\nrepeat 16600 { conv 8 k3 p1 | relu | bn }\n")
        emit("| input | layers | check (text, every warning rendered) | CPU | target < 2 s |")
        emit("|---|---|---|---|---|")
        for what, f, n in [(f"`relu \\| relu \\| ...`, one line ({one_line:,} W203 warnings)", line, one_line),
                           ("`conv 8 k3 p1 \\| relu` x 8,330 lines (49,982 words of the 50,000)", words, 16_661),
                           ("`repeat 16600 { conv 8 k3 p1 \\| relu \\| bn }` (expanded to 49,801 of the 50,000 layers)", repeated, 49_801)]:
            cmd = archspec_cmd("check", "--classes", "0", str(f))
            t1, out = timed(cmd, big_rep, T, ok_codes=(0, 1))
            if refused(out):
                raise SystemExit(f"{what}: refused (E009); the benchmark would time the refusal, not the check")
            c1 = cpu(cmd) if t1 else None
            emit(f"| {what} | {n:,} | {fmt_t(t1, T)} | {fmt_t(c1, T)} | {verdict(t1, 2.0)} (wall), {verdict(c1, 2.0)} (CPU) |")
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
    tc_dn, dn_out = timed(archspec_cmd("check", "--classes", "1000", str(dn)), rep, T)
    tc_rn, _ = timed(archspec_cmd("check", "--classes", "1000", str(rn)), rep, T)
    dn_rows = sum(1 for line in dn_out.splitlines() if line[:6].strip().isdigit())
    tv = None
    try:
        p = subprocess.run([sys.executable, "-c",
                            "import torchvision; m = torchvision.models.densenet121(weights=None, num_classes=1000);"
                            "print(sum(p.numel() for p in m.parameters()))"], capture_output=True, text=True, timeout=120)
        tv = int(p.stdout.strip()) if p.returncode == 0 else None
    except (subprocess.TimeoutExpired, ValueError):
        tv = None
    sum_cmd = archspec_cmd("summary", "--classes", "1000", str(dn))
    dn_cmd = archspec_cmd("check", "--classes", "1000", str(dn))
    rn_cmd = archspec_cmd("check", "--classes", "1000", str(rn))
    emit("| what | wall (median) | CPU | target | compared with |")
    emit("|---|---|---|---|---|")
    emit(f"| `archspec summary` DenseNet-121 ({n_rows} rows) | {fmt_t(ts, T)} | {fmt_t(cpu(sum_cmd), T)} | "
         f"< 0.5 s: {verdict(ts, 0.5)} (wall), {verdict(cpu(sum_cmd), 0.5)} (CPU) | floor {fmt_t(t_floor, T)}, CPU {fmt_t(c_floor, T)} |")
    emit(f"| `archspec check` DenseNet-121 ({dn_rows} table rows) | {fmt_t(tc_dn, T)} | {fmt_t(cpu(dn_cmd), T)} | | floor {fmt_t(t_floor, T)} |")
    emit(f"| `archspec check` ResNet-50 | {fmt_t(tc_rn, T)} | {fmt_t(cpu(rn_cmd), T)} | | floor {fmt_t(t_floor, T)} |")
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
