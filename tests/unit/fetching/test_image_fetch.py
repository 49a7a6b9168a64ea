"""The image fetcher must never become an SSRF proxy.

Against real loopback servers that record every request: loopback, private, link-local, metadata
and IPv4-mapped addresses are refused before any connection attempt (``connections`` records
every socket connect and every connector use), whether given literally, through a DNS name,
through a redirect, or by a DNS answer that changes between the check and the connect.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from ipaddress import ip_address
from typing import Any

import aiohttp
import pytest
from pydantic import ValidationError

from proxy.config import ConfigError
from proxy.core.errors import GatewayError
from proxy.fetching import (
    AllowList,
    FetchSettings,
    ImageFetcher,
    decode_inline,
    is_public_address,
    system_resolve,
)
from proxy.fetching import fetcher as fetcher_module
from proxy.service.gateway import load_checked_text
from tests.support.fetch_targets import GIF, JPEG, PNG, WEBP, FetchTarget
from tests.support.servers import RunningServer, serve

PARAM = "image"


@dataclass
class Target:
    recorder: FetchTarget
    server: RunningServer

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def requests(self) -> list[str]:
        return self.recorder.requests

    @property
    def paths(self) -> list[str]:
        return self.recorder.paths


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[Target, Target]]:
    first, second = FetchTarget(), FetchTarget()
    with serve(first.build()) as one, serve(second.build()) as two:
        yield Target(first, one), Target(second, two)


@pytest.fixture
def target(servers) -> Target:
    servers[0].requests.clear()
    servers[1].requests.clear()
    return servers[0]


@pytest.fixture
def other(servers, target) -> Target:
    return servers[1]


@dataclass
class Connections:
    """Every connection the fetcher's aiohttp connector tried: requests for one, and sockets."""

    connector_hosts: list[tuple[str, int]] = field(default_factory=list)
    sockets: list[tuple[str, int]] = field(default_factory=list)

    @property
    def none(self) -> bool:
        return not self.connector_hosts and not self.sockets


@pytest.fixture
async def connections(monkeypatch) -> Connections:
    seen = Connections()
    original_connect = aiohttp.TCPConnector.connect

    async def connect(self, req, traces, timeout):
        seen.connector_hosts.append((req.url.raw_host, req.url.port))
        return await original_connect(self, req, traces, timeout)

    loop = asyncio.get_running_loop()
    original_sock_connect = loop.sock_connect

    async def sock_connect(sock, address):
        seen.sockets.append((address[0], address[1]))
        return await original_sock_connect(sock, address)

    monkeypatch.setattr(aiohttp.TCPConnector, "connect", connect)
    monkeypatch.setattr(loop, "sock_connect", sock_connect)
    return seen


class FakeDNS:
    """Injected resolver: ``names`` maps a host to its answers (a list, or a list of lists
    answered in turn, the last repeated). Unknown names fail like NXDOMAIN."""

    def __init__(self, names: dict[str, Any] | None = None) -> None:
        self.names = dict(names or {})
        self.calls: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        answers = self.names.get(host)
        if answers is None:
            raise OSError(-2, "Name or service not known")
        if answers and isinstance(answers[0], list):
            turn = min(self.calls.count(host), len(answers)) - 1
            return answers[turn]
        return answers


@pytest.fixture
async def make() -> AsyncIterator[Any]:
    fetchers: list[ImageFetcher] = []

    async def build(dns: FakeDNS | None = None, *, resolve: Any = None,
                    **settings: Any) -> ImageFetcher:
        settings = {"timeout": 3, "connect_timeout": 1, "max_bytes": 100_000, **settings}
        fetcher = ImageFetcher(FetchSettings(**settings), resolve=resolve or dns or FakeDNS())
        await fetcher.start()
        fetchers.append(fetcher)
        return fetcher

    yield build
    for fetcher in fetchers:
        await fetcher.aclose()


async def refused(fetcher: ImageFetcher, url: str, code: str, status: int = 400) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        await fetcher.fetch(url, param=PARAM)
    error = caught.value
    assert (error.status, error.code, error.param) == (status, code, PARAM), error
    return error


# -- allowed hosts are fetched; the same hosts are refused when not allowed ---------------------


async def test_allowed_loopback_host_serves_png_and_jpeg(make, target, connections) -> None:
    fetcher = await make(allow_hosts=["127.0.0.1"])
    png = await fetcher.fetch(f"{target.url}/a.png", param=PARAM)
    assert (png.data, png.format, png.content_type) == (PNG, "png", "image/png")
    assert png.url == f"{target.url}/a.png"
    jpeg = await fetcher.fetch(f"{target.url}/b.jpg", param=PARAM)
    assert (jpeg.data, jpeg.format, jpeg.content_type) == (JPEG, "jpeg", "image/jpeg")
    assert target.requests == ["GET /a.png", "GET /b.jpg"]
    assert connections.sockets == [("127.0.0.1", target.port)] * 2


async def test_host_port_entry_allows_only_that_port(make, target, other, connections) -> None:
    fetcher = await make(allow_hosts=[f"127.0.0.1:{target.port}"])
    assert (await fetcher.fetch(f"{target.url}/a.png", param=PARAM)).data == PNG
    await refused(fetcher, f"{other.url}/a.png", "image_url_forbidden")
    assert other.requests == []
    assert connections.sockets == [("127.0.0.1", target.port)]


async def test_loopback_is_refused_without_allow_hosts(make, target, connections) -> None:
    fetcher = await make()
    error = await refused(fetcher, f"{target.url}/a.png", "image_url_forbidden")
    assert "non-public" in error.message
    assert target.requests == []
    assert connections.none


async def test_allowed_host_name(make, target, connections) -> None:
    dns = FakeDNS({"images.internal": ["127.0.0.1"]})
    fetcher = await make(dns, allow_hosts=["images.internal"])
    image = await fetcher.fetch(f"http://images.internal:{target.port}/a.png", param=PARAM)
    assert image.data == PNG
    assert target.requests == ["GET /a.png"]
    assert connections.sockets == [("127.0.0.1", target.port)]


# -- literal addresses ---------------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://168.63.129.16/machine?comp=goalstate",          # Azure WireServer: a public address
    "http://100.100.100.200/latest/meta-data/",
    "http://[::1]:{port}/a.png",
    "http://10.0.0.1/x.png",
    "http://192.168.1.1/x.png",
    "http://172.16.0.1/x.png",
    "http://100.64.0.1/x.png",
    "http://198.18.0.1/x.png",
    "http://192.0.2.1/x.png",
    "http://224.0.0.1/x.png",
    "http://255.255.255.255/x.png",
    "http://0.0.0.0:{port}/",
    "http://[::]:{port}/",
    "http://[::ffff:127.0.0.1]:{port}/",
    "http://[::ffff:169.254.169.254]/",
    "http://[64:ff9b::a9fe:a9fe]/",                        # NAT64 of 169.254.169.254
    "http://[fe80::1]/",
    "http://[fc00::1]/",
    "https://127.0.0.1:{port}/a.png",
])
async def test_non_public_literals_are_refused_without_connecting(
    make, target, connections, url
) -> None:
    fetcher = await make()
    await refused(fetcher, url.format(port=target.port), "image_url_forbidden")
    assert connections.none
    assert target.requests == []


async def test_allow_list_does_not_leak_into_other_loopback_forms(
    make, target, connections
) -> None:
    # 127.0.0.1 is allowed; ::1 and 127.0.0.2 are other addresses and stay refused.
    fetcher = await make(allow_hosts=["127.0.0.1"])
    await refused(fetcher, f"http://[::1]:{target.port}/a.png", "image_url_forbidden")
    await refused(fetcher, f"http://127.0.0.2:{target.port}/a.png", "image_url_forbidden")
    assert connections.none


# -- DNS -----------------------------------------------------------------------------------------


async def test_name_resolving_to_loopback_is_refused(make, target, connections) -> None:
    dns = FakeDNS({"evil.test": ["127.0.0.1"]})
    fetcher = await make(dns)
    error = await refused(fetcher, f"http://evil.test:{target.port}/a.png",
                          "image_url_forbidden")
    assert "evil.test" in error.message and "resolves to a private" in error.message
    assert "127.0.0.1" not in error.message  # no internal DNS oracle
    assert target.requests == [] and connections.none


async def test_name_with_one_public_and_one_private_answer_is_refused(
    make, target, connections
) -> None:
    dns = FakeDNS({"mixed.test": ["93.184.216.34", "127.0.0.1"]})
    fetcher = await make(dns)
    await refused(fetcher, f"http://mixed.test:{target.port}/a.png", "image_url_forbidden")
    assert target.requests == [] and connections.none


async def test_metadata_address_needs_an_explicit_ip_entry(make, connections) -> None:
    dns = FakeDNS({"meta.test": ["169.254.169.254"]})
    fetcher = await make(dns, allow_hosts=["meta.test"])
    await refused(fetcher, "http://meta.test/latest/meta-data/", "image_url_forbidden")
    assert connections.none
    assert AllowList(["169.254.169.254"]).permits("meta.test", 80,
                                                  ip_address("169.254.169.254"))


async def test_unknown_name_is_unreachable(make, connections) -> None:
    fetcher = await make(FakeDNS())
    await refused(fetcher, "http://nowhere.test/a.png", "image_url_unreachable")
    assert connections.none


async def test_system_resolver_numeric_forms_are_vetted(make, target, connections) -> None:
    # getaddrinfo turns these into 127.0.0.1: the answer, not the spelling, is judged.
    fetcher = await make(resolve=system_resolve)
    for host in ("localhost", "127.1", "2130706433", "0x7f.0.0.1"):
        await refused(fetcher, f"http://{host}:{target.port}/a.png", "image_url_forbidden")
    assert target.requests == [] and connections.none


async def test_rebinding_cannot_redirect_the_connection(make, target, connections) -> None:
    # The first answer is vetted (allowed); every later answer would be the metadata service.
    dns = FakeDNS({"rebind.test": [["127.0.0.1"], ["169.254.169.254"]]})
    fetcher = await make(dns, allow_hosts=["127.0.0.1"])
    image = await fetcher.fetch(f"http://rebind.test:{target.port}/a.png", param=PARAM)
    assert image.data == PNG
    assert dns.calls == ["rebind.test"]  # aiohttp never asked DNS again
    assert connections.connector_hosts == [("rebind.test", target.port)]
    assert connections.sockets == [("127.0.0.1", target.port)]  # the vetted address


async def test_rebinding_between_redirect_hops_is_caught(make, target, connections) -> None:
    dns = FakeDNS({"rebind.test": [["127.0.0.1"], ["169.254.169.254"]]})
    fetcher = await make(dns, allow_hosts=["127.0.0.1"])
    await refused(fetcher, f"http://rebind.test:{target.port}/redirect/0",
                  "image_url_forbidden")
    assert dns.calls == ["rebind.test", "rebind.test"]
    assert target.paths == ["/redirect/0"]
    assert connections.sockets == [("127.0.0.1", target.port)]


async def test_connector_refuses_a_socket_to_an_unvetted_address(
    make, target, connections, monkeypatch
) -> None:
    # Simulate a resolver bug or bypass: aiohttp is handed 127.0.0.1 while 127.0.0.2 was vetted.
    async def rogue(self, host, port=0, family=0):
        return [{"hostname": host, "host": "127.0.0.1", "port": port, "family": 2,
                 "proto": 0, "flags": 0}]

    monkeypatch.setattr(fetcher_module._PinnedResolver, "resolve", rogue)
    dns = FakeDNS({"img.test": ["127.0.0.2"]})
    fetcher = await make(dns, allow_hosts=["127.0.0.2"])
    error = await refused(fetcher, f"http://img.test:{target.port}/a.png",
                          "image_url_forbidden")
    assert "about to connect to an address that was not vetted" in error.message
    assert connections.sockets == []  # the socket factory refused before connecting
    assert target.requests == []


async def test_peer_check_stops_the_request_after_an_unvetted_connect(
    make, target, connections, monkeypatch
) -> None:
    # Both the resolver and the socket factory are defeated; the peer check still holds.
    async def rogue(self, host, port=0, family=0):
        return [{"hostname": host, "host": "127.0.0.1", "port": port, "family": 2,
                 "proto": 0, "flags": 0}]

    def any_socket(self, addr_info):
        family, type_, proto, _, _ = addr_info
        return socket.socket(family, type_, proto)

    monkeypatch.setattr(fetcher_module._PinnedResolver, "resolve", rogue)
    monkeypatch.setattr(fetcher_module._PinnedConnector, "_socket_for", any_socket)
    dns = FakeDNS({"img.test": ["127.0.0.2"]})
    fetcher = await make(dns, allow_hosts=["127.0.0.2"])
    error = await refused(fetcher, f"http://img.test:{target.port}/a.png",
                          "image_url_forbidden")
    assert "connected to an address that was not vetted" in error.message
    assert connections.sockets == [("127.0.0.1", target.port)]  # it did connect...
    await asyncio.sleep(0.05)
    assert target.requests == []  # ...but sent nothing


# -- redirects -----------------------------------------------------------------------------------


async def test_redirect_chain_within_the_limit(make, target) -> None:
    fetcher = await make(allow_hosts=["127.0.0.1"], max_redirects=3)
    image = await fetcher.fetch(f"{target.url}/redirect/2", param=PARAM)
    assert image.data == PNG and image.url == f"{target.url}/a.png"
    assert target.paths == ["/redirect/2", "/redirect/1", "/redirect/0", "/a.png"]


async def test_too_many_redirects(make, target) -> None:
    fetcher = await make(allow_hosts=["127.0.0.1"], max_redirects=3)
    error = await refused(fetcher, f"{target.url}/redirect/3", "image_url_unreachable")
    assert "redirects" in error.message
    assert len(target.requests) == 4


@pytest.mark.parametrize("destination", [
    "http://127.0.0.1:{other}/a.png",
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://[::ffff:127.0.0.1]:{other}/a.png",
    "http://evil.test:{other}/a.png",
])
async def test_redirect_to_a_non_allowed_address_is_refused(
    make, target, other, connections, destination
) -> None:
    dns = FakeDNS({"evil.test": ["127.0.0.1"]})
    fetcher = await make(dns, allow_hosts=[f"127.0.0.1:{target.port}"])
    location = destination.format(other=other.port)
    error = await refused(fetcher, f"{target.url}/to?url={location}", "image_url_forbidden")
    assert "redirects to" in error.message
    assert target.paths == ["/to"]
    assert other.requests == []
    assert connections.sockets == [("127.0.0.1", target.port)]


async def test_redirect_to_another_scheme_is_invalid(make, target) -> None:
    fetcher = await make(allow_hosts=["127.0.0.1"])
    await refused(fetcher, f"{target.url}/to?url=file:///etc/passwd", "image_url_invalid")


# -- what comes back -----------------------------------------------------------------------------


async def test_octet_stream_with_image_bytes_is_accepted(make, target) -> None:
    fetcher = await make(allow_hosts=["127.0.0.1"])
    image = await fetcher.fetch(f"{target.url}/octet.png", param=PARAM)
    assert image.format == "png" and image.content_type == "image/png"


@pytest.mark.parametrize("path", ["/text", "/liar.png"])
async def test_non_images_are_invalid(make, target, path) -> None:
    fetcher = await make(allow_hosts=["127.0.0.1"])
    await refused(fetcher, f"{target.url}{path}", "invalid_image")


@pytest.mark.parametrize("path", ["/huge.png", "/stream.png"])
async def test_too_large(make, target, path) -> None:
    fetcher = await make(allow_hosts=["127.0.0.1"], max_bytes=100_000)
    error = await refused(fetcher, f"{target.url}{path}", "image_too_large", status=413)
    assert "100000" in error.message


async def test_not_found_is_unreachable_without_the_body(make, target) -> None:
    fetcher = await make(allow_hosts=["127.0.0.1"])
    error = await refused(fetcher, f"{target.url}/404", "image_url_unreachable")
    assert "HTTP 404" in error.message and "secret" not in error.message


async def test_slow_server_times_out(make, target) -> None:
    fetcher = await make(allow_hosts=["127.0.0.1"], timeout=0.3)
    started = time.monotonic()
    error = await refused(fetcher, f"{target.url}/slow", "image_url_unreachable")
    assert time.monotonic() - started < 1.5
    assert "0.3 seconds" in error.message


async def test_connection_refused_is_unreachable(make) -> None:
    with socket.socket() as sock:  # a port with nobody listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    fetcher = await make(allow_hosts=["127.0.0.1"])
    error = await refused(fetcher, f"http://127.0.0.1:{port}/a.png", "image_url_unreachable")
    assert "connection refused" in error.message.lower()
    assert str(port) not in error.message


# -- bad URLs ------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "ftp://example.com/a.png",
    "file:///etc/passwd",
    "gopher://127.0.0.1:6379/_INFO",
    "http://user:pass@example.com/a.png",
    "http://user@example.com/a.png",
    "http:///a.png",
    "http://example.com:99999/a.png",
    "/relative/a.png",
    "",
    "http://example.com/" + "a" * 9000,
])
async def test_invalid_urls(make, connections, url) -> None:
    fetcher = await make(FakeDNS({"example.com": ["93.184.216.34"]}))
    await refused(fetcher, url, "image_url_invalid")
    assert connections.none


async def test_logs_never_carry_query_strings(make, target, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="proxy.fetching")
    fetcher = await make(allow_hosts=[f"127.0.0.1:{target.port}"])
    await fetcher.fetch(f"{target.url}/a.png?X-Amz-Signature=SECRET1", param=PARAM)
    await refused(fetcher, "http://10.0.0.1/a.png?token=SECRET2", "image_url_forbidden")
    await refused(fetcher, f"{target.url}/to?url=http://169.254.169.254/%3Ftoken%3DSECRET3",
                  "image_url_forbidden")
    assert caplog.records
    assert "SECRET" not in caplog.text


# -- inline images -------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "data", "fmt"), [
    ("data:image/png;base64," + base64.b64encode(PNG).decode(), PNG, "png"),
    ("data:;base64," + base64.b64encode(WEBP).decode(), WEBP, "webp"),
    ("DATA:image/webp;BASE64," + base64.b64encode(WEBP).decode(), WEBP, "webp"),
    (base64.b64encode(JPEG).decode(), JPEG, "jpeg"),
    (base64.urlsafe_b64encode(JPEG).decode().rstrip("="), JPEG, "jpeg"),
    (base64.encodebytes(PNG).decode(), PNG, "png"),  # with newlines
])
def test_inline_images_decode(value, data, fmt) -> None:
    image = decode_inline(value, param=PARAM, max_bytes=100_000)
    assert (image.data, image.format, image.url) == (data, fmt, None)
    assert image.content_type == f"image/{fmt}"


@pytest.mark.parametrize(("value", "code", "status"), [
    ("@@not base64@@", "invalid_image", 400),
    ("QUJD=", "invalid_image", 400),
    ("QUJDR", "invalid_image", 400),
    ("", "invalid_image", 400),
    (base64.b64encode(b"just some text, no image").decode(), "invalid_image", 400),
    ("data:text/html;base64," + base64.b64encode(PNG).decode(), "invalid_image", 400),
    ("data:image/png," + PNG.hex(), "invalid_image", 400),
    ("data:image/png;base64", "invalid_image", 400),
    ("data:image/gif;base64," + base64.b64encode(GIF).decode(), "invalid_image", 400),
    ("data:image/png;base64," + base64.b64encode(PNG + bytes(200_000)).decode(),
     "image_too_large", 413),
])
def test_bad_inline_images(value, code, status) -> None:
    with pytest.raises(GatewayError) as caught:
        decode_inline(value, param=PARAM, max_bytes=100_000)
    assert (caught.value.status, caught.value.code, caught.value.param) == (status, code, PARAM)


async def test_load_dispatches_on_the_value(make, target, connections) -> None:
    fetcher = await make(allow_hosts=["127.0.0.1"])
    b64 = base64.b64encode(PNG).decode()
    assert (await fetcher.load(b64, param=PARAM)).data == PNG
    assert (await fetcher.load(f"data:image/png;base64,{b64}", param=PARAM)).data == PNG
    assert (await fetcher.load(f"{target.url}/b.jpg", param=PARAM)).data == JPEG
    with pytest.raises(GatewayError) as caught:
        await fetcher.load("ftp://example.com/a.png", param=PARAM)
    assert caught.value.code == "image_url_invalid"
    assert target.requests == ["GET /b.jpg"]


# -- settings and address rules -----------------------------------------------------------------


def test_settings_defaults_and_validation() -> None:
    settings = FetchSettings()
    assert (settings.allow_hosts, settings.timeout, settings.connect_timeout) == ([], 15, 5)
    assert (settings.max_bytes, settings.max_redirects) == (50 * 1024 * 1024, 3)
    assert settings.user_agent
    FetchSettings(allow_hosts=["images.internal", "store:8443", "10.0.0.0/8", "[fd00::5]:443",
                               "127.0.0.1:8080"])
    for bad in ("not a host", "host:notaport"):
        with pytest.raises(ValueError, match="allow_hosts entry"):
            AllowList([bad])
    with pytest.raises(ConfigError) as caught:
        load_checked_text("models: [{name: l, provider: local}]\n"
                          "fetch:\n  allow_hosts: [ok.internal, 'not a host']\n", source="g.yaml")
    assert caught.value.problems == [
        "g.yaml:3: fetch.allow_hosts[1]: allow_hosts entry 'not a host' is not a host name, "
        "host:port, IP address or CIDR"]
    with pytest.raises(ValidationError):
        FetchSettings(max_redirect=3)  # extra keys are typos
    with pytest.raises(ValidationError):
        FetchSettings(user_agent="x\r\nX-Injected: 1")


@pytest.mark.parametrize(("address", "public"), [
    ("93.184.216.34", True), ("8.8.8.8", True), ("2606:4700:4700::1111", True),
    ("::ffff:8.8.8.8", True), ("64:ff9b::808:808", True),
    ("127.0.0.1", False), ("0.0.0.0", False), ("0.1.2.3", False), ("10.1.2.3", False),
    ("172.31.255.255", False), ("192.168.0.1", False), ("100.64.0.1", False),
    ("169.254.169.254", False), ("168.63.129.16", False), ("192.0.0.192", False),
    ("198.19.255.255", False), ("198.51.100.7", False), ("203.0.113.9", False),
    ("224.0.0.251", False), ("240.0.0.1", False), ("255.255.255.255", False),
    ("::", False), ("::1", False), ("::127.0.0.1", False), ("::ffff:10.0.0.1", False),
    ("fd00:ec2::254", False), ("fc00::1", False), ("fe80::1", False), ("fec0::1", False),
    ("ff02::1", False), ("2001:db8::1", False), ("2002:a00:1::1", False), ("2001::1", False),
    ("64:ff9b::7f00:1", False), ("100::1", False),
])
def test_public_address_classification(address, public) -> None:
    assert is_public_address(ip_address(address)) is public
