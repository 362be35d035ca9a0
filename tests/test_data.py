"""Data loading: ImageFolder decode, the on-disk cache, the CIFAR-10 download path, and clear errors."""
from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from PIL import Image  # noqa: E402

from archspec.training import data as data_mod  # noqa: E402
from archspec.training.data import load_data, load_image  # noqa: E402
from archspec.language.errors import ArchspecError  # noqa: E402
from conftest import CIFAR  # noqa: E402
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_folder(root: Path, classes=("cat", "dog"), per_class=(4, 2), size=(8, 8), seed=0) -> dict[str, np.ndarray]:
    """A tiny ImageFolder of lossless PNGs; returns the pixels written, by relative path."""
    rng = np.random.default_rng(seed)
    pixels = {}
    for split, n in zip(("train", "test"), per_class):
        for c in classes:
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                a = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
                Image.fromarray(a).save(root / split / c / f"{i:04d}.png")
                pixels[f"{split}/{c}/{i:04d}.png"] = a
    return pixels


def quiet(_: str) -> None:
    pass


def test_folder_decodes_to_one_uint8_tensor(tmp_path):
    pixels = write_folder(tmp_path / "d")
    ds = load_data(str(tmp_path / "d"), tmp_path / "cache", quiet)
    assert ds.classes == ["cat", "dog"]
    assert ds.train_x.dtype == torch.uint8 and ds.train_x.shape == (8, 3, 8, 8)
    assert ds.test_x.shape == (4, 3, 8, 8) and ds.shape == (3, 8, 8)
    assert ds.train_y.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    # PNG is lossless: the tensor holds exactly the pixels written (CHW), in sorted file order.
    assert torch.equal(ds.train_x[5], torch.from_numpy(pixels["train/dog/0001.png"]).permute(2, 0, 1))


def test_second_load_hits_the_disk_cache(tmp_path, monkeypatch):
    write_folder(tmp_path / "d")
    first = load_data(str(tmp_path / "d"), tmp_path / "cache", quiet)
    assert len(list((tmp_path / "cache" / "decoded").glob("*.pt"))) == 1
    monkeypatch.setattr(data_mod, "_decode", lambda p: pytest.fail("decoded again despite the cache"))
    lines: list[str] = []
    second = load_data(str(tmp_path / "d"), tmp_path / "cache", lines.append)
    assert "cache" in lines[0]
    assert torch.equal(first.train_x, second.train_x) and torch.equal(first.test_y, second.test_y)


def test_cache_key_follows_the_files(tmp_path):
    write_folder(tmp_path / "d")
    load_data(str(tmp_path / "d"), tmp_path / "cache", quiet)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "d" / "train" / "cat" / "9999.png")
    ds = load_data(str(tmp_path / "d"), tmp_path / "cache", quiet)
    assert len(ds.train_x) == 9
    assert len(list((tmp_path / "cache" / "decoded").glob("*.pt"))) == 2


def test_mixed_sizes_and_modes_are_converted_to_the_common_shape(tmp_path):
    write_folder(tmp_path / "d", size=(8, 8))
    Image.fromarray(np.full((16, 12), 200, np.uint8), mode="L").save(tmp_path / "d" / "train" / "cat" / "big.png")
    Image.fromarray(np.zeros((8, 8, 4), np.uint8), mode="RGBA").save(tmp_path / "d" / "train" / "dog" / "rgba.png")
    ds = load_data(str(tmp_path / "d"), tmp_path / "cache", quiet)
    assert ds.train_x.shape == (10, 3, 8, 8)
    big = ds.train_x[4]  # sorted: 0000..0003.png then big.png
    assert big.min() == 200 and big.max() == 200


def test_grey_images_give_one_channel(tmp_path):
    for split in ("train", "test"):
        for c in ("a", "b"):
            (tmp_path / split / c).mkdir(parents=True)
            Image.fromarray(np.zeros((28, 28), np.uint8), mode="L").save(tmp_path / split / c / "0.png")
    assert load_data(str(tmp_path), tmp_path / "cache", quiet).shape == (1, 28, 28)


def test_missing_directory(tmp_path):
    with pytest.raises(ArchspecError, match="does not exist") as exc:
        load_data(str(tmp_path / "nope"), tmp_path / "cache", quiet)
    assert "ImageFolder" in exc.value.help


def test_wrong_layout(tmp_path):
    (tmp_path / "d" / "cat").mkdir(parents=True)  # classes at the top, no train/ test/
    with pytest.raises(ArchspecError, match="no train/ or test/") as exc:
        load_data(str(tmp_path / "d"), tmp_path / "cache", quiet)
    assert "train/<class>" in exc.value.help


def test_train_and_test_classes_differ(tmp_path):
    write_folder(tmp_path / "d")
    (tmp_path / "d" / "test" / "dog").rename(tmp_path / "d" / "test" / "bird")
    with pytest.raises(ArchspecError, match=r"only in train: \['dog'\]; only in test: \['bird'\]"):
        load_data(str(tmp_path / "d"), tmp_path / "cache", quiet)


def test_class_folders_without_images(tmp_path):
    for split in ("train", "test"):
        (tmp_path / split / "cat").mkdir(parents=True)
    with pytest.raises(ArchspecError, match="no images"):
        load_data(str(tmp_path), tmp_path / "cache", quiet)


def test_corrupt_image_is_named(tmp_path):
    write_folder(tmp_path / "d")
    bad = tmp_path / "d" / "train" / "dog" / "0001.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(ArchspecError, match="cannot decode image .*0001.png") as exc:
        load_data(str(tmp_path / "d"), tmp_path / "cache", quiet)
    assert "replace that file" in exc.value.help


def test_failed_download_says_where_the_files_go(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)  # the network boundary only
    with pytest.raises(ArchspecError, match=r"CIFAR-10 is not in .*cifar10/cifar-10-batches-py and cannot be downloaded") as exc:
        load_data("cifar10", tmp_path, quiet)
    assert "copy cifar-10-python.tar.gz" in exc.value.help and "--data DIR" in exc.value.help


def test_load_image_converts_for_the_model(tmp_path):
    Image.fromarray(np.full((20, 10), 7, np.uint8), mode="L").save(tmp_path / "g.png")
    x = load_image(tmp_path / "g.png", (3, 32, 32))
    assert x.shape == (3, 32, 32) and x.dtype == torch.uint8 and int(x.float().mean()) == 7
    with pytest.raises(ArchspecError, match="4-channel"):
        load_image(tmp_path / "g.png", (4, 32, 32))
    with pytest.raises(ArchspecError, match="does not exist"):
        load_image(tmp_path / "missing.png", (3, 32, 32))


def real_subset(root: Path, train_per_class: int, test_per_class: int) -> Path:
    """An ImageFolder of symlinks to the first N real JPEGs per class (decoded like any folder)."""
    if not CIFAR.is_dir():
        pytest.skip(f"real images not found at {CIFAR} (the shared CIFAR-10 JPEG copy)")
    for split, n in (("train", train_per_class), ("test", test_per_class)):
        for c in sorted(p.name for p in (CIFAR / split).iterdir()):
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for f in sorted((CIFAR / split / c).iterdir())[:n]:
                (root / split / c / f.name).symlink_to(f)
    return root


def test_real_jpegs_subset(tmp_path):
    ds = load_data(str(real_subset(tmp_path / "c", 20, 10)), tmp_path / "cache", quiet)
    assert ds.classes == CIFAR10_CLASSES  # torchvision's CIFAR10 order
    assert ds.train_x.shape == (200, 3, 32, 32) and ds.test_x.shape == (100, 3, 32, 32)
    mean, std = ds.stats()
    assert all(0.3 < m < 0.65 for m in mean) and all(0.15 < s < 0.35 for s in std)


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose IHDR claims width x height (no pixel data): what a decompression bomb's header looks like."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def test_decompression_bomb_is_named(tmp_path):
    write_folder(tmp_path / "d")
    bomb = tmp_path / "d" / "train" / "cat" / "0002.png"
    _png_header_only(bomb, 20000, 20000)
    with pytest.raises(ArchspecError, match=r"image .*0002.png is too large to decode safely") as exc:
        load_data(str(tmp_path / "d"), tmp_path / "cache", quiet)
    assert "replace that file" in exc.value.help
    from archspec.training.preflight import probe_data

    for first in ("0000.png", "0001.png"):  # the bomb becomes the first image the preflight reads
        (tmp_path / "d" / "train" / "cat" / first).unlink()
    assert probe_data(str(tmp_path / "d")).classes == ("cat", "dog")  # headers only: no exception, the full load names it


def test_symlink_loop_is_named(tmp_path):
    write_folder(tmp_path / "d")
    loop = tmp_path / "d" / "train" / "dog" / "loop.png"
    loop.symlink_to(loop)
    with pytest.raises(ArchspecError, match=r"cannot read image .*loop.png: Too many levels of symbolic links"):
        load_data(str(tmp_path / "d"), tmp_path / "cache", quiet)


def test_unreadable_image_is_named(tmp_path):
    write_folder(tmp_path / "d")
    (tmp_path / "d" / "test" / "cat" / "folder.png").mkdir()  # open() fails with an OSError, like a file without read permission
    with pytest.raises(ArchspecError, match=r"cannot read image .*folder.png: Is a directory"):
        load_data(str(tmp_path / "d"), tmp_path / "cache", quiet)


def test_data_path_that_is_a_file(tmp_path):
    (tmp_path / "data.zip").write_bytes(b"PK")
    with pytest.raises(ArchspecError, match=r"data path .*data.zip is a file, not a directory"):
        load_data(str(tmp_path / "data.zip"), tmp_path / "cache", quiet)


def test_cache_directory_is_checked(tmp_path):
    (tmp_path / "cache").write_text("")
    with pytest.raises(ArchspecError, match=r"the cache directory .*cache is a file"):
        data_mod.check_cache_dir(tmp_path / "cache")
    assert data_mod.check_cache_dir(tmp_path / "new" / "cache").is_dir()


def test_failed_cache_write_leaves_no_temp_file_and_still_loads(tmp_path, monkeypatch):
    write_folder(tmp_path / "d")
    real_save = torch.save

    def disk_full(obj, f, *a, **k):
        real_save(obj, f, *a, **k)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    lines: list[str] = []
    ds = load_data(str(tmp_path / "d"), tmp_path / "cache", lines.append)
    assert len(ds.train_x) == 8 and "not cached" in lines[-1] and "No space left on device" in lines[-1]
    assert list((tmp_path / "cache" / "decoded").iterdir()) == []


def _train_lenet_style(tmp_path: Path, data: Path, capsys) -> tuple[int, str]:
    """`archspec train` of a 2-class net on `data`: (exit code, stderr), torch-free checks included."""
    from archspec.cli import main

    (tmp_path / "net.arch").write_text("input 3x8x8\nconv 4 k3 | relu\nflatten\nlinear 2\n")
    code = main(["train", str(tmp_path / "net.arch"), "--data", str(data), "--data-dir", str(tmp_path / "cache"),
                 "--epochs", "1", "--batch-size", "2", "--out", str(tmp_path / "run"), "--quiet", "--device", "cpu"])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("split", ["train", "test"])
@pytest.mark.parametrize("kind", ["loop", "dangling"])
def test_class_folder_that_is_a_broken_link_is_named(tmp_path, capsys, monkeypatch, split, kind):
    """It was dropped without a word (`is_dir()` is False for it): a 2-class net then trained on 2 of 3 classes."""
    write_folder(tmp_path / "d")
    link = tmp_path / "d" / split / "bird"
    link.symlink_to(link if kind == "loop" else tmp_path / "gone")
    reason = "Too many levels of symbolic links" if kind == "loop" else "No such file or directory"
    with pytest.raises(ArchspecError, match=f"cannot read {link}: {reason}"):
        load_data(str(tmp_path / "d"), tmp_path / "cache", quiet)
    monkeypatch.chdir(tmp_path)
    code, err = _train_lenet_style(tmp_path, Path("d"), capsys)
    assert code == 1 and err == (f"error: cannot read d/{split}/bird: {reason}\n"
                                 "help: remove the link, or point it at an existing class folder\n")
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


@pytest.mark.parametrize("split", ["train", "test"])
def test_empty_class_folder_is_named(tmp_path, capsys, monkeypatch, split):
    write_folder(tmp_path / "d")
    for f in (tmp_path / "d" / split / "dog").iterdir():
        f.unlink()
    (tmp_path / "d" / split / "dog" / "notes.txt").write_text("no images here")
    monkeypatch.chdir(tmp_path)
    code, err = _train_lenet_style(tmp_path, Path("d"), capsys)
    assert code == 1 and err == (f"error: class folder d/{split}/dog has no images (.bmp, .gif, .jpeg, .jpg, .pgm, .png, "
                                 ".ppm, .tif, .tiff, .webp)\nhelp: add its images, or remove the folder from train/ and test/\n")
    (tmp_path / "d" / split / "dog").rename(tmp_path / "d" / split / ".dog")  # hidden folders are not classes
    with pytest.raises(ArchspecError, match="train/ has 1 classes and test/ has 2|train/ has 2 classes and test/ has 1"):
        load_data(str(tmp_path / "d"), tmp_path / "cache", quiet)
