"""Gateway API keys, kept only as SHA-256 hashes.

With no keys configured the gateway is open (it then binds to loopback by default) and every
caller is the anonymous owner ``""``. With keys, every request and socket must present one.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from starlette.requests import Request

from proxy.config.schema import KeyConfig
from proxy.errors import GatewayError

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


ANONYMOUS = Key(name="")


class KeyRing:
    def __init__(self, keys: list[KeyConfig]) -> None:
        self._by_hash = {k.key_sha256.lower(): Key(name=k.name) for k in keys}

    @property
    def enabled(self) -> bool:
        return bool(self._by_hash)

    def authenticate(self, token: str | None) -> Key | None:
        """The key for ``token``; ANONYMOUS when the gateway has no keys; None if refused."""
        if not self.enabled:
            return ANONYMOUS
        if not token:
            return None
        # A dict lookup on the hash: comparing hashes leaks nothing about the key itself.
        return self._by_hash.get(hash_key(token))

    def authenticate_request(self, request: Request) -> Key:
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else None
        key = self.authenticate(token)
        if key is None:
            message = ("Incorrect API key provided." if token else
                       "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.")
            raise GatewayError(401, message, code="invalid_api_key")
        return key
