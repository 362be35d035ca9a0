"""`archspec import` on every convolutional timm model: each imported, checked, built, given the
original's weights and compared with it (eval, float64, relative difference <= 1e-9). Run from a checkout:

    python benchmarks/import_coverage.py [--only PATTERN] [--limit N] [--jobs 2] [--sample] [--redo EARLIER.json]

A model is convolutional when its timm module (its family) is one of FAMILIES below: networks made of
convolutions, norms, pools, activations and gates. Families with attention, token-mixing MLPs or
state-space layers, and hybrids that put a transformer after a conv stem, are left out (EXCLUDED).
Each model runs in its own forked process with a time limit and an address-space limit, so one huge
or hanging model cannot stop the run. `--sample` runs the first model of each family. Writes
benchmarks/results/import_coverage.md and .json (`--out` to change).
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import multiprocessing
import os
import re
import resource
import time
import traceback
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import timm
import torch
from timm.models import model_entrypoint

from archspec.importers.api import ImportRefused, import_module, imported_weights
from archspec.language.errors import ArchspecError
from archspec.language.pipeline import CheckOptions, checked
from archspec.pytorch.build import build

FAMILIES = (
    "byobnet convmixer convnext cspnet cspnext densenet dla dpn efficientnet fasternet ghostnet hardcorenas "
    "hgnet hrnet inception_next inception_resnet_v2 inception_v3 inception_v4 lcnetv2 mobilenetv3 nasnet nfnet "
    "pnasnet rdnet regnet repghost repvit res2net resnest resnet resnetv2 rexnet selecsls senet sknet starnet "
    "tresnet vgg vovnet xception xception_aligned").split()
EXCLUDED = (
    "beit byoanet cait coat convit cpubone crossvit csatv2 davit deepseek_vit deit edgenext efficientformer "
    "efficientformer_v2 efficientvim efficientvit_mit efficientvit_msra eva fastvit focalnet gcvit gemma4_vit "
    "hiera hieradet_sam2 iformer levit lowformer mambaout maxxvit metaformer mlp_mixer mobilenetv5 mobilevit "
    "mvitv2 naflexvit nest nextvit pit pvt_v2 qwen3_vit sequencer shvit swiftformer swin_transformer "
    "swin_transformer_v2 swin_transformer_v2_cr tiny_vit tnt twins visformer vision_transformer "
    "vision_transformer_hybrid vision_transformer_relpos vision_transformer_sam vitamin volo xcit").split()
SIZES = (64, 96, 128, 224, 299)  # the smallest the model runs at is used
RESULTS = Path(__file__).parent / "results"


@dataclass
class Outcome:
    model: str
    family: str
    outcome: str  # exact | refused | wrong | not run
    detail: str = ""
    size: int = 0
    lines: int = 0
    seconds: float = 0.0


def machine() -> str:
    """`2-core VM (Intel(R) Xeon(R) Processor)`: the cores and the CPU model, from /proc/cpuinfo where there is one."""
    try:
        cpus = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")]
    except OSError:
        cpus = []
    return f"{os.cpu_count()}-core machine" + (f" ({cpus[0]})" if cpus else "")


def family(name: str) -> str:
    return model_entrypoint(name).__module__.rsplit(".", 1)[-1]


def convolutional_models() -> list[str]:
    return [m for m in timm.list_models() if family(m) in FAMILIES]


def _runs_at(model: torch.nn.Module, size: int) -> bool:
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size))
        return True
    except Exception:  # noqa: BLE001 - any failure means: try a larger input
        return False


def round_trip(name: str, max_params: float = float("inf")) -> Outcome:
    """Import -> check -> build -> load the original's weights -> compare in float64."""
    out = Outcome(name, family(name), "wrong")
    torch.manual_seed(0)
    original = timm.create_model(name, pretrained=False).eval()
    params = sum(p.numel() for p in original.parameters())
    if params > max_params:  # both copies in float64 and float32: about 28 bytes a parameter
        out.outcome, out.detail = "not run", f"{params / 1e6:.0f}M parameters, over --max-params {max_params / 1e6:g}M"
        return out
    out.size = next((s for s in SIZES if _runs_at(original, s)), 0)
    if not out.size:
        out.outcome, out.detail = "not run", "the model does not run at any of the sizes tried"
        return out
    try:
        result = import_module(original, (3, out.size, out.size), title=f"timm:{name}")
    except ImportRefused as exc:
        out.outcome, out.detail = "refused", exc.lines[0]
        return out
    except ArchspecError as exc:  # fx cannot trace it (refused), or the importer's own check failed (wrong)
        out.outcome = "wrong" if "please report" in (exc.help or "") else "refused"
        out.detail = exc.message
        return out
    out.lines = len(result.text.splitlines())
    report = checked(result.text, CheckOptions(classes=None))
    if report.errors:
        out.detail = f"check: {report.errors[0].message}"
        return out
    net = build(result.text)
    net.load_state_dict(imported_weights(original, result))
    x = torch.randn(2, 3, out.size, out.size, dtype=torch.float64)
    with torch.no_grad():
        want, got = original.double()(x), net.double().eval()(x)
    diff = ((got - want).abs().max() / want.abs().max()).item()
    out.outcome = "exact" if diff <= 1e-9 else "wrong"
    out.detail = f"rel diff {diff:.1e}"
    return out


def _child(name: str, memory_gib: float, max_params: float, conn: Connection) -> None:
    limit = int(memory_gib * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    torch.set_num_threads(1)
    try:
        outcome = round_trip(name, max_params)
    except MemoryError:
        outcome = Outcome(name, family(name), "not run", f"over the {memory_gib:g} GiB memory limit")
    except Exception as exc:  # noqa: BLE001 - recorded as wrong, with where it failed
        where = traceback.extract_tb(exc.__traceback__)[-1]
        text = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        kind = "not run" if "memory" in text.lower() or "alloc" in text.lower() else "wrong"
        outcome = Outcome(name, family(name), kind, f"{text} ({Path(where.filename).name}:{where.lineno})"[:300])
    conn.send(asdict(outcome))
    conn.close()


def run_all(names: list[str], jobs: int, timeout: float, memory_gib: float, max_params: float) -> list[Outcome]:
    """Each model in a forked process; up to `jobs` at a time; printed as they finish."""
    ctx = multiprocessing.get_context("fork")
    pending, running, done = list(names), {}, []
    while pending or running:
        while pending and len(running) < jobs:
            name = pending.pop(0)
            parent, child = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_child, args=(name, memory_gib, max_params, child), daemon=True)
            proc.start()
            child.close()
            running[name] = (proc, parent, time.perf_counter())
        time.sleep(0.05)
        for name, (proc, conn, start) in list(running.items()):
            outcome = _finished(name, proc, conn, start, timeout)
            if outcome is None:
                continue
            outcome.seconds = round(time.perf_counter() - start, 1)
            del running[name]
            done.append(outcome)
            print(f"{len(done)}/{len(names)} {name}: {outcome.outcome} {outcome.detail} ({outcome.seconds} s)", flush=True)
    return done


def _finished(name: str, proc: multiprocessing.Process, conn: Connection, start: float, timeout: float) -> Outcome | None:
    if conn.poll():
        try:
            outcome = Outcome(**conn.recv())
        except EOFError:
            outcome = Outcome(name, family(name), "not run", "the process ended without a result")
        proc.join()
        return outcome
    if not proc.is_alive():
        code = proc.exitcode
        return Outcome(name, family(name), "not run", f"the process ended with status {code} (killed: memory?)")
    if time.perf_counter() - start > timeout:
        proc.kill()
        proc.join()
        return Outcome(name, family(name), "not run", f"over the {timeout:g} s time limit")
    return None


def construct(detail: str) -> str:
    """A refusal's construct, without its place: `x.y` uses torch.roll: why (and in 3 more places) -> torch.roll: why."""
    text = detail.split(" (and in ")[0]
    text = text.split("` uses ", 1)[1] if "` uses " in text else text
    text = re.sub(r"the result of `[^`]+`", "the result of a layer", text)  # the fx node differs from model to model
    return re.sub(r"torch\.fx cannot trace \w+", "torch.fx cannot trace the model", text)


def table(outcomes: list[Outcome], header: str) -> str:
    by_family: dict[str, Counter] = defaultdict(Counter)
    for o in outcomes:
        by_family[o.family][o.outcome] += 1
    total = Counter(o.outcome for o in outcomes)
    ran = len(outcomes) - total["not run"]
    lines = [header, "",
             f"**{total['exact']} of {len(outcomes)} models exact** ({100 * total['exact'] / max(len(outcomes), 1):.0f}%; "
             f"{100 * total['exact'] / max(ran, 1):.0f}% of the {ran} that ran), {total['refused']} refused, "
             f"{total['wrong']} wrong, {total['not run']} not run.", "",
             "| family | models | exact | refused | wrong | not run |", "|---|---|---|---|---|---|"]
    for fam in sorted(by_family):
        c = by_family[fam]
        lines.append(f"| {fam} | {sum(c.values())} | {c['exact']} | {c['refused']} | {c['wrong']} | {c['not run']} |")
    refusals = Counter(construct(o.detail) for o in outcomes if o.outcome == "refused")
    families: dict[str, set[str]] = defaultdict(set)
    for o in outcomes:
        if o.outcome == "refused":
            families[construct(o.detail)].add(o.family)
    lines += ["", "## What the refused models use (the first construct of each)", "",
              "| models | construct | families |", "|---|---|---|"]
    lines += [f"| {n} | {c.replace('|', '/')} | {', '.join(sorted(families[c]))} |" for c, n in refusals.most_common()]
    for kind in ("wrong", "not run"):
        rows = [o for o in outcomes if o.outcome == kind]
        if rows:
            lines += ["", f"## {kind}", "", "| model | detail |", "|---|---|"]
            lines += [f"| {o.model} | {o.detail.replace('|', '/')} |" for o in rows]
    lines += ["", "## Every model", "", "| model | family | outcome | input | lines | seconds | detail |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {o.model} | {o.family} | {o.outcome} | {o.size} | {o.lines} | {o.seconds} | {o.detail.replace('|', '/')} |"
              for o in sorted(outcomes, key=lambda o: (o.family, o.model))]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="fnmatch pattern on model names, e.g. 'resnet*'")
    parser.add_argument("--limit", type=int, help="at most N models")
    parser.add_argument("--sample", action="store_true", help="the first model of each family")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=300, help="seconds per model")
    parser.add_argument("--memory", type=float, default=12, help="GiB of address space per model (torch's libraries take a few)")
    parser.add_argument("--max-params", type=float, default=150e6, help="models with more parameters are not run")
    parser.add_argument("--out", type=Path, default=RESULTS / "import_coverage")
    parser.add_argument("--redo", type=Path, help="an earlier run's .json: keep its rows, run its misses (among those selected) again")
    parser.add_argument("--rerun", default="refused,wrong,not run", help="with --redo: the outcomes to run again")
    args = parser.parse_args()
    names = convolutional_models()
    if args.only:
        names = [n for n in names if fnmatch.fnmatch(n, args.only)]
    earlier = [Outcome(**o) for o in json.loads(args.redo.read_text())] if args.redo else []
    # --redo: the earlier run's rows stay, except its misses among the models selected, which run again
    rerun = set(args.rerun.split(","))
    kept = [o for o in earlier if o.outcome not in rerun or o.model not in names]
    names = [n for n in names if n not in {o.model for o in kept}]
    if args.sample:
        firsts: dict[str, str] = {}
        for n in names:
            firsts.setdefault(family(n), n)
        names = list(firsts.values())
    names = names[:args.limit] if args.limit else names
    start = time.perf_counter()
    outcomes = kept + run_all(names, args.jobs, args.timeout, args.memory, args.max_params)
    header = (f"# Import coverage: timm's convolutional models\n\nMachine: {machine()}, CPU only, shared with other jobs "
              f"(load average {os.getloadavg()[0]:.1f} at the end). timm {timm.__version__}, torch {torch.__version__}. "
              f"`python benchmarks/import_coverage.py` on {len(outcomes)} models, {time.perf_counter() - start:.0f} s with "
              f"{args.jobs} job(s)" + (f" ({len(kept)} rows kept from an earlier run, its misses run again)." if kept else ".") + "\n\n"
              f"Each model (pretrained=False, seeded) is imported at the smallest of {', '.join(map(str, SIZES))} it runs at, "
              "checked, built, given the original's weights and compared with it in eval, in float64: exact means a "
              "relative difference of at most 1e-9 (max |ours - theirs| / max |theirs|). A family is timm's module; "
              "the families are the convolutional ones (no attention, token-mixing MLP or state-space layer).")
    text = table(outcomes, header)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps([asdict(o) for o in outcomes], indent=1) + "\n")


if __name__ == "__main__":
    main()
