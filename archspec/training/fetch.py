"""Reading a named dataset (archspec.training.datasets) with torchvision's own dataset class.

Files already in the cache are read without touching the network; missing files are downloaded only
after a bounded reachability check, so an offline machine gets one clear error instead of a hang.
"""
from __future__ import annotations

import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from archspec.language.errors import ArchspecError
from archspec.training.datasets import NamedData

REACH_TIMEOUT_S = 10.0  # the whole reachability check, DNS included
READ_TIMEOUT_S = 60.0  # each connect and read of a download: a stalled transfer fails instead of hanging


def load_named(spec: NamedData, cache_dir: Path) -> tuple[Any, Any]:
    """The (train, test) torchvision datasets of `spec`, downloading only what is missing and reachable."""
    where = spec.where(cache_dir)
    if not _present(where, spec.files):
        if not _present(spec.root(cache_dir), spec.archives):
            _check_reachable(spec, cache_dir)
        with _socket_timeout(READ_TIMEOUT_S):
            return _construct(spec, cache_dir, download=True)
    return _construct(spec, cache_dir, download=False)


def _present(folder: Path, files: tuple[str, ...]) -> bool:
    return bool(files) and all((folder / f).is_file() for f in files)


def _construct(spec: NamedData, cache_dir: Path, download: bool) -> tuple[Any, Any]:
    import torchvision

    cls = getattr(torchvision.datasets, spec.torchvision_class)
    root = str(spec.root(cache_dir))
    if spec.name == "svhn":
        _require_scipy(spec)
        make: Callable[[bool], Any] = lambda train: cls(root, split="train" if train else "test", download=download)  # noqa: E731
    else:
        make = lambda train: cls(root, train=train, download=download)  # noqa: E731
    try:
        return make(True), make(False)
    except (urllib.error.URLError, socket.timeout, ConnectionError) as exc:
        raise _unavailable(spec, cache_dir, f"the download failed ({_reason(exc)})") from None
    except RuntimeError as exc:
        if "Error downloading" in str(exc):  # MNIST's mirrors, each failed
            raise _unavailable(spec, cache_dir, "the download failed on every mirror") from None
        raise _damaged(spec, cache_dir, "a file is missing or its checksum differs from the official release") from None
    except (OSError, EOFError, ValueError, KeyError, TypeError, AssertionError, IndexError) as exc:
        # A truncated or foreign file: pickle, scipy.io and torchvision's idx reader each fail their own way.
        raise _damaged(spec, cache_dir, f"{type(exc).__name__}: {exc}".rstrip(": ")) from None


def _require_scipy(spec: NamedData) -> None:
    try:
        import scipy.io  # noqa: F401  (torchvision reads SVHN's .mat files with it)
    except ImportError:
        raise ArchspecError(f"{spec.title} is stored as MATLAB .mat files, which torchvision reads with scipy; scipy is not installed",
                            "pip install scipy (or reinstall the extra: pip install 'archspec-cnn[torch]')") from None


def _files_help(spec: NamedData, cache_dir: Path) -> str:
    """Which official files to copy where, by hand."""
    if spec.archives:
        names = ", ".join(Path(a).name for a in spec.archives)
        folder = spec.root(cache_dir) / Path(spec.archives[0]).parent
    else:
        names, folder = ", ".join(spec.files), spec.where(cache_dir)
    return f"copy {names} from {spec.url} into {folder} (a folder under --data-dir)"


def _unavailable(spec: NamedData, cache_dir: Path, why: str) -> ArchspecError:
    return ArchspecError(f"{spec.title} is not in {spec.where(cache_dir)} and {why}",
                         f"run once with a network, or {_files_help(spec, cache_dir)}, or pass an ImageFolder copy with --data DIR")


def _damaged(spec: NamedData, cache_dir: Path, why: str) -> ArchspecError:
    return ArchspecError(f"cannot read {spec.title} from {spec.where(cache_dir)}: {why}",
                         f"delete {spec.root(cache_dir)} and run again with a network, or {_files_help(spec, cache_dir)}")


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    return str(getattr(reason, "strerror", None) or reason)


def _download_host(spec: NamedData) -> str:
    return urllib.parse.urlsplit(spec.url).scheme + "://" + urllib.parse.urlsplit(spec.url).netloc + "/"


def _check_reachable(spec: NamedData, cache_dir: Path) -> None:
    """Raise the 'not here and cannot be downloaded' error unless the download host answers within REACH_TIMEOUT_S.

    Runs in a daemon thread: name resolution has no timeout of its own, so a broken resolver could
    otherwise hold the command for minutes.
    """
    failure: list[str] = []

    def probe() -> None:
        try:
            request = urllib.request.Request(_download_host(spec), method="HEAD")
            urllib.request.urlopen(request, timeout=REACH_TIMEOUT_S).close()
        except urllib.error.HTTPError:
            pass  # the host answered: reachable
        except (urllib.error.URLError, OSError, ValueError) as exc:
            failure.append(_reason(exc))

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(REACH_TIMEOUT_S)
    if thread.is_alive():
        failure.append(f"no answer from {urllib.parse.urlsplit(spec.url).netloc} in {REACH_TIMEOUT_S:g} s")
    if failure:
        raise _unavailable(spec, cache_dir, f"cannot be downloaded ({failure[0]})")


@contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    """torchvision's downloader opens URLs without a timeout: give its connects and reads one."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)
