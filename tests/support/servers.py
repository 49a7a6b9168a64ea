"""Run an ASGI app under a real uvicorn server on 127.0.0.1, port 0, in a background thread.

Tests talk to it over real sockets, like any client would: streaming and websockets behave as in
production, which ``httpx.ASGITransport`` (it buffers) cannot show.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from starlette.types import ASGIApp

from proxy.http.chunked import PROTOCOL as HTTP
from proxy.http.websocket import PROTOCOL as WEBSOCKET


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as ports:
            return int(ports.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


# Ports a test picks for a process it starts: below the kernel's ephemeral range, which the
# clients' connections draw their source ports from (and port 0 binds too). A port picked
# there could be taken by some connection of the suite's four workers before the process
# bound it ("address already in use", seen on a slow machine); here only another pick can.
_PICKED = range(max(1024, _ephemeral_low() - 12_000), _ephemeral_low())
_random = random.Random()


def free_port() -> int:
    """A port nothing listens on right now, for a gateway process started by a test."""
    for _ in range(200):
        port = _random.choice(_PICKED)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:  # that range is full: the kernel's choice
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
