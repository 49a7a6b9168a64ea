"""Gateway API keys, kept only as SHA-256 hashes, and what each key may do.

With no keys configured the gateway is open (and, by default, only on loopback) and every caller
is the anonymous owner ``""`` with every capability. With keys, every request and socket must
present one: unknown or missing → 401; a capability or model the key lacks → 403.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from starlette.requests import Request

from proxy.config.schema import KeyConfig
from proxy.core.errors import GatewayError
from proxy.core.redact import remember

KEY_PREFIX = "ipk_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """A fresh key and the hash to put in the configuration."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    return key, hash_key(key)


@dataclass(frozen=True, slots=True)
class Key:
    name: str
    capabilities: frozenset[str] = frozenset({"images", "images:edit", "admin"})
    models: tuple[str, ...] = ("*",)
    requests_per_minute: int | None = None
    concurrent_jobs: int | None = None
    budget_usd: float | None = None
    budget_period: str = "month"
    # "cancel" or "finish": what this key's client-chosen jobs do when their client hangs up
    # (None: the model's setting decides).
    on_disconnect: str | None = None
    config: KeyConfig | None = field(default=None, compare=False, repr=False)

    @property
    def admin(self) -> bool:
        return "admin" in self.capabilities

    def require(self, capability: str) -> None:
        if not self.admin and capability not in self.capabilities:
            raise GatewayError(403, f"This key lacks the '{capability}' capability.",
                               type="permission_error", code="capability_missing")

    def require_model(self, *names: str) -> None:
        """``names``: the model as requested and as served (an alias may be allowed by name)."""
        if self.admin or any(fnmatchcase(n, p) for n in names for p in self.models):
            return
        raise GatewayError(403, f"This key may not use the model '{names[0]}'.",
                           type="permission_error", param="model", code="model_not_allowed")

    @classmethod
    def from_config(cls, config: KeyConfig) -> Key:
        return cls(name=config.name, capabilities=frozenset(config.capabilities),
                   models=tuple(config.models), requests_per_minute=config.requests_per_minute,
                   concurrent_jobs=config.concurrent_jobs, budget_usd=config.budget_usd,
                   budget_period=config.budget_period, on_disconnect=config.on_disconnect,
                   config=config)


ANONYMOUS = Key(name="")


class KeyRing:
    def __init__(self, keys: list[KeyConfig]) -> None:
        self._by_hash = {k.key_sha256.lower(): Key.from_config(k) for k in keys}
        self._seen: set[str] = set()

    @property
    def enabled(self) -> bool:
        return bool(self._by_hash)

    def keys(self) -> list[Key]:
        return list(self._by_hash.values())

    def by_name(self, name: str) -> Key | None:
        """The key named ``name`` (ANONYMOUS's name when the gateway has no keys): a queued
        job runs under the key that sent it, found by its name, never by its secret."""
        if not self.enabled:
            return ANONYMOUS if name == ANONYMOUS.name else None
        return next((key for key in self._by_hash.values() if key.name == name), None)

    def authenticate(self, token: str | None) -> Key | None:
        """The key for ``token``; ANONYMOUS when the gateway has no keys; None if refused."""
        if not self.enabled:
            return ANONYMOUS
        if not token:
            return None
        # A dict lookup on the hash: comparing hashes leaks nothing about the key itself.
        key = self._by_hash.get(hash_key(token))
        if key is not None and token not in self._seen:
            # Only hashes are configured: a key is known word for word once it is used, and
            # from then on redacted wherever it might be repeated (proxy.core.redact).
            self._seen.add(token)
            remember(token)
        return key

    def authenticate_request(self, request: Request) -> Key:
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else None
        key = self.authenticate(token)
        if key is None:
            message = ("Incorrect API key provided." if token else
                       "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.")
            raise GatewayError(401, message, code="invalid_api_key")
        return key
