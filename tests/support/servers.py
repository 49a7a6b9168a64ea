"""Run an ASGI app under a real uvicorn server on 127.0.0.1, port 0, in a background thread.

Tests talk to it over real sockets, like any client would: streaming and websockets behave as in
production, which ``httpx.ASGITransport`` (it buffers) cannot show.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
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


_uvicorn_log = logging.getLogger("uvicorn.error")


class _Server(uvicorn.Server):
    """uvicorn's server, stopped as soon as a test asks, not at its next tick.

    uvicorn notices ``should_exit`` only at its next 0.1 s tick, and once it has asked its
    connections to close it sleeps 0.1 s before waiting for them: some 0.17 s of doing nothing
    per server. Most tests stop one or two (a fake upstream, a gateway); run one after another,
    tests/e2e/{streaming,generations,edits} spent a third of their time there (56 s, 37 s
    without). Here the main loop also wakes when :meth:`stop` is called, and the shutdown waits
    for the connections only while one is still open (at most uvicorn's 0.1 s). Every other
    step of uvicorn's shutdown runs as uvicorn 0.55 writes it, in its order.
    """

    _loop: asyncio.AbstractEventLoop | None = None
    _stopping: asyncio.Event | None = None

    def stop(self) -> None:
        self.should_exit = True
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already closed
                loop.call_soon_threadsafe(stopping.set)

    async def main_loop(self) -> None:
        self._stopping = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 1) % 864000
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.1):
                    await self._stopping.wait()
            should_exit = await self.on_tick(counter)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        _uvicorn_log.info("Shutting down")
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        for _ in range(20):  # uvicorn's sleep(0.1), ended when every connection has closed
            if not self.server_state.connections:
                break
            await asyncio.sleep(0.005)
        try:
            async with asyncio.timeout(self.config.timeout_graceful_shutdown):
                await self._wait_tasks_to_complete()
        except TimeoutError:
            _uvicorn_log.error("Cancel %s running task(s), timeout graceful shutdown exceeded",
                               len(self.server_state.tasks))
            for task in self.server_state.tasks:
                task.cancel(msg="Task cancelled, timeout graceful shutdown exceeded")
        if not self.force_exit:
            await self.lifespan.shutdown()


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
    server = _Server(config)
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
        server.stop()
        thread.join(timeout=10)
        sock.close()
