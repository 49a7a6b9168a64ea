"""SIGTERM drains a real gateway process (and each worker of ``--workers 2``) before it stops.

Jobs of every kind are running (JSON, SSE, async) when the process gets SIGTERM. During the
grace the listening socket stays open: a request on a new connection is answered 503
``server_shutting_down`` with ``retry-after`` (not refused), ``/readyz`` answers 503 and
``/healthz`` 200; the running jobs finish with their images; then the process stops by itself,
exit status 0, without waiting out the rest of the grace.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from tests.support.schemas import validate
from tests.support.servers import free_port

GRACE = 12.0
CONFIG = """
data_dir: {data}
server: {{shutdown_grace: {grace}}}
models:
  - {{name: slow, provider: local, step_delay: 0.25}}   # 6 low-quality steps: ~1.5 s, high 24
"""
JOB = {"model": "slow", "prompt": "p", "size": "64x64", "quality": "low"}


@asynccontextmanager
async def gateway_process(tmp_path: Path, workers: int) -> AsyncIterator[
        tuple[asyncio.subprocess.Process, str]]:
    """``image-proxy serve`` in its own process; yields once every worker has started."""
    config = tmp_path / "gateway.yaml"
    config.write_text(CONFIG.format(data=tmp_path / "data", grace=GRACE))
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "serve", "--config", str(config), "--port", str(port),
        "--workers", str(workers), "--log-level", "info",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    started = asyncio.Event()

    async def read_log() -> None:  # read to the end, so the pipe never fills
        assert process.stderr is not None
        count = 0
        async for line in process.stderr:
            count += b"Application startup complete" in line
            if count == workers:
                started.set()

    reader = asyncio.create_task(read_log())
    try:
        await asyncio.wait_for(started.wait(), 30)
        yield process, f"http://127.0.0.1:{port}"
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        reader.cancel()


async def fresh(url: str, method: str, path: str, **kwargs) -> httpx.Response:
    """One request on a new connection: the listening socket must accept it."""
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        return await client.request(method, path, **kwargs)


async def stream_events(client: httpx.AsyncClient, under_way: asyncio.Event) -> list[dict]:
    events = []
    async with client.stream("POST", "/v1/images/generations",
                             json={**JOB, "stream": True, "partial_images": 1}) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
                under_way.set()
    return events


async def refused_while_draining(url: str) -> None:
    """Wait for the drain to begin (``/readyz`` 503), then check what a new request gets."""
    for _ in range(100):
        ready = await fresh(url, "GET", "/readyz")
        if ready.status_code == 503:
            break
        await asyncio.sleep(0.05)
    assert ready.status_code == 503 and ready.json()["status"] == "not ready"
    assert (await fresh(url, "GET", "/healthz")).status_code == 200, "the process is alive"
    refused = await fresh(url, "POST", "/v1/images/generations", json=JOB)
    assert refused.status_code == 503, refused.text
    validate("ErrorResponse", refused.json())
    assert refused.json()["error"]["code"] == "server_shutting_down"
    assert int(refused.headers["retry-after"]) > 0


@pytest.mark.parametrize("workers", [1, 2])
async def test_sigterm_drains_then_stops(tmp_path: Path, workers: int) -> None:
    async with gateway_process(tmp_path, workers) as (process, url), \
            httpx.AsyncClient(base_url=url, timeout=30) as client:
        under_way = asyncio.Event()
        stream = asyncio.create_task(stream_events(client, under_way))
        attached = asyncio.create_task(client.post("/v1/images/generations", json=JOB))
        try:
            # The async job runs longest (24 steps: ~6 s), so the process (under --workers 2,
            # the worker that has it) is still draining while the checks below run, however
            # slowly they do: uvicorn's supervisor passes SIGTERM on up to 0.5 s late.
            accepted = await client.post("/v1/images/generations", json={**JOB, "quality": "high"},
                                         headers={"Prefer": "respond-async"})
            assert accepted.status_code == 202
            await asyncio.wait_for(under_way.wait(), 20)  # the stream's first event arrived
            sigterm_at = time.monotonic()
            process.send_signal(signal.SIGTERM)

            await refused_while_draining(url)
            answer, events = await attached, await stream
            returncode = await asyncio.wait_for(process.wait(), 20)
            exited_after = time.monotonic() - sigterm_at
        finally:  # a failed check leaves no request behind
            for task in (stream, attached):
                task.cancel()
            await asyncio.gather(stream, attached, return_exceptions=True)

    assert answer.status_code == 200, answer.text
    assert answer.json()["data"][0]["b64_json"], "the JSON job finished with its image"
    assert events[-1]["type"] == "image_generation.completed" and events[-1]["b64_json"]
    assert returncode == 0
    assert exited_after < GRACE, "stopped once its jobs were done, not at the end of the grace"
    ledger = sqlite3.connect(tmp_path / "data" / "usage.sqlite3")
    rows = dict(ledger.execute("SELECT job_id, status FROM usage").fetchall())
    assert rows[accepted.json()["id"]] == "succeeded", "the async job ran to its end"
    assert sorted(rows.values()) == ["succeeded"] * 3, rows


async def answered(port: int) -> bool | None:
    """A ``/healthz`` request on a new raw connection: None when the connection was refused,
    else whether it was answered (False: accepted, then closed unanswered)."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return None
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nhost: gateway\r\n\r\n")
        return (await asyncio.wait_for(reader.read(64), 10)).startswith(b"HTTP/1.1 200")
    except (TimeoutError, OSError):
        return False
    finally:
        writer.close()


async def test_a_drained_worker_answers_the_connections_it_accepted(tmp_path: Path) -> None:
    """Under ``--workers 2`` one worker runs a long job and the other none: on SIGTERM the idle
    one is drained at once and stops, while clients go on connecting to the socket the busy one
    keeps open. A connection the stopping worker had just accepted, its request still on the
    way, gets its answer: none is closed unanswered (uvicorn's shutdown alone closes them)."""
    async with gateway_process(tmp_path, 2) as (process, url):
        port = int(url.rsplit(":", 1)[1])
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            accepted = await client.post(  # 24 steps of 0.25 s: runs through the whole check
                "/v1/images/generations", json={**JOB, "quality": "high"},
                headers={"Prefer": "respond-async"})
        assert accepted.status_code == 202
        process.send_signal(signal.SIGTERM)
        outcomes: list[bool | None] = []
        until = time.monotonic() + 2.0  # the idle one stops ~0.5 s after the signal
        while time.monotonic() < until:  # 128 connections at a time, across its stop
            outcomes += await asyncio.gather(*(answered(port) for _ in range(128)))
        assert process.returncode is None, "the busy worker keeps the gateway up"
    assert outcomes.count(True) > 0
    assert outcomes.count(False) == 0, f"{outcomes.count(False)} accepted and closed unanswered"
