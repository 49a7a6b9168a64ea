"""The ``fetch:`` section of the configuration."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class FetchSettings(BaseModel):
    """How the gateway fetches images that clients give as http(s) URLs."""

    model_config = ConfigDict(extra="forbid")

    # Hosts trusted although internal (e.g. an internal image store): a host name (whatever it
    # resolves to, cloud metadata addresses excepted), ``host:port``, an IP address, ``ip:port``,
    # ``[ipv6]:port`` or a CIDR. Everything else must resolve to public addresses only.
    allow_hosts: list[str] = Field(default_factory=list)
    # Seconds for the whole fetch: DNS, connects, redirects and the body.
    timeout: float = Field(15.0, gt=0)
    # Seconds for DNS and for each TCP (+TLS) connect.
    connect_timeout: float = Field(5.0, gt=0)
    # Largest image accepted, per image (bytes).
    max_bytes: int = Field(50 * 1024 * 1024, gt=0)
    max_redirects: int = Field(3, ge=0, le=20)
    user_agent: str = Field("image-proxy/0.1 (image fetcher)", min_length=1,
                            pattern=r"^[^\r\n]+$")

    # Each entry's syntax is checked where the fetcher's allow list is built (the gateway's
    # start-up check), and reported at its line like every other configuration problem.

    @field_validator("allow_hosts")
    @classmethod
    def _stripped(cls, entries: list[str]) -> list[str]:
        return [entry.strip() for entry in entries]
