"""Language-server latency: from a `didChange` to the `publishDiagnostics` it causes.

For each file: open it in `archspec lsp` (a real pygls client over stdio), then make 50 edits
(a channel count changed back and forth on one line), each after a pause longer than the
server's throttle (so every edit is checked at once, as the first keystroke after a pause is),
and time each until its diagnostics arrive. Beside it: the cold `archspec check` of the same
file (a new process, 5 runs), and the server's start (spawn to `initialize` answered).

Run:  python benchmarks/lsp_latency.py [--edits 50] [FILE...]
"""
from __future__ import annotations

import argparse
import asyncio
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from lsprotocol import types
from pygls.lsp.client import LanguageClient

ROOT = Path(__file__).resolve().parents[1]
FILES = [ROOT / "examples" / "resnet18.arch", ROOT / "benchmarks" / "data" / "densenet121.arch"]
SERVER = [sys.executable, "-m", "archspec", "lsp"]
PAUSE_S = 0.2  # longer than the server's 150 ms throttle


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


class Client(LanguageClient):
    def __init__(self) -> None:
        super().__init__("lsp-latency", "1")
        self.arrived: dict[tuple[str, int | None], asyncio.Event] = {}
        self.counts: dict[tuple[str, int | None], int] = {}

    def expect(self, uri: str, version: int) -> asyncio.Event:
        self.arrived[(uri, version)] = event = asyncio.Event()
        return event


def make_client() -> Client:
    client = Client()

    @client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    def published(params: types.PublishDiagnosticsParams) -> None:
        key = (params.uri, params.version)
        client.counts[key] = len(params.diagnostics)
        if key in client.arrived:
            client.arrived[key].set()

    return client


def edits_of(text: str, n: int) -> list[str]:
    """n versions of the text: the first conv's channel count alternately doubled and restored."""
    m = re.search(r"^(conv )(\d+)", text, re.MULTILINE)
    assert m, "the benchmark edits the first top-level `conv` line"
    doubled = text[:m.start(2)] + str(int(m.group(2)) * 2) + text[m.end(2):]
    return [doubled if i % 2 == 0 else text for i in range(n)]


async def measure(path: Path, n: int) -> dict[str, float]:
    client = make_client()
    start = time.perf_counter()
    await client.start_io(*SERVER)
    await client.initialize_async(types.InitializeParams(capabilities=types.ClientCapabilities(), process_id=None))
    started = time.perf_counter() - start
    client.initialized(types.InitializedParams())
    uri = path.resolve().as_uri()
    text = path.read_text()
    arrived = client.expect(uri, 1)
    t0 = time.perf_counter()
    client.text_document_did_open(types.DidOpenTextDocumentParams(types.TextDocumentItem(uri, "archspec", 1, text)))
    await asyncio.wait_for(arrived.wait(), 30)
    first = time.perf_counter() - t0
    times = []
    for version, new_text in enumerate(edits_of(text, n), start=2):
        await asyncio.sleep(PAUSE_S)
        arrived = client.expect(uri, version)
        t0 = time.perf_counter()
        client.text_document_did_change(types.DidChangeTextDocumentParams(
            types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            [types.TextDocumentContentChangeWholeDocument(text=new_text)]))
        await asyncio.wait_for(arrived.wait(), 30)
        times.append(time.perf_counter() - t0)
    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()
    return {"start": started, "first": first, "median": statistics.median(times), "p95": p95(times), "n": len(times)}


def cold_check(path: Path, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "archspec", "check", "-q", str(path)],
                       capture_output=True, check=False)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def size_of(path: Path) -> str:
    from archspec.language.pipeline import checked

    report = checked(path)
    return f"{len(report.rows)} layers, {sum(1 for _ in report.nodes())} nodes"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*", type=Path, default=FILES)
    ap.add_argument("--edits", type=int, default=50)
    args = ap.parse_args()
    import os

    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"{args.edits} edits per file, {PAUSE_S * 1000:.0f} ms apart; times in ms\n")
    header = f"{'file':<20} {'size':<22} {'start':>7} {'open':>7} {'median':>7} {'p95':>7} {'cold check':>11}"
    print(header)
    print("-" * len(header))
    for path in args.files:
        r = asyncio.run(measure(path, args.edits))
        cold = cold_check(path)
        print(f"{path.name:<20} {size_of(path):<22} {r['start'] * 1e3:7.0f} {r['first'] * 1e3:7.0f} "
              f"{r['median'] * 1e3:7.1f} {r['p95'] * 1e3:7.1f} {cold * 1e3:11.0f}")
    print("\nstart: spawn to `initialize` answered; open: didOpen to its first diagnostics;"
          "\nmedian/p95: didChange to publishDiagnostics; cold check: `archspec check -q` in a new process (median of 5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
