"""The gateway's HTTP/1.1 protocol: uvicorn's own (``httptools``, what ``http="auto"`` picks), but
a large piece of a chunked body is written to the socket without being copied into its frame,
and what an answer writes in one turn of the event loop goes out in one write
(:mod:`proxy.http.cork`).

uvicorn frames each ``http.response.body`` message of a chunked answer (one whose length is not
known in advance: a 16 MB ``ImagesResponse`` written while the upstream still sends it, an SSE
stream) as ``b"".join([size line, body, CRLF])`` before ``transport.write``: a copy of every
byte of the body, ~6 % of the event loop's time for 16 MB answers passed through (py-spy). Here
such a piece goes to ``transport.writelines`` as the three parts instead, which uvloop sends with
one ``writev`` (the kernel copies from the body itself; what the socket does not take at once
stays queued as views of the same objects). asyncio's own transports join the parts in
``writelines`` (Python < 3.12), as uvicorn did: the bytes on the wire are the same either way.

Only a body message that has more to follow, of at least :data:`WRITEV_MIN` bytes, of a
response that started and is chunked, on a request other than HEAD, is written here; its flow
control is uvicorn's (wait while the transport is paused, drop it once the client is gone).
Every other message (the start, a small or last piece, an answer with a Content-Length) is
uvicorn's ``send``, unchanged.

Each cycle writes through a :class:`~proxy.http.cork.CorkedTransport` of its own, flushed as its
answer ends (before uvicorn may close the connection, or start the next pipelined request).

The cycles become :class:`ChunkedWritesCycle` where uvicorn (0.55) starts each one,
``HttpToolsProtocol._start_asgi_task``: if a later uvicorn stops starting them there, answers are
written as uvicorn writes them (joined, each at once), and tests/unit/http/test_chunked.py
fails.
"""

from __future__ import annotations

from typing import Any

from uvicorn._types import ASGI3Application, ASGISendEvent
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from proxy.http.cork import CorkedTransport

# The value of ``uvicorn.Config(http=...)`` that serves HTTP/1.1 with this protocol.
PROTOCOL = "proxy.http.chunked:ChunkedWritesProtocol"
# Smaller pieces are joined, as uvicorn does: one buffer to write is cheaper than three.
WRITEV_MIN = 64 * 1024


class ChunkedWritesCycle(RequestResponseCycle):
    """One request's ASGI cycle, writing through a cork; a large chunked piece is framed without
    a copy."""

    transport: Any  # a CorkedTransport, from _start_asgi_task on

    async def send(self, message: ASGISendEvent) -> None:
        if message["type"] == "http.response.body" and self._frames_in_place(message):
            if self.flow.write_paused and not self.disconnected:
                await self.flow.drain()
            if self.disconnected:
                return
            body: Any = message["body"]
            self.transport.writelines((b"%x\r\n" % len(body), body, b"\r\n"))
            return
        await super().send(message)
        if self.response_complete:
            self.transport.flush()  # the answer is whole: nothing of it waits for the turn's end

    def _frames_in_place(self, message: Any) -> bool:
        return (self.response_started and not self.response_complete
                and self.chunked_encoding is True and message.get("more_body", False)
                and len(message.get("body", b"")) >= WRITEV_MIN
                and self.scope["method"] != "HEAD")


class ChunkedWritesProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol whose request cycles are :class:`ChunkedWritesCycle`."""

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        # Every cycle starts here (the first and each pipelined one), before any of its sends.
        # The cycle is made by uvicorn's on_headers_complete, which names its class itself.
        cycle.__class__ = ChunkedWritesCycle
        cycle.transport = CorkedTransport(cycle.transport, self.loop)
        super()._start_asgi_task(cycle, app)
