"""``serve --workers 2``: whichever worker answers a scrape, ``/metrics`` counts what every
worker did (prometheus_client's multiprocess mode), the directory it uses starts clean and is
removed at the end, and a worker that dies stops counting in the live gauges."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.processes import GatewayProcess

CONFIG = """
data_dir: {data}
models:
  - {{name: local, provider: local}}
"""
JOB = {"model": "local", "prompt": "p", "size": "64x64", "quality": "low"}
GOOD, REFUSED = 8, 5
# An earlier run's counter file left in the directory: 1000 requests that this run never saw.
STALE = """
import glob, os
directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
os.makedirs(directory)
from prometheus_client import Counter
Counter("image_proxy_requests", "", ["route", "status_code", "error_code"]).labels(
    "/v1/images/generations", "200", "").inc(1000)
assert glob.glob(os.path.join(directory, "counter_*.db"))
"""


def totals(text: str) -> dict[str, float]:
    """Per metric sample name, the sum over its label sets; plus ``requests:<status>``."""
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            sums[sample.name] = sums.get(sample.name, 0.0) + sample.value
            if sample.name == "image_proxy_requests_total":
                key = f"requests:{sample.labels['status_code']}"
                sums[key] = sums.get(key, 0.0) + sample.value
    return sums


async def scrape(url: str) -> dict[str, float]:
    """One scrape on a connection of its own (so the workers take turns answering)."""
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.get(f"{url}/metrics")
    assert response.status_code == 200
    return totals(response.text)


async def send_requests(url: str) -> None:
    """``GOOD`` image requests and ``REFUSED`` refusals, each on a connection of its own."""
    async def one(body: dict, status: int) -> None:
        async with httpx.AsyncClient(timeout=60) as client:
            response = await client.post(f"{url}/v1/images/generations", json=body)
        assert response.status_code == status, response.text

    await asyncio.gather(*(one(JOB, 200) for _ in range(GOOD)))
    await asyncio.gather(*(one({**JOB, "size": "1x1"}, 400) for _ in range(REFUSED - 2)),
                         one({**JOB, "model": "nope"}, 404), one({"prompt": 3}, 400))


def worker_pids(directory: Path) -> set[int]:
    """The processes that wrote live gauges there (every worker does, at start)."""
    return {int(path.stem.rsplit("_", 1)[1]) for path in directory.glob("gauge_livesum_*.db")}


async def stale_directory(metrics_dir: Path) -> dict[str, str]:
    """``metrics_dir`` holding an earlier run's counts; the environment that names it."""
    env = {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    stale = await asyncio.create_subprocess_exec(sys.executable, "-c", STALE,
                                                 env={**os.environ, **env})
    assert await stale.wait() == 0
    return env


async def test_every_scrape_counts_the_requests_of_both_workers(tmp_path: Path) -> None:
    metrics_dir = tmp_path / "metrics"
    env = await stale_directory(metrics_dir)
    config = tmp_path / "gateway.yaml"
    config.write_text(CONFIG.format(data=tmp_path / "data"))
    gateway = GatewayProcess(config, tmp_path / "gateway.log", workers=2, env=env)
    await gateway.start()
    try:
        await gateway.ready()
        await send_requests(gateway.url)
        scrapes = [await scrape(gateway.url) for _ in range(8)]
        for seen in scrapes:
            assert seen["image_proxy_requests_total"] == GOOD + REFUSED
            assert seen["requests:200"] == GOOD
            assert seen["requests:400"] + seen["requests:404"] == REFUSED
            assert seen["image_proxy_jobs_total"] == GOOD
            assert seen["image_proxy_job_seconds_count"] == GOOD
            assert seen["image_proxy_worker_processes"] == 2
            assert seen["image_proxy_jobs_in_flight"] == 0
            assert seen["image_proxy_build_info"] == 1

        # A worker killed outright: uvicorn starts another; the dead one's counters stay, and
        # it no longer counts among the live workers.
        assert gateway.process is not None
        before = worker_pids(metrics_dir)
        assert len(before) == 2
        os.kill(min(before), signal.SIGKILL)
        for _ in range(300):
            seen = await scrape(gateway.url)
            if worker_pids(metrics_dir) - before and seen["image_proxy_worker_processes"] == 2:
                break
            await asyncio.sleep(0.1)
        assert worker_pids(metrics_dir) - before, "no worker took the dead one's place"
        for _ in range(4):
            seen = await scrape(gateway.url)
            assert seen["image_proxy_worker_processes"] == 2
            assert seen["image_proxy_requests_total"] == GOOD + REFUSED
    finally:
        await gateway.stop()


async def test_the_metrics_directory_is_made_for_the_run_and_removed_after(
        tmp_path: Path) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    config = tmp_path / "gateway.yaml"
    config.write_text(CONFIG.format(data=tmp_path / "data"))
    gateway = GatewayProcess(config, tmp_path / "gateway.log", workers=2,
                             env={"TMPDIR": str(temp)})
    await gateway.start()
    try:
        await gateway.ready()
        made = list(temp.glob("image-proxy-metrics-*"))
        assert len(made) == 1 and list(made[0].glob("*.db"))
        async with httpx.AsyncClient(timeout=60) as client:
            response = await client.post(f"{gateway.url}/v1/images/generations", json=JOB)
        assert response.status_code == 200
        assert (await scrape(gateway.url))["image_proxy_requests_total"] == 1
    finally:
        assert gateway.process is not None
        process = gateway.process
        await gateway.stop()
    assert process.returncode == 0, gateway.logged()
    assert not list(temp.iterdir())


async def test_a_single_process_given_a_directory_starts_it_clean(tmp_path: Path) -> None:
    env = await stale_directory(tmp_path / "metrics")
    config = tmp_path / "gateway.yaml"
    config.write_text(CONFIG.format(data=tmp_path / "data"))
    gateway = GatewayProcess(config, tmp_path / "gateway.log", env=env)
    await gateway.start()
    try:
        await gateway.ready()
        await send_requests(gateway.url)
        seen = await scrape(gateway.url)
    finally:
        await gateway.stop()
    assert seen["image_proxy_requests_total"] == GOOD + REFUSED
    assert seen["image_proxy_worker_processes"] == 1
