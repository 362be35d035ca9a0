"""Reading .arch files safely: refuse what is not a small regular UTF-8 file before reading it,
and name files the way diagnostics show them."""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from archspec.language.diagnostics import normalize_newlines

# Documented in docs/guide/limits.md: past it, one diagnostic instead of the work.
MAX_FILE_BYTES = 1 << 20  # 1 MiB: a .arch file (main or `use`d); checked on the file's size before reading


class Unreadable(Exception):
    """A file that is not read: not there, not a regular file, too large, not UTF-8; `reason` says which."""

    def __init__(self, reason: str, help: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.help = help


def read_arch_file(path: "str | Path") -> str:
    """The text of a .arch file, refused before reading when it is not a regular file (a FIFO, a
    device such as /dev/zero) or larger than MAX_FILE_BYTES (a sparse file too); a leading BOM dropped."""
    try:
        info = os.stat(path)  # follows links: the type and size of what would be read
    except ValueError:  # a NUL character in the path
        raise Unreadable("a file name cannot contain a NUL character", "remove the NUL character from the path") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise Unreadable("a loop of symbolic links", "point the link at a file") from None
        raise Unreadable(exc.strerror or str(exc)) from None
    if stat.S_ISDIR(info.st_mode):
        raise Unreadable("is a directory, not a .arch file")
    if not stat.S_ISREG(info.st_mode):
        raise Unreadable("not a regular file (a pipe, a device or a socket)", "pass a .arch file, or `-` for standard input")
    if info.st_size > MAX_FILE_BYTES:
        raise Unreadable(f"{info.st_size:,} bytes, over the limit of {MAX_FILE_BYTES:,} bytes for a .arch file",
                         "a .arch file is a few kilobytes; split it, or check that this is the right file")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)  # the size may have changed since stat
    except OSError as exc:
        raise Unreadable(exc.strerror or str(exc)) from None
    return decode_arch_bytes(data)


def decode_arch_bytes(data: bytes) -> str:
    """UTF-8 text with a leading byte order mark dropped; Unreadable when too large or not UTF-8."""
    if len(data) > MAX_FILE_BYTES:
        raise Unreadable(f"over the limit of {MAX_FILE_BYTES:,} bytes for a .arch file")
    try:
        return strip_bom(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise Unreadable(f"not UTF-8 text (byte {exc.start}); is it a .arch file?") from None


def strip_bom(text: str) -> str:
    """Editors on Windows start files with U+FEFF: invisible, and no part of the program."""
    return text[1:] if text.startswith("\ufeff") else text


def source_text(text: str) -> str:
    """The text the language reads: no byte order mark, and every line break a `\n` or `\r\n`."""
    return normalize_newlines(strip_bom(text))


def display_path(target: Path) -> str:
    """A used file's path as diagnostics show it: relative to the working directory when inside it."""
    try:
        return str(target.relative_to(Path.cwd()))
    except ValueError:
        return str(target)


def resolved_path(path: str) -> str:
    """The file's absolute path (the key that finds a `use` cycle); a name that is no file stays as it is."""
    if path in ("<string>", "<stdin>"):
        return path
    try:
        return str(Path(path).resolve())
    except (RuntimeError, OSError):  # a loop of symbolic links: no file to be `use`d again
        return path


def use_base(path: str) -> Path:
    """The folder a `use "file"` in `path` is relative to: the file's own, or the working directory for text."""
    return Path(path).parent if path not in ("<string>", "<stdin>", "-") else Path.cwd()


def new_file_mode() -> int:
    """The mode open() gives a new file: 0666 less the umask (for files written through a temp file, which
    mkstemp creates 0600). Read from /proc where it can be: setting the umask to read it, the other way,
    briefly changes it for every thread of the process."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o22)
    os.umask(mask)
    return 0o666 & ~mask
