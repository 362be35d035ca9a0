"""A fuzz campaign against archspec's CLI and public API.

How to rerun: from the repository root, `PYTHONPATH=$PWD python benchmarks/fuzz.py --runs 20000`
(`--seconds S` for a time budget instead, default 600; `--seed S` for a reproducible campaign;
`--commands check,fmt,api` for a subset; `--out FILE` for the results file, default
benchmarks/results/fuzz.md; `--workers 2`). A run is one command on one input.

Three parts: (1) grammar-aware text drawn with hypothesis.extra.lark.from_lark over
grammar/archspec.lark, with NAME tokens drawn from `archspec ops` and argument words (drawn in the
workers, 25 at a time); (2) byte and token mutations of examples/*.arch and examples/broken/*.arch
(at most --max-bytes); (3) hand-made hostile cases (huge numbers, deep nesting, expansion bombs,
BOM, invalid UTF-8, FIFOs, /dev/zero, `use` chains, symlink loops...). Every input runs through
check (text and JSON), summary, explain, fmt, graph (DOT text), compile and the API
(archspec.check / archspec.build + a forward pass on small nets); hostile inputs also run check and
fmt through the real console script, each in a process of its own.

Speed: each worker imports archspec and torch and runs every command once on a few examples before
forking (build() imports torchvision, 1.5 s, which every forked run used to pay), then gc.freeze()s.
An input's runs share one fork: the child runs them in order, each with its own fds, working
directory, RLIMIT_AS (the worker's size + 2 GB; + 4 GB for the API, torch maps a lot), interval timer
(--timeout, twice that for the API) and peak RSS (VmHWM, reset through /proc/self/clear_refs). The
child records START/END of each run in a status file; a child that dies (timer, signal, memory) is
blamed on the run it was in and the rest of the input's runs go on in a new fork, as they do after a
run that raised. Oracles: exit code in {0,1,2} and no Traceback; no hang; no memory blow-up; fmt
idempotent and meaning-preserving (check JSON of x and of fmt(x) saved as main.arch in a sibling
directory with the same other files and the same stdin, so `use` resolves alike: same
ops/shapes/params and diagnostic codes); build() succeeds exactly when check() has no errors and
gives the checker's output shape. Failures are grouped by the exception line of the traceback (or
the oracle), minimized, and written with the summary table to the results file.
"""
from __future__ import annotations

import argparse
import functools
import itertools
import json
import multiprocessing as mp
import os
import queue
import random
import re
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GRAMMAR = ROOT / "grammar" / "archspec.lark"
EXAMPLES = sorted((ROOT / "examples").glob("*.arch")) + sorted((ROOT / "examples" / "broken").glob("*.arch"))
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "fuzz.md"
ALL_COMMANDS = ["check", "check-json", "summary", "explain", "fmt", "graph", "compile", "api"]
ARG_WORDS = ["k1", "k3", "k5", "k7", "s1", "s2", "p0", "p1", "p3", "same", "valid", "nobias", "ceil", "d2", "g2",
             "init", "whiten", "project", "c", "s", "k", "x", "basic", "b", "k{k}", "p{k//2}", "s{s}"]
HOSTILE_NUMBERS = ["0", "-1", "1e400", "9" * 40, "0.5", "nan", "inf", "-0", "1e-400", ".5", "1.", "3e2", "65536"]

GIB = 1 << 30
# What `python` gives sys.stdin/stdout here (surrogateescape under a C/C.UTF-8 locale): the forked runs copy it.
STDIN_ENC = (getattr(sys.stdin, "encoding", None) or "utf-8", getattr(sys.stdin, "errors", None) or "strict")
STDOUT_ENC = (getattr(sys.stdout, "encoding", None) or "utf-8", getattr(sys.stdout, "errors", None) or "strict")


def machine() -> str:
    model, flags = "unknown CPU", set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name") and model == "unknown CPU":
            model = line.split(":", 1)[1].strip()
        elif line.startswith("flags") and not flags:
            flags = set(line.split(":", 1)[1].split())
    isa = ", ".join(f"{f}: {'yes' if f in flags else 'no'}" for f in ("avx2", "avx512_bf16"))
    return f"{model} ({isa}); {os.cpu_count()} logical CPUs"


def op_names() -> list[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-c", "import sys; from archspec.cli import main; sys.exit(main(['ops']))"],
                       capture_output=True, text=True, env=env, timeout=60)
    names = [line.split()[0] for line in p.stdout.splitlines() if line.strip() and not line.startswith(" ")]
    return sorted(set(names)) or ["input", "conv", "relu", "maxpool", "flatten", "linear"]


# ---------------------------------------------------------------- inputs
class Case(dict):
    """part, name, text (bytes), files {relpath: bytes}, special (fifo/symlink_loop/stdin), stdin (bytes)."""


@functools.lru_cache(maxsize=2)
def grammar_strategy(ops: tuple[str, ...]):
    """prefix + from_lark over the project's grammar: built once per process (a worker draws many chunks)."""
    import lark
    import hypothesis.strategies as st
    from hypothesis.extra.lark import from_lark

    from archspec.language.joins import JOINS

    g = lark.Lark(GRAMMAR.read_text(), start="start")
    sp = lambda s: st.tuples(st.sampled_from(["", " ", "  "]), s, st.sampled_from([" ", " ", "\t"])).map("".join)  # noqa: E731
    ascii_num = st.one_of(st.integers(0, 300).map(str), st.sampled_from(HOSTILE_NUMBERS),
                          st.from_regex(r"-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", fullmatch=True))
    explicit = {
        "NAME": sp(st.one_of(st.sampled_from(ops), st.sampled_from(ops), st.sampled_from(ARG_WORDS),
                             st.from_regex(r"[A-Za-z_][A-Za-z0-9_.]{0,6}", fullmatch=True))),
        "NUMBER": sp(ascii_num),
        "DIMS": sp(st.lists(st.integers(0, 300).map(str), min_size=2, max_size=4).map("x".join)),
        "STRING": sp(st.sampled_from(['"blocks.arch"', '"missing.arch"', '""', '"/dev/null"', '"."'])),
        "COMMENT": st.sampled_from(["# c", "# noqa", "# noqa: E002", "#"]),
        "_NL": st.sampled_from(["\n", "\n\n", "\r\n"]),
        "REPEAT": sp(st.just("repeat")), "BLOCK": sp(st.just("block")),
        "USE": sp(st.just("use")), "SHORTCUT": sp(st.just("shortcut")),
        "JOIN_WORD": sp(st.sampled_from(sorted(JOINS))),  # the join registry's words
    }
    strat = from_lark(g, start="start", explicit=explicit)
    prefix = st.sampled_from(["", "input 3x32x32\n", "input 3x32x32\n", "input 16x8x8\n", "input 10\n"])
    return st.tuples(prefix, strat).map("".join)


def grammar_cases(n: int, seed: int, ops: list[str], first: int = 0) -> list[Case]:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hseed

    strat = grammar_strategy(tuple(ops))
    out: list[str] = []

    @hseed(seed)
    @settings(max_examples=n, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(strat)
    def collect(text):
        out.append(text)

    collect()
    return [Case(part="grammar", name=f"grammar#{first + i}", text=t.encode("utf-8", "surrogatepass"))
            for i, t in enumerate(out)]


TOKEN_RE = re.compile(rb"\s+|[A-Za-z_][A-Za-z0-9_.]*|\d+(?:x\d+)+|-?\d+\.?\d*(?:[eE][-+]?\d+)?|\"[^\"\n]*\"|#[^\n]*|.", re.S)
INTERESTING = [b"{", b"}", b"|", b"\n", b"(", b")", b"*", b"\x00", b"\xff", b"-", b"9" * 30, b"\xef\xbb\xbf",
               b"\f", b"\\\n", b"residual {", b"concat { } {", b"repeat 3 {", b"#", b"=", b","]


def mutate(data: bytes, rng: random.Random, pool: list[bytes]) -> bytes:
    toks = TOKEN_RE.findall(data)
    for _ in range(rng.choice([1, 1, 2, 3, 5, 8])):
        r = rng.random()
        if r < 0.45 and toks:  # token mutation
            i = rng.randrange(len(toks))
            k = rng.random()
            if k < 0.3:
                toks[i] = rng.choice(pool)
            elif k < 0.45:
                toks[i] = rng.choice(HOSTILE_NUMBERS).encode()
            elif k < 0.6:
                del toks[i]
            elif k < 0.75:
                toks.insert(i, toks[i] + b" ")
            elif k < 0.9:
                j = rng.randrange(len(toks))
                toks[i], toks[j] = toks[j], toks[i]
            else:
                j = min(len(toks), i + rng.randint(1, 20))
                toks[i:i] = toks[i:j] * rng.randint(1, 5)
        else:  # byte mutation
            b = bytearray(b"".join(toks))
            k = rng.random()
            if not b:
                b = bytearray(rng.choice(INTERESTING))
            elif k < 0.25:
                i = rng.randrange(len(b))
                b[i] ^= 1 << rng.randrange(8)
            elif k < 0.5:
                b[rng.randrange(len(b) + 1):0] = rng.choice(INTERESTING)
            elif k < 0.65:
                i = rng.randrange(len(b))
                del b[i:i + rng.randint(1, 16)]
            elif k < 0.8:
                i = rng.randrange(len(b))
                j = min(len(b), i + rng.randint(1, 40))
                b[j:j] = b[i:j] * rng.randint(1, 4)
            else:
                b[rng.randrange(len(b) + 1):0] = bytes([rng.randrange(256)])
            toks = TOKEN_RE.findall(bytes(b))
    return b"".join(toks)


CHUNK = 25  # inputs per task: few enough to stop near the deadline, enough to amortize hypothesis' start-up


def task_stream(parts: list[str], seed: int, max_bytes: int) -> Iterator[tuple]:
    """Tasks for the workers, interleaved: four hostile cases (a fixed list), a chunk of grammar inputs (endless),
    a chunk of mutated inputs (endless), so that a short budget still reaches every part. Made lazily, so a long
    campaign neither waits for nor holds its inputs up front. Grammar text is drawn in the worker (hypothesis
    takes 40-150 ms an input, as long as running it: the main process would starve both workers); mutated
    text over max_bytes is drawn again (the examples are at most ~1 KB: a larger input only slows the runs,
    the hostile part covers size)."""
    def grammar() -> Iterator[tuple]:
        for k in itertools.count():
            yield ("grammar", seed * 100_003 + k, CHUNK * k)

    def mutation() -> Iterator[tuple]:
        rng = random.Random(seed)
        srcs = [p.read_bytes() for p in EXAMPLES]
        names = [p.relative_to(ROOT).as_posix() for p in EXAMPLES]
        pool = sorted({t for s in srcs for t in TOKEN_RE.findall(s) if t.strip()})
        i = 0
        while True:
            chunk = []
            while len(chunk) < CHUNK:
                j = rng.randrange(len(srcs))
                text = mutate(srcs[j], rng, pool)
                if len(text) <= max_bytes:
                    chunk.append(Case(part="mutation", name=f"mutation#{i} of {names[j]}", text=text))
                    i += 1
            yield ("cases", chunk)

    hostile = hostile_cases() if "hostile" in parts else []
    streams = [(("cases", hostile[i:i + 4]) for i in range(0, len(hostile), 4)),
               grammar() if "grammar" in parts else iter(()), mutation() if "mutation" in parts else iter(())]
    while streams:
        for it in list(streams):
            t = next(it, None)
            if t is None:
                streams.remove(it)
            else:
                yield t


def run_task(task: tuple) -> list[tuple[Case, list[dict]]]:
    """Run a task's inputs (drawing them first for a grammar chunk): [(input, its run records)]."""
    if task[0] == "grammar":
        _, seed, first = task
        seen = Worker.state.setdefault("seen", set())
        cases = []
        for c in grammar_cases(CHUNK, seed, Worker.state["ops"], first):
            if c["text"] not in seen:  # hypothesis starts each chunk with its simplest inputs
                seen.add(c["text"])
                cases.append(c)
    else:
        cases = task[1]
    return [(c, run_case(c)) for c in cases]


def hostile_cases() -> list[Case]:
    n9 = "9" * 150
    H = []

    def add(name, text=b"", **kw):
        H.append(Case(part="hostile", name=name, text=text.encode() if isinstance(text, str) else text, **kw))

    add("input 1x<150 nines>", f"input 1x{n9}\nflatten\nlinear 10\n")
    add("linear <150 nines>", f"input 3x32x32\nflatten\nlinear {n9}\n")
    add("conv {1e400/1} in a block", "block b(c) { conv {1e400/1} k3 }\ninput 3x32x32\nb(1)\n")
    add("conv {1e400/1} top level", "input 3x32x32\nconv {1e400/1} k3\n")
    add("conv p<100 nines>", "input 3x32x32\nconv 8 k3 p" + "9" * 100 + "\n")
    add("NaN expression {1e400-1e400}", "block b(c) { conv {c-c} k3 }\ninput 3x32x32\nb(1e400)\n")
    add("NaN number: dropout nan, leakyrelu inf", "input 3x32x32\ndropout nan\nleakyrelu inf\nconv 8 k3\n")
    add("division by zero {c/0}, {c//0}", "block b(c) { conv {c//0} k3 | conv {c/0} k1 }\ninput 3x32x32\nb(4)\n")
    add("huge stride/dilation", "input 3x32x32\nconv 8 k3 s" + "9" * 30 + " d" + "9" * 30 + "\n")
    add("residual { x10000 deep", "input 3x32x32\n" + "residual {" * 10000 + " relu " + "}" * 10000 + "\n")
    add("residual { x300 deep", "input 3x32x32\n" + "residual {" * 300 + " relu " + "}" * 300 + "\n")
    add("concat { } { ... deep x3000", "input 3x32x32\n" + "concat { } { " * 3000 + "relu" + " }" * 3000 + "\n")
    add("conv {-----...-1} (10000 minus)", "block b(c) { conv {" + "-" * 10000 + "1} k3 }\ninput 3x32x32\nb(1)\n")
    add("( x5000 in an expression", "block b(c) { conv {" + "(" * 5000 + "c" + ")" * 5000 + "} k3 }\ninput 3x32x32\nb(1)\n")
    add("repeat 1000000000 { relu }", "input 3x32x32\nrepeat 1000000000 { relu }\n")
    add("nested repeats 1000^3", "input 3x32x32\nrepeat 1000 { repeat 1000 { repeat 1000 { relu } } }\n")
    add("block call * 1000000000", "block b() { relu }\ninput 3x32x32\nb() * 1000000000\n")
    bomb = "block b0() { relu }\n" + "".join(f"block b{i}() {{ b{i - 1}() | b{i - 1}() }}\n" for i in range(1, 41))
    add("block expansion bomb 2^40", bomb + "input 3x32x32\nb40()\n")
    add("recursive block", "block a(c) { a(c) }\ninput 3x32x32\na(1)\n")
    add("mutually recursive blocks", "block a(c) { b(c) }\nblock b(c) { a(c) }\ninput 3x32x32\na(1)\n")
    add("100,000 layers on one line", "input 3x32x32\n" + " | ".join(["relu"] * 100000) + "\n")
    add("100,000 arguments", "input 3x32x32\nconv 8 " + "k3 " * 100000 + "\n")
    add("10,000 branches", "input 3x32x32\nconcat " + "{ relu } " * 10000 + "\n")
    add("100,000 empty lines", "input 3x32x32\n" + "\n" * 100000 + "relu\n")
    add("1,000,000-char name", "input 3x32x32\n" + "a" * 1000000 + "\n")
    add("input 3x99999x99999 + conv", "input 3x99999x99999\nconv 64 k3 p1 | relu | gap | flatten | linear 10\n")
    add("UTF-8 BOM", "\ufeffinput 3x32x32\nconv 8 k3 | relu\nflatten\nlinear 10\n")
    add("form feeds before # noqa", "input 3x32x32\n\f\f\fcnov 8 k3 \f\f# noqa\nflatten\nlinear 10\n")
    add("form feed inside a line, error after it", "input 3x32x32\nconv\f\f8 k99\nflatten | linear 10\n")
    add("NUL bytes", b"input 3x32x32\x00\nconv 8\x00 k3\n")
    add("lone CR line endings", "input 3x32x32\rconv 8 k3\rflatten\rlinear 10\r")
    add("invalid UTF-8 in a file", b"input 3x32x32\n\xff\xfe conv 8 k3\n")
    add("invalid UTF-8 on stdin", b"", special="stdin", stdin=b"input 3x32x32\n\xff\xfe conv 8 k3\n\xc3\x28\n")
    add("empty file", "")
    add('use "/dev/zero"', 'use "/dev/zero"\ninput 3x32x32\nrelu\n')
    add('use "/dev/stdin" (nothing on stdin)', 'use "/dev/stdin"\ninput 3x32x32\nrelu\n')
    add('use "/" (a directory)', 'use "/"\ninput 3x32x32\nrelu\n')
    add("use itself", 'use "main.arch"\ninput 3x32x32\nrelu\n')
    add("use cycle a -> b -> a", 'use "a.arch"\ninput 3x32x32\nrelu\n',
        files={"a.arch": b'use "b.arch"\nblock x() { relu }\n', "b.arch": b'use "a.arch"\nblock y() { relu }\n'})
    chain = {f"f{i}.arch": (f'use "f{i + 1}.arch"\n' if i < 999 else "") + f"block b{i}() {{ relu }}\n" for i in range(1000)}
    add("use chain of 1000 files", 'use "f0.arch"\ninput 3x32x32\nb999()\n',
        files={k: v.encode() for k, v in chain.items()})
    add("FIFO as the main file", b"", special="fifo")
    add("symlink loop as the main file", b"", special="symlink_loop")
    add("use of a symlink loop", 'use "loop.arch"\ninput 3x32x32\nrelu\n', special="use_symlink_loop")
    return H


# ---------------------------------------------------------------- running
def cli_argv(cmd: str, path: str, tmp: str) -> list[str]:
    return {
        "check": ["check", path],
        "check-json": ["check", "--format", "json", path],
        "summary": ["summary", path],
        "explain": ["explain", path],
        "fmt": ["fmt", "-"],
        "graph": ["graph", "--format", "dot", path],
        "compile": ["compile", path, "-o", os.path.join(tmp, "net.py")],
    }[cmd]


API_CODE = r"""
import json, sys
from pathlib import Path
import archspec
src = sys.argv[1]
src = Path(src) if sys.argv[2] == "path" else Path(src).read_text(encoding="utf-8", errors="surrogateescape")
try:
    r = archspec.check(src, classes=None)
except archspec.ArchspecError as e:  # a documented error (e.g. a path that is not UTF-8 text): not a crash
    print("API-RESULT " + json.dumps({"usage_error": str(e)[:200]}))
    sys.exit(1)
res = {"ok": r.ok, "buildable": r.buildable, "codes": sorted(d.code for d in r.diagnostics), "out": list(r.output_shape) if r.output_shape else None}
rows = r.to_dict()["layers"]
small = r.ok and r.input_shape is not None and r.params < 3_000_000 and all(
    (x["output_shape"] is None) or (__import__("math").prod(x["output_shape"]) < 2_000_000) for x in rows) and len(rows) < 3000
res["small"] = small
if small or not r.buildable:
    import torch
    torch.set_num_threads(1)
    try:
        m = archspec.build(src, classes=None)
        res["built"] = True
    except archspec.ArchError as e:
        res["built"] = False
        res["build_error"] = str(e)[:200]
    if res["built"] and small:
        m.eval()
        with torch.no_grad():
            y = m(torch.zeros(2, *r.input_shape))
        res["fwd"] = list(y.shape[1:])
print("API-RESULT " + json.dumps(res))
"""


def set_limits(mem_bytes: int | None, timeout: float, hard_mem: int | None = None) -> None:
    if mem_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (mem_bytes, max(mem_bytes, hard_mem or 0)))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    signal.setitimer(signal.ITIMER_REAL, timeout)


def wait_child(pid: int, timeout: float) -> tuple[int | None, int | None, int, bool]:
    """(exit code, signal, maxrss KiB, killed here after timeout). Waits on a pidfd: no polling latency."""
    deadline = time.monotonic() + timeout + 3
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None
    try:
        delay = 0.0005
        while True:
            wpid, status, ru = os.wait4(pid, os.WNOHANG)
            if wpid:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except OSError:
                    os.kill(pid, signal.SIGKILL)
                _, status, ru = os.wait4(pid, 0)
                return None, signal.SIGKILL, ru.ru_maxrss, True
            if pidfd is not None:
                select.select([pidfd], [], [], left)
            else:
                time.sleep(delay)
                delay = min(delay * 2, 0.01)
    finally:
        if pidfd is not None:
            os.close(pidfd)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return None, sig, ru.ru_maxrss, sig == signal.SIGALRM
    return os.WEXITSTATUS(status), None, ru.ru_maxrss, False


def _cli(argv):
    from archspec.cli import main
    return main(argv)


def _api(path, mode):
    saved, sys.argv = sys.argv, ["api", path, mode]
    try:
        exec(compile(API_CODE, "<api>", "exec"), {"__name__": "__api__"})
    finally:
        sys.argv = saved
    return 0


def _peak_kib() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _reset_peak() -> None:
    """Reset VmHWM so the peak RSS read after a step is that step's own (Linux clear_refs 5)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _run_step_in_child(step: dict, status_fd: int, mem: int, api_mem: int, timeout: float) -> int:
    """Run one step in this (forked) process with its own fds 0-2, cwd, rlimit and timer; its rc."""
    if step.get("needs_fmt"):
        fmt_out = step["needs_fmt"]
        if not os.path.exists(fmt_out + ".ok"):
            os.write(status_fd, f"{step['i']} SKIP\n".encode())
            return 0
        if step.get("write_fmt_to"):
            shutil.copyfile(fmt_out, step["write_fmt_to"])
    os.write(status_fd, f"{step['i']} START\n".encode())
    fd_in = os.open(step["stdin"] or os.devnull, os.O_RDONLY)
    fd_o = os.open(step["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    fd_e = os.open(step["err"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    for fd, target in ((fd_in, 0), (fd_o, 1), (fd_e, 2)):
        os.dup2(fd, target)
        os.close(fd)
    # multiprocessing gives pool workers /dev/null as sys.stdin: rebuild the three streams on fds 0-2
    # with the encoding and error handler the interpreter gave the real process's stdin
    sys.stdin = open(0, "r", encoding=STDIN_ENC[0], errors=STDIN_ENC[1], closefd=False)
    sys.stdout = open(1, "w", encoding=STDOUT_ENC[0], errors=STDOUT_ENC[1], closefd=False)
    sys.stderr = open(2, "w", encoding=STDOUT_ENC[0], errors="backslashreplace", closefd=False)
    os.chdir(step["cwd"])
    is_api = step["cmd"] == "api"
    resource.setrlimit(resource.RLIMIT_AS, (api_mem if is_api else mem, api_mem))
    _reset_peak()
    t0 = time.monotonic()
    signal.setitimer(signal.ITIMER_REAL, timeout * (2 if is_api else 1))
    crashed = False
    try:
        rc = _api(*step["api"]) if is_api else _cli(step["argv"])
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        traceback.print_exc()
        rc, crashed = 70, True
    signal.setitimer(signal.ITIMER_REAL, 0)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        pass
    rc = rc if isinstance(rc, int) else 1
    if step["cmd"] == "fmt" and rc == 0:
        open(step["out"] + ".ok", "w").close()
    os.write(status_fd, f"{step['i']} END {rc} {_peak_kib()} {time.monotonic() - t0:.4f}\n".encode())
    return -1 if crashed else rc


def run_batch(steps: list[dict], tmp: str) -> dict[int, tuple]:
    """Run the steps in forked children, as many per fork as run cleanly: a child runs them in order and
    stops after a step that raised; a child that dies (timer, signal, memory) is blamed on the step it was in.
    Each step keeps its own time limit, RLIMIT_AS and peak RSS. {i: (rc, sig, rss KiB, timed out, secs)}."""
    st = Worker.state
    results: dict[int, tuple] = {}
    status_path = os.path.join(tmp, "status")
    todo = list(steps)
    while todo:
        sys.stdout.flush()
        sys.stderr.flush()
        status_fd = os.open(status_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND)
        pid = os.fork()
        if pid == 0:  # child
            code = 0
            try:
                os.setpgid(0, 0)
                resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
                signal.signal(signal.SIGALRM, signal.SIG_DFL)
                for step in todo:
                    if _run_step_in_child(step, status_fd, st["mem"], st["api_mem"], st["timeout"]) == -1:
                        break
            except BaseException:
                code = 71
            finally:
                os._exit(code)
        os.close(status_fd)
        budget = sum(st["timeout"] * (2 if s["cmd"] == "api" else 1) for s in todo)
        rc, sig, rss, to = wait_child(pid, budget)
        started = None
        for line in Path(status_path).read_text().splitlines():
            f = line.split()
            i = int(f[0])
            if f[1] == "START":
                started = i
            elif f[1] == "END":
                results[i] = (int(f[2]), None, int(f[3]), False, float(f[4]))
                started = None
            else:
                results[i] = None  # skipped: fmt failed, nothing to check
        if started is not None:  # the child died inside this step
            results[started] = (rc, sig, rss, to, 0.0)
        elif (rc != 0 or sig is not None) and not any(s["i"] in results for s in todo):
            # died before its first step (should not happen): blame that step rather than loop forever
            results[todo[0]["i"]] = (rc if rc else 71, sig, rss, to, 0.0)
        todo = [s for s in todo if s["i"] not in results]
    return results


def run_exec(argv, timeout, mem, stdin_path, tmp, cwd):
    outp, errp = os.path.join(tmp, "stdout"), os.path.join(tmp, "stderr")
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    t0 = time.monotonic()
    with open(outp, "wb") as fo, open(errp, "wb") as fe, open(stdin_path or os.devnull, "rb") as fi:
        p = subprocess.Popen(argv, stdin=fi, stdout=fo, stderr=fe, env=env, cwd=cwd, start_new_session=True,
                             preexec_fn=lambda: set_limits(mem, timeout))
        rc, sig, rss, to = wait_child(p.pid, timeout)
        p.returncode = rc if rc is not None else -(sig or 9)
    return rc, sig, rss, to, time.monotonic() - t0


class Worker:
    state: dict = {}
    base: str | None = None  # the campaign's temporary directory, removed at its end


def _warm_up(commands: list[str]) -> None:
    """Run every command once in this worker so that each fork starts warm: lazy imports (build() imports
    torchvision, 1.5 s), lark's parser, torch's first forward pass. Without this every forked run paid them."""
    import contextlib
    import io
    warm = tempfile.mkdtemp(prefix="warm-", dir=Worker.base)
    for ex in ("lenet.arch", "resnet18_cifar.arch", "uses_blocks.arch", "broken/linear_on_4d.arch"):
        src = ROOT / "examples" / ex
        if not src.exists():
            continue
        for cmd in commands:
            sink = io.StringIO()
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                try:
                    if cmd == "api":
                        _api(str(src), "path")
                    else:
                        argv = cli_argv(cmd, str(src), warm)
                        _cli(["fmt", "--check", str(src)] if cmd == "fmt" else argv)  # never rewrite an example
                except BaseException:  # noqa: BLE001 - a warm-up problem shows up again in the real runs
                    pass
    shutil.rmtree(warm, ignore_errors=True)


def worker_init(commands, timeout, mem_extra, api_extra, ops=(), base=None):
    import gc
    import archspec  # noqa: F401
    import archspec.cli  # noqa: F401
    # Both layouts: the flat one (archspec.summary, ...) and the refactored packages.
    for m in ("archspec.summary", "archspec.explain", "archspec.fmt", "archspec.graph", "archspec.codegen",
              "archspec.views.summary", "archspec.views.explain", "archspec.views.fmt", "archspec.views.graph",
              "archspec.pytorch.codegen"):
        try:
            __import__(m)
        except ImportError:
            pass
    if "api" in commands:
        import torch  # noqa: F401
        torch.set_num_threads(1)
        for m in ("archspec.compile", "archspec.pytorch.build"):
            try:
                __import__(m)
            except ImportError:
                pass
    Worker.base = base
    _warm_up(commands)
    # Objects made so far are never collected in the children: their refcount pages stay shared after fork.
    gc.collect()
    gc.freeze()
    vm = int([l for l in open("/proc/self/status") if l.startswith("VmSize")][0].split()[1]) * 1024
    Worker.state = dict(commands=commands, timeout=timeout, mem=vm + mem_extra, api_mem=vm + api_extra,
                        tmp=tempfile.mkdtemp(prefix="worker-", dir=base), vm=vm, ops=list(ops))


def prepare(case: Case, d: str, fd: str) -> tuple[str, str | None]:
    """Write the case under d, and the same other files under fd (where fmt's output of main.arch goes, under
    the same name, so that relative `use` and `use "main.arch"` resolve alike); return (main path, stdin path)."""
    for x in (d, fd):
        shutil.rmtree(x, ignore_errors=True)
        os.makedirs(x)
    for x in (d, fd):
        shutil.copy(ROOT / "examples" / "blocks.arch", os.path.join(x, "blocks.arch"))
        for rel, data in (case.get("files") or {}).items():
            Path(x, rel).write_bytes(data)
    main = os.path.join(d, "main.arch")
    sp = case.get("special")
    if sp == "fifo":
        os.mkfifo(main)
    elif sp == "symlink_loop":
        os.symlink("loop2.arch", main)
        os.symlink("main.arch", os.path.join(d, "loop2.arch"))
    else:
        Path(main).write_bytes(case["text"])
        if sp == "use_symlink_loop":
            for x in (d, fd):
                os.symlink("loop.arch", os.path.join(x, "loop.arch"))
    stdin = os.path.join(d, "stdin.bin")
    Path(stdin).write_bytes(case.get("stdin") if sp == "stdin" else case["text"])
    if sp == "stdin":
        main = "-"
    return main, stdin


def classify(rc, sig, rss, to, out, err, mem_kib_limit) -> tuple[str, str] | None:
    """(kind, signature) of a failure, or None."""
    text = err.decode("utf-8", "replace")
    if to:
        return "hang", "timeout"
    if "MemoryError" in text or "bad_alloc" in text or "Cannot allocate memory" in text or \
            (sig is not None and sig in (signal.SIGKILL,)) or rss > mem_kib_limit:
        last = text.strip().splitlines()[-1] if text.strip() else f"signal {sig}"
        return "over-memory", last[:160]
    if sig is not None:
        return "crash", f"killed by signal {signal.Signals(sig).name}"
    if "Traceback (most recent call last)" in text or rc not in (0, 1, 2):
        lines = [l for l in text.strip().splitlines() if l.strip()]
        exc = next((l for l in reversed(lines) if re.match(r"^[\w.]+(Error|Exception|Exit|Interrupt|Warning)\b", l)),
                   lines[-1] if lines else f"exit {rc}")
        frames = re.findall(r'File "([^"]*archspec[^"]*)", line \d+, in (\w+)', text)
        where = f" [at {Path(frames[-1][0]).name}:{frames[-1][1]}]" if frames else ""
        exc = re.sub(r"0x[0-9a-f]{2}", "0x..", exc)
        exc = re.sub(r"/tmp/\S+", "PATH", exc)
        exc = re.sub(r"\d{2,}", "N", exc)
        return "crash", f"{exc[:160]}{where}" + ("" if "Traceback" in text else f" (exit {rc})")
    return None


def layers_of(check_json: bytes):
    try:
        d = json.loads(check_json)
        f = d["files"][0]
        return ([(l["op"], l["output_shape"], l["params"]) for l in f["layers"]],
                sorted(x["code"] for x in f["diagnostics"]), f["ok"])
    except Exception:
        return None


def plan(case: Case, main: str, stdin: str, d: str, fd: str, runtmp: str) -> list[dict]:
    """The runs for one input: every command, then fmt's two oracles (they need fmt's output), the API last
    (it runs under the larger memory limit and leaves torch's allocations behind)."""
    commands = Worker.state["commands"]
    sp = case.get("special")
    fmt_checked = "fmt" in commands and sp not in ("fifo", "symlink_loop")
    steps: list[dict] = []

    def add(cmd, **kw):
        i = len(steps)
        step = dict(i=i, cmd=cmd, out=os.path.join(runtmp, f"{i}.out"), err=os.path.join(runtmp, f"{i}.err"),
                    stdin=stdin, cwd=d)
        step.update(kw)
        steps.append(step)
        return step

    fmt_out = None
    for cmd in commands:
        if cmd == "api":
            continue
        argv = cli_argv(cmd, main, runtmp)
        if cmd == "fmt" and not fmt_checked:
            argv = ["fmt", main, "--check"]
        s = add(cmd, argv=argv)
        if cmd == "fmt" and fmt_checked:
            fmt_out = s["out"]
    if fmt_out is not None:
        add("fmt-idempotent", argv=["fmt", "-"], stdin=fmt_out, needs_fmt=fmt_out)
        if "check-json" in commands:
            # the same check as check-json on fmt's output, saved as main.arch beside the same other files and
            # with the same stdin (`use "/dev/stdin"`); for a main file read from stdin, fmt's output on stdin
            if main == "-":
                add("fmt-meaning", argv=["check", "--format", "json", "-"], stdin=fmt_out, cwd=fd, needs_fmt=fmt_out)
            else:
                add("fmt-meaning", argv=["check", "--format", "json", os.path.join(fd, "main.arch")], cwd=fd,
                    needs_fmt=fmt_out, write_fmt_to=os.path.join(fd, "main.arch"))
    if "api" in commands:
        add("api", api=(main if main != "-" else stdin, "path" if case["part"] == "hostile" else "text"), stdin=None)
    if case["part"] == "hostile":
        # and through the real console script in its own process (its stdin/stdout encodings, its imports)
        for cmd in ("check", "fmt"):
            if cmd in commands:
                argv = next(s["argv"] for s in steps if s["cmd"] == cmd)
                add(f"{cmd} (console script)", argv=argv, exec=True)
    return steps


def run_exec_steps(steps: list[dict], runtmp: str) -> dict[int, tuple]:
    """Each step in a new process: the real console script (`python -c` for the API) under the same limits."""
    st = Worker.state
    T = st["timeout"]
    results: dict[int, tuple] = {}
    fmt_ok = False
    for s in steps:
        if s.get("needs_fmt"):
            if not fmt_ok:
                results[s["i"]] = None
                continue
            if s.get("write_fmt_to"):
                shutil.copyfile(s["needs_fmt"], s["write_fmt_to"])
        if s["cmd"] == "api":
            r = run_exec([sys.executable, "-c", API_CODE, *s["api"]], T * 2, st["api_mem"], None, runtmp, s["cwd"])
        else:
            r = run_exec([sys.executable, "-c", "import sys; from archspec.cli import main; sys.exit(main())",
                          *s["argv"]], T, st["mem"], s["stdin"], runtmp, s["cwd"])
        shutil.move(os.path.join(runtmp, "stdout"), s["out"])
        shutil.move(os.path.join(runtmp, "stderr"), s["err"])
        results[s["i"]] = r
        if s["cmd"] == "fmt":
            fmt_ok = r[0] == 0
    return results


def judge(step: dict, r: tuple, out: bytes, err: bytes, outs: dict[str, bytes]) -> dict:
    """One run's record: a failure kind and signature when an oracle fails."""
    st = Worker.state
    rc, sig, rss, to, secs = r
    mem = st["api_mem"] if step["cmd"] == "api" else st["mem"]
    res = dict(cmd=step["cmd"], rc=rc, sig=sig, rss=rss, secs=secs)
    fail = classify(rc, sig, rss, to, out, err, mem // 1024)
    if fail:
        res["kind"], res["sig_"] = fail
        res["stderr"] = err.decode("utf-8", "replace")[-3000:]
        return res
    cmd = step["cmd"]
    if cmd == "api":
        m = re.search(rb"API-RESULT (.*)", out)
        if m:
            a = json.loads(m.group(1))
            if a.get("built") is not None and a["built"] != a["buildable"]:
                res["kind"], res["sig_"] = "oracle", ("build() succeeded although check() has errors " + str(a["codes"])
                                                    if a["built"] else "build() failed although check() passed: "
                                                    + re.sub(r"\d+", "N", a.get("build_error", ""))[:100])
            elif a.get("fwd") is not None and a["fwd"] != a["out"]:
                res["kind"], res["sig_"] = "oracle", "forward output shape differs from the checker's"
                res["stderr"] = f"checker {a['out']}, forward {a['fwd']}"
    elif cmd == "fmt-idempotent":
        if rc != 0:
            res["kind"], res["sig_"] = "oracle", f"fmt output does not fmt again (exit {rc})"
            res["stderr"] = err.decode("utf-8", "replace")[-1500:]
        elif out != outs["fmt"]:
            res["kind"], res["sig_"] = "oracle", "fmt not idempotent: fmt(fmt(x)) != fmt(x)"
    elif cmd == "fmt-meaning":
        a, b = layers_of(outs.get("check-json", b"")), layers_of(out)
        if a is not None and b is not None and a != b:
            res["kind"] = "oracle"
            if a[0] != b[0]:
                res["sig_"] = "fmt changes the meaning: layers/shapes/params differ"
            else:
                res["sig_"] = f"fmt changes the diagnostics: {sorted(set(a[1]) ^ set(b[1]))}"
            res["stderr"] = f"before: {a[1]} ok={a[2]}\nafter:  {b[1]} ok={b[2]}\nfmt output:\n" + \
                outs["fmt"].decode("utf-8", "replace")[:600]
    return res


def run_case(case: Case) -> list[dict]:
    """Every command on one input (plus fmt's oracles); one record per run."""
    st = Worker.state
    tmp = st["tmp"]
    d, fd, runtmp = (os.path.join(tmp, x) for x in ("case", "fmtcase", "run"))
    shutil.rmtree(runtmp, ignore_errors=True)
    os.makedirs(runtmp)
    main, stdin = prepare(case, d, fd)
    steps = plan(case, main, stdin, d, fd, runtmp)
    got = run_batch([s for s in steps if not s.get("exec")], runtmp)
    got.update(run_exec_steps([s for s in steps if s.get("exec")], runtmp))
    outs: dict[str, bytes] = {}
    results = []
    for s in steps:
        r = got.get(s["i"])
        if r is None:  # skipped: fmt did not succeed, so its oracles have nothing to check
            continue
        out = Path(s["out"]).read_bytes() if os.path.exists(s["out"]) else b""
        err = Path(s["err"]).read_bytes() if os.path.exists(s["err"]) else b""
        if r[0] in (0, 1) and s["cmd"] in ("check-json", "fmt"):
            outs[s["cmd"]] = out
        res = judge(s, r, out, err, outs)
        res.update(part=case["part"], name=case["name"])
        results.append(res)
    return results


def still_fails(case_text: bytes, cmd: str, sig_: str) -> bool:
    c = Case(part="min", name="min", text=case_text)
    st = Worker.state
    saved = st["commands"]
    st["commands"] = [cmd] if cmd in ALL_COMMANDS else ["check-json", "fmt"]
    try:
        res = run_case(c)
    finally:
        st["commands"] = saved
    return any(r.get("sig_") == sig_ for r in res)


def minimize(args) -> bytes:
    text, cmd, sig_, budget = args
    t_end = time.monotonic() + budget
    for unit in ("lines", "tokens"):
        changed = True
        while changed and time.monotonic() < t_end:
            changed = False
            parts = text.splitlines(keepends=True) if unit == "lines" else TOKEN_RE.findall(text)
            chunk = max(1, len(parts) // 2)
            while chunk >= 1 and time.monotonic() < t_end:
                i = 0
                while i < len(parts) and time.monotonic() < t_end:
                    cand = parts[:i] + parts[i + chunk:]
                    if cand and still_fails(b"".join(cand), cmd, sig_):
                        parts = cand
                        changed = True
                    else:
                        i += chunk
                chunk //= 2
            text = b"".join(parts)
    return text


# ---------------------------------------------------------------- main
# ---------------------------------------------------------------- the language server (--parts lsp)
LSP_METHODS = ["textDocument/hover", "textDocument/completion", "textDocument/definition", "textDocument/inlayHint",
               "textDocument/documentSymbol", "textDocument/codeAction", "textDocument/formatting"]
LSP_ALLOWED_ERRORS = {-32602, -32803, -32700, -32600, -32601}  # invalid params, unreadable file, bad frame, not a method
_ODD_BREAKS = re.compile("[\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")  # line breaks to str.splitlines, not to LSP
LSP_HOSTILE_POSITIONS = [(-1, 0), (0, -1), (2**31, 0), (0, 2**31), (2**31 - 1, 2**31 - 1), (10**6, 5)]


class LspSession:
    """`archspec lsp` in a subprocess under RLIMIT_AS, spoken to in raw frames from this process: a
    reader thread files every message (replies by id, diagnostics by uri) with its arrival time."""

    def __init__(self, mem_limit: int, cwd: str) -> None:
        import threading

        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen([sys.executable, "-m", "archspec", "lsp"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env, cwd=cwd,
                                     preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (mem_limit, mem_limit)))
        self.replies: dict[object, tuple[dict, float]] = {}
        self.diagnostics: dict[str, tuple[dict, float]] = {}
        self.odd: list[dict] = []  # error replies with no id (to bad frames), and anything unexpected
        self.cond = threading.Condition()
        self.stderr = b""
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        self.next_id = 0

    def _drain_stderr(self) -> None:
        for line in self.proc.stderr:  # type: ignore[union-attr]
            self.stderr = (self.stderr + line)[-20000:]

    def _read(self) -> None:
        buf = b""
        fd = self.proc.stdout.fileno()  # type: ignore[union-attr]
        while True:
            head, sep, rest = buf.partition(b"\r\n\r\n")
            m = re.search(rb"Content-Length: (\d+)", head)
            if sep and m and len(rest) >= int(m.group(1)):
                n = int(m.group(1))
                message, buf = json.loads(rest[:n]), rest[n:]
                with self.cond:
                    if message.get("method") == "textDocument/publishDiagnostics":
                        self.diagnostics[message["params"]["uri"]] = (message, time.monotonic())
                    elif message.get("id") is not None and "method" not in message:
                        self.replies[message["id"]] = (message, time.monotonic())
                    elif "error" in message:
                        self.odd.append(message)
                    self.cond.notify_all()
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                with self.cond:
                    self.cond.notify_all()
                return
            buf += chunk

    def send(self, data: "bytes | dict") -> None:
        if isinstance(data, dict):
            body = json.dumps({"jsonrpc": "2.0", **data}).encode("utf-8", "surrogatepass")
            data = b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        try:
            self.proc.stdin.write(data)  # type: ignore[union-attr]
            self.proc.stdin.flush()  # type: ignore[union-attr]
        except OSError:  # the server is gone: the next wait says so, and the campaign starts another
            pass

    def request(self, method: str, params: object) -> int:
        self.next_id += 1
        self.send({"id": self.next_id, "method": method, "params": params})
        return self.next_id

    def wait(self, predicate, timeout: float):
        deadline = time.monotonic() + timeout
        with self.cond:
            while (got := predicate()) is None:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    return None
                self.cond.wait(min(left, 0.2))
            return got

    def reply(self, msg_id: int, timeout: float) -> "tuple[dict, float] | None":
        return self.wait(lambda: self.replies.pop(msg_id, None), timeout)

    def peak_mib(self) -> float:
        try:
            status = Path(f"/proc/{self.proc.pid}/status").read_text()
            return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]
        except (OSError, AttributeError):
            return 0.0

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def lsp_documents(seed: int, max_bytes: int) -> Iterator[tuple[str, str, dict[str, bytes]]]:
    """(name, text, files beside it): hostile cases (the CLI's, plus `use` of devices and a FIFO), and
    mutated examples, interleaved."""
    hostile = [(c["name"], c["text"].decode("utf-8", "replace"), c.get("files") or {}) for c in hostile_cases()
               if not c.get("special")]
    hostile += [('use "/dev/urandom"', 'use "/dev/urandom"\ninput 3x32x32\nrelu\n', {}),
                ('use "fifo.arch" (a FIFO)', 'use "fifo.arch"\ninput 3x32x32\n\nrelu\n', {}),
                ('use "big.arch" (2 MiB)', 'use "big.arch"\ninput 3x32x32\nrelu\n', {"big.arch": b"# x\n" * (1 << 19)}),
                ("20,000 relu lines", "input 3x32x32\n" + "relu\n" * 20000 + "flatten\nlinear 10\n", {}),
                ("lone surrogate", "input 3x32x32\nconv 8 k3 \ud800\n", {})]
    rng = random.Random(seed)
    srcs = [p.read_bytes() for p in EXAMPLES]
    names = [p.relative_to(ROOT).as_posix() for p in EXAMPLES]
    pool = sorted({t for s in srcs for t in TOKEN_RE.findall(s) if t.strip()})
    for k in itertools.count():
        if k % 3 == 0 and hostile:
            yield hostile.pop(0)
            continue
        j = rng.randrange(len(srcs))
        text = mutate(srcs[j], rng, pool)[:max_bytes]
        yield f"mutation#{k} of {names[j]}", text.decode("utf-8", "replace"), {}


def _lsp_position(rng: random.Random, lines: list[str], hostile: bool) -> tuple[int, int]:
    if hostile:
        return rng.choice(LSP_HOSTILE_POSITIONS)
    line = rng.randrange(len(lines) + 2)
    width = len(lines[line]) if line < len(lines) else 0
    return line, rng.randrange(width + 3)


def _lsp_params(method: str, uri: str, line: int, character: int) -> dict:
    doc = {"uri": uri}
    where = {"line": line, "character": character}
    if method == "textDocument/inlayHint":
        return {"textDocument": doc, "range": {"start": {"line": 0, "character": 0}, "end": where}}
    if method == "textDocument/codeAction":
        return {"textDocument": doc, "range": {"start": where, "end": where}, "context": {"diagnostics": []}}
    if method == "textDocument/documentSymbol":
        return {"textDocument": doc}
    if method == "textDocument/formatting":
        return {"textDocument": doc, "options": {"tabSize": 2, "insertSpaces": True}}
    return {"textDocument": doc, "position": where}


def _lsp_edit(rng: random.Random, text: str, pool: list[bytes]) -> tuple[dict, str]:
    """A random in-range incremental change (a token in, a stretch out), and the text after it."""
    lines = text.split("\n")
    a = rng.randrange(len(lines))
    b = min(len(lines) - 1, a + rng.choice([0, 0, 0, 1, 3]))
    ca = rng.randrange(len(lines[a]) + 1)
    cb = rng.randrange(len(lines[b]) + 1) if b > a else rng.randrange(ca, len(lines[a]) + 1)
    new = rng.choice([rng.choice(pool).decode("utf-8", "replace"), rng.choice(INTERESTING).decode("utf-8", "replace"), "", "\n"])
    start = sum(len(l) + 1 for l in lines[:a]) + ca
    end = sum(len(l) + 1 for l in lines[:b]) + cb
    change = {"range": {"start": {"line": a, "character": ca}, "end": {"line": b, "character": cb}}, "text": new}
    return change, text[:start] + new + text[end:]


def _lsp_codes(text: str, path: str) -> list[str]:
    from archspec.language.pipeline import checked

    return sorted(str(d.code) for d in checked(text, name=path).diagnostics)


def lsp_campaign(a) -> int:
    """Random documents and edit storms through a real client (raw frames over the server's stdio),
    with bad frames and hostile positions mixed in. Oracles: every request answered within --timeout,
    with a result or an allowed error code (never -32603, never a traceback); the server alive; its peak
    RSS under --mem-gb; after each storm, the diagnostics of the last version published, and (for a
    document with no `use`) the same codes `check` gives for the text the client holds (incremental sync)."""
    rng = random.Random(a.seed)
    t_start = time.monotonic()
    load_start = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="archspec-fuzz-lsp-"))
    os.mkfifo(work / "fifo.arch")
    (work / "blocks.arch").write_bytes((ROOT / "examples" / "blocks.arch").read_bytes())
    pool = sorted({t for p in EXAMPLES for t in TOKEN_RE.findall(p.read_bytes()) if t.strip()})
    limit_mib = a.mem_gb * 1024
    stats: dict[str, int] = defaultdict(int)
    latencies: dict[str, list[float]] = defaultdict(list)
    failures: list[dict] = []
    peak = 0.0
    docs = lsp_documents(a.seed, a.max_bytes)
    session: LspSession | None = None

    def fail(kind: str, what: str, name: str) -> None:
        failures.append({"kind": kind, "what": what, "doc": name})
        print(f"  failure: {kind}: {what} ({name})", flush=True)

    def fresh() -> LspSession:
        s = LspSession(int(GIB * (a.mem_gb + 2)), str(work))  # RLIMIT_AS a backstop; the oracle is the peak RSS
        i = s.request("initialize", {"capabilities": {}, "rootUri": work.as_uri()})
        if s.reply(i, 60) is None:
            raise RuntimeError("archspec lsp did not start: " + s.stderr.decode(errors="replace")[-2000:])
        s.send({"method": "initialized", "params": {}})
        return s

    def ask(s: LspSession, method: str, params: object, name: str, invalid: bool = False) -> None:
        started = time.monotonic()
        got = s.reply(s.request(method, params), a.timeout)
        stats["requests"] += 1
        if got is None:
            fail("hang" if s.proc.poll() is None else "crash", f"{method}: no answer in {a.timeout:g} s", name)
            return
        message, at = got
        latencies[method].append(at - started)
        text = json.dumps(message)
        error = message.get("error")
        if "Traceback" in text or 'File "' in text:
            fail("crash", f"{method}: a Python traceback in the reply", name)
        elif error and error.get("code") not in LSP_ALLOWED_ERRORS:
            fail("crash", f"{method}: error {error.get('code')}: {str(error.get('message'))[:120]}", name)
        elif invalid and (not error or error["code"] != -32602):
            fail("oracle", f"{method}: a position out of range was not answered -32602", name)

    try:
        while time.monotonic() - t_start < a.seconds and not (a.runs and stats["documents"] >= a.runs):
            if session is None or session.proc.poll() is not None:
                if session is not None:
                    fail("crash", f"the server exited ({session.proc.returncode}): "
                         + session.stderr.decode(errors="replace")[-300:].replace("\n", " | "), "?")
                session = fresh()
                stats["sessions"] += 1
            name, text, files = next(docs)
            for rel, data in files.items():
                (work / rel).write_bytes(data)
            stats["documents"] += 1
            uri = (work / f"doc{stats['documents']}.arch").as_uri()
            version = 1
            opened = time.monotonic()
            session.send({"method": "textDocument/didOpen",
                          "params": {"textDocument": {"uri": uri, "languageId": "archspec", "version": 1, "text": text}}})
            plain = not _ODD_BREAKS.search(text)  # the client splits lines as LSP says; pygls splits on \f, \x1c... too
            # A large document costs a check per edit (1-2 s for 80 KB): a short storm, or the replies queue past --timeout.
            for step in range(rng.choice([5, 10, 20, 40]) if len(text) < 20_000 else 3):
                r = rng.random()
                if r < 0.45:  # an edit: a storm sends many before any check is due
                    change, text = _lsp_edit(rng, text, pool)
                    plain = plain and not _ODD_BREAKS.search(change["text"])
                    version += 1
                    session.send({"method": "textDocument/didChange", "params": {
                        "textDocument": {"uri": uri, "version": version}, "contentChanges": [change]}})
                    stats["edits"] += 1
                elif r < 0.9:
                    hostile = rng.random() < 0.1
                    line, character = _lsp_position(rng, text.split("\n"), hostile)
                    method = rng.choice(LSP_METHODS)
                    invalid = hostile and not (0 <= line < 2**31 and 0 <= character < 2**31) and "position" in str(
                        _lsp_params(method, uri, 0, 0)) + str(method in ("textDocument/inlayHint", "textDocument/codeAction"))
                    ask(session, method, _lsp_params(method, uri, line, character), name, invalid)
                else:  # a frame no client should send; the server must answer the next request as usual
                    session.send(rng.choice([b'Content-Length: 400\r\n\r\n{"jsonrpc": "2.0"}', b"Content-Length: 4\r\n\r\n[1]\n",
                                             b"Content-Length: 3\r\n\r\n{{{", b"garbage\r\n\r\n",
                                             b'Content-Length: 60\r\n\r\n{"jsonrpc": "2.0", "id": "x", "method": "textDocument/hover"}']))
                    stats["bad frames"] += 1
            # the storm is over: the last version's diagnostics must come, and agree with `check`
            final = version
            got = session.wait(lambda: (session.diagnostics.get(uri) if session.diagnostics.get(uri, ({}, 0))[0]
                                        .get("params", {}).get("version") == final else None), a.timeout)
            if got is None:
                fail("hang" if session.proc.poll() is None else "crash", f"no diagnostics for version {final}", name)
            else:
                latencies["open or last edit -> diagnostics"].append(got[1] - opened)
                if "use" not in text and plain:
                    served = sorted(str(d.get("code")) for d in got[0]["params"]["diagnostics"])
                    expected = _lsp_codes(text, str(work / f"doc{stats['documents']}.arch"))
                    if served != expected:
                        fail("oracle", f"the diagnostics differ from `check` on the client's text: {served} != {expected} "
                             f"for {text[:300]!r}", name)
            session.send({"method": "textDocument/didClose", "params": {"textDocument": {"uri": uri}}})
            peak = max(peak, session.peak_mib())
            if session.peak_mib() > limit_mib:
                fail("over-memory", f"peak RSS {session.peak_mib():,.0f} MiB", name)
                session.close()
                session = None
            if stats["documents"] % 25 == 0:
                print(f"  {stats['documents']} documents, {stats['requests']} requests, {len(failures)} failures, "
                      f"{time.monotonic() - t_start:.0f} s", flush=True)
    finally:
        if session is not None:
            peak = max(peak, session.peak_mib())
            session.close()
        shutil.rmtree(work, ignore_errors=True)
    elapsed = time.monotonic() - t_start
    return _lsp_report(a, stats, latencies, failures, peak, elapsed, load_start)


def _lsp_report(a, stats, latencies, failures, peak, elapsed, load_start) -> int:
    def pct(xs: list[float], q: float) -> float:
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000 if xs else 0.0

    by_kind = defaultdict(int)
    for f in failures:
        by_kind[f["kind"]] += 1
    L = ["# Fuzz campaign: the language server (`--parts lsp`)", "",
         f"Machine: {machine()}; Python {sys.version.split()[0]}; load average (1/5/15 min) at the start "
         f"{'/'.join(f'{x:.1f}' for x in load_start)}, at the end {'/'.join(f'{x:.1f}' for x in os.getloadavg())}",
         f"Run: {time.strftime('%Y-%m-%d %H:%M:%S')}; `python benchmarks/fuzz.py {' '.join(sys.argv[1:])}`; seed {a.seed}; "
         f"{elapsed:.0f} s; limits: {a.timeout:g} s per reply, peak RSS {a.mem_gb:g} GB", "",
         "| documents | edits | requests | bad frames | server starts | crashes | hangs | over-memory | oracle failures | peak RSS |",
         "|---|---|---|---|---|---|---|---|---|---|",
         f"| {stats['documents']} | {stats['edits']} | {stats['requests']} | {stats['bad frames']} | {stats['sessions']} | "
         f"{by_kind['crash']} | {by_kind['hang']} | {by_kind['over-memory']} | {by_kind['oracle']} | {peak:,.0f} MiB |", "",
         "| reply | n | median ms | p95 ms | max ms |", "|---|---|---|---|---|"]
    for method, xs in sorted(latencies.items()):
        L.append(f"| {method} | {len(xs)} | {pct(xs, 0.5):.1f} | {pct(xs, 0.95):.1f} | {pct(xs, 1.0):.1f} |")
    if failures:
        L += ["", "## Failures", ""] + [f"- {f['kind']}: {f['what']} ({f['doc']})" for f in failures[:50]]
    text = "\n".join(L) + "\n"
    print(text)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(text)
    print(f"(written to {a.out})")
    return 1 if failures else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=None,
                    help="start no new input after this many runs (a run is one command on one input; the inputs under way "
                         "still finish); default: the time budget")
    ap.add_argument("--seconds", type=float, default=600, help="time budget for the whole campaign (default 600)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--commands", default=",".join(ALL_COMMANDS), help="comma-separated of: " + ", ".join(ALL_COMMANDS))
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=20, help="seconds per run (API: twice this)")
    ap.add_argument("--mem-gb", type=float, default=2, help="RLIMIT_AS above the worker's size, CLI runs (default 2)")
    ap.add_argument("--api-mem-gb", type=float, default=4, help="the same for the API runs with torch (default 4)")
    ap.add_argument("--max-bytes", type=int, default=8192, help="largest mutated input (default 8192)")
    ap.add_argument("--parts", default="hostile,grammar,mutation",
                    help="hostile, grammar, mutation (the CLI and API); or `lsp` alone: the language server through a client "
                         "(--runs counts documents; --mem-gb is its peak RSS limit; results in benchmarks/results/fuzz_lsp.md)")
    a = ap.parse_args()
    if a.parts == "lsp":
        if a.out == DEFAULT_OUT:
            a.out = DEFAULT_OUT.with_name("fuzz_lsp.md")
        return lsp_campaign(a)
    commands = [c for c in a.commands.split(",") if c]
    t_start = time.monotonic()
    load_start = os.getloadavg()
    parts = a.parts.split(",")
    ops = op_names()
    stream = task_stream(parts, a.seed, a.max_bytes)
    print(f"fuzz: {machine()}; {len(ops)} ops; commands {commands}; budget {a.seconds:g} s"
          + (f", {a.runs} runs" if a.runs else ""), flush=True)

    stats = defaultdict(lambda: defaultdict(int))
    failures: list[dict] = []
    base = tempfile.mkdtemp(prefix="archspec-fuzz-")  # every worker's files, removed at the end
    ctx = mp.get_context("fork")
    pool = ctx.Pool(a.workers, initializer=worker_init,
                    initargs=(commands, a.timeout, int(a.mem_gb * GIB), int(a.api_mem_gb * GIB), ops, base))
    done_inputs = done_runs = in_flight = 0
    case_by_name: dict[str, Case] = {}
    seen_sigs: set[tuple[str, str]] = set()
    finished: queue.Queue = queue.Queue()
    deadline = t_start + a.seconds * 0.85  # keep the rest for minimizing
    exhausted = False
    try:
        while True:
            # keep two inputs per worker queued: enough to keep them busy, few enough to stop on time
            while not exhausted and in_flight < 2 * a.workers and not (a.runs and done_runs >= a.runs):
                task = next(stream, None)
                if task is None:
                    exhausted = True
                    break
                pool.apply_async(run_task, (task,), callback=finished.put, error_callback=finished.put)
                in_flight += 1
            remaining = deadline - time.monotonic()
            if in_flight == 0 or remaining <= 0:
                break
            try:
                res = finished.get(timeout=remaining)
            except queue.Empty:
                break
            in_flight -= 1
            if isinstance(res, BaseException):  # a bug in this harness, not in archspec: stop and show it
                raise res
            for case, runs in res:
                done_inputs += 1
                case_by_name[case["name"]] = case
                part = case["part"]
                stats[part]["inputs"] += 1
                for r in runs:
                    done_runs += 1
                    stats[part]["runs"] += 1
                    k = r.get("kind")
                    if k:
                        stats[part][k] += 1
                        failures.append(r)
                        if (k, r["sig_"]) not in seen_sigs:  # say so at once: a long campaign reports at its end
                            seen_sigs.add((k, r["sig_"]))
                            print(f"  new failure: {k}: {r['sig_']} ({r['cmd']} on {case['name']}: "
                                  f"{case['text'][:200]!r})", flush=True)
            if done_inputs // 500 != (done_inputs - len(res)) // 500:
                print(f"  {done_inputs} inputs, {done_runs} runs, {len(failures)} failures, "
                      f"{time.monotonic() - t_start:.0f} s", flush=True)
    finally:
        pool.terminate()
        pool.join()
    t_fuzz = time.monotonic() - t_start

    # group and minimize
    groups: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    for f in failures:
        groups[(f["kind"], f["sig_"], f["cmd"])].append(f)
    # merge the same signature across commands
    by_sig: dict[tuple[str, str], dict] = {}
    for (kind, sig_, cmd), fs in groups.items():
        e = by_sig.setdefault((kind, sig_), {"cmds": defaultdict(int), "fs": []})
        e["cmds"][cmd] += len(fs)
        e["fs"] += fs
    if by_sig:  # the minimizer runs cases here, as a worker does
        worker_init(commands, a.timeout, int(a.mem_gb * GIB), int(a.api_mem_gb * GIB), ops, base)
    min_budget = max(5.0, (t_start + a.seconds - time.monotonic()) / max(1, len(by_sig)))
    report = []
    for (kind, sig_), e in sorted(by_sig.items(), key=lambda kv: (kv[0][0], -len(kv[1]["fs"]))):
        smallest = min(e["fs"], key=lambda f: len(case_by_name[f["name"]]["text"]) if f["name"] in case_by_name else 1e9)
        c = case_by_name.get(smallest["name"])
        repro, minimized = None, False
        if c is not None and c["part"] != "hostile" and len(c["text"]) < 5000 and kind in ("crash", "oracle"):
            try:
                repro = minimize((c["text"], smallest["cmd"], sig_, min(min_budget, 30)))
                minimized = True
            except Exception as exc:  # a minimizer problem must not lose the report
                repro = c["text"]
                print(f"minimize: {exc!r}", file=sys.stderr)
        elif c is not None and c["part"] != "hostile":
            repro = c["text"]
        report.append(dict(kind=kind, sig=sig_, cmds=dict(e["cmds"]), count=len(e["fs"]),
                           parts=sorted({f["part"] for f in e["fs"]}),
                           hostile=sorted({f["name"] for f in e["fs"] if f["part"] == "hostile"}),
                           example=smallest["name"], cmd=smallest["cmd"], repro=repro, minimized=minimized,
                           stderr=smallest.get("stderr", "")))
    t_total = time.monotonic() - t_start

    # output
    L: list[str] = []
    L.append("# Fuzz campaign")
    L.append("")
    load_end = os.getloadavg()
    L.append(f"Machine: {machine()}; Python {sys.version.split()[0]}; load average (1/5/15 min) at the start "
             f"{'/'.join(f'{x:.1f}' for x in load_start)}, at the end {'/'.join(f'{x:.1f}' for x in load_end)} "
             f"(the campaign itself adds about {a.workers}; other jobs on a shared machine lower the throughput)")
    L.append(f"Run: {time.strftime('%Y-%m-%d %H:%M:%S')}; `python benchmarks/fuzz.py {' '.join(sys.argv[1:])}`; "
             f"seed {a.seed}; {a.workers} workers; commands {', '.join(commands)}; limits {a.timeout:g} s per run "
             f"(API {2 * a.timeout:g} s), RLIMIT_AS worker size + {a.mem_gb:g} GB (API + {a.api_mem_gb:g} GB); "
             f"fuzzing {t_fuzz:.0f} s ({done_runs / max(t_fuzz, 1e-9):.1f} runs/s), with minimizing {t_total:.0f} s")
    L.append("")
    L.append("| part | inputs | runs | crashes | hangs | over-memory | oracle failures |")
    L.append("|---|---|---|---|---|---|---|")
    tot = defaultdict(int)
    for part in ("hostile", "grammar", "mutation"):
        s = stats.get(part, {})
        for k in ("inputs", "runs", "crash", "hang", "over-memory", "oracle"):
            tot[k] += s.get(k, 0)
        L.append(f"| {part} | {s.get('inputs', 0)} | {s.get('runs', 0)} | {s.get('crash', 0)} | {s.get('hang', 0)} | "
                 f"{s.get('over-memory', 0)} | {s.get('oracle', 0)} |")
    L.append(f"| **total** | {tot['inputs']} | {tot['runs']} | {tot['crash']} | {tot['hang']} | {tot['over-memory']} | "
             f"{tot['oracle']} |")
    L.append("")
    L.append(f"A run is one command on one input (fmt adds fmt-idempotent and fmt-meaning runs; a hostile input adds "
             f"check and fmt through the console script in a process of their own). "
             f"{len(report)} distinct failure classes.")
    L.append("")
    L.append("## Failures by kind (first line: the exception line of the traceback, or the oracle)")
    for i, r in enumerate(report, 1):
        L.append("")
        L.append(f"### {i}. {r['kind']}: {r['sig']}")
        L.append("")
        L.append(f"- {r['count']} runs; commands: " + ", ".join(f"{k} ({v})" for k, v in sorted(r["cmds"].items()))
                 + f"; parts: {', '.join(r['parts'])}")
        if r["hostile"]:
            L.append("- hostile cases: " + "; ".join(r["hostile"][:12]) + (" ..." if len(r["hostile"]) > 12 else ""))
        L.append(f"- smallest example: {r['example']} (command `{r['cmd']}`)")
        if r["repro"] is not None:
            s = r["repro"].decode("utf-8", "backslashreplace")
            L.append(f"- reproducer{' (minimized)' if r['minimized'] else ''}, as a Python bytes literal: "
                     f"`{r['repro'][:400]!r}`" + (" (cut)" if len(r["repro"]) > 400 else ""))
            if len(s) < 400 and all(ch.isprintable() or ch in "\n\t" for ch in s):  # else the literal says it all
                L.append("")
                L.append("```")
                L.append(s.rstrip("\n"))
                L.append("```")
        tail = [l for l in r["stderr"].strip().splitlines() if l.strip()][-4:]
        if tail:
            L.append("")
            L.append("  stderr (last lines):")
            L.append("")
            L.append("  ```")
            L += ["  " + l[:300] for l in tail]
            L.append("  ```")
    text = "\n".join(L) + "\n"
    print(text)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(text)
    shutil.rmtree(base, ignore_errors=True)
    print(f"(written to {a.out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
