"""Whether the torch extra is installed: asked before any torch command, without importing torch at module level."""
from __future__ import annotations

from archspec.language.errors import ArchspecError


class MissingExtraError(ArchspecError):
    """A torch command run without the torch extra installed."""

    def __init__(self, what: str = "torch") -> None:
        super().__init__(
            f"this command needs PyTorch, but `{what}` is not installed",
            "install the extra: pip install 'archspec-cnn[torch]' (archspec-cnn is this project's name on the index; "
            "`pip install archspec` installs an unrelated package)",
        )


def require_torch() -> None:
    """Raise MissingExtraError unless torch and torchvision import."""
    try:
        import torch  # noqa: F401
        import torchvision  # noqa: F401
    except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
        raise MissingExtraError(getattr(exc, "name", None) or "torch") from None
