"""The checkpoint format (archspec.training.checkpoint): self-contained, validated on load, written atomically."""
from __future__ import annotations

import errno
import math
import os
import re
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import archspec  # noqa: E402
from archspec import cli  # noqa: E402
from archspec.language.errors import ArchspecError  # noqa: E402
from archspec.training import checkpoint as ckpt_mod  # noqa: E402
from archspec.training.checkpoint import Checkpoint, self_contained_source  # noqa: E402
from archspec.training.data import load_data  # noqa: E402
from archspec.training.loop import build_model, fit  # noqa: E402
from archspec.training.recipes import make_config  # noqa: E402

from test_data import write_folder  # noqa: E402

BLOCKS = "block cbr(c) {\n  conv c k3 p1 nobias | bn | relu\n}\n"
MAIN = 'input 3x8x8\nuse "lib/blocks.arch"\ncbr(4)\ncbr(6)\ngap\nflatten\nlinear 2\n'


def quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """A one-epoch run of a network that `use`s a block library: (run directory, the .arch file)."""
    root = tmp_path_factory.mktemp("ckpt")
    write_folder(root / "d")
    (root / "lib").mkdir()
    (root / "lib" / "blocks.arch").write_text(BLOCKS)
    (root / "net.arch").write_text(MAIN)
    data = load_data(str(root / "d"), root / "cache", quiet)
    cfg = make_config("default", epochs=2, batch_size=4)
    fit(build_model(MAIN, str(root / "net.arch"), 0), data, cfg, root / "run", arch_source=MAIN,
        arch_path=str(root / "net.arch"), log=quiet, quiet=True)
    return root / "run", root / "net.arch"


def test_stored_architecture_is_self_contained(trained, tmp_path):
    run, arch = trained
    ckpt = Checkpoint.load(run / "checkpoint.pt")
    assert "use" not in ckpt.arch_source.split() and "block cbr(c)" in ckpt.arch_source
    # The inlined text is the same network, module for module (block definitions create no modules).
    original = build_model(MAIN, str(arch), 0)
    assert list(ckpt.build_model().state_dict()) == list(original.state_dict())
    # Eval and predict never read other files: the library can go away.
    moved = tmp_path / "elsewhere.pt"
    moved.write_bytes((run / "checkpoint.pt").read_bytes())
    (arch.parent / "lib" / "blocks.arch").rename(arch.parent / "lib" / "gone.arch")
    try:
        model, transform, classes = archspec.load_checkpoint(moved)
    finally:
        (arch.parent / "lib" / "gone.arch").rename(arch.parent / "lib" / "blocks.arch")
    assert classes == ["cat", "dog"] and not model.training


def test_self_contained_source_inlines_each_file_once(tmp_path):
    (tmp_path / "a.arch").write_text('use "b.arch"\nblock one() { relu }\n')
    (tmp_path / "b.arch").write_text("block two() { relu }\n")
    text = self_contained_source('input 4\nuse "a.arch"\nuse "b.arch"\none()\ntwo()\nlinear 2\n', str(tmp_path / "m.arch"))
    assert text.count("block two()") == 1 and text.count("block one()") == 1 and "use " not in text
    assert archspec.check(text).ok


def _saved(run: Path) -> dict:
    return torch.load(run / "checkpoint.pt", weights_only=True)


def _rewrite(tmp_path: Path, state: dict) -> Path:
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    return path


HUGE = "input 3x8x8\nflatten\nlinear 100000\nlinear 30000\nlinear 2\n"  # 3,000,000,000+ params

MALFORMED = {
    "mean nan": (lambda s: s.update(mean=[math.nan] * 3), "mean"),
    "std zero": (lambda s: s.update(std=[0.0] * 3), "std values must be > 0"),
    "mean length": (lambda s: s.update(mean=[0.5]), "one value per input channel"),
    "no classes": (lambda s: s.update(classes=[]), "classes"),
    "duplicate classes": (lambda s: s.update(classes=["cat", "cat"]), "distinct"),
    "input shape": (lambda s: s.update(input_shape=[3, 0, 8]), "input_shape"),
    "classes type": (lambda s: s.update(classes="cat"), "classes"),
    "lr nan": (lambda s: s["config"].update(lr=math.nan), "lr must be positive, in (0, 100]"),
    "unknown setting": (lambda s: s["config"].update(turbo=True), "unknown training setting"),
    "setting type": (lambda s: s["config"].update(batch_size="4"), "batch_size must be of type int"),
    "negative epoch": (lambda s: s.update(epoch=-1), "epoch"),
    "epoch as text": (lambda s: s.update(epoch="2"), "epoch: Input should be a valid integer"),
    "shape as text": (lambda s: s.update(input_shape=["3", "8", "8"]), "input_shape.0: Input should be a valid integer"),
    "metrics rows": (lambda s: s.update(metrics=[]), "metrics has 0 rows for 2 epochs"),
    "no weights": (lambda s: s.update(model={}), "holds no weights"),
    "weights not tensors": (lambda s: s.update(model={"w": 1}), "map names to tensors"),
    "normalize": (lambda s: s.update(normalize="0.25"), "normalize"),
    "train time": (lambda s: s.update(train_time=math.inf), "train_time"),
    "rng": (lambda s: s.update(rng=torch.zeros(3)), "uint8"),
    "uses a file": (lambda s: s.update(arch_source='use "/etc/passwd"\n' + s["arch_source"]), "has a `use` line"),
    "does not check": (lambda s: s.update(arch_source="input 3x8x8\nconv 4 k9\nflatten\nlinear 2\n"), "does not check"),
    "does not parse": (lambda s: s.update(arch_source="input 3x8x8 {{\n"), "does not parse"),
    # nn.Linear's weight + bias for 192 -> 100,000 -> 30,000 -> 2
    "huge": (lambda s: s.update(arch_source=HUGE), f"{192 * 100_000 + 100_000 + 100_000 * 30_000 + 30_000 + 30_000 * 2 + 2:,} parameters"),
    "weights mismatch": (lambda s: s.update(model={"x": torch.zeros(1)}), "do not fit its own .arch source"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_checkpoint_is_one_error_and_help_line(trained, tmp_path, case, capsys, monkeypatch):
    mutate, expected = MALFORMED[case]
    state = _saved(trained[0])
    mutate(state)
    path = _rewrite(tmp_path, state)
    # The size guard refuses before a single module is allocated.
    monkeypatch.setattr(torch.nn.Linear, "__init__", lambda *a, **k: pytest.fail("allocated")) if case == "huge" else None
    assert cli.main(["predict", str(path), "x.png"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and err[0].startswith("error: ") and err[1].startswith("help: "), err
    assert expected in err[0], err[0]
    with pytest.raises(ArchspecError):
        archspec.load_checkpoint(path)


def test_pickled_code_is_refused_without_torchs_advice(tmp_path, capsys):
    torch.save({"model": Path("x")}, tmp_path / "evil.pt")  # a non-tensor object: weights_only refuses it
    assert cli.main(["eval", str(tmp_path / "evil.pt")]) == 1
    err = capsys.readouterr().err
    assert "could run code" in err and "weights_only" not in err and "Traceback" not in err
    assert err.count("\n") == 2


def test_truncated_checkpoint(trained, tmp_path, capsys):
    data = (trained[0] / "checkpoint.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    assert cli.main(["eval", str(tmp_path / "cut.pt")]) == 1
    err = capsys.readouterr().err
    assert "unreadable or corrupt" in err and "help:" in err and "Traceback" not in err


def test_full_disk_keeps_the_previous_checkpoint_and_no_temp_file(trained, tmp_path, monkeypatch):
    good = Checkpoint.load(trained[0] / "checkpoint.pt")
    target = tmp_path / "checkpoint.pt"
    good.save(target)
    before = target.read_bytes()

    real_save = torch.save

    def disk_full(obj, f, *a, **k):
        real_save(obj, f, *a, **k)  # most of the bytes reach the temp file, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt_mod.torch, "save", disk_full)
    with pytest.raises(ArchspecError, match="cannot write .*checkpoint.pt: No space left on device") as exc:
        good.save(target)
    assert "previous file is kept" in exc.value.help
    assert target.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


def test_interrupt_during_write_removes_the_temp_file(tmp_path):
    def interrupted(f):
        f.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ckpt_mod.write_atomic(tmp_path / "metrics.jsonl", interrupted)
    assert list(tmp_path.iterdir()) == []


def test_a_signal_during_write_waits_for_the_rename(tmp_path):
    """Found by CI (test_interrupt, a race): SIGTERM's handler raises, and one landing between the temp
    file's creation and the clean-up left `.metrics.jsonl.*.tmp` behind. The signal is now held for the
    write: it lands after the rename, the file is whole and no temp file stays."""
    import os
    import signal

    class Terminated(Exception):
        pass

    def on_sigterm(signum, frame):
        raise Terminated

    def signalled(f):
        os.kill(os.getpid(), signal.SIGTERM)  # arrives in the middle of the write
        f.write(b'{"epoch": 1}\n')

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        with pytest.raises(Terminated):
            ckpt_mod.write_atomic(tmp_path / "metrics.jsonl", signalled)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.jsonl"]
    assert (tmp_path / "metrics.jsonl").read_bytes() == b'{"epoch": 1}\n'


def test_a_held_signal_waits_for_the_outermost_hold(tmp_path):
    """A run holds signals over a whole save (metrics.jsonl, checkpoint.pt, the epoch it reports), so an
    interruption never leaves the pair one epoch apart."""
    import os
    import signal

    class Terminated(Exception):
        pass

    def on_sigterm(signum, frame):
        raise Terminated

    def signalled(f):
        os.kill(os.getpid(), signal.SIGTERM)
        f.write(b"metrics\n")

    done = []
    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        with pytest.raises(Terminated):
            with ckpt_mod.signals_held():
                ckpt_mod.write_atomic(tmp_path / "metrics.jsonl", signalled)
                ckpt_mod.write_text_atomic(tmp_path / "checkpoint.pt", "weights")
                done.append("saved")
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert done == ["saved"] and sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt", "metrics.jsonl"]
    assert signal.getsignal(signal.SIGTERM) is previous


# ----------------------------------------------------------------------------- self-consistency
# Files whose parts disagree, written through Checkpoint.save (random weights, 0 epochs) and then edited.
# eval, predict and export must each refuse them with the same two lines (golden text), before any
# model of the stored architecture's size is allocated.

GOLDEN = Path(__file__).parent / "golden" / "checkpoint"
SMALL = "input 3x8x8\nconv 4 k3 | bn | relu | maxpool 2\nflatten\nlinear 16 | relu\nlinear 10\n"
SMALL_CLASSES = [f"class{i}" for i in range(10)]


def small_checkpoint(path: Path, arch: str = SMALL, **changes) -> Checkpoint:
    """A checkpoint of `arch` with random weights, saved by the project's writer, with `changes` applied."""
    model = build_model(arch, "small.arch", 0)
    fields = dict(model=model.state_dict(), arch_source=arch, arch_path="small.arch", config=make_config("default").to_dict(),
                  classes=SMALL_CLASSES, input_shape=[3, 8, 8], mean=[0.5] * 3, std=[0.25] * 3)
    ckpt = Checkpoint(**{**fields, **changes})
    ckpt.save(path)
    return ckpt


def _with_weight(name: str, value: float) -> dict:
    state = {k: v.clone() for k, v in build_model(SMALL, "small.arch", 0).state_dict().items()}
    state[name].view(-1)[1] = value
    return state


def _lookahead_cut() -> dict:
    state = build_model(SMALL, "small.arch", 0).state_dict()
    return {k: (v[:2] if k == "fc2.weight" else v).clone() for k, v in state.items() if v.is_floating_point()}


INCONSISTENT = {
    # C1: `linear 20000000` stored beside the weights of `linear 16` (940M params, 3.8 GB if built)
    "arch_larger_than_weights": dict(arch_source=SMALL.replace("linear 16", "linear 20000000")),
    "weight_missing": dict(model={k: v for k, v in build_model(SMALL, "s", 0).state_dict().items() if k != "bn1.running_var"}),
    "weight_extra": dict(model={**build_model(SMALL, "s", 0).state_dict(), "fc2.weight": torch.zeros(3, 3)}),
    "lookahead_shape": dict(lookahead=_lookahead_cut()),
    "classes_too_few": dict(classes=["cat", "dog", "ship"]),
    "input_channels": dict(input_shape=[1, 8, 8], mean=[0.5], std=[0.25]),
    "input_size": dict(input_shape=[3, 16, 16]),
    "nan_weight": dict(model=_with_weight("conv1.weight", math.nan)),
    "inf_running_var": dict(model=_with_weight("bn1.running_var", math.inf)),
}


@pytest.mark.parametrize("case", sorted(INCONSISTENT))
def test_inconsistent_checkpoint_is_refused_alike_by_every_reader(case, cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    small_checkpoint(tmp_path / f"{case}.pt", **INCONSISTENT[case])
    (tmp_path / "img.png").write_bytes(b"")  # never read: the checkpoint is refused first
    r = cli("predict", f"{case}.pt", "img.png")
    text = f"exit {r.returncode}\n{r.stdout}{r.stderr}"
    golden = GOLDEN / f"{case}.txt"
    if os.environ.get("ARCHSPEC_REGEN"):
        golden.write_text(text)
    assert text == golden.read_text()
    for command in (["eval", f"{case}.pt", "--data", "no_data_needed"], ["export", f"{case}.pt", "-o", "m.onnx"]):
        other = cli(*command)
        assert (other.returncode, other.stdout, other.stderr) == (r.returncode, r.stdout, r.stderr), command
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"{case}.pt", "img.png"])  # export wrote nothing
    with pytest.raises(ArchspecError, match=re.escape(r.stderr.splitlines()[0].removeprefix("error: "))):
        archspec.load_checkpoint(f"{case}.pt")


def test_resume_refuses_an_inconsistent_checkpoint(trained, tmp_path, capsys):
    run, arch = trained
    state = _saved(run)
    state["classes"] = ["cat"]  # the stored network outputs 2 scores
    (tmp_path / "run").mkdir()
    torch.save(state, tmp_path / "run" / "checkpoint.pt")
    before = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    code = cli.main(["train", str(arch), "--data", str(arch.parent / "d"), "--data-dir", str(arch.parent / "cache"),
                     "--epochs", "3", "--batch-size", "4", "--out", str(tmp_path / "run"), "--resume", "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "it has 1 class name but its .arch source outputs 2 class scores" in err and "Traceback" not in err
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == before


def test_consistent_checkpoint_predicts_what_its_weights_compute(tmp_path, capsys):
    """The model eval/predict build (meta device, then the stored weights) is the saved network, bit for bit."""
    saved = small_checkpoint(tmp_path / "ok.pt")
    model, _, classes = archspec.load_checkpoint(tmp_path / "ok.pt")
    reference = build_model(SMALL, "small.arch", 0).eval()  # the oracle: the same seed's network, built the usual way
    reference.load_state_dict(saved.model)
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))
    assert classes == SMALL_CLASSES


@pytest.mark.parametrize("name", sorted(p.stem for p in (Path(__file__).parent.parent / "examples").glob("*.arch")))
def test_expected_state_shapes_match_a_real_build(name):
    """The shapes the consistency check expects (meta device) are those of the network torch builds."""
    text = (Path(__file__).parent.parent / "examples" / f"{name}.arch").read_text()
    report = archspec.check(self_contained_source(text, str(Path(__file__).parent.parent / "examples" / f"{name}.arch")),
                            classes=None)
    if report.input_shape is None:
        pytest.skip("a block library")
    from archspec.pytorch.build import build_checked

    real = {k: tuple(v.shape) for k, v in build_checked(report).state_dict().items()}
    assert ckpt_mod._state_shapes(report) == real


VM_PEAK = """
import sys
from archspec.cli import main
code = main(sys.argv[1:])
peak = [line for line in open('/proc/self/status') if line.startswith('VmPeak:')][0].split()[1]
print(f'vmpeak {peak}', file=sys.stderr)
sys.exit(code)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmPeak from /proc (Linux)")
def test_oversized_stored_architecture_is_refused_under_a_memory_limit(tmp_path):
    """C1: the stored `linear 20000000` would take 3.8 GB; with 1 GiB of address space above what a normal
    predict needs, the refusal is one clean error (it was a traceback from the allocator)."""
    import resource
    import subprocess
    import sys

    small_checkpoint(tmp_path / "ok.pt")
    small_checkpoint(tmp_path / "big.pt", **INCONSISTENT["arch_larger_than_weights"])
    from PIL import Image

    Image.new("RGB", (8, 8), (200, 10, 10)).save(tmp_path / "red.png")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

    def predict(path: Path, limit: int | None) -> subprocess.CompletedProcess:
        def cap() -> None:
            if limit is not None:
                resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

        return subprocess.run([sys.executable, "-c", VM_PEAK, "predict", str(path), str(tmp_path / "red.png")],
                              capture_output=True, text=True, env=env, preexec_fn=cap, cwd=tmp_path)

    normal = predict(tmp_path / "ok.pt", None)
    assert normal.returncode == 0, normal.stderr
    limit = int(normal.stderr.split("vmpeak ")[1].split()[0]) * 1024 + 2**30
    assert predict(tmp_path / "ok.pt", limit).returncode == 0  # the limit leaves room for a normal run
    cp = predict(tmp_path / "big.pt", limit)
    lines = [line for line in cp.stderr.splitlines() if not line.startswith("vmpeak")]
    assert cp.returncode == 1 and len(lines) == 2, cp.stderr
    assert lines[0].startswith(f"error: checkpoint {tmp_path / 'big.pt'}: its weights do not fit its own .arch source: "
                               "fc1.weight is [16, 36] but the .arch source makes it [20000000, 36]")
