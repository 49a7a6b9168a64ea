"""A fleet for fault tests: gateway processes sharing a redis-server of the test's own (which the
test may kill and start again), and the fake OpenAI upstream (``fake_openai``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from proxy.auth import new_key
from tests.support.processes import GatewayProcess
from tests.support.redis_server import RedisServer, redis_server

CAPPED, CAPPED_HASH = new_key()
FREE, FREE_HASH = new_key()


def fleet_yaml(redis: RedisServer, data_dir: Path, more: str) -> str:
    """A gateway configuration on ``redis``, with a short drain and no retries; ``more`` adds
    the rest (keys, models, fleet and limits settings)."""
    return f"""
redis_url: {redis.url}
redis_prefix: fleet-test
data_dir: {data_dir}
server: {{shutdown_grace: 2}}
reliability: {{retries: 0, circuit_failures: 1000000}}
{more}
"""


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


Fleet = Callable[[str, int], Awaitable[list[GatewayProcess]]]


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[Fleet]:
    """``await fleet(yaml, n)``: n gateway processes started from ``yaml``, ready; stopped (the
    ones still running) after the test. Called again, it starts more (each logs to a file of
    its own)."""
    started = 0
    async with AsyncExitStack() as stack:
        async def start(yaml: str, count: int) -> list[GatewayProcess]:
            nonlocal started
            config = tmp_path / f"gateway-{started}.yaml"
            config.write_text(yaml)
            gateways = [GatewayProcess(config, tmp_path / f"gateway-{started + i}.log")
                        for i in range(count)]
            started += count
            for gateway in gateways:
                stack.push_async_callback(gateway.stop)
                await gateway.start()
            for gateway in gateways:
                await gateway.ready()
            return gateways

        yield start


QUEUE = "fleet-test:queue:jobs"  # the durable queue's stream (redis_prefix: fleet-test)


async def queue_holders(redis: RedisServer) -> dict[str, str]:
    """Which instance holds each queued job: job id → the instance's consumer name (its host
    name and process id), from the consumer group's pending entries."""
    client = aioredis.from_url(redis.url)
    try:
        pending = await client.xpending_range(QUEUE, "runners", "-", "+", 1000)
        held = {}
        for item in pending:
            fields = await client.xrange(QUEUE, item["message_id"], item["message_id"])
            if fields:
                held[fields[0][1][b"job"].decode()] = item["consumer"].decode()
        return held
    finally:
        await client.aclose()


def holder(gateways: list[GatewayProcess], consumer: str) -> GatewayProcess:
    """The gateway process whose consumer name is ``consumer``."""
    pid = int(consumer.rsplit(":", 1)[1])
    (found,) = [g for g in gateways if g.process is not None and g.process.pid == pid]
    return found


async def runner_of(redis: RedisServer, gateways: list[GatewayProcess],
                    job_id: str) -> GatewayProcess:
    """The gateway process that took the queued job ``job_id`` (waiting until one has)."""
    for _ in range(200):
        held = await queue_holders(redis)
        if job_id in held:
            return holder(gateways, held[job_id])
        await asyncio.sleep(0.05)
    raise AssertionError(f"no instance took job {job_id}")
