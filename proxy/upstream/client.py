"""The one HTTP client every adapter uses to reach its upstream.

aiohttp rather than httpx: measured on this machine, a bare relay does ~1,700-1,900 req/s through an
aiohttp session against ~360-390 with httpx's default pool (``scripts/bench_clients.py``). Transport
failures become ``GatewayError`` here so adapters only handle what the upstream *said*.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from proxy.config import TimeoutConfig
from proxy.core.errors import GatewayError, upstream_error, upstream_timeout


class UpstreamClient:
    """Owns the aiohttp session (made inside the running loop, at app start-up)."""

    def __init__(self, *, limit: int = 0, limit_per_host: int = 0,
                 keepalive_timeout: float = 15.0) -> None:
        # 0: no limit. How many jobs run is decided by admission, never by a pool that parks
        # requests out of sight (``upstream:`` in the configuration).
        self._limit = limit
        self._limit_per_host = limit_per_host
        self._keepalive = keepalive_timeout
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._limit, limit_per_host=self._limit_per_host, ttl_dns_cache=60,
                keepalive_timeout=self._keepalive,
            )
            # Timeouts are set per request from each model's config.
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=None),
                auto_decompress=True, trust_env=False,
            )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("UpstreamClient.start() was not awaited")
        return self._session

    @asynccontextmanager
    async def request(
        self,
        method: str,
        url: str,
        *,
        timeout: TimeoutConfig,
        headers: dict[str, str] | None = None,
        body: bytes | aiohttp.FormData | None = None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send a request; yields the response with headers read and the body still unread."""
        host = urlsplit(url).netloc or url
        client_timeout = aiohttp.ClientTimeout(
            total=timeout.total, sock_connect=timeout.connect, sock_read=timeout.first_byte
        )
        try:
            async with self.session.request(
                method, url, data=body, headers=headers, timeout=client_timeout,
                allow_redirects=False,
            ) as response:
                yield response
        except GatewayError:
            raise
        except aiohttp.ConnectionTimeoutError:
            # No connection was made: nothing was sent, so another try is safe.
            raise upstream_error(f"Could not connect to the upstream at {host} in time.",
                                 code="upstream_unreachable", transient=True) from None
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise upstream_timeout(f"The upstream at {host} did not answer in time.") from None
        except aiohttp.ClientConnectorError as exc:
            raise upstream_error(
                f"Could not connect to the upstream at {host}: {exc.os_error.strerror or exc}.",
                code="upstream_unreachable", transient=True,
            ) from None
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as exc:
            # The upstream may have been working (and billing): a client must not blindly retry.
            raise upstream_error(
                f"The connection to the upstream at {host} broke: {_reason(exc)}.",
                code="upstream_disconnected", retryable=False,
            ) from None
        except aiohttp.ClientError as exc:
            raise upstream_error(
                f"Request to the upstream at {host} failed: {_reason(exc)}.",
                code="upstream_error",
            ) from None


def _reason(exc: BaseException) -> str:
    text: Any = str(exc) or type(exc).__name__
    return str(text)
