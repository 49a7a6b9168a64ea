"""The gateway's HTTP protocol (``proxy.http.chunked``) against a hand-driven transport: a large
piece of a chunked answer reaches the transport as itself, framed by its neighbours (no copy);
what goes on the wire is uvicorn's chunked framing either way; small and last pieces, answers
with a Content-Length, HEAD and a client that left are uvicorn's own handling."""

from __future__ import annotations

import asyncio
from typing import Any

import httptools
import pytest
import uvicorn
from uvicorn.server import ServerState

from proxy.http.chunked import PROTOCOL, WRITEV_MIN, ChunkedWritesProtocol

BIG = b"A" * WRITEV_MIN
BIGGER = b"B" * (3 * WRITEV_MIN + 1)


class Transport(asyncio.Transport):
    """Records what is written, and which objects reached it whole."""

    def __init__(self) -> None:
        super().__init__()
        self.wire = bytearray()
        self.whole: list[Any] = []  # objects passed to writelines
        self.closed = False

    def write(self, data: Any) -> None:
        self.wire += data

    def writelines(self, parts: Any) -> None:
        for part in parts:
            self.whole.append(part)
            self.wire += part

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
    assert transport.whole[:3] == [b"%x\r\n" % len(BIG), BIG, b"\r\n"]


async def test_the_wire_is_what_a_parser_reads_as_the_pieces() -> None:
    pieces = [BIGGER, BIG, BIG + b"C"]
    transport, _ = await serve_one(app_sending(pieces))
    received: list[bytes] = []

    class Reader:
        def on_body(self, body: bytes) -> None:
            received.append(body)

    httptools.HttpResponseParser(Reader()).feed_data(bytes(transport.wire))
    assert b"".join(received) == b"".join(pieces)


async def test_the_last_piece_and_small_ones_are_uvicorns_own_writes() -> None:
    transport, body = await serve_one(app_sending([b"a" * 10, BIG]))
    assert body == chunked(b"a" * 10, BIG)
    assert transport.whole == []


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_an_answer_with_a_length_is_not_framed(method: str) -> None:
    length = str(2 * len(BIG)).encode()
    transport, body = await serve_one(app_sending([BIG, BIG], [(b"content-length", length)]),
                                      method)
    assert body == (BIG + BIG if method == "GET" else b"")
    assert transport.whole == []


async def test_a_head_request_gets_no_body() -> None:
    transport, body = await serve_one(app_sending([BIG, BIG, b"}"]), "HEAD")
    assert body == b""
    assert transport.whole == []


async def test_nothing_is_written_once_the_client_left() -> None:
    left = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await left.wait()
        await send({"type": "http.response.body", "body": BIG, "more_body": True})

    protocol, transport = connect(app)
    await asyncio.sleep(0)
    protocol.connection_lost(None)
    written = len(transport.wire)
    left.set()
    await asyncio.gather(*protocol.server_state.tasks)
    assert len(transport.wire) == written and transport.whole == []
