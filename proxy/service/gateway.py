"""The gateway's wiring: every part built from the configuration (served models, keys, limits,
progress, usage ledger, image fetcher and store, upstream client), started and closed together.
:func:`check_config` finds every problem a configuration has before anything starts."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from proxy.auth import KeyRing
from proxy.billing import LedgerUnavailable, SQLiteLedger, UsageLedger
from proxy.config import (
    GatewayConfig,
    Loc,
    load_config,
    load_config_text,
    load_default_config,
    problems_in,
)
from proxy.core.errors import (
    GatewayError,
    instance_lost,
    ledger_unavailable,
    upstream_maybe_called,
)
from proxy.core.redact import remember, secrets_in
from proxy.fetching import AllowList, ImageFetcher
from proxy.fleet.batch import Batch
from proxy.fleet.client import connect
from proxy.fleet.leases import JobLease, LeaseTable
from proxy.fleet.leases_memory import MemoryLeases
from proxy.fleet.leases_redis import RedisLeases
from proxy.fleet.policy import StorePolicy
from proxy.fleet.queue import BLOCK_SECONDS, JobQueue
from proxy.jobs.claims import ClaimStore, MemoryClaimStore, RedisClaimStore
from proxy.jobs.reliability import Reliability
from proxy.jobs.results import MemoryResultStore, RedisResultStore, ResultStore
from proxy.jobs.runs import Runs
from proxy.limits.capacity import Capacity, auto_max_jobs
from proxy.limits.counters import Counters, MemoryCounters, RedisCounters
from proxy.limits.guard import Guard, SpendQuery
from proxy.observability import tracing
from proxy.observability.metrics import Metrics
from proxy.progress.hub import ProgressHub
from proxy.progress.latency import LatencyBook
from proxy.progress.reaper import Reaper
from proxy.progress.snapshots import MemorySnapshotStore, RedisSnapshotStore, SnapshotStore
from proxy.routing import ModelTable, build_models, check_raw, plan_models
from proxy.service.memory import (
    IdleTrimmer,
    collect,
    release_collector,
    release_thread_cache,
    tune_allocator,
    tune_collector,
)
from proxy.storage import ImageStore, build_store
from proxy.upstream.client import UpstreamClient

# How long jobs ended at the end of the shutdown grace get to record how they ended.
ABORTED_WIND_DOWN = 5.0


@dataclass
class Stores:
    """What is kept in memory (one process) or shared through Redis (a fleet)."""

    snapshots: SnapshotStore
    results: ResultStore
    counters: Counters
    claims: ClaimStore
    leases: LeaseTable
    redis: Redis | None = None
    policy: StorePolicy | None = None  # how calls to Redis fail
    queue: JobQueue | None = None  # the durable queue of async jobs

    @classmethod
    def from_config(cls, config: GatewayConfig) -> Stores:
        retention = config.jobs.retention_seconds
        fleet = config.fleet
        instance = fleet.instance_id or f"{socket.gethostname()}:{os.getpid()}"
        if not config.redis_url:
            return cls(MemorySnapshotStore(retention=retention), MemoryResultStore(retention),
                       MemoryCounters(), MemoryClaimStore(), MemoryLeases(instance=instance))
        redis = connect(config.redis_url, fleet.store_timeout)
        policy = StorePolicy(redis.ping, timeout=fleet.store_timeout)
        batch, prefix = Batch(redis), config.redis_prefix
        queue = JobQueue(redis, batch, policy, prefix, consumer=instance,
                         lease_seconds=fleet.lease_seconds, retention=retention,
                         max_length=fleet.async_queue_max,
                         reader=connect(config.redis_url, fleet.store_timeout + BLOCK_SECONDS))
        return cls(RedisSnapshotStore(batch, policy, prefix, retention),
                   RedisResultStore(redis, prefix, retention, policy),
                   RedisCounters(redis, prefix, policy), RedisClaimStore(redis, prefix),
                   RedisLeases(batch, policy, prefix, lease_seconds=fleet.lease_seconds,
                               instance=instance, retention=retention),
                   redis, policy, queue)


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
    capacity: Capacity
    leases: LeaseTable
    # Client-chosen job ids: reserved while their job runs, then holding its answer.
    claims: ClaimStore = field(default_factory=MemoryClaimStore)
    shutting_down: bool = False
    _drain: asyncio.Future[None] | None = field(default=None, repr=False)
    loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)
    redis: Redis | None = field(default=None, repr=False)
    policy: StorePolicy | None = field(default=None, repr=False)
    reaper: Reaper | None = field(default=None, repr=False)
    queue: JobQueue | None = field(default=None, repr=False)
    trimmer: IdleTrimmer | None = field(default=None, repr=False)

    @classmethod
    def from_config(cls, config: GatewayConfig) -> Gateway:
        """Everything built (nothing started); ``ConfigError`` for a configuration that cannot
        run, with every problem at its line."""
        _check_fetch(config)
        upstream = config.upstream
        traces = tracing.active()
        http = UpstreamClient(limit=upstream.max_connections,
                              limit_per_host=upstream.max_connections_per_host,
                              keepalive_timeout=upstream.keepalive_timeout,
                              trace_configs=[traces.client_trace_config()] if traces else None)
        stores = Stores.from_config(config)
        usage = _usage_ledger(config)
        models = build_models(config, http)
        _remember_secrets(config, models)
        metrics = Metrics(shared_store=stores.policy is not None)
        latency = LatencyBook()
        most = config.jobs.max_concurrent
        # Refused clients are told to come back in about a quarter of a job's usual time.
        capacity = Capacity(auto_max_jobs() if most == "auto" else most,
                            lambda model: latency.expected(model) / 4)
        metrics.jobs_capacity.set(capacity.total)
        hub = ProgressHub(stores.snapshots, latency, leases=stores.leases)
        reaper = (Reaper(stores.leases, stores.snapshots, hub.outbox, stores.policy)
                  if stores.policy is not None else None)
        guard = Guard(stores.counters, stores.leases, _spend_reader(usage),
                      shared_spend=usage is not None and usage.shared,
                      fail_closed=config.limits.on_store_failure == "fail_closed")
        return cls(config=config, http=http, models=models, metrics=metrics, capacity=capacity,
                   keys=KeyRing(config.keys), hub=hub, fetcher=ImageFetcher(config.fetch),
                   usage=usage, guard=guard,
                   store=build_store(config.storage, config.data_path), runs=Runs(),
                   reliability=Reliability(config.reliability, models, metrics),
                   results=stores.results, claims=stores.claims, leases=stores.leases,
                   redis=stores.redis, policy=stores.policy, reaper=reaper,
                   queue=stores.queue)

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        memory = self.config.memory
        tune_allocator(memory.mmap_threshold, memory.trim_threshold)
        capacity = self.capacity
        self.trimmer = IdleTrimmer(lambda: (capacity.running, capacity.started),
                                   memory.idle_seconds, memory.idle_passes,
                                   collect=self._settle_and_collect)
        self.trimmer.start()
        self.leases.on_lost = self._lost
        gauge = self.metrics.store_up
        if self.policy is not None and gauge is not None:
            gauge.set(1)
            self.policy.watchers.append(lambda up: gauge.set(1 if up else 0))
        if self.reaper is not None:
            self.reaper.start()
        await self.http.start()
        await self.fetcher.start()
        await self.store.start()
        if self.usage is not None:
            await self.usage.start()
        tune_collector()  # last: what start-up made is frozen

    def _settle_and_collect(self) -> int:
        """An idle pass's collection: ended jobs' snapshots leave their objects first."""
        self.hub.store.settle()
        return collect()

    def _lost(self, leases: list[JobLease]) -> None:
        """Jobs the fleet ended while this instance could not renew their leases (it was cut
        off from Redis, or frozen): their snapshots already say so; they stop here too."""
        error = instance_lost(self.leases.instance)
        for lease in leases:
            if lease.durable:
                # A queued job's end is its runner's to write, fenced by the queue (the
                # fleet did not end it): it ends failed here, its upstream called already.
                self.runs.abort_job(lease.job_id, upstream_maybe_called(self.leases.instance))
                continue
            self.hub.disown(lease.job_id)
            self.runs.abort_job(lease.job_id, error)

    def begin_shutdown(self) -> None:
        """Stop taking jobs: new ones are refused (503 ``server_shutting_down``) and ``/readyz``
        answers 503; running ones get ``server.shutdown_grace`` seconds, then are ended (their
        streams with an error event, their snapshots failed)."""
        if not self.shutting_down:
            self.shutting_down = True
            self._drain = asyncio.ensure_future(self._end_stragglers())

    async def drain(self) -> None:
        """:meth:`begin_shutdown`, and return once no job runs: every one finished, or the
        grace ran out and the ones that outstayed it were ended."""
        self.begin_shutdown()
        assert self._drain is not None
        await asyncio.shield(self._drain)

    async def _end_stragglers(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.runs.idle(), self.config.server.shutdown_grace)
        if self.runs.abort_all(GatewayError(
                503, "The gateway is shutting down and this job could not finish in time.",
                type="server_error", code="server_shutting_down", retryable=False)):
            # Their readers get the error and record the failure (ledger, async result).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.runs.idle(), ABORTED_WIND_DOWN)

    async def ready(self) -> str | None:
        """Why the gateway cannot serve (None when it can): Redis must answer if configured
        (asked again each time while it does; during an outage its probe says when it is
        back)."""
        if self.shutting_down:
            return "shutting down"
        if self.policy is not None and not (self.policy.up and await self.policy.check()):
            return self.policy.describe()
        return None

    async def aclose(self) -> None:
        if self.trimmer is not None:
            self.trimmer.stop()
        if self.usage is not None:
            await self.usage.aclose()
        release_collector()
        await self.fetcher.aclose()
        await self.store.aclose()
        await self.models.aclose()
        if self.reaper is not None:
            await self.reaper.aclose()
        await self.leases.aclose()
        await self.hub.aclose()  # its tasks, then its store
        await self.results.aclose()
        await self.http.aclose()
        if self.policy is not None:
            await self.policy.aclose()
        if self.queue is not None and self.queue.reader is not self.queue.redis:
            await self.queue.reader.aclose()
        if self.redis is not None:
            await self.redis.aclose()


def _remember_secrets(config: GatewayConfig, models: ModelTable) -> None:
    """Every credential the configuration holds (and each provider's settings, as parsed) is
    redacted from client-visible messages and log lines from now on."""
    remember(*secrets_in(config))
    for served in models.models:
        remember(*secrets_in(served.provider.settings))


def _usage_ledger(config: GatewayConfig) -> UsageLedger | None:
    """SQLite in the data directory, or the PostgreSQL database ``usage.database_url`` names."""
    if not config.usage.enabled:
        return None
    url = config.usage.database_url
    if url is None:
        return SQLiteLedger(config.data_path, commit_interval=config.usage.commit_interval,
                            idle_release=release_thread_cache)
    # Imported only when configured: it brings asyncpg.
    from proxy.billing.ledger_postgres import PostgresLedger

    return PostgresLedger(url.get_secret_value(), config.data_path)


def _spend_reader(usage: UsageLedger | None) -> SpendQuery | None:
    """Budgets read what a key spent from the ledger: once per period and then kept current,
    or, from a ledger other instances share, at every admission. A shared ledger that cannot
    be read refuses the job with 503 and ``retry-after`` (the budget cannot be checked)."""
    if usage is None:
        return None

    async def spent(key: str, since: float) -> float:
        try:
            return float(await usage.spent(key, since))
        except LedgerUnavailable:
            raise ledger_unavailable(
                f"The usage ledger cannot be read right now, so the budget of key '{key}' "
                "cannot be checked. Try again shortly.") from None

    return spent


def load_checked(path: str | Path | None) -> GatewayConfig:
    """The configuration file at ``path`` (the embedded default for None), checked as a whole:
    every problem it has, schema and models alike, at its line (``ConfigError``)."""
    if path is None:
        return load_default_config(checks=_raw_checks)
    return load_config(path, checks=_raw_checks)


def load_checked_text(text: str, source: str = "<config>",
                      base_dir: Path | None = None) -> GatewayConfig:
    """:func:`load_checked` for configuration text."""
    return load_config_text(text, source=source, base_dir=base_dir, checks=_raw_checks)


def check_config(config: GatewayConfig) -> list[str]:
    """What ``from_config`` would refuse in an already loaded configuration, found without
    building anything that holds resources: raises ``ConfigError``. Returns the names of the
    models it would serve."""
    _check_fetch(config)
    return [plan.entry.name for plan in plan_models(config)]


def _raw_checks(data: dict[str, Any], base_dir: Path) -> list[tuple[Loc, str]]:
    fetch = data.get("fetch")
    hosts = fetch.get("allow_hosts") if isinstance(fetch, dict) else None
    return [*_allow_list_problems(hosts if isinstance(hosts, list) else []),
            *check_raw(data, base_dir)]


def _allow_list_problems(entries: list[Any]) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    for i, entry in enumerate(entries):
        try:
            AllowList([entry])
        except ValueError as exc:
            problems.append((("fetch", "allow_hosts", i), str(exc)))
    return problems


def _check_fetch(config: GatewayConfig) -> None:
    problems = _allow_list_problems(config.fetch.allow_hosts)
    if problems:
        raise problems_in(config, problems)
