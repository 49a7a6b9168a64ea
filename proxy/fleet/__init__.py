"""The fleet: several gateway instances sharing one Redis.

* ``policy``: the shared store is a dependency that fails. Every Redis call on a job's path goes
  through :class:`~proxy.fleet.policy.StorePolicy` (a short timeout, fail fast while the store
  is down, one log line per outage, recovery noticed by itself); :class:`WriteBehind` keeps
  writes that must land and retries them until they do.
* ``leases``: the instance running a job holds a lease on it (and on its key's concurrency slot)
  and renews it; when it lapses, any instance ends the job (``instance_lost``) and the slot is
  free. In memory (one process) and Redis twins.
* ``batch``: Redis commands issued together go in one pipeline.
* ``client``: the Redis clients, built with the store's timeouts.

docs/fleet.md describes the whole.
"""
