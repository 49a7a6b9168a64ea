"""The ComfyUI servers behind one model, and where each job goes.

A model names one server (``base_url``) or a pool (``servers``); either way it is a pool here.
Each job goes to the server with the least work queued: this gateway's jobs on it plus other
clients' prompts in its queue (read at every health check and from the ``status`` messages its
jobs receive), ties taken in turn. The job's uploads, websocket, prompt, polls and cancel all
go to that server.

One background task per pool checks every server every ``health_interval`` seconds
(``GET /system_stats``, then ``GET /prompt`` for the queue's length). A server that fails is out
of rotation until a check succeeds again; a job that cannot connect to its server takes it out
at once and moves to the next. A job that finds every server out probes them again itself (at
most once a second), so a pool of one is back as soon as its server is.

Refusals are immediate, never a wait: every server at its ``max_concurrent`` is a 503
``upstream_busy`` with a ``retry-after``; no server answering is a 503 ``upstream_unavailable``
(an upstream failure: retried, handed to fallbacks, counted by the breaker).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time

from proxy.config import TimeoutConfig
from proxy.core.errors import GatewayError, upstream_error
from proxy.providers.comfyui.client import ComfyClient
from proxy.providers.comfyui.protocol import QueueState
from proxy.providers.comfyui.settings import ServerEntry
from proxy.upstream.client import UpstreamClient

log = logging.getLogger("proxy.providers.comfyui")

HEALTH_TIMEOUT = TimeoutConfig(connect=3.0, first_byte=5.0, total=5.0)
QUEUE_TIMEOUT = TimeoutConfig(connect=3.0, first_byte=5.0, total=5.0)
# A job that finds every server out probes them again, at most this often.
PROBE_AFTER = 1.0
# Weight of the newest run in a server's mean run duration.
_SMOOTHING = 0.3


class QueueView:
    """A server's queue as last read: however many jobs wait in it, one ``GET /queue`` per
    change they are told about (``status`` messages reach every socket at once)."""

    def __init__(self, client: ComfyClient) -> None:
        self.client = client
        self.state = QueueState()
        self._dirty = False
        self._reader: asyncio.Future[None] | None = None

    async def current(self) -> QueueState:
        """The queue as read after this call began (a read already under way is followed by
        another one)."""
        self._dirty = True
        if self._reader is None or self._reader.done():
            self._reader = asyncio.ensure_future(self._read())
            self._reader.add_done_callback(_retrieve)
        await asyncio.shield(self._reader)
        return self.state

    async def _read(self) -> None:
        while self._dirty:
            self._dirty = False
            self.state = await self.client.queue(QUEUE_TIMEOUT)


def _retrieve(future: asyncio.Future[None]) -> None:
    """Mark a reader's failure seen: its waiters may all have gone."""
    if not future.cancelled():
        future.exception()


class Server:
    """One ComfyUI server of a pool, as this gateway knows it."""

    def __init__(self, entry: ServerEntry, client: ComfyClient) -> None:
        self.client = client
        self.host = client.host
        self.limit = entry.max_concurrent
        self.jobs = 0  # this gateway's jobs placed on it and not ended
        self.submitted = 0  # of those, the ones whose prompt is in its queue
        self.foreign = 0  # other clients' prompts in its queue, at the last look
        self.up = True
        self.problem: str | None = None
        self.checked_at = -math.inf
        self.run_seconds: float | None = None  # mean run duration measured here
        self.started: dict[str, float] = {}  # this gateway's running prompts: id -> start
        self.queue = QueueView(client)

    @property
    def load(self) -> int:
        return self.jobs + self.foreign

    @property
    def full(self) -> bool:
        return self.limit is not None and self.jobs >= self.limit

    def note_remaining(self, remaining: int) -> None:
        """ComfyUI says ``remaining`` prompts run or wait there: the rest are not ours."""
        self.foreign = max(0, remaining - self.submitted)

    def measured(self, seconds: float) -> None:
        previous = self.run_seconds
        self.run_seconds = seconds if previous is None else (
            previous + _SMOOTHING * (seconds - previous))

    def eta(self, state: QueueState, prompt_id: str) -> float | None:
        """Seconds until a waiting prompt is done: what the running prompt has left (all of a
        run for one of ours just begun, half a run for another client's), plus one run for each
        prompt ahead and its own. None until a run has been measured here."""
        position = state.position(prompt_id)
        mean = self.run_seconds
        if position is None or mean is None:
            return None
        now = time.monotonic()
        left = sum(max(0.0, mean - (now - self.started[p])) if p in self.started else mean / 2
                   for p in state.running)
        return round(left + position * mean, 1)

    def went_down(self, problem: str) -> None:
        if self.up:
            log.warning("ComfyUI server %s is out of rotation: %s", self.host, problem)
        self.up, self.problem, self.checked_at = False, problem, time.monotonic()

    def came_up(self) -> None:
        if not self.up:
            log.info("ComfyUI server %s is back in rotation", self.host)
        self.up, self.problem = True, None


class ServerPool:
    def __init__(self, model: str, entries: list[ServerEntry], http: UpstreamClient,
                 headers: dict[str, str], interval: float) -> None:
        self.model = model
        self.servers = [Server(entry, ComfyClient(http, entry.url, headers))
                        for entry in entries]
        self.interval = interval
        self._turn = 0  # where the next tie-break starts
        self._watcher: asyncio.Task[None] | None = None
        self._probe: asyncio.Future[None] | None = None

    # ------------------------------------------------------------------ placing jobs
    async def acquire(self, exclude: tuple[Server, ...] = ()) -> Server:
        """A server for one job (counted until :meth:`release`), or the refusal."""
        self.start()
        server = self._pick(exclude)
        if server is None and self._probe_due(exclude):
            await self._probe_out(exclude)
            server = self._pick(exclude)
        if server is None:
            raise self._refusal(exclude)
        server.jobs += 1
        return server

    def release(self, server: Server) -> None:
        server.jobs -= 1

    def _pick(self, exclude: tuple[Server, ...]) -> Server | None:
        count = len(self.servers)
        turn = [self.servers[(self._turn + i) % count] for i in range(count)]
        ready = [s for s in turn if s.up and not s.full and s not in exclude]
        if not ready:
            return None
        best = min(ready, key=lambda server: server.load)  # the first of equals: in turn
        self._turn = (self.servers.index(best) + 1) % count
        return best

    def _probe_due(self, exclude: tuple[Server, ...]) -> bool:
        now = time.monotonic()
        return any(not s.up and s not in exclude and now - s.checked_at >= PROBE_AFTER
                   for s in self.servers)

    async def _probe_out(self, exclude: tuple[Server, ...]) -> None:
        """Check the servers that are out now (one probe at a time, shared by every job
        that asks meanwhile)."""
        if self._probe is None or self._probe.done():
            out = [s for s in self.servers if not s.up and s not in exclude]
            self._probe = asyncio.ensure_future(self._check_all(out))
        await asyncio.shield(self._probe)

    def _refusal(self, exclude: tuple[Server, ...]) -> GatewayError:
        if any(s.up and s not in exclude for s in self.servers):
            known = [s.run_seconds for s in self.servers if s.run_seconds is not None]
            wait = max(1, min(30, math.ceil(min(known)))) if known else 5
            limits = ", ".join(f"{s.host}: {s.limit}" for s in self.servers if s.up)
            return GatewayError(
                503, f"Every ComfyUI server of model '{self.model}' holds as many jobs as it "
                     f"may ({limits}). Try again in {wait} s.", type="server_error",
                code="upstream_busy", headers={"retry-after": str(wait)}, retryable=True)
        reasons = "; ".join(f"{s.host}: {s.problem or 'not answering'}" for s in self.servers)
        return upstream_error(f"No ComfyUI server of model '{self.model}' is answering "
                              f"({reasons}).", code="upstream_unavailable", status=503,
                              transient=True)

    # ------------------------------------------------------------------ health
    def start(self) -> None:
        """Start the health checks (once, from inside the running loop)."""
        if self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def aclose(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def _watch(self) -> None:
        while True:
            await self._check_all(self.servers)
            await asyncio.sleep(self.interval)

    async def _check_all(self, servers: list[Server]) -> None:
        await asyncio.gather(*(self._check(server) for server in servers))

    async def _check(self, server: Server) -> None:
        try:
            await server.client.system_stats(HEALTH_TIMEOUT)
            remaining = await server.client.queue_remaining(HEALTH_TIMEOUT)
        except GatewayError as error:
            server.went_down(error.message)
        except Exception as exc:  # a check must never end the checking
            log.exception("health check of ComfyUI server %s failed", server.host)
            server.went_down(f"{type(exc).__name__}: {exc}")
        else:
            server.came_up()
            server.note_remaining(remaining)
        finally:
            server.checked_at = time.monotonic()
