"""Reading LSP frames (`Content-Length: N` headers, a blank line, N bytes of JSON) from stdio so
that one bad frame costs that frame only.

pygls' own loop reads exactly N bytes after a header: a frame whose body is shorter than its
Content-Length swallows the next messages as its body, and every later header is read out of
step, so the server never answers again. Here the body is read as it arrives and searched for a
header line: no valid JSON text contains one (a raw CR cannot appear inside a JSON string), so a
header inside a body means the frame was cut short; the frame is answered with a parse error and
reading starts again at that header. A frame over MAX_MESSAGE_BYTES is read past, not kept.
"""
from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

MAX_MESSAGE_BYTES = 64 << 20  # a didOpen of a 1 MiB document is at most ~6 MiB of JSON
_HEADER = re.compile(rb"Content-Length: *(\d+) *\r\n", re.IGNORECASE)
_END_OF_HEADERS = b"\r\n\r\n"
_TAIL = 64  # bytes kept from a body being read past: enough to find a header that straddles two reads


class BadFrame(Exception):
    """A frame that cannot be read; `reason` says why (the parse error sent back)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class FrameReader:
    """Frames from `read_some(n)`: an awaitable of at most n bytes, b"" at the end of input."""

    def __init__(self, read_some: Callable[[int], Awaitable[bytes]]) -> None:
        self.read_some = read_some
        self.pending = b""

    async def _more(self) -> None:
        chunk = await self.read_some(1 << 16)
        if not chunk:
            raise EOFError
        self.pending += chunk

    async def next_body(self) -> bytes:
        """The next frame's body; BadFrame for a frame that is not one (reading resumes after it);
        EOFError when the input ends."""
        length = await self._headers()
        return await self._body(length)

    async def _headers(self) -> int:
        while (end := self.pending.find(_END_OF_HEADERS)) < 0:
            if len(self.pending) > MAX_MESSAGE_BYTES:  # no blank line in sight: garbage, keep its tail
                self.pending = self.pending[-_TAIL:]
            await self._more()
        block, self.pending = self.pending[:end + 2], self.pending[end + 4:]
        found = list(_HEADER.finditer(block))
        if not found:
            raise BadFrame("a message without a Content-Length header")
        return int(found[-1].group(1))

    async def _body(self, length: int) -> bytes:
        body, searched, dropped = bytearray(), 0, 0
        while True:
            take = min(length - len(body) - dropped, len(self.pending))
            body += self.pending[:take]
            self.pending = self.pending[take:]
            cut = _HEADER.search(body, max(searched - _TAIL, 0))
            if cut is not None:  # the next frame's header: this one was shorter than it said
                self.pending = bytes(body[cut.start():]) + self.pending
                raise BadFrame(f"a message shorter than its Content-Length ({length:,} bytes)")
            searched = len(body)
            if len(body) > MAX_MESSAGE_BYTES:  # read past it, keeping a tail to search
                dropped += len(body) - _TAIL
                del body[:-_TAIL]
                searched = _TAIL
            if len(body) + dropped == length:
                if dropped:
                    raise BadFrame(f"a message of {length:,} bytes, over the limit of {MAX_MESSAGE_BYTES:,}")
                return bytes(body)
            await self._more()
