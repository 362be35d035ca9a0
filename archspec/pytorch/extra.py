"""Whether the torch extra is installed and works: asked before any torch command, without importing torch at module level."""
from __future__ import annotations

from importlib import metadata

from archspec.language.errors import ArchspecError

# torchvision 0.N is built for torch 2.(N - 15): 0.17 for 2.2, 0.21 for 2.6, and so on.
_TORCHVISION_MINOR_OFFSET = 15


class MissingExtraError(ArchspecError):
    """A torch command run without the torch extra installed."""

    def __init__(self, what: str = "torch") -> None:
        super().__init__(
            f"this command needs PyTorch, but `{what}` is not installed",
            "install the extra: pip install 'archspec-cnn[torch]' (archspec-cnn is this project's name on the index; "
            "`pip install archspec` installs an unrelated package)",
        )


class BrokenTorchError(ArchspecError):
    """torch or torchvision is installed but fails to import (most often a torchvision built for another torch)."""

    def __init__(self, failing: str, exc: BaseException) -> None:
        torch_version, vision_version = installed_version("torch"), installed_version("torchvision")
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        super().__init__(
            f"{failing} fails to import ({type(exc).__name__}: {first}): installed are torch {torch_version or '(none)'} "
            f"and torchvision {vision_version or '(none)'}, which must be built for each other",
            _reinstall_help(failing, torch_version),
        )


def installed_version(distribution: str) -> str | None:
    """The installed version of a distribution, from its metadata (nothing is imported)."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _reinstall_help(failing: str, torch_version: str | None) -> str:
    """Install the torchvision built for the installed torch, from the index torch came from (its +cpu / +cuXXX label)."""
    if failing == "torch" or torch_version is None:
        return "reinstall torch and torchvision together, from one index: pip install --force-reinstall torch torchvision"
    release, _, label = torch_version.partition("+")
    parts = release.split(".")
    index = f" --index-url https://download.pytorch.org/whl/{label}" if label else ""
    if len(parts) >= 2 and parts[0] == "2" and parts[1].isdigit():
        vision = f"0.{int(parts[1]) + _TORCHVISION_MINOR_OFFSET}.*"
        return (f"install the torchvision built for torch {torch_version} from the same index, e.g. "
                f"pip install 'torch=={release}' 'torchvision=={vision}'{index}")
    return f"install matching versions of torch and torchvision from one index, e.g. pip install --force-reinstall torch torchvision{index}"


def require_torch() -> None:
    """Raise MissingExtraError unless torch and torchvision are installed, BrokenTorchError unless they import."""
    for name in ("torch", "torchvision"):
        try:
            __import__(name)
        except ImportError as exc:  # not installed; or installed, but a library it loads is missing
            if exc.name == name or installed_version(name) is None:
                raise MissingExtraError(exc.name or name) from None
            raise BrokenTorchError(name, exc) from None
        except Exception as exc:  # torchvision for another torch: RuntimeError "operator torchvision::nms does not exist"
            raise BrokenTorchError(name, exc) from None
