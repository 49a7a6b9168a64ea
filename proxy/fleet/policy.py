"""The shared store (Redis) as a dependency that fails: one policy for every call a job makes.

A call goes through :meth:`StorePolicy.call`: it gets ``store_timeout`` (twice, with the one
retry the client makes on a fresh connection), and any failure — refused, timed out, an error
reply — ends the call with :class:`~proxy.core.errors.StoreUnavailable` and opens an *outage*.
During an outage calls fail at once, without touching the network (a job never queues behind
a store that does not answer), and one task probes the store every half second; the first
answer ends the outage. One line is logged when an outage begins and one when it ends (with how
many calls failed meanwhile), never one per call.

Callers decide what a failure means: progress and snapshot writes are best effort
(:meth:`StorePolicy.best_effort`, or :class:`WriteBehind` for writes that must land
eventually); claims and reads that need the store answer 503 ``store_unavailable``; limits
follow ``limits.on_store_failure``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, TypeVar

from redis.exceptions import RedisError

from proxy.core.errors import StoreUnavailable

log = logging.getLogger("proxy.fleet")

T = TypeVar("T")
V = TypeVar("V")

PROBE_SECONDS = 0.5  # how often an outage is probed
RETRY_SECONDS = 0.5  # how often writes kept by WriteBehind are tried again
# What a store that is away raises (redis-py's ConnectionError and TimeoutError are RedisErrors).
FAILURES = (RedisError, OSError, TimeoutError)


def background(work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    """A task of the process, not of the request that happened to start it (its log lines
    carry no request id)."""
    return asyncio.get_running_loop().create_task(work, context=contextvars.Context())


class StorePolicy:
    """The health of one shared store, as every call to it found it."""

    def __init__(self, ping: Callable[[], Awaitable[Any]], *, timeout: float,
                 name: str = "redis", probe_every: float = PROBE_SECONDS) -> None:
        self.name = name
        self.timeout = timeout
        # A call's own limit: the client's socket timeouts bound each attempt, this bounds the
        # two attempts (and any wait for a pooled connection) together.
        self.limit = 2 * timeout
        self.probe_every = probe_every
        self._ping = ping
        self.outages = 0  # outages so far; a StoreUnavailable carries the number of its own
        self.failed_calls = 0  # calls failed during the current outage
        self.down_since: float | None = None  # monotonic; None while the store answers
        self.up_since: float | None = None  # the first answer of the current healthy period
        self._cause = ""
        self._probe: asyncio.Task[None] | None = None
        # Told of every change: True when the store answers again, False when it stops.
        self.watchers: list[Callable[[bool], None]] = []

    @property
    def up(self) -> bool:
        return self.down_since is None

    def up_for(self) -> float:
        """Seconds the store has answered without interruption (0 while it does not, or before
        its first answer)."""
        if self.down_since is not None or self.up_since is None:
            return 0.0
        return time.monotonic() - self.up_since

    def down_for(self) -> float:
        return 0.0 if self.down_since is None else time.monotonic() - self.down_since

    def describe(self) -> str:
        """Why the store is down, for /readyz."""
        return f"{self.name} unreachable for {self.down_for():.1f} s: {self._cause}"

    async def call(self, what: str, make: Callable[[], Awaitable[T]],
                   waits: float = 0.0) -> T:
        """``await make()``, or :class:`StoreUnavailable` (at once during an outage).
        ``waits``: seconds the command itself waits in the store (a blocking read), on top of
        the call's limit."""
        if self.down_since is not None:
            self.failed_calls += 1
            raise StoreUnavailable(what, self.outages)
        try:
            async with asyncio.timeout(self.limit + waits):
                result = await make()
        except FAILURES as exc:
            self.report(what, exc)
            raise StoreUnavailable(what, self.outages) from None
        if self.up_since is None:
            self.up_since = time.monotonic()
        return result

    async def best_effort(self, what: str, make: Callable[[], Awaitable[T]],
                          default: T) -> T:
        """:meth:`call`, answering ``default`` when the store cannot be reached."""
        try:
            return await self.call(what, make)
        except StoreUnavailable:
            return default

    async def check(self) -> bool:
        """Ask the store whether it answers (a PING through :meth:`call`)."""
        return await self.best_effort("ping", self._ping, False) is not False

    def report(self, what: str, exc: BaseException) -> None:
        """A call (or a connection held elsewhere, e.g. a subscription) found the store away."""
        self.failed_calls += 1
        if self.down_since is not None:
            return
        self.down_since = time.monotonic()
        self.outages += 1
        self._cause = f"{type(exc).__name__}: {exc}".rstrip(": ")[:300]
        log.warning("the shared store (%s) cannot be reached (%s, during %s): running jobs go "
                    "on without it (their progress and snapshots are written once it answers "
                    "again); requests that need it get 503", self.name, self._cause, what)
        self._tell(False)
        if self._probe is None or self._probe.done():
            self._probe = background(self._probing())

    async def _probing(self) -> None:
        while self.down_since is not None:
            await asyncio.sleep(self.probe_every)
            try:
                async with asyncio.timeout(self.limit):
                    await self._ping()
            except FAILURES:
                continue
            except Exception:  # a bug: keep probing, but say so
                log.exception("probing the shared store (%s) failed", self.name)
                continue
            log.warning("the shared store (%s) answers again after %.1f s (%d calls failed "
                        "meanwhile)", self.name, self.down_for(), self.failed_calls)
            self.down_since = None
            self.up_since = time.monotonic()
            self.failed_calls = 0
            self._tell(True)

    def _tell(self, up: bool) -> None:
        for watcher in self.watchers:
            try:
                watcher(up)
            except Exception:
                log.exception("a watcher of the shared store's health failed")

    async def aclose(self) -> None:
        task, self._probe = self._probe, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class WriteBehind(Generic[V]):
    """Writes that must land eventually (a job's last snapshot, an async job's result): tried
    at once; when the store cannot take them they are kept here, the latest value per key, and
    tried again every ``retry_every`` seconds until they land. Until then :meth:`pending`
    answers reads of them from here. Never raises: a job does not fail because of it."""

    def __init__(self, write: Callable[[dict[str, V]], Awaitable[None]],
                 retry_every: float = RETRY_SECONDS) -> None:
        self._write = write
        self.retry_every = retry_every
        self._pending: dict[str, V] = {}
        self._task: asyncio.Task[None] | None = None

    def pending(self, key: str) -> V | None:
        return self._pending.get(key)

    def __len__(self) -> int:
        return len(self._pending)

    def discard(self, key: str) -> None:
        """Forget ``key``'s value if it is still waiting to be written."""
        self._pending.pop(key, None)

    async def put(self, key: str, value: V) -> None:
        if key not in self._pending:
            try:
                await self._write({key: value})
                return
            except StoreUnavailable:
                pass
        self._pending[key] = value
        if self._task is None or self._task.done():
            self._task = background(self._retry())

    async def _retry(self) -> None:
        while self._pending:
            await asyncio.sleep(self.retry_every)
            batch = dict(self._pending)
            try:
                await self._write(batch)
            except StoreUnavailable:
                continue
            except Exception:
                log.exception("writing %d kept values to the shared store failed", len(batch))
                continue
            for key, value in batch.items():
                if self._pending.get(key) is value:  # not replaced meanwhile
                    del self._pending[key]

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
