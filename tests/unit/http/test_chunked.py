"""The gateway's HTTP protocol (``proxy.http.chunked``) against a hand-driven transport: a large
piece of a chunked answer reaches the transport as itself, framed by its neighbours (no copy);
what goes on the wire is uvicorn's chunked framing either way; small and last pieces, answers
with a Content-Length, HEAD and a client that left are uvicorn's own handling. What an answer
writes in one turn of the loop reaches the transport in one call (``proxy.http.cork``)."""

from __future__ import annotations

import asyncio
from typing import Any

import httptools
import pytest
import uvicorn
from uvicorn.server import ServerState

from proxy.http.chunked import PROTOCOL, WRITEV_MIN, ChunkedWritesProtocol
from proxy.http.cork import CORK_MAX

BIG = b"A" * WRITEV_MIN
BIGGER = b"B" * (3 * WRITEV_MIN + 1)


class Transport(asyncio.Transport):
    """Records what is written, and which objects reached it whole."""

    def __init__(self) -> None:
        super().__init__()
        self.wire = bytearray()
        self.whole: list[Any] = []  # objects passed to writelines
        self.calls: list[bytes] = []  # what each call wrote (one system call each, in uvloop)
        self.closed = False

    def write(self, data: Any) -> None:
        assert not self.closed, "written after the transport was closed"
        self.wire += data
        self.calls.append(bytes(data))

    def writelines(self, parts: Any) -> None:
        assert not self.closed, "written after the transport was closed"
        parts = list(parts)
        for part in parts:
            self.whole.append(part)
            self.wire += part
        self.calls.append(b"".join(parts))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def app_sending(pieces: list[bytes], headers: list[tuple[bytes, bytes]] | None = None) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": headers or []})
        for number, piece in enumerate(pieces):
            await send({"type": "http.response.body", "body": piece,
                        "more_body": number < len(pieces) - 1})
    return app


def connect(app: Any, method: str = "GET") -> tuple[ChunkedWritesProtocol, Transport]:
    """The protocol as ``image-proxy serve`` configures it, on a connection that sent one
    request."""
    config = uvicorn.Config(app, http=PROTOCOL, log_level="warning", access_log=False)
    config.load()
    assert config.http_protocol_class is ChunkedWritesProtocol
    protocol = ChunkedWritesProtocol(config, ServerState(), {})
    transport = Transport()
    protocol.connection_made(transport)
    protocol.data_received(f"{method} / HTTP/1.1\r\nhost: test\r\n\r\n".encode())
    return protocol, transport


async def serve_one(app: Any, method: str = "GET") -> tuple[Transport, bytes]:
    """One request answered; the answer's body as the wire has it (after its headers)."""
    protocol, transport = connect(app, method)
    await asyncio.gather(*protocol.server_state.tasks)
    protocol.connection_lost(None)
    head, _, body = bytes(transport.wire).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    return transport, body


def chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"


async def test_a_large_piece_of_a_chunked_answer_is_written_without_a_copy() -> None:
    transport, body = await serve_one(app_sending([b"{", BIG, b"x" * 100, BIGGER, b"}"]))
    assert body == chunked(b"{", BIG, b"x" * 100, BIGGER, b"}")
    # The large pieces are the objects the application sent, each between its frame's parts.
    assert [id(part) for part in transport.whole if len(part) >= WRITEV_MIN] == \
        [id(BIG), id(BIGGER)]
    at = next(n for n, part in enumerate(transport.whole) if part is BIG)
    assert transport.whole[at - 1:at + 2] == [b"%x\r\n" % len(BIG), BIG, b"\r\n"]


async def test_the_wire_is_what_a_parser_reads_as_the_pieces() -> None:
    pieces = [BIGGER, BIG, BIG + b"C"]
    transport, _ = await serve_one(app_sending(pieces))
    received: list[bytes] = []

    class Reader:
        def on_body(self, body: bytes) -> None:
            received.append(body)

    httptools.HttpResponseParser(Reader()).feed_data(bytes(transport.wire))
    assert b"".join(received) == b"".join(pieces)


async def test_the_last_piece_and_small_ones_are_framed_by_uvicorn() -> None:
    small = b"a" * 10
    transport, body = await serve_one(app_sending([small, BIG]))
    assert body == chunked(small, BIG)
    # Each is in the one frame uvicorn made of it (joined), not the object the app sent.
    assert not any(part is small or part is BIG for part in transport.whole)


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_an_answer_with_a_length_is_not_framed(method: str) -> None:
    length = str(2 * len(BIG)).encode()
    transport, body = await serve_one(app_sending([BIG, BIG], [(b"content-length", length)]),
                                      method)
    assert body == (BIG + BIG if method == "GET" else b"")
    # Written as the objects the app sent (uvicorn does not frame them), in one call.
    assert sum(part is BIG for part in transport.whole) == (2 if method == "GET" else 0)
    assert len(transport.calls) == 1


async def test_a_head_request_gets_no_body() -> None:
    transport, body = await serve_one(app_sending([BIG, BIG, b"}"]), "HEAD")
    assert body == b""
    assert not any(part is BIG for part in transport.whole)


async def test_nothing_is_written_once_the_client_left() -> None:
    left = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await left.wait()
        await send({"type": "http.response.body", "body": BIG, "more_body": True})

    protocol, transport = connect(app)
    await asyncio.sleep(0)
    transport.closed = True  # as a real transport is when its connection is lost
    protocol.connection_lost(None)
    written = len(transport.wire)
    left.set()
    await asyncio.gather(*protocol.server_state.tasks)
    await asyncio.sleep(0)
    assert len(transport.wire) == written and transport.whole == []


# ---- corked writes (proxy.http.cork) -----------------------------------------------------


async def test_an_answer_of_one_turn_is_one_write() -> None:
    """A JSON answer's headers and body; an SSE image frame's head, base64 and tail (smaller
    than the cork's limit): each reaches the transport in one call."""
    length = str(len(b'{"a":1}')).encode()
    transport, body = await serve_one(app_sending([b'{"a":1}'], [(b"content-length", length)]))
    assert body == b'{"a":1}' and len(transport.calls) == 1

    frame = [b"event: image\ndata: {\"b64_json\":\"", BIG, b'"}\n\n', b""]
    transport, body = await serve_one(app_sending(frame))
    assert body == chunked(*frame[:3])
    assert len(transport.calls) == 1
    assert any(part is BIG for part in transport.whole)  # still not copied


async def test_writes_of_a_turn_go_out_before_the_next_turn_and_the_next_wait() -> None:
    """What a turn wrote is on the transport once the loop has gone round, while the answer
    waits for more (an SSE stream between events)."""
    more = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        await more.wait()
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    protocol, transport = connect(app)
    for _ in range(3):
        await asyncio.sleep(0)
    assert len(transport.calls) == 1 and bytes(transport.wire).endswith(b"5\r\nfirst\r\n")
    more.set()
    await asyncio.gather(*protocol.server_state.tasks)
    assert len(transport.calls) == 2 and bytes(transport.wire).endswith(b"0\r\n\r\n")
    protocol.connection_lost(None)


async def test_the_cork_holds_no_more_than_its_limit() -> None:
    """Pieces written faster than the loop turns are handed on once they reach the limit,
    so the transport's flow control still sees them (no waiting for the turn's end)."""
    piece = b"x" * (CORK_MAX // 2)
    seen: list[int] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(6):
            await send({"type": "http.response.body", "body": piece, "more_body": True})
            seen.append(len(transport.wire))  # no turn of the loop between these sends
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    protocol, transport = connect(app)
    await asyncio.gather(*protocol.server_state.tasks)
    # Never more than the limit (and one piece) held back from the transport.
    for number, written in enumerate(seen, start=1):
        assert number * len(piece) - written <= CORK_MAX
    assert bytes(transport.wire).endswith(chunked(*[piece] * 6))
    protocol.connection_lost(None)


async def test_the_last_write_is_out_when_the_answer_ends_and_close_flushes_first() -> None:
    """The answer's end is on the transport when its last send returns (nothing waits for the
    turn's end: the connection may close, or serve the next request, right after)."""
    done: list[int] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"connection", b"close")]})
        await send({"type": "http.response.body", "body": b"whole", "more_body": False})
        done.append(len(transport.wire))

    protocol, transport = connect(app)
    await asyncio.gather(*protocol.server_state.tasks)
    assert transport.closed and done == [len(transport.wire)]
    assert bytes(transport.wire).endswith(b"\r\n\r\n5\r\nwhole\r\n0\r\n\r\n")
    assert len(transport.calls) == 1
