"""Redis clients built for a store that may go away: short timeouts, one retry on a fresh
connection (a pooled one may be dead after Redis restarted), no long backoff. redis-py's pool
reconnects by itself once Redis answers again."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff


def redis_options(timeout: float) -> dict[str, Any]:
    """Keyword arguments for ``Redis.from_url`` (also handed to python-socketio's manager)."""
    return {"socket_timeout": timeout, "socket_connect_timeout": timeout,
            "retry": Retry(NoBackoff(), 1)}


def connect(url: str, timeout: float) -> Redis:
    """A client of the Redis at ``url`` whose every attempt gives up after ``timeout``."""
    return Redis.from_url(url, **redis_options(timeout))
