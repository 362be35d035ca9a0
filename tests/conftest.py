from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
CIFAR = REPO.parent / "shared" / "data" / "cifar10"


@pytest.fixture
def repo() -> Path:
    return REPO
