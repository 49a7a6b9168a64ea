"""A ComfyUI model's pool without servers: its settings, where jobs go, its refusals, queue
positions and ETAs, and one ``/queue`` read however many jobs ask at once."""

from __future__ import annotations

import asyncio
import re
import time

import pytest
from pydantic import ValidationError

from proxy.config import ConfigError
from proxy.core.errors import GatewayError
from proxy.providers.comfyui.client import ComfyClient
from proxy.providers.comfyui.pool import QueueView, Server, ServerPool
from proxy.providers.comfyui.protocol import QueueState, queue_state
from proxy.providers.comfyui.settings import ComfyUISettings, ServerEntry
from proxy.service.gateway import load_checked_text
from proxy.upstream.client import UpstreamClient

# -- settings ---------------------------------------------------------------------------------


def test_one_server_or_a_pool() -> None:
    one = ComfyUISettings(base_url="http://a:8188", max_concurrent_per_server=2)
    assert [(s.url, s.max_concurrent) for s in one.pool()] == [("http://a:8188", 2)]
    pool = ComfyUISettings(servers=["http://a:8188", {"url": "http://b:8188",
                                                      "max_concurrent": 5}],
                           max_concurrent_per_server=3)
    assert [(s.url, s.max_concurrent) for s in pool.pool()] == [
        ("http://a:8188", 3), ("http://b:8188", 5)]


@pytest.mark.parametrize(("settings", "message"), [
    ({}, "set base_url (one ComfyUI server) or servers (a pool), not neither"),
    ({"base_url": "http://a", "servers": ["http://b"]}, "not both"),
    ({"servers": ["http://a:1", "http://a:1/"]}, "the same URL is listed twice"),
    ({"servers": ["ftp://a"]}, "should match pattern"),
    ({"servers": [{"url": "http://a", "max_concurrent": 0}]}, "greater than or equal to 1"),
    ({"servers": [{"url": "http://a", "weight": 2}]}, "Extra inputs are not permitted"),
])
def test_bad_pool_settings_are_refused(settings, message) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        ComfyUISettings(**settings)


def test_the_config_error_names_the_model() -> None:
    text = ("models:\n  - name: comfy/sdxl\n    provider: comfyui\n"
            "    base_url: http://a:1\n    servers: [http://b:2]\n")
    with pytest.raises(ConfigError, match=r"<config>:\d+: models\[0\]: .*not both"):
        load_checked_text(text)


# -- placing jobs -----------------------------------------------------------------------------


@pytest.fixture
def pool() -> ServerPool:
    made = ServerPool("comfy/sdxl", [ServerEntry(url=f"http://gpu-{i}:8188", max_concurrent=2)
                                     for i in range(3)], UpstreamClient(), {}, 10.0)
    made.start = lambda: None  # type: ignore[method-assign]  # no health checks here
    return made


async def test_jobs_go_to_the_least_loaded_server_ties_in_turn(pool: ServerPool) -> None:
    a, b, c = pool.servers
    a.foreign = 1  # another client's prompt waits on gpu-0
    placed = [await pool.acquire() for _ in range(5)]
    assert [s.host for s in placed] == ["gpu-1:8188", "gpu-2:8188", "gpu-0:8188",
                                        "gpu-1:8188", "gpu-2:8188"]
    assert (a.jobs, b.jobs, c.jobs) == (1, 2, 2)
    pool.release(b)
    assert await pool.acquire() is b


async def test_servers_out_of_rotation_or_full_are_passed_over(pool: ServerPool) -> None:
    a, b, c = pool.servers
    a.went_down("connection refused")
    c.jobs = 2  # at its max_concurrent
    assert [await pool.acquire() for _ in range(2)] == [b, b]
    with pytest.raises(GatewayError) as caught:
        await pool.acquire()
    error = caught.value
    assert (error.status, error.type, error.code) == (503, "server_error", "upstream_busy")
    assert error.headers == {"retry-after": "5"} and not error.transient
    assert "gpu-1:8188: 2, gpu-2:8188: 2" in error.message


async def test_the_busy_wait_is_a_measured_run(pool: ServerPool) -> None:
    for server in pool.servers:
        server.jobs = 2
    pool.servers[1].measured(12.2)
    with pytest.raises(GatewayError) as caught:
        await pool.acquire()
    assert caught.value.headers == {"retry-after": "13"}


async def test_no_server_answering_is_an_upstream_failure(pool: ServerPool) -> None:
    for index, server in enumerate(pool.servers):
        server.went_down(f"problem {index}")  # just checked: no probe is due
    with pytest.raises(GatewayError) as caught:
        await pool.acquire()
    error = caught.value
    assert (error.status, error.type, error.code, error.transient) == (
        503, "upstream_error", "upstream_unavailable", True)
    assert "gpu-0:8188: problem 0; gpu-1:8188: problem 1; gpu-2:8188: problem 2" in \
        error.message


async def test_a_job_finding_every_server_out_probes_them(pool: ServerPool) -> None:
    probed = []

    async def check(server: Server) -> None:
        probed.append(server.host)
        if server.host == "gpu-2:8188":
            server.came_up()

    pool._check = check  # type: ignore[method-assign]
    for server in pool.servers:
        server.went_down("down")
        server.checked_at = time.monotonic() - 2
    assert (await pool.acquire()).host == "gpu-2:8188"
    assert sorted(probed) == ["gpu-0:8188", "gpu-1:8188", "gpu-2:8188"]


# -- queue positions and ETAs -----------------------------------------------------------------


def test_the_queue_is_read_in_the_order_it_runs() -> None:
    state = queue_state({
        "queue_running": [[3, "r", {}, {}, []]],
        "queue_pending": [[9, "c", {}, {}, []], [5, "a", {}, {}, []], [-1, "front", {}],
                          [7, "b"], "junk", [8]]})
    assert state == QueueState(("r",), ("front", "a", "b", "c"))
    assert (state.where("r"), state.where("b"), state.where("x")) == (
        "running", "pending", "absent")
    assert [state.position(p) for p in ("front", "c", "r")] == [1, 4, None]
    assert queue_state(["not", "a", "dict"]) == QueueState()


def test_an_eta_counts_the_runs_ahead_once_one_was_measured() -> None:
    server = Server(ServerEntry(url="http://gpu:8188"),
                    ComfyClient(UpstreamClient(), "http://gpu:8188", {}))
    state = QueueState(("theirs",), ("a", "b"))
    assert server.eta(state, "b") is None, "nothing measured yet"
    server.measured(10.0)
    server.measured(20.0)
    assert server.run_seconds == pytest.approx(13.0)
    # Another client's running prompt: half a run left; then a's run and b's own.
    assert server.eta(state, "b") == pytest.approx(6.5 + 2 * 13.0)
    server.started["ours"] = time.monotonic() - 4.0
    assert server.eta(QueueState(("ours",), ("b",)), "b") == pytest.approx(9.0 + 13.0, abs=0.2)
    assert server.eta(state, "theirs") is None, "not waiting"


def test_queue_length_from_status_counts_the_foreign_prompts() -> None:
    server = Server(ServerEntry(url="http://gpu:8188"),
                    ComfyClient(UpstreamClient(), "http://gpu:8188", {}))
    server.submitted = 2
    server.note_remaining(5)
    assert server.foreign == 3
    server.note_remaining(1)
    assert server.foreign == 0


class GatedQueue:
    """A server whose queue reads each wait until the test lets them end (no timing)."""

    def __init__(self) -> None:
        self.reads = 0
        self.started = asyncio.Event()
        self.go_on = asyncio.Event()

    async def queue(self, timeout: object) -> QueueState:
        self.reads += 1
        read = self.reads
        self.started.set()
        await self.go_on.wait()
        self.go_on.clear()
        return QueueState((), (f"read-{read}",))

    async def let_one_read_end(self) -> None:
        await asyncio.wait_for(self.started.wait(), 5)
        self.started.clear()
        self.go_on.set()


async def test_many_waiting_jobs_share_one_queue_read() -> None:
    client = GatedQueue()
    view = QueueView(client)  # type: ignore[arg-type]
    asks = [asyncio.ensure_future(view.current()) for _ in range(20)]
    await asyncio.sleep(0)  # all twenty asked before the read ends
    await client.let_one_read_end()
    states = await asyncio.gather(*asks)
    assert client.reads == 1 and {s.pending for s in states} == {("read-1",)}
    # Asks made while a read is under way get the read after it: the queue may have changed
    # since that one began.
    early = asyncio.ensure_future(view.current())
    await asyncio.wait_for(client.started.wait(), 5)  # read 2 is under way
    late = [asyncio.ensure_future(view.current()) for _ in range(5)]
    await asyncio.sleep(0)
    await client.let_one_read_end()  # read 2 ends; read 3 follows for the asks made during it
    await client.let_one_read_end()
    assert client.reads == 3
    assert {s.pending for s in [*await asyncio.gather(*late), await early]} == {("read-3",)}
