"""The compose fleet, played without a container engine: two gateways run deploy/fleet.yaml with
the environment deploy/compose.yaml gives them (a Redis and a PostgreSQL database of the test's
own standing in for compose's, one data directory shared as the volume is), behind nginx running
deploy/nginx.conf (pointed at a gateway's port instead of compose's ``gateway:8080``).

Clients talk to nginx as they would to the fleet: a streamed generation arrives event by event,
Socket.IO progress comes over the websocket, a hosted image link works; and what one replica
did is seen by the other (the shared ledger, the shared image volume).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import openai
import pytest

from proxy.auth import new_key
from tests.support.compose import DEPLOY, gateway_environment
from tests.support.images import decode, decode_bytes
from tests.support.nginx import in_front_of, nginx_binary, running_nginx
from tests.support.postgres import fresh_database
from tests.support.processes import GatewayProcess
from tests.support.progress_client import Watcher, assert_well_formed
from tests.support.redis_server import redis_server
from tests.support.servers import free_port


@dataclass
class Fleet:
    key: str
    nginx: str  # the URL clients use
    replicas: list[GatewayProcess]

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@pytest.fixture
def nginx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return nginx_binary(tmp_path_factory.getbasetemp() / "nginx")


@pytest.fixture
def own_redis() -> Iterator[str]:
    with redis_server() as server:
        yield server.url


@pytest.fixture
async def fleet(nginx: Path, own_redis: str, tmp_path: Path,
                monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Fleet]:
    key, digest = new_key()
    port = free_port()
    async with AsyncExitStack() as stack:
        database = await stack.enter_async_context(fresh_database())
        environment = gateway_environment({"IMAGE_PROXY_KEY_SHA256": digest,
                                           "POSTGRES_PASSWORD": "unused",
                                           "IMAGE_PROXY_PUBLIC_URL": f"http://127.0.0.1:{port}"})
        # compose's service names, as this machine reaches the test's own servers
        environment["IMAGE_PROXY_REDIS_URL"] = own_redis
        environment["IMAGE_PROXY_DATABASE_URL"] = database
        for name, value in {**environment, "IMAGE_PROXY_DATA_DIR": str(tmp_path / "data")}.items():
            monkeypatch.setenv(name, value)  # the gateway processes inherit it
        replicas = [GatewayProcess(DEPLOY / "fleet.yaml", tmp_path / f"gateway-{i}.log")
                    for i in range(2)]
        for replica in replicas:
            stack.push_async_callback(replica.stop)
            await replica.start()
        for replica in replicas:
            await replica.ready()
        conf = in_front_of((DEPLOY / "nginx.conf").read_text(),
                           f"127.0.0.1:{replicas[0].port}", port)
        url = stack.enter_context(running_nginx(nginx, conf, tmp_path / "nginx", port))
        yield Fleet(key, url, replicas)


async def test_fleet_streams_and_reports_progress_through_nginx(fleet: Fleet) -> None:
    job_id = str(uuid.uuid4())
    watcher = Watcher()
    await watcher.connect(fleet.nginx, token=fleet.key)  # the websocket, upgraded by nginx
    try:
        assert (await watcher.subscribe(job_id))["ok"] is True
        client = openai.AsyncOpenAI(base_url=f"{fleet.nginx}/v1", api_key=fleet.key)
        stream = await client.images.generate(
            model="local/slow", prompt="a red apple", size="256x256", quality="high",
            stream=True, partial_images=2, extra_headers={"X-Job-Id": job_id})
        kinds: list[str] = []
        async with httpx.AsyncClient(headers=fleet.headers()) as http:
            async for event in stream:
                if not kinds:
                    # the first partial image reached the client while the job still runs:
                    # nginx passes events on as they come, it does not hold the stream
                    snapshot = await http.get(f"{fleet.replicas[0].url}/v1/images/jobs/{job_id}")
                    assert snapshot.json()["status"] == "running", snapshot.json()
                kinds.append(event.type)
        assert kinds == ["image_generation.partial_image"] * 2 + ["image_generation.completed"]
        assert decode(event.b64_json).size == (256, 256)
        done = await watcher.wait_for(lambda e: e["status"] == "succeeded")
        assert done["percent"] == 100
        assert_well_formed(watcher.events)
    finally:
        await watcher.close()


async def test_fleet_replicas_share_the_ledger_and_the_image_volume(fleet: Fleet) -> None:
    async with httpx.AsyncClient(headers=fleet.headers(), timeout=60) as http:
        response = await http.post(f"{fleet.nginx}/v1/images/generations",
                                   json={"model": "local", "prompt": "a blue sea",
                                         "size": "128x128", "response_format": "url"})
        assert response.status_code == 200, response.text
        link = response.json()["data"][0]["url"]
        # the link points at the reverse proxy (IMAGE_PROXY_PUBLIC_URL) and works there ...
        assert link.startswith(f"{fleet.nginx}/")
        assert decode_bytes((await http.get(link)).content).size == (128, 128)
        # ... and on the replica that did not make it (one volume, one signing secret)
        other = fleet.replicas[1].url + urlsplit(link).path + "?" + urlsplit(link).query
        assert (await http.get(other)).status_code == 200

        # the job, run by the first replica, is in the usage the second one reads (PostgreSQL)
        for _ in range(100):
            usage = (await http.get(f"{fleet.replicas[1].url}/v1/usage")).json()
            if usage["totals"]["requests"] >= 1:
                break
            await asyncio.sleep(0.1)
        assert usage["totals"]["requests"] == 1
        assert usage["data"][0]["model"] == "local"
