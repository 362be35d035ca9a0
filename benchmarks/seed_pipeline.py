"""The seed course's tutorial pipeline, exactly: the baseline every archspec number is compared to.

Hand-written `Net`, torchvision ImageFolder on the JPEG copy with ToTensor + Normalize((0.5,)*3, (0.5,)*3),
DataLoader batch 4 with shuffle, SGD lr 0.001 momentum 0.9, CrossEntropyLoss, 2 epochs, then test accuracy.

Run alone:  python benchmarks/seed_pipeline.py [--data ../shared/data/cifar10]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
import torchvision.transforms as transforms

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10"


class Net(nn.Module):
    """The seed course's network, as written in the course."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def _accuracy(net: nn.Module, loader: torch.utils.data.DataLoader) -> float:
    correct = total = 0
    with torch.no_grad():
        for images, labels in loader:
            correct += (net(images).argmax(1) == labels).sum().item()
            total += labels.numel()
    return correct / total


def run_seed_pipeline(data: Path = DEFAULT_DATA, epochs: int = 2, seed: int = 0) -> dict:
    """Train and test the tutorial pipeline; returns wall time (training only), images/s and accuracies.

    `epoch_test_acc` is measured after each epoch with the clock stopped, so that time-to-accuracy
    can be read off the same run; the tutorial itself only tests at the end.
    """
    torch.manual_seed(seed)
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])
    trainset = torchvision.datasets.ImageFolder(str(Path(data) / "train"), transform=transform)
    testset = torchvision.datasets.ImageFolder(str(Path(data) / "test"), transform=transform)
    trainloader = torch.utils.data.DataLoader(trainset, batch_size=4, shuffle=True, num_workers=0)
    testloader = torch.utils.data.DataLoader(testset, batch_size=4, shuffle=False, num_workers=0)

    net = Net()
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.001, momentum=0.9)

    train_time, epoch_times, epoch_accs = 0.0, [], []
    for _ in range(epochs):
        start = time.perf_counter()
        for inputs, labels in trainloader:
            optimizer.zero_grad()
            loss = criterion(net(inputs), labels)
            loss.backward()
            optimizer.step()
        train_time += time.perf_counter() - start
        epoch_times.append(train_time)
        epoch_accs.append(_accuracy(net, testloader))
    return {
        "name": "seed pipeline (tutorial Net, batch 4, SGD 0.001)",
        "wall_time_s": train_time,
        "images_per_s": epochs * len(trainset) / train_time,
        "test_accuracy": epoch_accs[-1],
        "epoch_elapsed_s": epoch_times,
        "epoch_test_acc": epoch_accs,
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="ImageFolder root with train/ and test/")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    print(json.dumps(run_seed_pipeline(args.data, args.epochs), indent=2))


if __name__ == "__main__":
    main()
