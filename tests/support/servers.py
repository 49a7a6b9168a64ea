"""Run an ASGI app under a real uvicorn server on 127.0.0.1, port 0, in a background thread.

Tests talk to it over real sockets, like any client would: streaming and websockets behave as in
production, which ``httpx.ASGITransport`` (it buffers) cannot show.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from starlette.types import ASGIApp

from proxy.http.chunked import PROTOCOL as HTTP
from proxy.http.websocket import PROTOCOL as WEBSOCKET


def free_port() -> int:
    """A port nothing listens on right now, for a gateway process started by a test."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RunningServer:
    def __init__(self, server: uvicorn.Server, thread: threading.Thread, port: int) -> None:
        self.server = server
        self.thread = thread
        self.port = port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def serve(app: ASGIApp, *, lifespan: str = "on") -> Iterator[RunningServer]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # HTTP and websockets with the gateway's own protocols, as ``image-proxy serve`` runs them.
    config = uvicorn.Config(app, lifespan=lifespan, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=2, http=HTTP, ws=WEBSOCKET)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.01)
    try:
        yield RunningServer(server, thread, port)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
