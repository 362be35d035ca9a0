"""A fuzz campaign against archspec's CLI and public API (issue 14, point 5).

How to rerun: from the repository root, `PYTHONPATH=$PWD python benchmarks/fuzz.py --seconds 600`
(or `--runs N` to stop after N inputs; `--seed S` for a reproducible campaign; `--commands
check,fmt,api` for a subset; `--out FILE` for the results file, default benchmarks/results/fuzz.md;
`--workers 2`). Three parts: (1) grammar-aware text drawn with hypothesis.extra.lark.from_lark over
grammar/archspec.lark, with NAME tokens drawn from `archspec ops` and argument words; (2) byte and
token mutations of examples/*.arch and examples/broken/*.arch; (3) hand-made hostile cases (huge
numbers, deep nesting, expansion bombs, BOM, invalid UTF-8, FIFOs, /dev/zero, `use` chains,
symlink loops...). Every input runs through check (text and JSON), summary, explain, fmt, graph,
compile and the API (archspec.check / archspec.build + a forward pass). Parts 1 and 2 fork each
run from a worker that has already imported archspec (and torch for the API), so each run is its
own process with RLIMIT_AS = the worker's size + 2 GB (+ 4 GB for the API, torch maps a lot),
SIGALRM after --timeout seconds and its peak RSS read from wait4; part 3 runs the real `archspec`
console script (and `python -c` for the API) in subprocesses under the same limits. Oracles: exit
code in {0,1,2} and no Traceback; no hang; no memory blow-up; fmt idempotent and
meaning-preserving (check JSON of x and fmt(x): same ops/shapes/params and diagnostic codes);
build() succeeds exactly when check() has no errors and gives the checker's output shape.
Failures are grouped by the exception line of the traceback (or the oracle), minimized, and
written with the summary table to the results file.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import defaultdict
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
# What `python` gives sys.stdin here (surrogateescape under a C/C.UTF-8 locale): the forked runs copy it.
STDIN_ENC = (getattr(sys.stdin, "encoding", None) or "utf-8", getattr(sys.stdin, "errors", None) or "strict")


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


def grammar_cases(n: int, seed: int, ops: list[str]) -> list[Case]:
    import lark
    import hypothesis.strategies as st
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hseed
    from hypothesis.extra.lark import from_lark

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
        "RESIDUAL": sp(st.just("residual")), "REPEAT": sp(st.just("repeat")), "BLOCK": sp(st.just("block")),
        "USE": sp(st.just("use")), "SHORTCUT": sp(st.just("shortcut")),
        "BRANCH_MODE": sp(st.sampled_from(["concat", "add"])),
    }
    strat = from_lark(g, start="start", explicit=explicit)
    prefix = st.sampled_from(["", "input 3x32x32\n", "input 3x32x32\n", "input 16x8x8\n", "input 10\n"])
    out: list[str] = []

    @hseed(seed)
    @settings(max_examples=n, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(prefix, strat)
    def collect(pre, body):
        out.append(pre + body)

    collect()
    return [Case(part="grammar", name=f"grammar#{i}", text=t.encode("utf-8", "surrogatepass"))
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


def mutation_cases(n: int, seed: int) -> list[Case]:
    rng = random.Random(seed)
    srcs = [p.read_bytes() for p in EXAMPLES]
    names = [p.relative_to(ROOT).as_posix() for p in EXAMPLES]
    pool = sorted({t for s in srcs for t in TOKEN_RE.findall(s) if t.strip()})
    out = []
    for i in range(n):
        j = rng.randrange(len(srcs))
        out.append(Case(part="mutation", name=f"mutation#{i} of {names[j]}", text=mutate(srcs[j], rng, pool)))
    return out


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
res = {"ok": r.ok, "codes": sorted(d.code for d in r.diagnostics), "out": list(r.output_shape) if r.output_shape else None}
rows = r.to_dict()["layers"]
small = r.ok and r.input_shape is not None and r.params < 3_000_000 and all(
    (x["output_shape"] is None) or (__import__("math").prod(x["output_shape"]) < 2_000_000) for x in rows) and len(rows) < 3000
res["small"] = small
if small or not r.ok:
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


def set_limits(mem_bytes: int | None, timeout: float) -> None:
    if mem_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (mem_bytes, mem_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    signal.alarm(int(timeout) + 1)


def wait_child(pid: int, timeout: float) -> tuple[int | None, int | None, int, bool]:
    """(exit code, signal, maxrss KiB, timed out)."""
    deadline = time.monotonic() + timeout + 3
    delay = 0.0005
    while True:
        wpid, status, ru = os.wait4(pid, os.WNOHANG)
        if wpid:
            break
        if time.monotonic() > deadline:
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                os.kill(pid, signal.SIGKILL)
            _, status, ru = os.wait4(pid, 0)
            return None, signal.SIGKILL, ru.ru_maxrss, True
        time.sleep(delay)
        delay = min(delay * 2, 0.02)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return None, sig, ru.ru_maxrss, sig == signal.SIGALRM
    return os.WEXITSTATUS(status), None, ru.ru_maxrss, False


def run_forked(fn, args, timeout: float, mem: int | None, stdin_path: str | None, tmp: str):
    outp, errp = os.path.join(tmp, "stdout"), os.path.join(tmp, "stderr")
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # child
        rc = 70
        try:
            os.setpgid(0, 0)
            fd_in = os.open(stdin_path or os.devnull, os.O_RDONLY)
            fd_o = os.open(outp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            fd_e = os.open(errp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fd_in, 0)
            os.dup2(fd_o, 1)
            os.dup2(fd_e, 2)
            # multiprocessing gives pool workers /dev/null as sys.stdin: rebuild the three streams on fds 0-2
            # with the encoding and error handler the interpreter gave the real process's stdin
            sys.stdin = open(0, "r", encoding=STDIN_ENC[0], errors=STDIN_ENC[1], closefd=False)
            sys.stdout = open(1, "w", closefd=False)
            sys.stderr = open(2, "w", errors="backslashreplace", closefd=False)
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            set_limits(mem, timeout)
            try:
                rc = fn(*args)
            except SystemExit as e:
                rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except BaseException:
                traceback.print_exc()
                rc = 70
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            except BaseException:
                pass
            os._exit(rc if isinstance(rc, int) else 1)
    rc, sig, rss, to = wait_child(pid, timeout)
    return rc, sig, rss, to, Path(outp).read_bytes(), Path(errp).read_bytes()


def _cli(argv):
    from archspec.cli import main
    return main(argv)


def _api(path, mode):
    sys.argv = ["api", path, mode]
    exec(compile(API_CODE, "<api>", "exec"), {"__name__": "__api__"})
    return 0


def run_exec(argv, timeout, mem, stdin_path, tmp):
    outp, errp = os.path.join(tmp, "stdout"), os.path.join(tmp, "stderr")
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with open(outp, "wb") as fo, open(errp, "wb") as fe, open(stdin_path or os.devnull, "rb") as fi:
        p = subprocess.Popen(argv, stdin=fi, stdout=fo, stderr=fe, env=env, cwd=tmp, start_new_session=True,
                             preexec_fn=lambda: set_limits(mem, timeout))
        rc, sig, rss, to = wait_child(p.pid, timeout)
        p.returncode = rc if rc is not None else -(sig or 9)
    return rc, sig, rss, to, Path(outp).read_bytes(), Path(errp).read_bytes()


class Worker:
    state: dict = {}


def worker_init(commands, timeout, mem_extra, api_extra):
    import archspec  # noqa: F401
    import archspec.cli  # noqa: F401
    for m in ("archspec.summary", "archspec.explain", "archspec.fmt", "archspec.graph", "archspec.codegen"):
        try:
            __import__(m)
        except ImportError:
            pass
    if "api" in commands:
        import torch  # noqa: F401
        import archspec.compile  # noqa: F401
    vm = int([l for l in open("/proc/self/status") if l.startswith("VmSize")][0].split()[1]) * 1024
    Worker.state = dict(commands=commands, timeout=timeout, mem=vm + mem_extra, api_mem=vm + api_extra,
                        tmp=tempfile.mkdtemp(prefix="archspec-fuzz-"), vm=vm)


def prepare(case: Case, d: str) -> tuple[str, str | None]:
    """Write the case under d; return (main path, stdin path)."""
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    shutil.copy(ROOT / "examples" / "blocks.arch", os.path.join(d, "blocks.arch"))
    for rel, data in (case.get("files") or {}).items():
        Path(d, rel).write_bytes(data)
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
            os.symlink("loop.arch", os.path.join(d, "loop.arch"))
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


def run_case(case: Case) -> list[dict]:
    st = Worker.state
    tmp = st["tmp"]
    d = os.path.join(tmp, "case")
    results = []
    exec_mode = case["part"] == "hostile"
    T = st["timeout"]
    main, stdin = prepare(case, d)
    check_json = None
    fmt_out = None
    for cmd in st["commands"]:
        t0 = time.monotonic()
        mem = st["api_mem"] if cmd == "api" else st["mem"]
        runtmp = os.path.join(tmp, "run")
        os.makedirs(runtmp, exist_ok=True)
        if cmd == "api":
            mode = "path" if exec_mode else "text"
            apipath = main if main != "-" else stdin
            if exec_mode:
                r = run_exec([sys.executable, "-c", API_CODE, apipath, mode], T * 2, mem, None, d)
            else:
                r = run_forked(_api, (apipath, mode), T * 2, mem, None, runtmp)
        else:
            argv = cli_argv(cmd, main, runtmp)
            if cmd == "fmt" and case.get("special") in ("fifo", "symlink_loop"):
                argv = ["fmt", main, "--check"]
            if exec_mode:
                r = run_exec([sys.executable, "-c", "import sys; from archspec.cli import main; sys.exit(main())", *argv],
                             T, mem, stdin, d)
            else:
                r = run_forked(_cli, (argv,), T, mem, stdin, runtmp)
        rc, sig, rss, to, out, err = r
        limit_kib = mem // 1024
        fail = classify(rc, sig, rss, to, out, err, limit_kib)
        res = dict(part=case["part"], name=case["name"], cmd=cmd, rc=rc, sig=sig, rss=rss, secs=time.monotonic() - t0)
        if fail:
            res["kind"], res["sig_"] = fail
            res["stderr"] = err.decode("utf-8", "replace")[-3000:]
        elif cmd == "check-json" and rc in (0, 1):
            check_json = out
        elif cmd == "fmt" and rc == 0 and case.get("special") not in ("fifo", "symlink_loop"):
            fmt_out = out
        elif cmd == "api":
            m = re.search(rb"API-RESULT (.*)", out)
            if m:
                a = json.loads(m.group(1))
                if a.get("built") is not None and a["built"] != a["ok"]:
                    res["kind"], res["sig_"] = "oracle", ("build() succeeded although check() has errors " + str(a["codes"])
                                                        if a["built"] else "build() failed although check() passed: "
                                                        + re.sub(r"\d+", "N", a.get("build_error", ""))[:100])
                elif a.get("fwd") is not None and a["fwd"] != a["out"]:
                    res["kind"], res["sig_"] = "oracle", "forward output shape differs from the checker's"
                    res["stderr"] = f"checker {a['out']}, forward {a['fwd']}"
        results.append(res)
    # fmt oracles (in forked/exec runs too: they can hang)
    if fmt_out is not None and "fmt" in st["commands"]:
        p2 = os.path.join(tmp, "fmt1.arch")
        Path(p2).write_bytes(fmt_out)
        runtmp = os.path.join(tmp, "run")
        rc, sig, rss, to, out2, err2 = run_forked(_cli, (["fmt", "-"],), T, st["mem"], p2, runtmp)
        res = dict(part=case["part"], name=case["name"], cmd="fmt-idempotent", rc=rc, sig=sig, rss=rss, secs=0)
        fail = classify(rc, sig, rss, to, out2, err2, st["mem"] // 1024)
        if fail:
            res["kind"], res["sig_"] = fail
            res["stderr"] = err2.decode("utf-8", "replace")[-3000:]
        elif rc != 0:
            res["kind"], res["sig_"] = "oracle", f"fmt output does not fmt again (exit {rc})"
            res["stderr"] = err2.decode("utf-8", "replace")[-1500:]
        elif out2 != fmt_out:
            res["kind"], res["sig_"] = "oracle", "fmt not idempotent: fmt(fmt(x)) != fmt(x)"
        results.append(res)
        if check_json is not None and "check-json" in st["commands"]:
            fdir = os.path.join(tmp, "case")  # fmt'd text beside the original, so `use` resolves the same
            p3 = os.path.join(fdir, "main_fmt.arch")
            Path(p3).write_bytes(fmt_out)
            rc, sig, rss, to, out3, err3 = run_forked(_cli, (["check", "--format", "json", p3],), T, st["mem"], None,
                                                      runtmp)
            res = dict(part=case["part"], name=case["name"], cmd="fmt-meaning", rc=rc, sig=sig, rss=rss, secs=0)
            a, b = layers_of(check_json), layers_of(out3)
            if a is not None and b is not None and a != b:
                res["kind"] = "oracle"
                if a[0] != b[0]:
                    res["sig_"] = "fmt changes the meaning: layers/shapes/params differ"
                else:
                    codes = sorted(set(a[1]) ^ set(b[1]))
                    res["sig_"] = f"fmt changes the diagnostics: {codes}"
                res["stderr"] = f"before: {a[1]} ok={a[2]}\nafter:  {b[1]} ok={b[2]}\nfmt output:\n" + \
                    fmt_out.decode("utf-8", "replace")[:600]
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
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=None, help="stop after this many inputs (all parts together)")
    ap.add_argument("--seconds", type=float, default=600, help="time budget for the whole campaign (default 600)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--commands", default=",".join(ALL_COMMANDS), help="comma-separated of: " + ", ".join(ALL_COMMANDS))
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=20, help="seconds per run (API: twice this)")
    ap.add_argument("--mem-gb", type=float, default=2, help="RLIMIT_AS above the worker's size, CLI runs (default 2)")
    ap.add_argument("--api-mem-gb", type=float, default=4, help="the same for the API runs with torch (default 4)")
    ap.add_argument("--parts", default="hostile,grammar,mutation")
    a = ap.parse_args()
    commands = [c for c in a.commands.split(",") if c]
    t_start = time.monotonic()
    parts = a.parts.split(",")
    ops = op_names()
    per_part = (a.runs or 100000)
    cases: dict[str, list[Case]] = {}
    if "hostile" in parts:
        cases["hostile"] = hostile_cases()
    if "grammar" in parts:
        cases["grammar"] = grammar_cases(min(per_part, 200), a.seed, ops)
    if "mutation" in parts:
        cases["mutation"] = mutation_cases(min(per_part, 20000), a.seed)
    # interleave: one hostile case (they are slow: exec'd subprocesses, some run to the limit), then a
    # grammar and a mutation input, so that a short budget still reaches every part
    order: list[Case] = []
    h, g, m = cases.get("hostile", []), cases.get("grammar", []), cases.get("mutation", [])
    for i in range(max(len(h), len(g), len(m))):
        order += h[i:i + 1] + g[i:i + 1] + m[i:i + 1]
    if a.runs:
        order = order[:a.runs]
    print(f"fuzz: {machine()}; {len(ops)} ops; commands {commands}; budget {a.seconds:g} s; "
          f"{len(order)} inputs queued", flush=True)

    stats = defaultdict(lambda: defaultdict(int))
    failures: list[dict] = []
    ctx = mp.get_context("fork")
    pool = ctx.Pool(a.workers, initializer=worker_init,
                    initargs=(commands, a.timeout, int(a.mem_gb * GIB), int(a.api_mem_gb * GIB)))
    done_inputs = 0
    case_by_name = {c["name"]: c for c in order}
    deadline = t_start + a.seconds * 0.85  # keep the rest for minimizing
    it = pool.imap_unordered(run_case, order, chunksize=1)
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                res = it.next(timeout=remaining)
            except StopIteration:
                break
            except mp.TimeoutError:
                break
            done_inputs += 1
            part = res[0]["part"] if res else "?"
            stats[part]["inputs"] += 1
            for r in res:
                stats[part]["runs"] += 1
                k = r.get("kind")
                if k:
                    stats[part][k] += 1
                    failures.append(r)
            if done_inputs % 100 == 0:
                print(f"  {done_inputs} inputs, {len(failures)} failures, {time.monotonic() - t_start:.0f} s", flush=True)
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
    worker_init(commands, a.timeout, int(a.mem_gb * GIB), int(a.api_mem_gb * GIB))
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
    L.append("# Fuzz campaign (issue 14, point 5)")
    L.append("")
    L.append(f"Machine: {machine()}; Python {sys.version.split()[0]}")
    L.append(f"Run: {time.strftime('%Y-%m-%d %H:%M:%S')}; `python benchmarks/fuzz.py {' '.join(sys.argv[1:])}`; "
             f"seed {a.seed}; {a.workers} workers; commands {', '.join(commands)}; limits {a.timeout:g} s per run "
             f"(API {2 * a.timeout:g} s), RLIMIT_AS worker size + {a.mem_gb:g} GB (API + {a.api_mem_gb:g} GB); "
             f"fuzzing {t_fuzz:.0f} s, with minimizing {t_total:.0f} s")
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
    L.append(f"A run is one command on one input (fmt adds fmt-idempotent and fmt-meaning runs). "
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
            if len(s) < 400:
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
    print(f"(written to {a.out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
