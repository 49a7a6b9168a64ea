"""Which addresses the gateway may connect to for a client's image URL.

Public means: globally routable unicast. Everything else is refused (loopback, RFC 1918, CGNAT,
link-local, multicast, reserved, documentation, benchmarking, ULA, site-local, the IPv4 embedded
in IPv4-mapped / NAT64 IPv6 judged as IPv4, IPv4-compatible / 6to4 / Teredo refused outright),
and so are the cloud metadata endpoints, a few of which (Azure's WireServer) are public addresses.
The lists are written out rather than taken from ``ipaddress.is_global``, whose answers changed
between Python releases (and which calls multicast global).

``allow_hosts`` entries trust internal hosts: see :func:`parse_allow_entry`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

_V4_BLOCKED = tuple(IPv4Network(n) for n in (
    "0.0.0.0/8",           # "this network"; 0.0.0.0 reaches the local host on Linux
    "10.0.0.0/8",          # private
    "100.64.0.0/10",       # CGNAT (Alibaba's metadata service is 100.100.100.200)
    "127.0.0.0/8",         # loopback
    "169.254.0.0/16",      # link-local, cloud metadata (169.254.169.254)
    "172.16.0.0/12",       # private
    "192.0.0.0/24",        # IETF protocol assignments (Oracle metadata 192.0.0.192)
    "192.0.2.0/24",        # TEST-NET-1
    "192.88.99.0/24",      # 6to4 relay anycast (deprecated)
    "192.168.0.0/16",      # private
    "198.18.0.0/15",       # benchmarking
    "198.51.100.0/24",     # TEST-NET-2
    "203.0.113.0/24",      # TEST-NET-3
    "224.0.0.0/4",         # multicast
    "240.0.0.0/4",         # reserved, broadcast
))

# Only global unicast (2000::/3) can be public; these are carved out of it or listed for clarity.
_V6_GLOBAL_UNICAST = IPv6Network("2000::/3")
_V6_BLOCKED = tuple(IPv6Network(n) for n in (
    "::/128",              # unspecified
    "::1/128",             # loopback
    "::/96",               # IPv4-compatible (deprecated)
    "64:ff9b:1::/48",      # local-use NAT64
    "100::/64",            # discard-only
    "2001::/23",           # IETF protocol assignments: Teredo, benchmarking 2001:2::/48, ORCHID
    "2001:db8::/32",       # documentation
    "2002::/16",           # 6to4: tunnels to an arbitrary (possibly internal) IPv4
    "3fff::/20",           # documentation (RFC 9637)
    "5f00::/16",           # SRv6 SIDs
    "fc00::/7",            # unique local (AWS IMDS is fd00:ec2::254)
    "fe80::/10",           # link-local
    "fec0::/10",           # site-local (deprecated)
    "ff00::/8",            # multicast
))
_V6_MAPPED = IPv6Network("::ffff:0:0/96")
_V6_NAT64 = IPv6Network("64:ff9b::/96")

# Metadata endpoints: refused even for a host name in ``allow_hosts``; only an explicit IP/CIDR
# entry unlocks one. 168.63.129.16 is a public address, so it needs this list to be refused at all.
METADATA_ADDRESSES = frozenset(ip_address(a) for a in (
    "169.254.169.254",     # AWS, GCP, Azure IMDS, OpenStack, DigitalOcean, Hetzner ...
    "169.254.170.2",       # AWS ECS task metadata / credentials
    "169.254.169.253",     # AWS VPC DNS
    "169.254.169.123",     # AWS time sync
    "169.254.0.23",        # Tencent Cloud metadata
    "168.63.129.16",       # Azure WireServer
    "100.100.100.200",     # Alibaba Cloud metadata
    "192.0.0.192",         # Oracle Cloud metadata
    "fd00:ec2::254",       # AWS IMDS over IPv6
))


def _unmapped(addr: IPAddress) -> IPAddress:
    """The IPv4 address an IPv4-mapped IPv6 address stands for; others unchanged."""
    if isinstance(addr, IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def is_public_address(addr: IPAddress) -> bool:
    """True for a globally routable unicast address that is no cloud metadata endpoint."""
    addr = _unmapped(addr)
    if addr in METADATA_ADDRESSES:
        return False
    if isinstance(addr, IPv4Address):
        return not any(addr in net for net in _V4_BLOCKED)
    if addr.scope_id:
        return False
    if addr in _V6_NAT64:
        # Well-known-prefix NAT64 reaches the embedded IPv4: judge that.
        return is_public_address(IPv4Address(int(addr) & 0xFFFFFFFF))
    if addr not in _V6_GLOBAL_UNICAST:
        return False
    return not any(addr in net for net in _V6_BLOCKED)


def is_metadata_address(addr: IPAddress) -> bool:
    addr = _unmapped(addr)
    if isinstance(addr, IPv6Address) and addr in _V6_NAT64:
        addr = IPv4Address(int(addr) & 0xFFFFFFFF)
    return addr in METADATA_ADDRESSES


@dataclass(frozen=True)
class AllowRule:
    host: str | None = None          # a normalised host name, or
    network: IPNetwork | None = None  # an address / CIDR
    port: int | None = None           # None: any port


_HOST_NAME = re.compile(
    r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*"
)


def normalise_host(host: str) -> str:
    """Lower case, no trailing dot, IDNA (punycode) for non-ASCII names."""
    host = host.strip().rstrip(".").lower()
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise ValueError(f"{host!r} is not a valid host name") from exc
    return host


def _port(text: str, entry: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"allow_hosts entry {entry!r} has an invalid port")
    return int(text)


def parse_allow_entry(entry: str) -> AllowRule:
    """One ``allow_hosts`` entry: ``name``, ``name:port``, ``10.1.2.3``, ``10.1.2.3:8080``,
    ``10.0.0.0/8``, ``fd12::/64``, ``[fd12::5]:8443``. Raises ``ValueError`` for anything else."""
    text = entry.strip() if isinstance(entry, str) else ""
    if not text:
        raise ValueError("allow_hosts entries must be non-empty strings")
    bad = ValueError(
        f"allow_hosts entry {entry!r} is not a host name, host:port, IP address or CIDR"
    )
    if text.startswith("["):
        inner, closed, rest = text[1:].partition("]")
        if not closed or (rest and not rest.startswith(":")):
            raise bad
        try:
            network = ip_network(inner, strict=False)
        except ValueError:
            raise bad from None
        return AllowRule(network=network, port=_port(rest[1:], entry) if rest else None)
    try:
        return AllowRule(network=ip_network(text, strict=False))
    except ValueError:
        pass
    host, port = text, None
    if text.count(":") == 1:
        host, port_text = text.split(":")
        port = _port(port_text, entry)
    if ":" in host:
        raise bad
    try:
        return AllowRule(network=ip_network(host, strict=False), port=port)
    except ValueError:
        pass
    try:
        name = normalise_host(host)
    except ValueError:
        raise bad from None
    if not _HOST_NAME.fullmatch(name):
        raise bad
    return AllowRule(host=name, port=port)


class AllowList:
    """The parsed ``allow_hosts``."""

    def __init__(self, entries: Iterable[str] = ()) -> None:
        self.rules = [parse_allow_entry(entry) for entry in entries]

    def __bool__(self) -> bool:
        return bool(self.rules)

    def allows_address(self, addr: IPAddress, port: int) -> bool:
        """An IP/CIDR entry covers ``addr`` (IPv4-mapped IPv6 is matched as its IPv4)."""
        candidates = {addr, _unmapped(addr)}
        return any(
            rule.network is not None
            and rule.port in (None, port)
            and any(a.version == rule.network.version and a in rule.network for a in candidates)
            for rule in self.rules
        )

    def allows_host(self, host: str, port: int) -> bool:
        """A host-name entry names ``host``."""
        name = normalise_host(host)
        return any(rule.host == name and rule.port in (None, port) for rule in self.rules)

    def permits(self, host: str, port: int, addr: IPAddress) -> bool:
        """May the gateway connect to ``addr`` for a URL naming ``host:port``?"""
        if self.allows_address(addr, port):
            return True
        if is_metadata_address(addr):
            return False
        if self.allows_host(host, port):
            return True
        return is_public_address(addr)
