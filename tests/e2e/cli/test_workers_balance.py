"""``serve --workers N`` with ``server.reuse_port`` on Linux: each worker listens on a socket of
its own on the gateway's port (``SO_REUSEPORT``), so the kernel spreads new connections over
the workers, instead of whichever worker is awake in ``accept`` on one shared socket taking all
that arrive at once (the default, whose queue outlives a worker that stops)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from pathlib import Path

import pytest

from tests.support.processes import GatewayProcess

CONFIG = """
data_dir: {data}
server: {{reuse_port: true}}
models:
  - {{name: local, provider: local}}
"""
CONNECTIONS = 24

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="SO_REUSEPORT spreads connections on Linux")


def workers_of(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in children
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()]


def established_on(port: int) -> dict[int, int]:
    """Socket inode -> remote port, for the connections established to ``port`` (IPv4)."""
    found = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state, inode = fields[1], fields[2], fields[3], int(fields[9])
        if state == "01" and int(local.split(":")[1], 16) == port:
            found[inode] = int(remote.split(":")[1], 16)
    return found


def connections_held(pid: int, port: int) -> int:
    """How many of the connections to ``port`` process ``pid`` has accepted."""
    inodes = established_on(port)
    held = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:[") and int(target[8:-1]) in inodes:
            held += 1
    return held


def get_health(sock: socket.socket) -> bytes:
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n")
    return sock.recv(65536)


async def test_connections_are_spread_over_the_workers_even_while_one_is_busy(
        tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(CONFIG.format(data=tmp_path / "data"))
    gateway = GatewayProcess(config, tmp_path / "gateway.log", workers=2)
    await gateway.start()
    opened: list[socket.socket] = []
    try:
        await gateway.ready()
        assert gateway.process is not None
        deadline = time.monotonic() + 30
        while len(workers := workers_of(gateway.process.pid)) < 2:
            assert time.monotonic() < deadline, "the workers did not start"
            await asyncio.sleep(0.1)
        # Both answer on their own (a worker that has not finished starting would hold its
        # share of new connections until it has).
        await gateway.ready()
        await asyncio.sleep(0.5)
        # One worker stopped while the connections arrive: with one shared socket the other
        # would take every one of them; with a socket each, the kernel has put about half in
        # the stopped one's queue, and it answers them once it goes on.
        busy, other = workers
        os.kill(busy, signal.SIGSTOP)
        try:
            for _ in range(CONNECTIONS):
                opened.append(socket.create_connection(("127.0.0.1", gateway.port), timeout=5))
            await asyncio.sleep(0.3)  # the running worker accepts what is its to accept
        finally:
            os.kill(busy, signal.SIGCONT)
        answers = await asyncio.gather(*(asyncio.to_thread(get_health, s) for s in opened))
        assert all(answer.startswith(b"HTTP/1.1 200") for answer in answers)
        held = {pid: connections_held(pid, gateway.port) for pid in workers}
        assert sum(held.values()) == CONNECTIONS
        assert held[busy] >= 3 and held[other] >= 3, held
    finally:
        for sock in opened:
            sock.close()
        await gateway.stop()
