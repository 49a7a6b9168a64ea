"""Job ids a client chose (``X-Job-Id``, ``Idempotency-Key``): reserved while their job runs,
then holding its answer for a while, so a repeat of the request gets that answer instead of a
second upstream call.

A claim is taken only when a job really starts: a request refused before that (a 400, a 404, a
429 from the key's limits) leaves the id free. It names the request (its fingerprint, see
:mod:`proxy.request.fingerprint`), the key that sent it, and the attempt holding it (a token,
so only that attempt settles it). When the job ends its holder settles it:

* ``keep``: the job succeeded, or failed for good (a content-policy refusal, the upstream's
  400): its answer is kept ``jobs.replay_seconds`` and the id stays taken;
* ``release``: the job failed in a way worth retrying (429, 5xx, a timeout) or was cancelled:
  the id is free again, so a retry really runs again. A failure's answer stays readable (a
  stream that re-attaches learns how the attempt ended) until the next claim replaces it.

One interface, two backends side by side, as for snapshots and results: in memory (one process)
and Redis (a hash at ``<prefix>:claim:<id>``; each step is one atomic script).
"""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass, replace
from typing import Any, Protocol

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from proxy.core.errors import GatewayError, StoreUnavailable


def claims_unavailable() -> GatewayError:
    """503: the job id cannot be checked, and running without that check could run (and
    charge) the same request twice."""
    return StoreUnavailable("checking a client-chosen job id")


@dataclass(frozen=True, slots=True)
class Claim:
    fingerprint: str
    owner: str  # the key's name
    token: str  # the attempt holding it
    stream: bool = False  # the request streams its answer (it can be re-attached)
    # The answer of the attempt that ended (None while it runs), as :meth:`ClaimStore.keep`
    # or :meth:`ClaimStore.release` stored it.
    answer: dict[str, Any] | None = None
    free: bool = False  # released: the next claim takes the id

    @property
    def running(self) -> bool:
        return self.answer is None and not self.free


class ClaimStore(Protocol):
    shared: bool  # True when other processes read and write it too (Redis)

    async def claim(self, job_id: str, claim: Claim, ttl: float) -> Claim | None:
        """Take ``job_id`` for ``claim`` for ``ttl`` seconds (renewed while its job runs, so
        the claims of a process that died lapse soon), unless another claim holds it: then that
        one (free claims do not hold)."""

    async def get(self, job_id: str) -> Claim | None: ...

    async def renew(self, job_id: str, token: str, ttl: float) -> None:
        """The attempt ``token`` still runs: it holds the id ``ttl`` seconds more."""

    async def keep(self, job_id: str, token: str, answer: dict[str, Any], ttl: float) -> None:
        """The attempt ``token`` ended for good: its ``answer`` is kept ``ttl`` seconds."""

    async def release(self, job_id: str, token: str, answer: dict[str, Any] | None,
                      ttl: float) -> None:
        """The attempt ``token`` ended and frees the id; its ``answer`` (if any) stays
        readable ``ttl`` seconds."""


class MemoryClaimStore:
    shared = False

    def __init__(self) -> None:
        self._items: dict[str, tuple[float, Claim]] = {}
        self._expiry: list[tuple[float, str]] = []

    def _sweep(self, now: float) -> None:
        while self._expiry and self._expiry[0][0] <= now:
            _, job_id = heapq.heappop(self._expiry)
            item = self._items.get(job_id)
            if item is not None and item[0] <= now:
                del self._items[job_id]

    def _set(self, job_id: str, claim: Claim, ttl: float) -> None:
        now = time.monotonic()
        self._sweep(now)
        self._items[job_id] = (now + ttl, claim)
        heapq.heappush(self._expiry, (now + ttl, job_id))

    def _held(self, job_id: str, token: str) -> Claim | None:
        item = self._items.get(job_id)
        if item is None or item[0] <= time.monotonic() or item[1].token != token:
            return None
        return item[1]

    async def claim(self, job_id: str, claim: Claim, ttl: float) -> Claim | None:
        held = await self.get(job_id)
        if held is not None and not held.free:
            return held
        self._set(job_id, claim, ttl)
        return None

    async def get(self, job_id: str) -> Claim | None:
        item = self._items.get(job_id)
        return None if item is None or item[0] <= time.monotonic() else item[1]

    async def renew(self, job_id: str, token: str, ttl: float) -> None:
        held = self._held(job_id, token)
        if held is not None:
            self._set(job_id, held, ttl)

    async def keep(self, job_id: str, token: str, answer: dict[str, Any], ttl: float) -> None:
        held = self._held(job_id, token)
        if held is not None:
            self._set(job_id, replace(held, answer=answer), ttl)

    async def release(self, job_id: str, token: str, answer: dict[str, Any] | None,
                      ttl: float) -> None:
        held = self._held(job_id, token)
        if held is None:
            return
        if answer is None:
            del self._items[job_id]
        else:
            self._set(job_id, replace(held, answer=answer, free=True), ttl)


# KEYS[1]: the claim. ARGV: fingerprint, owner, token, stream, ttl (ms). The holder's fields, or
# nothing when the id was taken (a free claim is replaced).
_CLAIM = """
local held = redis.call('HGETALL', KEYS[1])
if #held > 0 and redis.call('HGET', KEYS[1], 'free') ~= '1' then return held end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'fingerprint', ARGV[1], 'owner', ARGV[2], 'token', ARGV[3],
           'stream', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return false
"""
# KEYS[1]: the claim. ARGV: token, answer, free ('1' or ''), ttl (ms); an empty answer with
# free deletes the claim, an empty answer without renews it. Only its attempt settles it.
_SETTLE = """
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return 0 end
if ARGV[2] == '' and ARGV[3] == '' then return redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
if ARGV[2] == '' then return redis.call('DEL', KEYS[1]) end
redis.call('HSET', KEYS[1], 'answer', ARGV[2], 'free', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""


def _bytes_as_text(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()  # base64 images and SSE frames: text already
    raise TypeError(f"{type(value).__name__} cannot be kept")


def _from_fields(fields: dict[bytes, bytes] | list[bytes]) -> Claim | None:
    if isinstance(fields, list):  # a script's reply: field, value, field, value, ...
        fields = dict(zip(fields[::2], fields[1::2], strict=True))
    if not fields:
        return None
    raw = fields.get(b"answer")
    return Claim(fingerprint=fields[b"fingerprint"].decode(), owner=fields[b"owner"].decode(),
                 token=fields[b"token"].decode(), stream=fields.get(b"stream") == b"1",
                 answer=orjson.loads(raw) if raw else None, free=fields.get(b"free") == b"1")


class RedisClaimStore:
    """Redis that does not answer is a 503 (``store_unavailable``) for the request: a job
    is never started without its id reserved."""

    shared = True

    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = f"{prefix}:claim:"
        self._claim = redis.register_script(_CLAIM)
        self._settle = redis.register_script(_SETTLE)

    async def claim(self, job_id: str, claim: Claim, ttl: float) -> Claim | None:
        try:
            held = await self._claim(keys=[self.prefix + job_id], args=[
                claim.fingerprint, claim.owner, claim.token, "1" if claim.stream else "",
                max(1, round(ttl * 1000))])
        except (RedisError, OSError):
            raise claims_unavailable() from None
        return _from_fields(held) if held else None

    async def get(self, job_id: str) -> Claim | None:
        try:
            return _from_fields(await self.redis.hgetall(self.prefix + job_id))
        except (RedisError, OSError):
            raise claims_unavailable() from None

    async def _run_settle(self, job_id: str, token: str, answer: dict[str, Any] | None,
                          free: bool, ttl: float) -> None:
        raw = b"" if answer is None else orjson.dumps(answer, default=_bytes_as_text)
        try:
            await self._settle(keys=[self.prefix + job_id], args=[
                token, raw, "1" if free else "", max(1, round(ttl * 1000))])
        except (RedisError, OSError):
            raise claims_unavailable() from None

    async def renew(self, job_id: str, token: str, ttl: float) -> None:
        await self._run_settle(job_id, token, None, False, ttl)

    async def keep(self, job_id: str, token: str, answer: dict[str, Any], ttl: float) -> None:
        await self._run_settle(job_id, token, answer, False, ttl)

    async def release(self, job_id: str, token: str, answer: dict[str, Any] | None,
                      ttl: float) -> None:
        await self._run_settle(job_id, token, answer, True, ttl)
