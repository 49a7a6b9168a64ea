"""Leases in Redis, shared by every instance: the scripts, and the twin of
:mod:`proxy.fleet.leases_memory` that runs them (see :mod:`proxy.fleet.leases` for the design
and the keys)."""

from __future__ import annotations

import asyncio

import orjson

from proxy.fleet.batch import Batch, Script
from proxy.fleet.leases import JobLease, Lapsed, LeaseTable
from proxy.fleet.policy import StorePolicy

RENEW_CHUNK = 500  # leases per renewal script (all chunks go in one pipeline)

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""
# KEYS: deadlines, leases[, the key's slots]; ARGV: token, lease ms, limit, info
ADMIT = Script(_NOW + """
local deadline = now + tonumber(ARGV[2])
if KEYS[3] then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[3]) then return 0 end
  redis.call('ZADD', KEYS[3], deadline, ARGV[1])
  redis.call('PEXPIRE', KEYS[3], ARGV[2])
end
redis.call('ZADD', KEYS[1], deadline, ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
return 1
""")
# KEYS: deadlines, leases; ARGV: lease ms, slots prefix, tombstone prefix, then for each lease:
# token, its key's name ('' without a slot), info. Returns the tokens that were reaped.
RENEW = Script(_NOW + """
local deadline = now + tonumber(ARGV[1])
local lost = {}
for i = 4, #ARGV, 3 do
  local token = ARGV[i]
  if redis.call('EXISTS', ARGV[3] .. token) == 1 then
    lost[#lost + 1] = token
  else
    redis.call('ZADD', KEYS[1], deadline, token)
    redis.call('HSET', KEYS[2], token, ARGV[i + 2])
    if ARGV[i + 1] ~= '' then
      local slots = ARGV[2] .. ARGV[i + 1]
      redis.call('ZADD', slots, deadline, token)
      redis.call('PEXPIRE', slots, ARGV[1])
    end
  end
end
return lost
""")
# KEYS: deadlines, leases[, the key's slots]; ARGV: token
RELEASE = Script("""
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
if KEYS[3] then redis.call('ZREM', KEYS[3], ARGV[1]) end
return 1
""")
# KEYS: deadlines, leases; ARGV: most, tombstone prefix, tombstone ms, slots prefix.
# Returns token, info, token, info, ...
REAP = Script(_NOW + """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local out = {}
for _, token in ipairs(due) do
  local info = redis.call('HGET', KEYS[2], token) or ''
  redis.call('ZREM', KEYS[1], token)
  redis.call('HDEL', KEYS[2], token)
  redis.call('SET', ARGV[2] .. token, '1', 'PX', ARGV[3])
  if info ~= '' then
    local data = cjson.decode(info)
    if data['slot'] then redis.call('ZREM', ARGV[4] .. data['owner'], token) end
  end
  out[#out + 1] = token
  out[#out + 1] = info
end
return out
""")


class RedisLeases(LeaseTable):
    """Leases every instance sharing the Redis sees; every call goes through ``policy``."""

    shared = True

    def __init__(self, batch: Batch, policy: StorePolicy, prefix: str, *,
                 lease_seconds: float, instance: str, retention: float) -> None:
        super().__init__(lease_seconds, instance)
        self.batch = batch
        self.policy = policy
        base = f"{prefix}:fleet:"
        self.deadlines, self.infos = base + "deadlines", base + "leases"
        self.slots, self.lost = base + "slots:", base + "lost:"
        self.lease_ms = max(1, round(lease_seconds * 1000))
        self.lost_ms = max(1, round(retention * 1000))

    def _keys(self, lease: JobLease) -> list[str]:
        keys = [self.deadlines, self.infos]
        return [*keys, self.slots + lease.owner] if lease.slot else keys

    def _info(self, lease: JobLease) -> bytes:
        info: dict[str, object] = {"owner": lease.owner, "instance": self.instance,
                                   "slot": lease.slot}
        if lease.durable:
            info["durable"] = True
        return orjson.dumps(info)

    async def _admit(self, lease: JobLease, limit: int | None) -> bool:
        args = [lease.token, self.lease_ms, limit or 0, self._info(lease)]
        reply = await self.policy.call(
            "admission", lambda: self.batch.script(ADMIT, self._keys(lease), args))
        return bool(reply)

    async def _renew(self, leases: list[JobLease]) -> list[str]:
        head = [self.lease_ms, self.slots, self.lost]
        calls = []
        for start in range(0, len(leases), RENEW_CHUNK):
            args = list(head)
            for lease in leases[start:start + RENEW_CHUNK]:
                args += [lease.token, lease.owner if lease.slot else "", self._info(lease)]
            calls.append(args)

        async def renew_all() -> list[list[bytes]]:
            keys = [self.deadlines, self.infos]
            return await asyncio.gather(*(self.batch.script(RENEW, keys, args)
                                          for args in calls))

        replies = await self.policy.call("lease renewal", renew_all)
        return [token.decode() for reply in replies for token in reply]

    async def _release(self, lease: JobLease) -> None:
        await self.policy.call("lease release", lambda: self.batch.script(
            RELEASE, self._keys(lease), [lease.token]))

    async def reap(self, most: int = 100) -> list[Lapsed]:
        reply = await self.policy.call("reaping", lambda: self.batch.script(
            REAP, [self.deadlines, self.infos], [most, self.lost, self.lost_ms, self.slots]))
        lapsed = []
        for token, info in zip(reply[::2], reply[1::2], strict=True):
            data = orjson.loads(info) if info else {}
            lapsed.append(Lapsed(token.decode().split(":", 1)[0], data.get("owner", ""),
                                 data.get("instance", ""), bool(data.get("durable"))))
        return lapsed
