"""A client whose upstream could not be reached, or whose connection to it broke, is told so in
plain words with an error code: never where the upstream is (the operator's topology) nor what
the HTTP or websocket library said. The address and the cause go to the log."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import pytest
from starlette.websockets import WebSocket

from tests.support.fakes.comfyui import COMFY_MODEL, FakeComfyUI, comfy_yaml
from tests.support.gateways import start_gateway
from tests.support.servers import free_port
from tests.support.stack import upstream_and_gateway

# What a client must not learn: addresses, ports, library and exception names.
TOPOLOGY = re.compile(r"\d+\.\d+\.\d+\.\d+|localhost|:\d{2,5}\b|aiohttp|<|\b[A-Z]\w+(Error|"
                      r"Exception)\b|[Pp]ayload|\b[Ss]ocket\b|errno")

HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: "
# How each fake upstream misbehaves once it has read a request.
BEHAVIOURS: dict[str, bytes | None] = {
    "closes": b"",  # hangs up without a word
    "cuts_a_chunk": HEAD + b"application/json\r\n\r\n40\r\n{\"data\": [",
    "cuts_a_stream": HEAD + b"text/event-stream\r\n\r\n40\r\nevent: image_generation.",
    "short_body": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 900\r\n\r\n{\"data\": [",
    "hangs": None,
}
# (model, status, code): "refused" has nothing listening.
CASES = [
    ("refused", 502, "upstream_unreachable"),
    ("closes", 502, "upstream_disconnected"),
    ("cuts_a_chunk", 502, "upstream_disconnected"),
    ("short_body", 502, "upstream_disconnected"),
    ("hangs", 504, "upstream_timeout"),
]


@asynccontextmanager
async def misbehaving(answer: bytes | None) -> AsyncIterator[int]:
    """A loopback upstream that reads a request, then sends ``answer`` and hangs up (``None``:
    never answers). Yields its port."""
    stop = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            if answer is None:
                await stop.wait()
            writer.write(answer or b"")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        stop.set()
        server.close()


def gateway_yaml(ports: dict[str, int]) -> str:
    models = "\n".join(
        f"  - {{name: {name}, provider: openai, upstream_model: gpt-image-1, api_key: sk-x1234567,"
        f" base_url: 'http://127.0.0.1:{port}/v1', timeout: {{connect: 2, first_byte: 1}}}}"
        for name, port in ports.items())
    return f"models:\n{models}\n"


@pytest.fixture
async def upstreams() -> AsyncIterator[Callable[[str], int]]:
    async with misbehaving(BEHAVIOURS["closes"]) as closes, \
            misbehaving(BEHAVIOURS["cuts_a_chunk"]) as cuts, \
            misbehaving(BEHAVIOURS["cuts_a_stream"]) as stream_cut, \
            misbehaving(BEHAVIOURS["short_body"]) as short, misbehaving(None) as hangs:
        ports = {"refused": free_port(), "closes": closes, "cuts_a_chunk": cuts,
                 "cuts_a_stream": stream_cut, "short_body": short, "hangs": hangs}
        yield ports.__getitem__


async def test_transport_failures_tell_the_client_what_not_where(upstreams, caplog) -> None:
    caplog.set_level(logging.INFO)
    names = [case[0] for case in CASES] + ["cuts_a_stream"]
    ports = {name: upstreams(name) for name in names}
    with start_gateway(gateway_yaml(ports)) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            for model, status, code in CASES:
                response = await client.post("/v1/images/generations",
                                             json={"model": model, "prompt": "p"})
                error = response.json()["error"]
                assert (response.status_code, error["code"]) == (status, code), model
                assert error["message"] and not TOPOLOGY.search(error["message"]), error
            async with client.stream("POST", "/v1/images/generations", json={
                    "model": "cuts_a_stream", "prompt": "p", "stream": True}) as streamed:
                text = (await streamed.aread()).decode()
    event = json.loads(text.partition("data: ")[2])["error"]
    assert event["code"] == "upstream_disconnected" and not TOPOLOGY.search(event["message"])
    # The operator still learns where and why.
    logged = "\n".join(record.getMessage() for record in caplog.records
                       if record.name == "proxy.upstream")
    for name in names:
        assert f"127.0.0.1:{ports[name]}" in logged, name
    assert "TransferEncodingError" in logged or "ClientPayloadError" in logged


@dataclass
class UpgradeNeverAnswered(FakeComfyUI):
    """A ComfyUI server that answers HTTP but never completes a websocket upgrade."""

    async def _ws(self, websocket: WebSocket) -> None:
        await websocket.receive()  # the upgrade request: never accepted
        await websocket.receive()  # until the gateway gives up and hangs up


def test_a_comfyui_websocket_that_never_opens_is_told_without_the_address(caplog) -> None:
    caplog.set_level(logging.INFO)
    with upstream_and_gateway(UpgradeNeverAnswered(), lambda url: comfy_yaml(
            url, total=2)) as stack:
        response = httpx.post(f"{stack.gateway.url}/v1/images/generations", timeout=30,
                              json={"model": COMFY_MODEL, "prompt": "p"})
    error = response.json()["error"]
    assert (response.status_code, error["code"]) == (504, "upstream_timeout"), error
    assert not TOPOLOGY.search(error["message"]), error
    address = f"127.0.0.1:{stack.upstream.port}"
    assert any(address in record.getMessage() for record in caplog.records
               if record.name == "proxy.providers.comfyui")
