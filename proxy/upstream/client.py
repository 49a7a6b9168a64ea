"""The one HTTP client every adapter uses to reach its upstream.

aiohttp rather than httpx: measured on this machine, a bare relay does ~1,700-1,900 req/s through an
aiohttp session against ~360-390 with httpx's default pool (``scripts/bench_clients.py``). Transport
failures become ``GatewayError`` here so adapters only handle what the upstream *said*; the client
is told what happened in plain words, the log where and why (:func:`transport_error`).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from proxy.config import TimeoutConfig
from proxy.core.errors import GatewayError, upstream_error, upstream_timeout


class UpstreamClient:
    """Owns the aiohttp session (made inside the running loop, at app start-up)."""

    def __init__(self, *, limit: int = 0, limit_per_host: int = 0,
                 keepalive_timeout: float = 15.0,
                 trace_configs: list[aiohttp.TraceConfig] | None = None) -> None:
        # 0: no limit. How many jobs run is decided by admission, never by a pool that parks
        # requests out of sight (``upstream:`` in the configuration).
        self._limit = limit
        self._limit_per_host = limit_per_host
        self._keepalive = keepalive_timeout
        # Hooks on every request (the traces' client spans and ``traceparent``, when on).
        self._trace_configs = trace_configs
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[tuple[float, float, float], aiohttp.ClientTimeout] = {}

    async def start(self) -> None:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._limit, limit_per_host=self._limit_per_host, ttl_dns_cache=60,
                keepalive_timeout=self._keepalive,
            )
            # Timeouts are set per request from each model's config.
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=None),
                auto_decompress=True, trust_env=False, trace_configs=self._trace_configs,
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

    def request(
        self,
        method: str,
        url: str,
        *,
        timeout: TimeoutConfig,
        headers: dict[str, str] | None = None,
        body: bytes | aiohttp.FormData | None = None,
    ) -> Exchange:
        """Send a request: ``async with client.request(...) as response`` gives the response
        with its headers read and its body still unread.

        A ``GatewayError`` leaving the block (the adapter's reading of the answer) is noted
        with the upstream's address and HTTP status, for the log."""
        key = (timeout.total, timeout.connect, timeout.first_byte)
        client_timeout = self._timeouts.get(key)
        if client_timeout is None:
            if len(self._timeouts) >= _TIMEOUTS_KEPT:
                self._timeouts.clear()
            client_timeout = self._timeouts[key] = aiohttp.ClientTimeout(
                total=timeout.total, sock_connect=timeout.connect, sock_read=timeout.first_byte)
        return Exchange(self.session.request(method, url, data=body, headers=headers,
                                             timeout=client_timeout, allow_redirects=False),
                        method, url)


# ClientTimeouts kept, by their three numbers (each model has one; a few more is plenty).
_TIMEOUTS_KEPT = 64
# Smaller chunks next to each other in a batch are joined (see chunk_batches).
BATCH_PART_MIN = 64 * 1024


async def chunk_batches(content: aiohttp.StreamReader) -> AsyncGenerator[list[bytes], None]:
    """A body as it arrives, in batches: what aiohttp holds each time it is read, as the chunks
    it was given (one per socket read, up to 256 KB under uvloop).

    ``readany`` would join them: under load, three or so 256 KB chunks wait by the time the
    reader runs, and a 16 MB answer would be copied once more (py-spy: ~6 % of the event loop's
    time for large answers passed through). Chunks of less than :data:`BATCH_PART_MIN` next to
    each other (an upstream that sends small HTTP chunks) are joined: few parts, whatever the
    upstream's framing. Only what is there is taken: a batch never waits for more.
    """
    taken = 0  # what this reader took; ``total_bytes`` is what aiohttp was given
    while True:
        chunk, ended = await content.readchunk()
        if not chunk:
            if ended:  # the end of an HTTP chunk: nothing to take
                continue
            return  # the end of the body
        taken += len(chunk)
        batch = [chunk]
        while content.total_bytes > taken:  # more is held: readchunk returns at once
            chunk, ended = await content.readchunk()
            if not chunk and not ended:
                break  # the body's end: its bytes were not all read here (never spin on it)
            taken += len(chunk)
            if chunk:
                batch.append(chunk)
        yield _coalesced(batch) if len(batch) > 1 else batch


def _coalesced(batch: list[bytes]) -> list[bytes]:
    parts: list[bytes] = []
    small: list[bytes] = []
    for chunk in batch:
        if len(chunk) < BATCH_PART_MIN:
            small.append(chunk)
            continue
        if small:
            parts.append(b"".join(small))
            small = []
        parts.append(chunk)
    if small:
        parts.append(b"".join(small))
    return parts


class Exchange:
    """One request to an upstream, as an async context manager (a class rather than a
    generator: it runs once per job). Transport failures become ``GatewayError``; any
    ``GatewayError`` leaving the block is told where it happened (the address is worked out
    only then)."""

    __slots__ = ("_method", "_sent", "_status", "_url")

    def __init__(self, sent: Any, method: str, url: str) -> None:
        self._sent = sent  # aiohttp's request context manager, not started yet
        self._method, self._url = method, url
        self._status: int | None = None

    def _where(self) -> str:
        return f"{self._method} {_where(self._url)}"

    async def __aenter__(self) -> aiohttp.ClientResponse:
        try:
            response: aiohttp.ClientResponse = await self._sent.__aenter__()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise transport_error(exc).at_upstream(self._where(), None, _reason(exc)) from None
        self._status = response.status
        return response

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        try:
            await self._sent.__aexit__(exc_type, exc, tb)  # the connection released
        except (TimeoutError, aiohttp.ClientError) as error:
            raise transport_error(error).at_upstream(self._where(), self._status,
                                                     _reason(error)) from None
        if isinstance(exc, GatewayError):
            exc.at_upstream(self._where(), self._status)
        elif isinstance(exc, (TimeoutError, aiohttp.ClientError)):
            raise transport_error(exc).at_upstream(self._where(), self._status,
                                                   _reason(exc)) from None


def transport_error(exc: BaseException) -> GatewayError:
    """What a client is told when the upstream could not be reached or the connection failed:
    a plain message and a code. Where the upstream is and what the library said are the
    operator's business: they ride on the error (``GatewayError.at_upstream``) to the warning
    line of the failed attempt (secrets redacted there), never to the client."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        # No connection was made: nothing was sent, so another try is safe.
        return upstream_error("Could not connect to the upstream in time.",
                              code="upstream_unreachable", transient=True)
    if isinstance(exc, (TimeoutError, aiohttp.ServerTimeoutError)):
        return upstream_timeout("The upstream did not answer in time.")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return upstream_error("Could not connect to the upstream.",
                              code="upstream_unreachable", transient=True)
    if isinstance(exc, (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError)):
        # The upstream may have been working (and billing): a client must not blindly retry.
        return upstream_error("The connection to the upstream broke before its answer was "
                              "complete.", code="upstream_disconnected", retryable=False)
    return upstream_error("The request to the upstream failed.", code="upstream_error")


def _where(url: str) -> str:
    """The upstream's address and path, without a query string (it may carry a key)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]  # never the user information
    return f"{parts.scheme}://{host}{parts.path}" if host else "(no address)"


def _reason(exc: BaseException) -> str:
    """The library's account of the failure, for the log."""
    if isinstance(exc, aiohttp.ClientConnectorError) and exc.os_error.strerror:
        return f"{type(exc).__name__}: {exc.os_error.strerror}"
    text: Any = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
