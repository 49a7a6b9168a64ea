"""Fetch an image from a client-supplied http(s) URL without becoming an SSRF proxy.

For every hop (the URL, then each redirect, followed by hand):

1. parse and check the URL: http/https, a host, no userinfo;
2. resolve the host here (``loop.getaddrinfo`` or an injected resolver) and refuse it unless EVERY
   address is public or trusted by ``allow_hosts``;
3. pin those addresses for this request (a context variable) and let aiohttp connect through
   :class:`_PinnedResolver`, which answers with exactly the pinned addresses and never asks DNS
   again: a rebinding DNS answer cannot slip in between the check and the connect;
4. the socket factory refuses to even create a socket for an address that is not pinned, and once
   connected the socket's peer address is checked against the pinned set before a byte is sent;
5. the response must be 2xx (3xx: back to 1 with the ``Location``), declare ``image/*`` or an
   octet stream, stay under ``max_bytes`` (Content-Length first, then while streaming), and start
   with the magic bytes of a format the gateway takes (PNG, JPEG, WebP: one rule for every
   input image, :func:`proxy.images.limits.accepted_format`).

The fetcher owns its own aiohttp session: no proxy from the environment (a proxy would resolve
names itself), no cookie jar shared between clients, no pooled connections (each hop connects
afresh to its own vetted addresses), no transparent decompression (bytes counted are bytes read).

Logs never carry query strings (signed URLs hold tokens there): see :func:`safe_url`.
"""

from __future__ import annotations

import asyncio
import contextvars
import errno
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from ipaddress import ip_address
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from proxy.config.fetch import FetchSettings
from proxy.core.errors import GatewayError
from proxy.fetching.addresses import AllowList, IPAddress, normalise_host
from proxy.fetching.errors import (
    invalid_image,
    url_forbidden,
    url_invalid,
    url_unreachable,
)
from proxy.fetching.images import (
    FetchedImage,
    acceptable_media_type,
)
from proxy.fetching.inline import decode_inline
from proxy.images.formats import MIME_TYPES
from proxy.images.limits import accepted_format, too_large

log = logging.getLogger("proxy.fetching")

# ``async resolve(host, port) -> ["93.184.216.34", "2606:2800:220:1::"]``
Resolve = Callable[[str, int], Awaitable[Sequence[str]]]

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_URL_LENGTH = 8192
_CHUNK = 64 * 1024
# Fetches in flight at once (more wait for a slot), and per host (no hammering one site).
_MAX_CONNECTIONS = 100
_MAX_CONNECTIONS_PER_HOST = 16
_ACCEPT = "image/png,image/jpeg,image/webp,image/*;q=0.8"


async def system_resolve(host: str, port: int) -> list[str]:
    """The system resolver (``getaddrinfo``), TCP answers only, in its order, deduplicated."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def safe_url(url: URL | str) -> str:
    """``scheme://host:port/path`` for logs: no userinfo, query or fragment."""
    try:
        parsed = url if isinstance(url, URL) else URL(url)
        host = parsed.raw_host or ""
        if ":" in host:
            host = f"[{host}]"
        port = f":{parsed.explicit_port}" if parsed.explicit_port else ""
        return f"{parsed.scheme}://{host}{port}{parsed.raw_path}"[:300]
    except (ValueError, TypeError):
        return "(unparsable URL)"


@dataclass
class _Pin:
    """The vetted addresses one request may connect to."""

    host: str  # normalised
    port: int
    addresses: list[IPAddress]
    refused: list[str] = field(default_factory=list)  # what the connector refused, if anything

    def allows(self, host: str, port: int) -> bool:
        return normalise_host(host) == self.host and port == self.port

    def covers(self, sockaddr: Any) -> bool:
        try:
            return ip_address(sockaddr[0]) in self.addresses and sockaddr[1] == self.port
        except (ValueError, TypeError, IndexError):
            return False


_PIN: contextvars.ContextVar[_Pin | None] = contextvars.ContextVar("image_fetch_pin", default=None)


class _AddressRefused(Exception):
    """The connector was about to use (or got) an address that was not vetted."""


class _PinnedResolver(AbstractResolver):
    """aiohttp's resolver: answers with the current request's vetted addresses, nothing else."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> list[ResolveResult]:
        pin = _PIN.get()
        if pin is None or not pin.allows(host, port):
            # Fail closed: nothing vetted this host (aiohttp wraps this as a connector error).
            if pin is not None:
                pin.refused.append(f"unpinned host {host}:{port}")
            raise OSError(errno.EACCES, "host was not vetted for this fetch")
        results: list[ResolveResult] = []
        for addr in pin.addresses:
            addr_family = socket.AF_INET if addr.version == 4 else socket.AF_INET6
            if family not in (socket.AF_UNSPEC, addr_family):
                continue
            results.append({
                "hostname": host, "host": str(addr), "port": port, "family": addr_family,
                "proto": 0, "flags": socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
            })
        if not results:
            raise OSError(errno.EACCES, "no vetted address of the requested family")
        return results

    async def close(self) -> None:
        return None


class _PinnedConnector(aiohttp.TCPConnector):
    """Creates sockets only for pinned addresses, and checks the peer of each new connection."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(resolver=_PinnedResolver(), use_dns_cache=False, force_close=True,
                         socket_factory=self._socket_for, **kwargs)

    def _socket_for(self, addr_info: Any) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        pin = _PIN.get()
        if pin is None or not pin.covers(sockaddr):
            if pin is not None:
                pin.refused.append(f"socket to {sockaddr[0]}")
            raise OSError(errno.EACCES, "address was not vetted for this fetch")
        return socket.socket(family=family, type=type_, proto=proto)

    async def connect(self, req: Any, traces: Any, timeout: Any) -> Any:
        connection = await super().connect(req, traces, timeout)
        pin = _PIN.get()
        transport = connection.transport
        peer = transport.get_extra_info("peername") if transport is not None else None
        if pin is None or peer is None or not pin.covers(peer):
            connection.close()
            if pin is not None:
                pin.refused.append("peer address")
            raise _AddressRefused("the connection's peer address was not vetted")
        return connection


class ImageFetcher:
    """Fetches client-given image URLs; ``start()`` inside the running loop, ``aclose()`` at exit.

    ``resolve`` replaces DNS (tests simulate names, rebinding); it is called once per hop.
    """

    def __init__(self, settings: FetchSettings | None = None, *,
                 resolve: Resolve | None = None) -> None:
        self.settings = settings or FetchSettings()
        self.allow = AllowList(self.settings.allow_hosts)
        self._resolve = resolve or system_resolve
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=_PinnedConnector(limit=_MAX_CONNECTIONS,
                                           limit_per_host=_MAX_CONNECTIONS_PER_HOST),
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
                auto_decompress=False,
                # Waiting for a free connection slot is bounded by the whole-fetch timeout only;
                # each TCP (+TLS) connect by connect_timeout.
                timeout=aiohttp.ClientTimeout(
                    total=None, connect=None, sock_connect=self.settings.connect_timeout,
                ),
                headers={"User-Agent": self.settings.user_agent, "Accept": _ACCEPT,
                         "Accept-Encoding": "identity"},
            )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> ImageFetcher:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def load(self, value: str, *, param: str) -> FetchedImage:
        """An image given as an http(s) URL, a ``data:`` URL or bare base64."""
        if not isinstance(value, str):
            raise invalid_image(param, "expected a URL or base64 string")
        head = value[:16].lstrip().lower()
        if head.startswith("data:") or ":" not in value[:64]:
            return decode_inline(value.strip(), param=param, max_bytes=self.settings.max_bytes)
        return await self.fetch(value.strip(), param=param)

    async def fetch(self, url: str, *, param: str) -> FetchedImage:
        """GET an image from a client-supplied http(s) URL; every failure is a GatewayError."""
        if self._session is None:
            raise RuntimeError("ImageFetcher.start() was not awaited")
        target = self._parse(url, param, redirect=False)
        try:
            return await asyncio.wait_for(self._follow(target, param), self.settings.timeout)
        except TimeoutError:
            log.info("image fetch timed out: %s", safe_url(target))
            raise url_unreachable(
                param, f"it did not finish within {self.settings.timeout:g} seconds"
            ) from None

    # -- one hop at a time ------------------------------------------------------------------

    def _parse(self, url: str, param: str, *, redirect: bool) -> URL:
        prefix = "it redirects to " if redirect else "it is "
        if not isinstance(url, str) or not url.strip():
            raise url_invalid(param, f"{prefix}an empty URL")
        if len(url) > _MAX_URL_LENGTH:
            raise url_invalid(param, f"{prefix}a URL longer than {_MAX_URL_LENGTH} characters")
        try:
            parsed = URL(url.strip())
            scheme, host, port = parsed.scheme.lower(), parsed.raw_host, parsed.port
        except (ValueError, TypeError):
            raise url_invalid(param, f"{prefix}a URL that cannot be parsed") from None
        if scheme not in ("http", "https"):
            kind = f"the scheme {scheme[:20]!r}" if scheme else "no scheme"
            raise url_invalid(param, f"{prefix}a URL with {kind}; only http and https are "
                              "supported")
        if "@" in (parsed.raw_authority or "") or parsed.raw_user or parsed.raw_password:
            raise url_invalid(param, f"{prefix}a URL with credentials (user:password@)")
        if not host:
            raise url_invalid(param, f"{prefix}a URL without a host")
        if not port or not 0 < port < 65536:
            raise url_invalid(param, f"{prefix}a URL without a valid port")
        return parsed.with_fragment(None)

    async def _vet(self, url: URL, param: str, *, redirect: bool) -> _Pin:
        host, port = url.raw_host, url.port
        assert host is not None and port is not None
        subject = f"redirects to {host}, which" if redirect else f"names {host}, which"
        try:
            literal: IPAddress | None = ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            if not self.allow.permits(host, port, literal):
                log.info("refused image URL %s: non-public address", safe_url(url))
                raise url_forbidden(param, f"{subject} is a non-public address")
            return _Pin(normalise_host(host), port, [literal])
        try:
            answers = await asyncio.wait_for(self._resolve(host, port),
                                             self.settings.connect_timeout)
        except TimeoutError:
            raise url_unreachable(param, f"resolving {host} timed out") from None
        except OSError:
            raise url_unreachable(param, f"the host {host} could not be resolved") from None
        try:
            addresses = list(dict.fromkeys(ip_address(str(a)) for a in answers))
        except ValueError:
            raise url_unreachable(param, f"the host {host} resolved to an unusable answer") \
                from None
        if not addresses:
            raise url_unreachable(param, f"the host {host} could not be resolved")
        # ALL answers must pass: aiohttp may use any of them (and happy eyeballs tries several).
        if not all(self.allow.permits(host, port, addr) for addr in addresses):
            log.info("refused image URL %s: resolves to a non-public address", safe_url(url))
            raise url_forbidden(param, f"{subject} resolves to a private or otherwise "
                                "non-public address")
        return _Pin(normalise_host(host), port, addresses)

    async def _follow(self, url: URL, param: str) -> FetchedImage:
        assert self._session is not None
        for hop in range(self.settings.max_redirects + 1):
            pin = await self._vet(url, param, redirect=hop > 0)
            token = _PIN.set(pin)
            try:
                async with self._session.get(url, allow_redirects=False) as response:
                    if response.status in _REDIRECTS:
                        location = response.headers.get("Location")
                        if not location:
                            raise url_unreachable(param, f"it answered HTTP {response.status} "
                                                  "without a Location")
                        try:
                            next_url = str(response.url.join(URL(location)))
                        except (ValueError, TypeError):
                            raise url_invalid(param, "it redirects to a URL that cannot be "
                                              "parsed") from None
                        url = self._parse(next_url, param, redirect=True)
                        continue
                    return await self._read(response, url, param)
            except GatewayError:
                raise
            except _AddressRefused:
                log.warning("image fetch %s: connected peer was not a vetted address",
                            safe_url(url))
                raise url_forbidden(param, "connected to an address that was not vetted") \
                    from None
            except aiohttp.ClientConnectorError as exc:
                if pin.refused:
                    log.warning("image fetch %s: connector refused %s", safe_url(url),
                                pin.refused)
                    raise url_forbidden(param, "was about to connect to an address that was "
                                        "not vetted") from None
                # os.strerror, not the exception's text: that names the (vetted) IP address.
                code = exc.os_error.errno if exc.os_error is not None else None
                reason = f" ({os.strerror(code).lower()})" if isinstance(code, int) and code > 0 \
                    else ""
                raise url_unreachable(param, f"could not connect to {url.raw_host}{reason}") \
                    from None
            except (TimeoutError, aiohttp.ServerTimeoutError):
                raise url_unreachable(param, f"{url.raw_host} did not answer in time") from None
            except aiohttp.ClientError as exc:
                raise url_unreachable(
                    param, f"the connection to {url.raw_host} failed ({type(exc).__name__})"
                ) from None
            finally:
                _PIN.reset(token)
        raise url_unreachable(param, f"more than {self.settings.max_redirects} redirects")

    async def _read(self, response: aiohttp.ClientResponse, url: URL,
                    param: str) -> FetchedImage:
        max_bytes = self.settings.max_bytes
        if not 200 <= response.status < 300:
            raise url_unreachable(param, f"the server answered HTTP {response.status}")
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise invalid_image(param, f"the server sent it {encoding[:40]}-encoded, not as is")
        if not acceptable_media_type(response.content_type):
            raise invalid_image(
                param, f"the server says it is {response.content_type[:100]!r}, not an image"
            )
        if response.content_length is not None and response.content_length > max_bytes:
            raise too_large(param, max_bytes)
        buffer = bytearray()
        while True:
            chunk = await response.content.read(min(_CHUNK, max_bytes + 1 - len(buffer)))
            if not chunk:
                break
            buffer += chunk
            if len(buffer) > max_bytes:
                raise too_large(param, max_bytes)
        data = bytes(buffer)
        fmt = accepted_format(data, param)
        log.debug("fetched image %s (%s, %d bytes)", safe_url(url), fmt, len(data))
        return FetchedImage(data=data, content_type=MIME_TYPES[fmt], format=fmt, url=str(url))
