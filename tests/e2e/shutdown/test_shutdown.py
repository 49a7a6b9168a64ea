"""SIGTERM to a real gateway process while jobs run: a job that fits in the grace period
finishes; one that does not ends with an error event and is recorded failed; new requests are
refused; the process exits on its own, promptly."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import sys
import time

import httpx

from tests.support.servers import free_port

CONFIG = """
data_dir: {data}
server: {{shutdown_grace: 2}}
models:
  - {{name: quick, provider: local, step_delay: 0.2}}   # 6 low-quality steps: ~1.2 s
  - {{name: slow, provider: local, step_delay: 0.5}}    # 24 high-quality steps: ~12 s
"""


async def test_sigterm_during_jobs(tmp_path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(CONFIG.format(data=tmp_path / "data"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "serve", "--config", str(config), "--port", str(port),
        "--log-level", "warning", stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            for _ in range(300):
                try:
                    if (await client.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)

            events: list[dict] = []
            under_way = asyncio.Event()

            async def long_stream() -> None:
                async with client.stream("POST", "/v1/images/generations", json={
                        "model": "slow", "prompt": "p", "size": "64x64", "quality": "high",
                        "stream": True, "partial_images": 3}) as response:
                    async for line in response.aiter_lines():
                        if line.startswith("data: "):
                            events.append(json.loads(line[6:]))
                            under_way.set()

            stream = asyncio.create_task(long_stream())
            await asyncio.wait_for(under_way.wait(), 20)  # its first partial image arrived
            short = asyncio.create_task(client.post("/v1/images/generations", json={
                "model": "quick", "prompt": "p", "size": "64x64", "quality": "low"}))
            await asyncio.sleep(0.3)  # the short job is running too
            sigterm_at = time.monotonic()
            process.send_signal(signal.SIGTERM)

            finished = await short
            await stream
            ended_after = time.monotonic() - sigterm_at
        returncode = await asyncio.wait_for(process.wait(), 20)
        exited_after = time.monotonic() - sigterm_at
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    assert finished.status_code == 200, finished.text  # fitted in the grace period
    assert events[0]["type"] == "image_generation.partial_image"
    last = events[-1]
    assert last["type"] == "error"
    assert last["error"]["code"] == "server_shutting_down"
    assert 1.5 < ended_after < 6, "the long job got the grace period, then was ended"
    # A drained process exits 0 (uvicorn alone would raise the signal again: -SIGTERM).
    assert returncode == 0 and exited_after < 10, "never hangs"

    ledger = sqlite3.connect(tmp_path / "data" / "usage.sqlite3")
    rows = dict(ledger.execute("SELECT model, status || ':' || coalesce(error_code, '') "
                               "FROM usage").fetchall())
    assert rows == {"quick": "succeeded:", "slow": "failed:server_shutting_down"}
