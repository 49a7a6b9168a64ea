"""Secrets never leave the gateway: not in a message a client reads, not in a log line.

One :class:`Redactor` per process, :data:`SECRETS`, knows two things:

- the secrets this process holds, word for word: every credential in the configuration (provider
  and model keys, Vertex and Gemini credentials, storage credentials, the ledger's database URL),
  the signing secret of hosted URLs, tokens minted at run time (Google access tokens) and the
  gateway keys that have authenticated here. They are handed to :func:`remember` as they become
  known (:func:`secrets_in` finds them in a configuration);
- the shapes a credential takes whatever its source: ``Bearer <token>``, ``sk-…``, ``ipk_…``,
  ``AIza…``, ``xai-…``, ``ya29.…``, JSON web tokens, private-key blocks, the password of a
  ``scheme://user:password@host`` URL, and the value of any credential-named field or query
  parameter (``"token": "…"``, ``authorization: …``, ``signature=…``, ``sig=…``, ``api_key=…``).

Every match becomes ``[redacted]``. Two places apply it, once each: a
:class:`~proxy.core.errors.GatewayError` redacts what it carries when it is made (an upstream's
words included), so every body, stream event and progress snapshot a client sees is clean; and
the gateway's log handlers (:mod:`proxy.observability.logs`) redact every line they write.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import quote, urlsplit

from pydantic import BaseModel, SecretBytes, SecretStr

REDACTED = "[redacted]"
# Shorter values are not remembered word for word: a placeholder such as "unused" or "x" would
# blank out every occurrence of a common word. Real credentials are far longer.
MIN_SECRET = 8

# Field, header and query-parameter names whose value is a credential.
CREDENTIAL_NAME = (r"(?:[a-z0-9]+[_-])*(?:token|(?:api|access|secret|private|account|"
                   r"subscription)[_-]?key|apikey|secret|password|passwd|signature|sig|"
                   r"credentials?|authorization|cookie)")
_CREDENTIAL_FIELD = re.compile(CREDENTIAL_NAME, re.IGNORECASE)

# What follows a credential's name: its value, with the authorization scheme in front of it if
# any (but never the scheme alone, as in "Authorization: Bearer <key>").
_CHARS = r"[^\s\"'&,;}\\<>\[\])]"
_VALUE = r"(?:(?:bearer|basic)\s+(?=[^\s<])|(?!(?:bearer|basic)\s))" + _CHARS + "+"

_SHAPES: tuple[tuple[re.Pattern[str], str], ...] = (
    # A private key (a service-account file), PEM-armoured, its newlines raw or escaped.
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----",
                re.DOTALL), REDACTED),
    # A credential-named field or query parameter with a quoted value (``"token": "…"``,
    # ``'authorization': 'Token …'``): everything up to the closing quote goes.
    (re.compile(r"(?<![A-Za-z0-9])(\\?[\"']?" + CREDENTIAL_NAME + r"\\?[\"']?\s*[:=]\s*\\?[\"'])"
                r"[^\"'\\\r\n]+", re.IGNORECASE), r"\1" + REDACTED),
    # ... or a bare one (``signature=…``, ``"sig": …``), JSON-quoted name, escaped or not.
    (re.compile(r"(?<![A-Za-z0-9])(\\?[\"']?" + CREDENTIAL_NAME + r"\\?[\"']?\s*=\s*|"
                r"\\?[\"']" + CREDENTIAL_NAME + r"\\?[\"']\s*:\s*)" + _VALUE, re.IGNORECASE),
     r"\1" + REDACTED),
    # A header line (``authorization: Bearer …``, ``x-api-key: …``). Prose says "credentials:
    # the reason" too, so the value must look like a credential: a scheme and a token, or
    # eight characters or more with a digit among them.
    (re.compile(r"(?<![A-Za-z0-9])(" + CREDENTIAL_NAME + r":\s*)(?:(?:bearer|basic)\s+(?=[^\s<])"
                + _CHARS + r"+|(?=" + _CHARS + r"*\d)" + _CHARS + r"{8,})", re.IGNORECASE),
     r"\1" + REDACTED),
    # RFC 6750 bearer tokens wherever they appear.
    (re.compile(r"\b(bearer\s+)[A-Za-z0-9._~+/-]{8,}=*", re.IGNORECASE), r"\1" + REDACTED),
    # Key shapes: OpenAI (sk-, sk-proj-), this gateway (ipk_), Google API keys (AIza), xAI,
    # Google OAuth access tokens (ya29.), JSON web tokens (Entra ID).
    (re.compile(r"\b(?:sk-[A-Za-z0-9_-]{8,}|ipk_[A-Za-z0-9_-]{8,}|AIza[0-9A-Za-z_-]{20,}|"
                r"xai-[A-Za-z0-9_-]{16,}|ya29\.[0-9A-Za-z._-]{10,}|"
                r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})"), REDACTED),
    # The password in a URL's user information.
    (re.compile(r"\b([a-z][a-z0-9+.-]*://[^/\s:@]*:)[^/\s@]+@", re.IGNORECASE),
     r"\1" + REDACTED + "@"),
)


# Texts up to this long (a log line's names and short messages, an error's code) are redacted
# once and remembered, until the known secrets change; at most CACHE_SIZE of them at a time.
CACHED_LENGTH = 200
CACHE_SIZE = 4096


class Redactor:
    """Known secrets (word for word) and credential shapes, replaced by ``[redacted]``."""

    def __init__(self) -> None:
        # Longest first, so a secret that contains another is removed whole. Replaced as a
        # whole tuple: readers (any thread) never see it half-built.
        self._known: tuple[str, ...] = ()
        self._set: frozenset[str] = frozenset()
        self._lock = threading.Lock()
        # Short texts already redacted against the current secrets (the same model, key and
        # provider names, codes and messages recur in every log line: the patterns cost tens of
        # microseconds a text). Replaced, after ``_known``, whenever the secrets change.
        self._cache: dict[str, str] = {}

    def remember(self, values: Iterable[str | bytes | None]) -> None:
        """Redact these values from now on (and their percent-encoded spelling)."""
        fresh: set[str] = set()
        for value in values:
            text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
            text = (text or "").strip()
            if len(text) >= MIN_SECRET:
                fresh.update((text, quote(text, safe="")))
        with self._lock:
            if not fresh <= self._set:
                self._set = frozenset(fresh | self._set)
                self._known = tuple(sorted(self._set, key=len, reverse=True))
                self._cache = {}

    def __call__(self, text: str) -> str:
        if len(text) > CACHED_LENGTH:
            return self._redact(text)
        # Taken before reading the secrets: a text redacted against older ones only ever goes
        # into the cache those secrets were current for (``remember`` swaps it after them).
        cache = self._cache
        done = cache.get(text)
        if done is None:
            done = self._redact(text)
            if len(cache) >= CACHE_SIZE:
                cache.clear()
            cache[text] = done
        return done

    def _redact(self, text: str) -> str:
        for secret in self._known:
            if secret in text:
                text = text.replace(secret, REDACTED)
        for pattern, replacement in _SHAPES:
            text = pattern.sub(replacement, text)
        return text


SECRETS = Redactor()


def redact(text: str) -> str:
    """``text`` without any secret this process knows or any credential-shaped value."""
    return SECRETS(text)


def remember(*values: str | bytes | None) -> None:
    """Secrets to redact from every message and log line of this process from now on."""
    SECRETS.remember(values)


def secrets_in(value: Any, *, depth: int = 12) -> Iterator[str]:
    """Every secret held in ``value`` (a configuration, provider settings, ...): the contents of
    ``SecretStr`` / ``SecretBytes`` fields, string values filed under a credential name
    (``api_key``, ``x-api-key``, ``access_token``, ...), and passwords inside URLs."""
    if depth < 0:
        return
    if isinstance(value, SecretStr):
        yield from _with_password(value.get_secret_value())
    elif isinstance(value, SecretBytes):
        yield value.get_secret_value().decode("utf-8", "replace")
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _named(name, getattr(value, name, None), depth)
        for name, item in (value.model_extra or {}).items():
            yield from _named(name, item, depth)
    elif isinstance(value, Mapping):
        for name, item in value.items():
            yield from _named(str(name), item, depth)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            yield from secrets_in(item, depth=depth - 1)
    elif isinstance(value, str) and "://" in value:
        yield from _password(value)


def _named(name: str, value: Any, depth: int) -> Iterator[str]:
    if isinstance(value, str) and _CREDENTIAL_FIELD.fullmatch(name):
        yield from _with_password(value)
    else:
        yield from secrets_in(value, depth=depth - 1)


def _with_password(text: str) -> Iterator[str]:
    yield text
    yield from _password(text)


def _password(text: str) -> Iterator[str]:
    try:
        password = urlsplit(text.strip()).password
    except ValueError:
        return
    if password:
        yield password
