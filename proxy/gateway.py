"""The running gateway's shared state: configuration, served models, keys, limits, progress,
usage ledger, image fetcher, upstream client."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from proxy.auth import KeyRing
from proxy.config import GatewayConfig
from proxy.errors import GatewayError
from proxy.fetching import ImageFetcher
from proxy.limits.counters import MemoryCounters
from proxy.limits.guard import Guard, SpendQuery
from proxy.models.served import ModelTable
from proxy.observability.metrics import Metrics
from proxy.progress.hub import ProgressHub
from proxy.progress.latency import LatencyBook
from proxy.progress.results import ResultStore
from proxy.progress.store import MemorySnapshotStore
from proxy.reliability.attempts import Reliability
from proxy.runs import Runs
from proxy.shared_state import RedisCounters, RedisResultStore, RedisSnapshotStore
from proxy.storage import ImageStore, build_store
from proxy.upstream import UpstreamClient
from proxy.usage import UsageLedger


@dataclass
class Gateway:
    config: GatewayConfig
    http: UpstreamClient
    models: ModelTable
    keys: KeyRing
    hub: ProgressHub
    fetcher: ImageFetcher
    usage: UsageLedger | None
    guard: Guard
    store: ImageStore
    runs: Runs
    reliability: Reliability
    results: ResultStore
    metrics: Metrics
    shutting_down: bool = False
    _drain: asyncio.Future[None] | None = field(default=None, repr=False)
    loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)
    redis: Redis | None = field(default=None, repr=False)
    _exit_watch: asyncio.Future[None] | None = field(default=None, repr=False)

    @classmethod
    def from_config(cls, config: GatewayConfig) -> Gateway:
        http = UpstreamClient()
        retention = config.jobs.retention_seconds
        redis = Redis.from_url(config.redis_url) if config.redis_url else None
        if redis is not None:
            prefix = config.redis_prefix
            snapshots: Any = RedisSnapshotStore(redis, prefix, retention)
            results: Any = RedisResultStore(redis, prefix, retention)
            counters: Any = RedisCounters(redis, prefix)
        else:
            snapshots = MemorySnapshotStore(retention=retention)
            results, counters = ResultStore(retention), MemoryCounters()
        usage = UsageLedger(config.data_path) if config.usage.enabled else None
        models = ModelTable(config, http)
        metrics = Metrics()
        return cls(config=config, http=http, models=models, metrics=metrics,
                   keys=KeyRing(config.keys), hub=ProgressHub(snapshots, LatencyBook()),
                   fetcher=ImageFetcher(config.fetch), usage=usage,
                   guard=Guard(counters, _spend_reader(usage)),
                   store=build_store(config.storage, config.data_path), runs=Runs(),
                   reliability=Reliability(config.reliability, models, metrics),
                   results=results, redis=redis)

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._exit_watch = asyncio.ensure_future(self._watch_for_exit())
        await self.http.start()
        await self.fetcher.start()
        await self.store.start()
        if self.usage is not None:
            await self.usage.start()

    async def _watch_for_exit(self) -> None:
        """Notice SIGTERM: uvicorn handles the signal and sets its server's ``should_exit``;
        the server is found through the installed handler (in every worker process too)."""
        while not self.shutting_down:
            server = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
            if getattr(server, "should_exit", False):
                self.begin_shutdown()
                return
            await asyncio.sleep(0.25)

    def begin_shutdown(self) -> None:
        """SIGTERM: new jobs are refused; running ones get ``server.shutdown_grace`` seconds,
        then are ended (their streams with an error event, their snapshots failed)."""
        if not self.shutting_down:
            self.shutting_down = True
            self._drain = asyncio.ensure_future(self._end_stragglers())

    async def _end_stragglers(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.runs.idle(), self.config.server.shutdown_grace)
        self.runs.abort_all(GatewayError(
            503, "The gateway is shutting down and this job could not finish in time.",
            type="server_error", code="server_shutting_down", retryable=False))

    async def ready(self) -> str | None:
        """Why the gateway cannot serve (None when it can): Redis must answer if configured."""
        if self.shutting_down:
            return "shutting down"
        if self.redis is not None:
            try:
                await asyncio.wait_for(self.redis.ping(), 2)
            except Exception as exc:
                return f"redis unreachable: {type(exc).__name__}"
        return None

    async def aclose(self) -> None:
        if self._exit_watch is not None:
            self._exit_watch.cancel()
        if self.usage is not None:
            await self.usage.aclose()
        await self.fetcher.aclose()
        await self.store.aclose()
        await self.models.aclose()
        await self.hub.store.aclose()
        await self.http.aclose()
        if self.redis is not None:
            await self.redis.aclose()


def _spend_reader(usage: UsageLedger | None) -> SpendQuery | None:
    """Budgets read what a key spent from the ledger (once per period; then kept current)."""
    if usage is None:
        return None

    async def spent(key: str, since: float) -> float:
        report = await usage.query(key=key, since=since, limit=1)
        return float(report.totals.cost)

    return spent
