"""How fast `archspec view`'s page opens: DenseNet-121 (benchmarks/data/densenet121.arch) to first paint.

How to rerun: from the repository root, `PYTHONPATH=$PWD python benchmarks/view_first_paint.py`
(`--repeat N` page loads, default 7). It needs Playwright (`pip install playwright`) and Debian's
chromium at /usr/bin/chromium. The page is written once by `archspec view`; each load is a fresh
browser tab opened on the file. "First paint" is the page's own `performance.now()` when the first
frame after the graph was drawn runs (time since the navigation started: parsing the ~0.3 MB
page, the layout, the SVG); "load to ready" is the wall time of the whole `page.goto` until that
frame, seen from Python. Medians of the loads; the target is under 1 s. The machine heads the
output, which is also written to benchmarks/results/view_first_paint.md.
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
DENSENET = ROOT / "benchmarks" / "data" / "densenet121.arch"
RESULTS = ROOT / "benchmarks" / "results" / "view_first_paint.md"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TARGET_MS = 1000


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return f"{model}; {os.cpu_count()} logical CPUs; load average {os.getloadavg()[0]:.2f} at the start; Python {platform.python_version()}"


def write_page(folder: Path) -> tuple[Path, float]:
    out = folder / "densenet121.html"
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "archspec", "view", str(DENSENET), "--classes", "1000", "-o", str(out)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"archspec view failed: {done.stderr}")
    return out, time.perf_counter() - start


def measure(page_file: Path, repeat: int) -> tuple[list[float], list[float], int]:
    from playwright.sync_api import sync_playwright

    paints, walls, nodes = [], [], 0
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        for _ in range(repeat):
            tab = browser.new_page(viewport={"width": 1400, "height": 900})
            start = time.perf_counter()
            tab.goto(page_file.as_uri())
            tab.wait_for_function("document.body.dataset.ready === '1'", timeout=30_000)
            walls.append((time.perf_counter() - start) * 1000)
            paints.append(tab.evaluate("window.archspecFirstPaint"))
            nodes = tab.locator("#viewport .node").count()
            tab.close()
        browser.close()
    return paints, walls, nodes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        page_file, write_s = write_page(Path(tmp))
        size = page_file.stat().st_size
        paints, walls, nodes = measure(page_file, args.repeat)
    paint, wall = statistics.median(paints), statistics.median(walls)
    lines = [
        "# `archspec view`: DenseNet-121 to first paint",
        "",
        f"Machine: {machine()}",
        f"Run: {time.strftime('%Y-%m-%d %H:%M:%S')}; `python benchmarks/view_first_paint.py --repeat {args.repeat}`; "
        "headless Debian chromium through Playwright",
        "",
        "| what | median | all runs |",
        "|---|---|---|",
        f"| first paint (page's performance.now()) | {paint:.0f} ms ({'under' if paint < TARGET_MS else 'OVER'} the {TARGET_MS} ms target) "
        f"| {', '.join(f'{x:.0f}' for x in paints)} |",
        f"| load to ready (Python's wall clock around page.goto) | {wall:.0f} ms | {', '.join(f'{x:.0f}' for x in walls)} |",
        f"| writing the page (`archspec view` subprocess, start-up included) | {write_s * 1000:.0f} ms | 1 run |",
        "",
        f"The page is {size / 1e6:.2f} MB and opens with {nodes} nodes drawn (the stem, 58 dense layers and "
        "3 transitions, each a collapsed block call, and the head).",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    RESULTS.write_text(text)


if __name__ == "__main__":
    main()
