"""Gateways as real processes (``python -m proxy serve``), for tests that kill one or watch what
it logs: each writes its log to a file of its own."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support.servers import free_port


async def wait_healthy(url: str, timeout: float = 30) -> None:
    """Wait until the gateway at ``url`` answers ``/healthz`` (AssertionError when it has not
    after ``timeout`` seconds)."""
    async with httpx.AsyncClient() as client:
        for _ in range(int(timeout * 10)):
            try:
                if (await client.get(f"{url}/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"gateway {url} did not start")


def wait_answering(process: subprocess.Popen[bytes], url: str, timeout: float = 60,
                   output: Callable[[], str] = lambda: "", path: str = "/healthz") -> None:
    """Wait until the server ``process`` runs at ``url`` answers ``path`` (a gateway's
    ``/healthz`` by default) with a 200; an AssertionError (with ``output()``, what it
    printed) if it stops or has not after ``timeout`` seconds. For synchronous tests."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}{path}", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert process.poll() is None, f"it stopped: {output()}"
        assert time.monotonic() < deadline, f"it did not start: {output()}"
        time.sleep(0.1)


class GatewayProcess:
    """``image-proxy serve`` (``workers`` processes) with ``env`` added to this environment."""

    def __init__(self, config: Path, log: Path, workers: int = 1,
                 env: dict[str, str] | None = None) -> None:
        self.config = config
        self.log = log
        self.workers = workers
        self.env = env
        self.port = free_port()
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "proxy", "serve", "--config", str(self.config),
                "--port", str(self.port), "--log-level", "info",
                "--workers", str(self.workers),
                env=None if self.env is None else {**os.environ, **self.env},
                stdout=asyncio.subprocess.DEVNULL, stderr=log)

    async def ready(self, timeout: float = 30) -> None:
        """Wait until it answers ``/healthz`` and every worker has started."""
        try:
            await wait_healthy(self.url, timeout)
            for _ in range(int(timeout * 10)):
                if self.logged().count("Application startup complete") >= self.workers:
                    return
                await asyncio.sleep(0.1)
            raise AssertionError("not every worker started")
        except AssertionError:
            raise AssertionError(f"gateway {self.url} did not start; its log:\n"
                                 f"{self.logged()}") from None

    def kill(self) -> None:
        """SIGKILL: it stops at once, nothing it holds is given back."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)

    async def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            process.kill()
            await process.wait()

    def logged(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@contextmanager
def serving(*args: str, log: Path, port: int | None = None,
            env: dict[str, str] | None = None) -> Iterator[str]:
    """``python -m proxy serve ARGS --port PORT`` as a user runs it (its log, stderr and
    stdout, to ``log``), from start until it answers ``/healthz``; yields its URL and stops it
    with SIGTERM. For synchronous tests."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    with log.open("ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "proxy", "serve", *args,
                                    "--port", str(port)], stdout=out, stderr=subprocess.STDOUT,
                                   env=env)
    try:
        wait_answering(process, url, 30, lambda: log.read_text(errors="replace"))
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
