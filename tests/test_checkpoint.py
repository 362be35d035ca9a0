"""The checkpoint format (archspec.training.checkpoint): self-contained, validated on load, written atomically."""
from __future__ import annotations

import errno
import math
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
