"""The datasets `--data` knows by name (MNIST, Fashion-MNIST, CIFAR-10, CIFAR-100, SVHN): their shapes,
classes and official files, as a table.

Torch-free and network-free: the CLI builds its --data help from it and the preflight checks a spec
against it before torch is imported. Reading the files (torchvision) is archspec.training.fetch.
Each set lives in `<cache dir>/<name>/`, laid out as torchvision expects it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DIGITS = tuple(str(d) for d in range(10))
CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle", "bowl", "boy",
    "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle", "chair", "chimpanzee", "clock",
    "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest",
    "fox", "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion", "lizard",
    "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom", "oak_tree", "orange", "orchid",
    "otter", "palm_tree", "pear", "pickup_truck", "pine_tree", "plain", "plate", "poppy", "porcupine", "possum",
    "rabbit", "raccoon", "ray", "road", "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper",
    "snail", "snake", "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone",
    "television", "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf",
    "woman", "worm")
_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@dataclass(frozen=True)
class NamedData:
    name: str  # the `--data` value
    title: str
    shape: tuple[int, int, int]  # C, H, W
    classes: tuple[str, ...]
    folder: str  # where torchvision reads the files, relative to <cache dir>/<name>
    files: tuple[str, ...]  # the files it reads there
    archives: tuple[str, ...]  # the downloaded form, relative to <cache dir>/<name> (extracted on the first load)
    url: str  # where to get them by hand
    torchvision_class: str

    def root(self, cache_dir: Path) -> Path:
        return Path(cache_dir) / self.name

    def where(self, cache_dir: Path) -> Path:
        return self.root(cache_dir) / self.folder if self.folder else self.root(cache_dir)


NAMED: dict[str, NamedData] = {d.name: d for d in (
    NamedData("mnist", "MNIST", (1, 28, 28), tuple(f"{d} - {w}" for d, w in zip(DIGITS, (
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"))),
        "MNIST/raw", _MNIST_FILES, tuple(f"MNIST/raw/{f}.gz" for f in _MNIST_FILES),
        "https://ossci-datasets.s3.amazonaws.com/mnist/", "MNIST"),
    NamedData("fashion-mnist", "Fashion-MNIST", (1, 28, 28), (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        "FashionMNIST/raw", _MNIST_FILES, tuple(f"FashionMNIST/raw/{f}.gz" for f in _MNIST_FILES),
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/", "FashionMNIST"),
    NamedData("cifar10", "CIFAR-10", (3, 32, 32), (
        "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
        "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta"),
        ("cifar-10-python.tar.gz",), "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "CIFAR10"),
    NamedData("cifar100", "CIFAR-100", (3, 32, 32), CIFAR100_CLASSES,
              "cifar-100-python", ("train", "test", "meta"),
              ("cifar-100-python.tar.gz",), "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", "CIFAR100"),
    NamedData("svhn", "SVHN", (3, 32, 32), DIGITS, "", ("train_32x32.mat", "test_32x32.mat"), (),
              "http://ufldl.stanford.edu/housenumbers/", "SVHN"),
)}


def names() -> str:
    return "|".join(NAMED)
