"""The named datasets (`--data mnist|fashion-mnist|cifar10|cifar100|svhn`): tiny files written here in each
official on-disk format, read by torchvision's own classes (the oracle), trained on through the CLI; the
offline and damaged-file errors; `--limit`; the decode progress. No test touches the network: the
download path's boundary (urllib's urlopen) is replaced wherever a download could start.
"""
from __future__ import annotations

import gzip
import os
import pickle
import re
import struct
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
from PIL import Image  # noqa: E402

from archspec.language.errors import ArchspecError  # noqa: E402
from archspec.training import data as data_mod  # noqa: E402
from archspec.training import fetch  # noqa: E402
from archspec.training.data import load_data, stratified  # noqa: E402
from archspec.training.datasets import NAMED  # noqa: E402
from conftest import assert_golden  # noqa: E402

GOLDEN = Path(__file__).parent / "golden" / "data"
PER_CLASS = {"train": 3, "test": 2}  # images per class written for each split


def quiet(_: str) -> None:
    pass


# ----------------------------------------------------------------------------- the official formats


def _images(n: int, shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


def _labels(num_classes: int, split: str) -> np.ndarray:
    """Each class PER_CLASS[split] times, interleaved (as the real files mix their classes)."""
    return np.tile(np.arange(num_classes), PER_CLASS[split]).astype(np.uint8)


def _idx(array: np.ndarray) -> bytes:
    """The idx-ubyte format: 0x0000, the type (0x08 unsigned byte), the rank, big-endian sizes, then the bytes."""
    return struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_mnist(root: Path, folder: str, gz: bool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """MNIST's four idx files (gzipped as downloaded, or extracted) in ROOT/<folder>; returns the pixels and labels."""
    raw = root / folder
    raw.mkdir(parents=True)
    written = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        y = _labels(10, split)
        x = _images(len(y), (28, 28), seed=len(prefix))
        for kind, array in (("images-idx3-ubyte", x), ("labels-idx1-ubyte", y)):
            name = f"{prefix}-{kind}"
            if gz:
                (raw / f"{name}.gz").write_bytes(gzip.compress(_idx(array)))
            else:
                (raw / name).write_bytes(_idx(array))
        written[split] = (x[:, None], y)  # NCHW
    return written


def write_cifar(root: Path, folder: str, batches: dict[str, list[str]], label_key: str, meta: tuple[str, dict]) -> dict:
    """CIFAR's python version: pickled dicts with `data` uint8 [N, 3072] (the R plane, then G, then B) and labels."""
    base = root / folder
    base.mkdir(parents=True)
    names = meta[1][next(iter(meta[1]))]
    written = {}
    for split, files in batches.items():
        y = _labels(len(names), split)
        x = _images(len(y), (3, 32, 32), seed=len(split))
        for i, name in enumerate(files):  # the split spread over its batch files, in order
            part = slice(i * len(y) // len(files), (i + 1) * len(y) // len(files))
            entry = {"batch_label": name, "data": x[part].reshape(-1, 3072), label_key: y[part].tolist()}
            if label_key == "fine_labels":
                entry["coarse_labels"] = (y[part] // 5).tolist()
            (base / name).write_bytes(pickle.dumps(entry, protocol=2))
        written[split] = (x, y)
    (base / meta[0]).write_bytes(pickle.dumps(meta[1], protocol=2))
    return written


def write_svhn(root: Path) -> dict:
    """SVHN's MATLAB files: X uint8 [32, 32, 3, N], y [N, 1] with the digit 0 stored as label 10."""
    import scipy.io

    root.mkdir(parents=True)
    written = {}
    for split in ("train", "test"):
        y = _labels(10, split)
        x = _images(len(y), (3, 32, 32), seed=len(split))
        stored = np.where(y == 0, 10, y).astype(np.uint8)[:, None]
        scipy.io.savemat(root / f"{split}_32x32.mat", {"X": x.transpose(2, 3, 1, 0), "y": stored})
        written[split] = (x, y)
    return written


def write_named(name: str, cache: Path, gz: bool = False) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Tiny files of dataset `name` where `--data-dir cache` looks; returns what they hold per split (NCHW, labels)."""
    spec = NAMED[name]
    if name in ("mnist", "fashion-mnist"):
        return write_mnist(spec.root(cache), spec.folder, gz)
    if name == "cifar10":
        return write_cifar(spec.root(cache), spec.folder, {"train": [f"data_batch_{i}" for i in range(1, 6)],
                                                           "test": ["test_batch"]},
                           "labels", ("batches.meta", {"label_names": list(spec.classes)}))
    if name == "cifar100":
        return write_cifar(spec.root(cache), spec.folder, {"train": ["train"], "test": ["test"]}, "fine_labels",
                           ("meta", {"fine_label_names": list(spec.classes), "coarse_label_names": [str(i) for i in range(20)]}))
    return write_svhn(spec.root(cache))


@pytest.fixture
def tiny_checksums(monkeypatch):
    """Tiny files cannot match the official MD5s that torchvision checks: clear those (its readers stay as they are)."""
    tv = torchvision.datasets
    for cls in (tv.CIFAR10, tv.CIFAR100):
        monkeypatch.setattr(cls, "train_list", [[f, None] for f, _ in cls.train_list])
        monkeypatch.setattr(cls, "test_list", [[f, None] for f, _ in cls.test_list])
        monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": None})
    for cls in (tv.MNIST, tv.FashionMNIST):
        monkeypatch.setattr(cls, "resources", [(f, None) for f, _ in cls.resources])
    monkeypatch.setattr(tv.SVHN, "split_list", {k: [url, f, None] for k, (url, f, _) in tv.SVHN.split_list.items()})


@pytest.fixture
def offline(monkeypatch):
    """The network boundary fails as on a machine without a network (name resolution fails at once)."""
    calls: list[str] = []

    def no_network(request, *args, **kwargs):
        calls.append(getattr(request, "full_url", request))
        raise urllib.error.URLError(OSError(-2, "Name or service not known"))

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    return calls


def torchvision_read(name: str, cache: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The oracle: what torchvision's own class gives for a split, as NCHW uint8 and int64 labels."""
    tv, root, train = torchvision.datasets, str(NAMED[name].root(cache)), split == "train"
    if name == "svhn":
        d = tv.SVHN(root, split=split)
        return d.data, d.labels
    d = getattr(tv, NAMED[name].torchvision_class)(root, train=train)
    if name in ("mnist", "fashion-mnist"):
        return d.data.numpy()[:, None], d.targets.numpy()
    return d.data.transpose(0, 3, 1, 2), np.asarray(d.targets)


ALL = sorted(NAMED)


# ----------------------------------------------------------------------------- reading


@pytest.mark.parametrize("name", ALL)
def test_named_dataset_is_read_as_torchvision_reads_it(name, tmp_path, tiny_checksums, offline):
    written = write_named(name, tmp_path / "cache")
    ds = load_data(name, tmp_path / "cache", quiet)
    spec = NAMED[name]
    assert ds.source == name and ds.shape == spec.shape and ds.classes == list(spec.classes)
    assert ds.train_x.dtype == torch.uint8 and ds.train_y.dtype == torch.int64
    for split, (x, y) in (("train", (ds.train_x, ds.train_y)), ("test", (ds.test_x, ds.test_y))):
        oracle_x, oracle_y = torchvision_read(name, tmp_path / "cache", split)
        assert np.array_equal(x.numpy(), oracle_x) and np.array_equal(y.numpy(), oracle_y)
        assert np.array_equal(x.numpy(), written[split][0]) and np.array_equal(y.numpy(), written[split][1])
    assert offline == []  # the files were there: no download was tried


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_gzipped_idx_files_as_downloaded_are_extracted_without_a_network(name, tmp_path, tiny_checksums, offline):
    written = write_named(name, tmp_path / "cache", gz=True)
    ds = load_data(name, tmp_path / "cache", quiet)
    assert np.array_equal(ds.test_x.numpy(), written["test"][0]) and offline == []


def test_table_agrees_with_torchvision():
    """Where the table says the files are and where to get them is what torchvision's classes use."""
    tv = torchvision.datasets
    for name, cls in (("mnist", tv.MNIST), ("fashion-mnist", tv.FashionMNIST)):
        spec = NAMED[name]
        assert spec.url == cls.mirrors[0] and list(spec.classes) == cls.classes
        assert [Path(a).name for a in spec.archives] == [f for f, _ in cls.resources]
        assert spec.folder == f"{cls.__name__}/raw" and list(spec.files) == [f[:-3] for f, _ in cls.resources]
    for name, cls in (("cifar10", tv.CIFAR10), ("cifar100", tv.CIFAR100)):
        spec = NAMED[name]
        assert (spec.url, spec.archives, spec.folder) == (cls.url, (cls.filename,), cls.base_folder)
        assert list(spec.files) == [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    svhn = NAMED["svhn"]
    assert list(svhn.files) == [tv.SVHN.split_list[s][1] for s in ("train", "test")]
    assert all(tv.SVHN.split_list[s][0] == svhn.url + f for s, f in zip(("train", "test"), svhn.files))
    assert len(NAMED["cifar100"].classes) == 100 == len(set(NAMED["cifar100"].classes))


# ----------------------------------------------------------------------------- training through the CLI

NETS = {(1, 28, 28, 10): "input 1x28x28\nconv 4 k3 s2 | relu\nflatten\nlinear 10\n",
        (3, 32, 32, 10): "input 3x32x32\nconv 4 k3 s2 | relu\nflatten\nlinear 10\n",
        (3, 32, 32, 100): "input 3x32x32\nconv 4 k3 s2 | relu\nflatten\nlinear 100\n"}


@pytest.mark.parametrize("name", ALL)
def test_one_epoch_trains_end_to_end_and_eval_reads_the_same_data(name, cli, tmp_path, monkeypatch, tiny_checksums, offline):
    monkeypatch.chdir(tmp_path)
    write_named(name, tmp_path / "cache")
    spec = NAMED[name]
    Path("net.arch").write_text(NETS[(*spec.shape, len(spec.classes))])
    r = cli("train", "net.arch", "--data", name, "--data-dir", "cache", "--epochs", "1", "--batch-size", "10",
            "--out", "run", "--quiet", "--device", "cpu", "--set", "flip=none")
    assert r.returncode == 0, r.stderr
    assert f"data: {spec.title} from {Path('cache') / name / spec.folder}".rstrip("/") in r.stdout
    report = __import__("json").loads(Path("run/report.json").read_text())
    assert report["data"] == name and report["test_images"] == len(spec.classes) * PER_CLASS["test"]
    assert len(report["per_class_accuracy"]) == len(spec.classes)
    r = cli("eval", "run/checkpoint.pt", "--data-dir", "cache", "--device", "cpu")  # the checkpoint names the data
    assert r.returncode == 0, r.stderr
    assert f"on {len(spec.classes) * PER_CLASS['test']} images" in r.stdout
    assert offline == []


def test_python_api_takes_a_name_and_a_limit(tmp_path, tiny_checksums, offline):
    import archspec
    from archspec.language.errors import UsageError

    write_named("mnist", tmp_path / "cache")
    result = archspec.train(NETS[(1, 28, 28, 10)], data="mnist", data_dir=tmp_path / "cache", limit=10, out=tmp_path / "run",
                            quiet=True, device="cpu", epochs=1, batch_size=10, val=0)  # one image a class: none to hold out
    assert result["data"] == "mnist" and result["test_images"] == 10
    with pytest.raises(UsageError, match="limit applies to data loaded by name or from a folder"):
        archspec.train(NETS[(1, 28, 28, 10)], data=load_data("mnist", tmp_path / "cache", quiet), limit=10, out=tmp_path / "r2")


def test_spec_for_other_data_is_refused_before_any_download_or_decode(cli, tmp_path, monkeypatch, offline):
    """`input 3x32x32` on MNIST: the help line gives the right `input`; nothing is read or fetched first."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(data_mod, "load_data", lambda *a, **k: pytest.fail("data loaded before the spec check"))
    Path("net.arch").write_text(NETS[(3, 32, 32, 10)])
    r = cli("train", "net.arch", "--data", "mnist", "--data-dir", "cache", "--out", "run")
    assert_golden(GOLDEN / "mnist_input_mismatch.txt", r)
    r = cli("train", "net.arch", "--data", "cifar100", "--data-dir", "cache", "--out", "run")
    assert_golden(GOLDEN / "cifar100_class_mismatch.txt", r)
    assert offline == [] and not Path("cache").exists() and not Path("run").exists()


@pytest.mark.parametrize("name", ALL)
def test_missing_dataset_offline_is_one_error_saying_where_and_how(name, cli, tmp_path, monkeypatch, offline):
    monkeypatch.chdir(tmp_path)
    spec = NAMED[name]
    Path("net.arch").write_text(NETS[(*spec.shape, len(spec.classes))])
    started = time.monotonic()
    r = cli("train", "net.arch", "--data", name, "--data-dir", "cache", "--out", "run", "--quiet")
    assert time.monotonic() - started < 30
    assert_golden(GOLDEN / f"{name}_offline.txt", r)
    assert "Traceback" not in r.stderr and len(offline) == 1  # one reachability probe, no download attempted


def test_an_unanswering_network_fails_within_the_reachability_bound(tmp_path, monkeypatch):
    """A resolver or host that never answers (urlopen blocks) must not hold the command: the probe is bounded."""
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: time.sleep(3600))
    monkeypatch.setattr(fetch, "REACH_TIMEOUT_S", 0.5)
    started = time.monotonic()
    with pytest.raises(ArchspecError, match=r"CIFAR-100 is not in .* and cannot be downloaded "
                                            r"\(no answer from www.cs.toronto.edu in 0.5 s\)") as exc:
        load_data("cifar100", tmp_path, quiet)
    assert time.monotonic() - started < 5
    assert "cifar-100-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz" in exc.value.help


def test_reachable_host_lets_torchvision_download_and_its_failure_is_one_error(tmp_path, monkeypatch):
    """The probe passes (the host answers), then the download itself fails: the same one-line error, no traceback."""
    def answer_probe_only(request, *args, **kwargs):
        if getattr(request, "full_url", None) == "http://ufldl.stanford.edu/":
            return type("Response", (), {"close": lambda self: None})()
        raise urllib.error.URLError(ConnectionResetError(104, "Connection reset by peer"))

    monkeypatch.setattr(urllib.request, "urlopen", answer_probe_only)
    with pytest.raises(ArchspecError, match=r"SVHN is not in .* and the download failed \(Connection reset by peer\)"):
        load_data("svhn", tmp_path, quiet)


def test_damaged_files_are_named_with_how_to_replace_them(tmp_path, offline, tiny_checksums, monkeypatch):
    write_named("cifar10", tmp_path)
    monkeypatch.undo()  # the official checksums again: the tiny files are not the released ones
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("tried the network"))
    with pytest.raises(ArchspecError, match=r"cannot read CIFAR-10 from .*cifar-10-batches-py: a file is missing or its "
                                            r"checksum differs from the official release") as exc:
        load_data("cifar10", tmp_path, quiet)
    assert exc.value.help.startswith(f"delete {tmp_path / 'cifar10'} and run again with a network, or copy")
    write_named("mnist", tmp_path)
    raw = tmp_path / "mnist" / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    raw.write_bytes(raw.read_bytes()[:3])  # truncated inside the header
    with pytest.raises(ArchspecError, match=r"cannot read MNIST from .*MNIST/raw: "):
        load_data("mnist", tmp_path, quiet)


def test_svhn_without_scipy_names_the_package(tmp_path, tiny_checksums, offline, monkeypatch):
    write_named("svhn", tmp_path)
    monkeypatch.setitem(__import__("sys").modules, "scipy.io", None)  # `import scipy.io` raises ImportError
    with pytest.raises(ArchspecError, match="SVHN is stored as MATLAB .mat files, which torchvision reads with scipy") as exc:
        load_data("svhn", tmp_path, quiet)
    assert exc.value.help.startswith("pip install scipy")


# ----------------------------------------------------------------------------- --limit


def test_stratified_keeps_each_class_share_and_the_first_of_each():
    labels = [0] * 60 + [1] * 30 + [2] * 10
    keep = stratified(labels, 10, 3).tolist()
    picked = [labels[i] for i in keep]
    assert (picked.count(0), picked.count(1), picked.count(2)) == (6, 3, 1)
    assert keep == list(range(6)) + list(range(60, 63)) + [90]  # the first ones of each class, in order
    assert stratified(labels, 100, 3).tolist() == list(range(100))
    rare = stratified([0] * 98 + [1, 2], 5, 3).tolist()  # every class keeps one image, the total stays 5
    assert len(rare) == 5 and {98, 99} <= set(rare)
    with pytest.raises(ArchspecError, match="--limit 2 is fewer than the data's 3 classes"):
        stratified(labels, 2, 3)


def test_limit_on_a_named_dataset(tmp_path, tiny_checksums, offline):
    written = write_named("fashion-mnist", tmp_path)
    lines: list[str] = []
    ds = load_data("fashion-mnist", tmp_path, lines.append, limit=20)
    assert len(ds.train_x) == 20 and len(ds.test_x) == 20  # test has exactly 20: all of it
    assert torch.bincount(ds.train_y).tolist() == [2] * 10
    x, y = written["train"]
    assert np.array_equal(ds.train_x.numpy(), x[:20]) and np.array_equal(ds.train_y.numpy(), y[:20])
    assert "(--limit 20: 20 train and 20 test images, stratified by class)" in lines[-1]
    assert ds.limit == 20 and load_data("fashion-mnist", tmp_path, quiet).limit is None


def test_limit_on_a_folder_decodes_only_the_chosen_images(tmp_path, monkeypatch):
    for split, n in (("train", 6), ("test", 4)):
        for c in ("cat", "dog"):
            (tmp_path / "d" / split / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(np.full((8, 8, 3), i, np.uint8)).save(tmp_path / "d" / split / c / f"{i}.png")
    decoded: list[Path] = []
    real_decode = data_mod._decode
    monkeypatch.setattr(data_mod, "_decode", lambda p: decoded.append(p) or real_decode(p))
    ds = load_data(str(tmp_path / "d"), tmp_path / "cache", quiet, limit=4)
    assert sorted(p.relative_to(tmp_path / "d").as_posix() for p in decoded) == sorted(
        f"{s}/{c}/{i}.png" for s in ("train", "test") for c in ("cat", "dog") for i in (0, 1))
    assert ds.train_y.tolist() == [0, 0, 1, 1] and ds.train_x[:, 0, 0, 0].tolist() == [0, 1, 0, 1] and ds.limit == 4


def test_limit_flag_must_be_a_positive_count(cli):
    r = cli("train", "x.arch", "--limit", "0")
    assert r.returncode == 2 and "--limit: must be a whole number of at least 1, got '0'" in r.stderr


# ----------------------------------------------------------------------------- decode progress


def _folder(root: Path, n: int) -> Path:
    for split in ("train", "test"):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(np.full((8, 8), i % 256, np.uint8)).save(root / split / c / f"{i:03d}.png")
    return root


def test_piped_decode_prints_plain_progress_lines(tmp_path, monkeypatch):
    _folder(tmp_path / "d", 5)
    monkeypatch.setattr(data_mod, "PLAIN_PROGRESS_EVERY_S", 0.0)
    lines: list[str] = []
    load_data(str(tmp_path / "d"), tmp_path / "cache", lines.append, live=False)
    assert lines[0] == f"data: decoding 20 images from {tmp_path / 'd'} on {os.cpu_count()} threads (once: the result is cached)"
    assert lines[1:-1] == [f"data: decoded {i}/20 images" for i in range(1, 20)]
    assert lines[-1].startswith("data: decoded 10 train and 10 test images") and all("\r" not in line for line in lines)


def test_terminal_decode_shows_a_progress_bar(tmp_path):
    """`archspec train` on a real terminal (a pty): the bar is drawn on stderr while the images decode."""
    import pty
    import subprocess
    import sys

    _folder(tmp_path / "d", 150)
    (tmp_path / "net.arch").write_text("input 1x8x8\nflatten\nlinear 2\n")
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "archspec", "train", "net.arch", "--data", "d", "--data-dir", "cache",
                             "--epochs", "1", "--out", "run", "--device", "cpu"], cwd=tmp_path,
                            stdin=follower, stdout=follower, stderr=follower, env={**os.environ, "COLUMNS": "100"})
    os.close(follower)
    output = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    assert proc.wait(timeout=120) == 0, output.decode(errors="replace")
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output.decode(errors="replace"))  # colours and cursor moves
    assert "data: decoding 600 images" in text and "data: decoding ━" in text and "600/600" in text
