"""What one request's answer writes in one turn of the event loop goes to the socket together.

uvicorn writes each ASGI message to the transport as it comes, and uvloop (``TCP_NODELAY``)
sends each write at once: a system call and a TCP segment each, and a wake-up and a read for the
client each. An answer is made of several messages written back to back, with nothing to wait
for between them: a JSON answer is its headers, then its body; an SSE image frame is its head,
the image's base64 and its tail (``proxy.http.sse_writer``: the base64 is never copied into
the frame), often right after the response's headers. strace of one streamed job (two partial
images, a final one): 13 writes to the client, 5 of them under 300 bytes (a frame's 9-byte tail
in a segment of its own); a bare relay made ~10.

:class:`CorkedTransport` stands between one request's cycle and the connection's transport and
holds what is written until the loop has run what is ready now (``call_soon``), then hands it
on in one ``writelines``: uvloop sends it with one ``writev``, the parts as they are (no copy).
It holds no more than :data:`CORK_MAX` bytes: a write that would take it there is handed on at
once with what came before it, so a large answer written faster than the client reads is
still paused by the transport's flow control (uvicorn's ``send`` waits while it is paused)
after at most that much. ``flush`` hands on what is held now (the cycle calls it as the answer
ends: the next request on the connection, or its closing, finds nothing held); ``close``
flushes first. Everything else is the transport's own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

# The most a cork holds: a partial image's frame (~100-200 KB) goes out whole, in one writev;
# a final image's pieces (up to ~256 KB a read) go out as they come.
CORK_MAX = 256 * 1024


class CorkedTransport:
    """A transport's writes, gathered per turn of the loop (see the module's docstring)."""

    __slots__ = ("_due", "_held", "_loop", "_size", "transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self._loop = loop
        self._held: list[Any] = []
        self._size = 0
        self._due = False  # a flush is scheduled

    def write(self, data: Any) -> None:
        if data:
            self._hold((data,))

    def writelines(self, parts: Iterable[Any]) -> None:
        self._hold(parts)

    def _hold(self, parts: Iterable[Any]) -> None:
        held = self._held
        for part in parts:
            if part:
                held.append(part)
                self._size += len(part)
        if self._size >= CORK_MAX:
            self.flush()
        elif held and not self._due:
            self._due = True
            self._loop.call_soon(self._flush_due)

    def _flush_due(self) -> None:
        self._due = False
        self.flush()

    def flush(self) -> None:
        """Hand on what is held (dropped if the connection is closing: nobody can read it)."""
        held = self._held
        if not held:
            return
        self._held, self._size = [], 0
        transport = self.transport
        if transport.is_closing():
            return
        if len(held) == 1:
            transport.write(held[0])
        else:
            transport.writelines(held)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)
