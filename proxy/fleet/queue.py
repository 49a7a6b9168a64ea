"""The durable queue of asynchronous jobs: a Redis Stream read through one consumer group.

An accepted async job is an entry of the stream ``<prefix>:queue:jobs`` (its id and the request
to run, never the client's gateway key). Every instance is a consumer of the group ``runners``
(named after the instance): ``XREADGROUP`` hands each entry to one of them, and the entry stays
*pending* for that consumer until its job's end is written. A consumer renews its pending
entries every third of a lease (``XCLAIM`` of its own entries with ``JUSTID``, which resets their
idle time); an entry idle for a whole lease belongs to a runner that stopped, and any instance
takes it over with ``XAUTOCLAIM`` (min-idle: the lease).

Before a runner first calls the job's provider it sets the job's *started mark*
(``<prefix>:queue:started:<job id>``). An entry taken over with its mark set may have reached a
paid upstream: it is failed (``instance_lost``), never run twice. Without the mark, its job
never left the gateway, and it is simply run.

A job's end is one script: its result (or error) and its terminal snapshot are written
together, the entry is acknowledged (``XACK``) and deleted (``XDEL``) and the mark dropped, so
the stream holds exactly the jobs not finished yet (it is never trimmed by length: that would
drop queued jobs). Every write is fenced: a runner that lost its entry to another instance (it
froze for a lease) neither sets the mark nor writes the end.

One Redis (or a primary with replicas), not Redis Cluster: the scripts touch keys they compute.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from proxy.fleet.batch import Batch, Script
from proxy.fleet.policy import StorePolicy

GROUP = "runners"
AUTOCLAIM_MOST = 100  # entries taken over per sweep
# A read for new entries waits this long for one (an XADD wakes it at once).
BLOCK_SECONDS = 1.0

# Whether the entry ARGV[2] of group ARGV[1] may still be handled by consumer ARGV[3]: it is
# pending for it, or (Redis lost it: restarted empty) pending for nobody while its job has not
# ended (KEYS[2], its snapshot, is not terminal). Sets ``mine``.
_OWNED = """
local mine = false
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #p > 0 then
  mine = p[1][2] == ARGV[3]
else
  local raw = redis.call('GET', KEYS[2])
  if not raw then
    mine = true
  else
    local status = cjson.decode(raw)['status']
    mine = status ~= 'succeeded' and status ~= 'failed' and status ~= 'cancelled'
  end
end
"""
# KEYS: stream, snapshot, result, ordinal. ARGV: job id, payload, snapshot, retention s,
# replace ('1' or ''), most entries. {1, entry id}; {0}: the job id is taken; {-1}: the queue
# is full. The entry's ordinal (the stream's entries-added counter) is kept for its position.
ENQUEUE = Script("""
if ARGV[5] ~= '1' and redis.call('EXISTS', KEYS[2]) == 1 then return {0} end
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[6]) then return {-1} end
redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[4])
redis.call('DEL', KEYS[3])
local id = redis.call('XADD', KEYS[1], '*', 'job', ARGV[1], 'payload', ARGV[2])
local info = redis.call('XINFO', 'STREAM', KEYS[1])
for i = 1, #info, 2 do
  if info[i] == 'entries-added' then
    redis.call('SET', KEYS[4], info[i + 1], 'EX', ARGV[4])
  end
end
return {1, id}
""")
# KEYS: stream, snapshot, mark. ARGV: group, entry id, consumer, retention s. 1: marked.
MARK = Script(_OWNED + """
if not mine then return 0 end
redis.call('SET', KEYS[3], ARGV[3], 'EX', ARGV[4])
return 1
""")
# KEYS: stream, snapshot, result, mark, ordinal. ARGV: group, entry id, consumer, retention s,
# snapshot,
# result ('' for none). 1: written, acknowledged and deleted; 0: another runner has the entry.
FINISH = Script(_OWNED + """
if not mine then return 0 end
redis.call('SET', KEYS[2], ARGV[5], 'EX', ARGV[4])
if ARGV[6] ~= '' then
  redis.call('SET', KEYS[3], ARGV[6], 'EX', ARGV[4])
else
  redis.call('DEL', KEYS[3])
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('DEL', KEYS[4], KEYS[5])
return 1
""")
# KEYS: stream. ARGV: group, consumer, min idle ms, most, marks prefix. The entries idle that
# long, now the consumer's: {{entry id, job id, payload, started mark or ''}, ...}, and the ids
# of those whose data is gone.
TAKE_OVER = Script("""
local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], '0-0', 'COUNT', ARGV[4])
local out = {}
local gone = r[3] or {}
for _, e in ipairs(r[2]) do
  local job, payload = '', ''
  if e[2] then
    for i = 1, #e[2], 2 do
      if e[2][i] == 'job' then job = e[2][i + 1] elseif e[2][i] == 'payload' then
        payload = e[2][i + 1] end
    end
  end
  if job == '' then
    gone[#gone + 1] = e[1]
  else
    out[#out + 1] = {e[1], job, payload, redis.call('GET', ARGV[5] .. job) or ''}
  end
end
return {out, gone}
""")
# KEYS: stream. ARGV: group, consumer, entry ids. Resets the idle time of the entries still
# pending for the consumer; returns the ones another consumer took over.
RENEW = Script("""
local lost = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if #p > 0 then
    if p[1][2] == ARGV[2] then
      redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    else
      lost[#lost + 1] = ARGV[i]
    end
  end
end
return lost
""")


@dataclass(frozen=True, slots=True)
class Entry:
    """A queued job handed to this instance."""

    id: str  # the stream entry's id
    job_id: str
    payload: bytes
    # Taken over from a runner that stopped renewing it, which had set the started mark (its
    # name): its upstream may have been called. "" when it had not.
    started: str = ""


class QueueFull(Exception):
    """The queue holds as many unfinished jobs as it may."""


class JobQueue:
    """The stream, its group and this instance's consumer; every call goes through ``policy``
    (a call that cannot be made raises ``StoreUnavailable``)."""

    def __init__(self, redis: Redis, batch: Batch, policy: StorePolicy, prefix: str, *,
                 consumer: str, lease_seconds: float, retention: float, max_length: int,
                 reader: Redis | None = None) -> None:
        self.redis = redis
        # Blocking reads hold a connection while they wait: a client of their own, whose
        # socket timeout allows for the wait (BLOCK_SECONDS more than ``redis``'s).
        self.reader = reader or redis
        self.batch = batch
        self.policy = policy
        self.consumer = consumer
        self.stream = f"{prefix}:queue:jobs"
        self.marks = f"{prefix}:queue:started:"
        self.ordinals = f"{prefix}:queue:at:"
        self.snapshots = f"{prefix}:job:"
        self.results = f"{prefix}:result:"
        self.lease_seconds = lease_seconds
        self.lease_ms = max(1, round(lease_seconds * 1000))
        self.retention = max(1, round(retention))
        self.max_length = max_length
        self.block_ms = round(BLOCK_SECONDS * 1000) if reader is not None else 0

    def _keys(self, job_id: str) -> list[str]:
        return [self.stream, self.snapshots + job_id, self.results + job_id,
                self.marks + job_id, self.ordinals + job_id]

    async def enqueue(self, job_id: str, payload: bytes, snapshot: bytes,
                      replace: bool) -> str | None:
        """Store the job's first snapshot and queue it, atomically; its entry id, or None when
        the job id is taken (``replace``: an earlier attempt under it may be overwritten).
        ``QueueFull`` when the queue holds ``max_length`` jobs."""
        keys = [*self._keys(job_id)[:3], self.ordinals + job_id]
        args = [job_id, payload, snapshot, self.retention, "1" if replace else "",
                self.max_length]
        reply = await self.policy.call("queueing an async job", lambda: self.batch.script(
            ENQUEUE, keys, args))
        if reply[0] == -1:
            raise QueueFull
        return reply[1].decode() if reply[0] == 1 else None

    async def position(self, job_id: str) -> int | None:
        """Where a queued job no runner has taken yet stands (1: next); None once taken (or
        when Redis cannot say)."""
        async def ask() -> int | None:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.get(self.ordinals + job_id)
                pipe.xinfo_groups(self.stream)
                ordinal, groups = await pipe.execute(raise_on_error=False)
            if not ordinal or isinstance(groups, Exception):
                return None
            read = next((group.get("entries-read") for group in groups
                         if _text(group.get("name", b"")) == GROUP), 0)
            if read is None:
                return None
            ahead = int(ordinal) - int(read)
            return ahead if ahead > 0 else None

        return await self.policy.call("reading a job's place in the queue", ask)

    async def _ensure_group(self) -> None:
        try:
            # From the stream's start: entries queued before the group existed are run too.
            await self.redis.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read(self, most: int) -> list[Entry]:
        """Up to ``most`` new entries for this consumer (waiting a moment for one)."""
        async def read() -> list[Entry]:
            try:
                reply = await self.reader.xreadgroup(GROUP, self.consumer, {self.stream: ">"},
                                                     count=most, block=self.block_ms or None)
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                await self._ensure_group()  # a new stream, or a Redis that came back empty
                reply = await self.reader.xreadgroup(GROUP, self.consumer, {self.stream: ">"},
                                                     count=most)
            return [_entry(entry_id, fields) for _, entries in reply or ()
                    for entry_id, fields in entries if fields]

        return await self.policy.call("reading the job queue", read,
                                      waits=self.block_ms / 1000)

    async def take_over(self) -> tuple[list[Entry], list[str]]:
        """Entries whose runner stopped renewing them for a lease, now this consumer's (with
        their started marks), and the ids of taken-over entries whose data is gone; one
        round trip."""
        async def autoclaim() -> tuple[list[Entry], list[str]]:
            try:
                taken, gone = await self.batch.script(TAKE_OVER, [self.stream], [
                    GROUP, self.consumer, self.lease_ms, AUTOCLAIM_MOST, self.marks])
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                await self._ensure_group()
                return [], []
            return ([Entry(_text(entry_id), _text(job), payload, _text(mark))
                     for entry_id, job, payload, mark in taken],
                    [_text(entry_id) for entry_id in gone])

        return await self.policy.call("taking over queued jobs", autoclaim)

    async def drop(self, entry_ids: list[str]) -> None:
        """Acknowledge and delete entries that hold no job (their data is gone)."""
        if entry_ids:
            await self.policy.call("dropping empty queue entries", lambda: self.batch.run(
                ("XACK", self.stream, GROUP, *entry_ids), ("XDEL", self.stream, *entry_ids)))

    async def renew(self, entry_ids: list[str]) -> list[str]:
        """Reset the idle time of this consumer's entries; the ids another consumer took."""
        if not entry_ids:
            return []
        lost = await self.policy.call("renewing queued jobs", lambda: self.batch.script(
            RENEW, [self.stream], [GROUP, self.consumer, *entry_ids]))
        return [_text(entry_id) for entry_id in lost]

    async def mark_started(self, entry: Entry) -> bool:
        """Set the job's started mark, just before its provider is first called; False when
        another runner took the entry over (this one must not run it)."""
        keys = [self.stream, self.snapshots + entry.job_id, self.marks + entry.job_id]
        return bool(await self.policy.call("marking a job started", lambda: self.batch.script(
            MARK, keys, [GROUP, entry.id, self.consumer, self.retention])))

    async def finish(self, entry: Entry, snapshot: bytes, result: bytes | None) -> bool:
        """Write the job's end (its terminal snapshot and its result together), then
        acknowledge and delete its entry; False when another runner took the entry over."""
        args = [GROUP, entry.id, self.consumer, self.retention, snapshot, result or b""]
        return bool(await self.policy.call("writing a job's end", lambda: self.batch.script(
            FINISH, self._keys(entry.job_id), args)))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _entry(entry_id: bytes | str, fields: dict[bytes, bytes]) -> Entry:
    return Entry(_text(entry_id), _text(fields.get(b"job", b"")), fields.get(b"payload", b""))
