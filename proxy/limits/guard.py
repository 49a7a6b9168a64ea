"""Admission: may this key start a job now? Rate, concurrency and budget, in that order.

Refusals are 429s with OpenAI's headers: ``retry-after`` and ``x-ratelimit-*`` (the official
SDKs read ``retry-after``). A spent budget is 429 ``insufficient_quota`` with
``x-should-retry: false``: retrying cannot help until the period turns over. A spend that cannot
be read (a shared ledger whose database is down) is the spend query's error: the service makes
it a 503 with ``retry-after``, for keys with a budget only.

Admission also gives the job its lease in the fleet (:mod:`proxy.fleet.leases`): in the same
call, a key with ``concurrent_jobs`` takes one of its slots, an entry that lives as long as the
lease (so a slot never outlives its job's instance). In one process a key without that limit
needs no lease. While the shared store cannot be reached, a key's rate and concurrency limits
cannot be checked: ``limits.on_store_failure`` says whether the job is admitted anyway
(``fail_open``, logged once per outage; its lease is recorded once the store is back) or
refused with 503 ``limits_unavailable`` (``fail_closed``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from proxy.auth import Key
from proxy.core.errors import GatewayError, StoreUnavailable, limits_unavailable
from proxy.fleet.leases import JobLease, LeaseTable
from proxy.limits.counters import Counters, WindowState

log = logging.getLogger("proxy.limits")

MINUTE = 60.0
# How much a key spent since a moment: the usage ledger answers it.
SpendQuery = Callable[[str, float], Awaitable[float]]


def go_duration(seconds: float) -> str:
    """``12s`` / ``1m30s``: the form OpenAI's ``x-ratelimit-reset-*`` headers use."""
    whole = math.ceil(seconds)
    minutes, rest = divmod(whole, 60)
    return f"{minutes}m{rest}s" if minutes else f"{rest}s"


def period_start(period: str, now: float) -> float:
    moment = datetime.fromtimestamp(now, UTC)
    if period == "day":
        return moment.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    if period == "month":
        return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()
    return 0.0


def period_end(period: str, now: float) -> float | None:
    moment = datetime.fromtimestamp(period_start(period, now), UTC)
    if period == "day":
        return moment.timestamp() + 86400
    if period == "month":
        if moment.month == 12:
            return moment.replace(year=moment.year + 1, month=1).timestamp()
        return moment.replace(month=moment.month + 1).timestamp()
    return None


@dataclass
class Lease:
    """A job's admission: its lease in the fleet (holding its key's concurrency slot, if the
    key has that limit), released exactly once; and the headers its answer carries."""

    job: JobLease | None
    headers: dict[str, str] = field(default_factory=dict)

    async def release(self) -> None:
        if self.job is not None:
            await self.job.release()


class Guard:
    def __init__(self, counters: Counters, leases: LeaseTable, spend: SpendQuery | None, *,
                 shared_spend: bool = False, fail_closed: bool = False) -> None:
        """``shared_spend``: other instances charge the same keys (a ledger they share), so a
        key's spend is read from the ledger at each admission. Otherwise it is read once per
        period and then kept current here, as this instance's jobs finish. ``fail_closed``:
        refuse jobs whose limits cannot be checked (``limits.on_store_failure``)."""
        self.counters = counters
        self.leases = leases
        self.spend = spend
        self.shared_spend = shared_spend
        self.fail_closed = fail_closed
        self._open_outage = 0  # the store outage during which admitting unchecked was logged
        # Spend per (key, period start), read from the ledger once and then kept current.
        self._spent: dict[tuple[str, float], float] = {}

    async def _rate(self, key: Key) -> dict[str, str]:
        if key.requests_per_minute is None:
            return {}
        try:
            state: WindowState = await self.counters.hit(f"rpm:{key.name}",
                                                         key.requests_per_minute, MINUTE)
        except StoreUnavailable as exc:
            self._unchecked(key, exc)
            return {}
        headers = {
            "x-ratelimit-limit-requests": str(state.limit),
            "x-ratelimit-remaining-requests": str(state.remaining),
            "x-ratelimit-reset-requests": go_duration(state.reset_after),
        }
        if not state.allowed:
            headers["retry-after"] = str(max(1, math.ceil(state.reset_after)))
            raise GatewayError(
                429, f"Rate limit reached for key '{key.name}': {state.limit} requests per "
                     f"minute. Try again in {go_duration(state.reset_after)}.",
                type="requests", code="rate_limit_exceeded", headers=headers)
        return headers

    async def spent(self, key: Key, now: float) -> float:
        start = period_start(key.budget_period, now)
        if self.shared_spend:
            return await self.spend(key.name, start) if self.spend else 0.0
        cached = self._spent.get((key.name, start))
        if cached is None:
            cached = await self.spend(key.name, start) if self.spend else 0.0
            self._spent[(key.name, start)] = cached
        return cached

    def add_spend(self, key: Key, cost: float, when: float) -> None:
        if not self._spent:  # no budget read yet (none configured, or a shared ledger)
            return
        slot = (key.name, period_start(key.budget_period, when))
        if slot in self._spent:
            self._spent[slot] += cost

    async def _budget(self, key: Key) -> None:
        if key.budget_usd is None:
            return
        now = time.time()
        spent = await self.spent(key, now)
        if spent < key.budget_usd:
            return
        end = period_end(key.budget_period, now)
        headers = {"retry-after": str(math.ceil(end - now))} if end else {}
        scope = "in total" if key.budget_period == "total" else f"this {key.budget_period}"
        raise GatewayError(
            429, f"Key '{key.name}' has used its budget of ${key.budget_usd:.2f} {scope} "
                 f"(spent ${spent:.4f}).",
            type="insufficient_quota", code="insufficient_quota", headers=headers,
            retryable=False)

    def _unchecked(self, key: Key, exc: StoreUnavailable) -> None:
        """A limit of ``key`` cannot be checked: refused (fail_closed), or admitted with a log
        line once per outage (fail_open)."""
        if self.fail_closed:
            raise limits_unavailable(key.name) from None
        if exc.outage != self._open_outage:
            self._open_outage = exc.outage
            log.warning("rate and concurrency limits are not checked while the shared store "
                        "cannot be reached (limits.on_store_failure: fail_open): key '%s' and "
                        "others are admitted without them", key.name)

    async def accept(self, key: Key) -> dict[str, str]:
        """A job queued to run later (a durable async job): its request counts against the
        key's rate now, and a spent budget refuses it now; its concurrency slot is taken when
        it runs (:meth:`admit` with ``queued``). The rate headers."""
        headers = await self._rate(key)
        await self._budget(key)
        return headers

    async def admit(self, key: Key, job_id: str, queued: bool = False) -> Lease:
        """Check every limit and lease the job; the returned lease must be released when the
        job ends. ``queued``: a job of the durable queue, accepted before (its request was
        counted against the rate then): its budget and concurrency are checked now."""
        headers = {} if queued else await self._rate(key)
        await self._budget(key)
        limit = key.concurrent_jobs
        if limit is None and not self.leases.shared:
            return Lease(None, headers)
        try:
            job = await self.leases.admit(job_id, key.name, limit, durable=queued)
        except StoreUnavailable as exc:
            if limit is not None:
                self._unchecked(key, exc)
            job = self.leases.adopt(job_id, key.name, limit, durable=queued)
        if job is None:
            raise GatewayError(
                429, f"Key '{key.name}' already runs {limit} jobs at once; wait for one to "
                     "finish.",
                type="requests", code="concurrency_limit_exceeded",
                headers={**headers, "retry-after": "1"})
        return Lease(job, headers)
