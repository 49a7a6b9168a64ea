"""Images kept in a local directory and served by the gateway under signed, expiring URLs.

A URL looks like ``{origin}/v1/images/files/{name}?expires={unix seconds}&signature={hex}``, the
signature being HMAC-SHA256 over ``name`` and ``expires`` with the store's secret. Anyone holding
the URL can fetch the image until it expires; nobody can make a URL for another name or a later
expiry without the secret.

On disk an image is ``{directory}/{expires}.{name}``: the expiry is in the file name, so the sweep
that deletes expired images needs no index, and a file is only ever looked up from a name that
passed :func:`~proxy.storage.base.is_safe_name` (one plain path segment) and a valid signature.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
import re
import secrets
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import anyio.to_thread

from proxy.core.errors import GatewayError
from proxy.core.redact import remember
from proxy.storage.base import check_name, content_type_of, is_safe_name, stored_name

log = logging.getLogger("proxy.storage.local")

SECRET_FILE = ".url-secret"
DEFAULT_URL_PATH = "/v1/images/files"
_TEMP_PREFIX = ".tmp-"
# Temporary files older than this are leftovers of a crash mid-write.
_TEMP_MAX_AGE = 3600.0
_ON_DISK = re.compile(r"(\d{1,12})\.(.+)")
_SIGNATURE = re.compile(r"[0-9a-f]{64}")
_EXPIRES = re.compile(r"\d{1,12}")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


@dataclass(frozen=True, slots=True)
class StoredFile:
    data: bytes
    content_type: str
    remaining: int  # seconds until its URL expires


class LocalImageStore:
    """Files in ``directory``; URLs signed with ``secret`` that live ``ttl_seconds``."""

    def __init__(
        self,
        directory: Path | str,
        *,
        ttl_seconds: int = 3600,
        secret: str | bytes | None = None,
        public_url: str | None = None,
        sweep_seconds: float = 300.0,
        url_path: str = DEFAULT_URL_PATH,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if ttl_seconds < 1:
            raise ValueError("ttl_seconds must be at least 1")
        self.directory = Path(directory)
        self.ttl_seconds = int(ttl_seconds)
        self.public_url = public_url.rstrip("/") if public_url else None
        self.sweep_seconds = sweep_seconds
        self.url_path = "/" + url_path.strip("/")
        self.clock = clock
        self._configured_secret = secret.encode() if isinstance(secret, str) else secret
        self._key: bytes | None = None
        self._sweeper: asyncio.Task[None] | None = None

    def __repr__(self) -> str:  # never the secret
        return f"LocalImageStore({str(self.directory)!r}, ttl_seconds={self.ttl_seconds})"

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        await anyio.to_thread.run_sync(self._prepare)
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="image-store-sweep")

    async def aclose(self) -> None:
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper

    def _prepare(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._key = self._configured_secret or load_or_create_secret(self.directory)
        remember(self._key)  # never in a message or a log line

    # -- storing ---------------------------------------------------------------------------------

    async def put(self, data: bytes, *, content_type: str, name: str, base_url: str) -> str:
        key = self._require_key()
        if not data:
            raise ValueError("refusing to store an empty image")
        stored = stored_name(name, content_type)
        expires = int(self.clock()) + self.ttl_seconds
        origin = self.public_url or base_url.rstrip("/")
        if not origin.startswith(("http://", "https://")):
            raise ValueError("base_url must be the gateway's http(s) origin")
        await anyio.to_thread.run_sync(self._write, self._path(stored, expires), data)
        log.debug("stored image %s (%d bytes, %s)", stored, len(data), content_type)
        signature = _sign(key, stored, expires)
        return f"{origin}{self.url_path}/{stored}?expires={expires}&signature={signature}"

    def _write(self, path: Path, data: bytes) -> None:
        temp = self.directory / f"{_TEMP_PREFIX}{secrets.token_hex(8)}"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                temp.unlink()
            raise

    def _path(self, name: str, expires: int) -> Path:
        check_name(name)
        path = self.directory / f"{expires}.{name}"
        # Belt and braces: one segment, directly inside the directory.
        if path.parent != self.directory or path.name != f"{expires}.{name}":
            raise ValueError("image path escapes the store directory")
        return path

    def _require_key(self) -> bytes:
        if self._key is None:
            raise RuntimeError("LocalImageStore.start() has not been awaited")
        return self._key

    # -- signing ---------------------------------------------------------------------------------

    def sign(self, name: str, expires: int) -> str:
        """The signature of a URL for ``name`` valid until ``expires`` (unix seconds)."""
        return _sign(self._require_key(), check_name(name), expires)

    def signature_valid(self, name: str, expires: str | None, signature: str | None) -> bool:
        """Constant-time check of a URL's ``expires`` and ``signature`` query values."""
        key = self._require_key()
        if expires is None or signature is None:
            return False
        if not _EXPIRES.fullmatch(expires) or not _SIGNATURE.fullmatch(signature):
            return False
        expected = _sign(key, name, int(expires))
        return hmac.compare_digest(expected.encode(), signature.encode())

    # -- serving ---------------------------------------------------------------------------------

    async def open(self, name: str, expires: str | None,
                   signature: str | None) -> StoredFile:
        """The image a signed URL names; a ``GatewayError`` (403 bad signature, 410 expired,
        404 gone) otherwise."""
        if not self.signature_valid(name, expires, signature):
            raise GatewayError(403, "The image URL's signature is missing or not valid.",
                               code="invalid_signature")
        assert expires is not None
        gone = GatewayError(404, "No such image.", code="file_not_found")
        if not is_safe_name(name):  # never signed by this store; only a leaked secret gets here
            raise gone
        remaining = int(expires) - int(self.clock())
        if remaining <= 0:
            raise GatewayError(410, "The image URL has expired.", code="url_expired")
        content_type = content_type_of(name)
        if content_type is None:
            raise gone
        data = await anyio.to_thread.run_sync(self._read, self._path(name, int(expires)))
        if data is None:
            raise gone
        return StoredFile(data, content_type, remaining)

    @staticmethod
    def _read(path: Path) -> bytes | None:
        try:
            fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:  # ELOOP: a symlink someone planted
            log.warning("refusing to serve %s: %s", path.name, exc.strerror)
            return None
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                return None
            return handle.read()

    # -- sweeping --------------------------------------------------------------------------------

    async def sweep(self) -> int:
        """Delete every image whose URL has expired; the number deleted."""
        return await anyio.to_thread.run_sync(self._sweep, self.clock())

    def _sweep(self, now: float) -> int:
        removed = 0
        with os.scandir(self.directory) as entries:
            for entry in entries:
                if not entry.is_file(follow_symlinks=False):
                    continue
                if entry.name.startswith(_TEMP_PREFIX):
                    age = time.time() - entry.stat(follow_symlinks=False).st_mtime
                    if age > _TEMP_MAX_AGE and _unlink(entry.path):
                        removed += 1
                    continue
                match = _ON_DISK.fullmatch(entry.name)
                if (match and is_safe_name(match[2]) and int(match[1]) <= now
                        and _unlink(entry.path)):
                    removed += 1
        return removed

    async def _sweep_forever(self) -> None:
        while True:
            try:
                removed = await self.sweep()
            except Exception:
                log.exception("sweeping expired images in %s failed", self.directory)
            else:
                if removed:
                    log.info("deleted %d expired image(s)", removed)
            await asyncio.sleep(self.sweep_seconds)


def load_or_create_secret(directory: Path) -> bytes:
    """The URL secret kept in ``directory/.url-secret``, made (mode 0600) on first use.

    Created complete or not at all (written to a temporary file, then hard-linked into place), so
    gateways sharing the directory that start together agree on one secret.
    """
    path = directory / SECRET_FILE
    if not path.exists():
        temp = directory / f"{_TEMP_PREFIX}{secrets.token_hex(8)}"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600)
        try:
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_hex(32) + "\n")
                out.flush()
                os.fsync(out.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(temp, path)
        finally:
            with contextlib.suppress(OSError):
                temp.unlink()
    fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
    with os.fdopen(fd, "r") as handle:
        mode = os.fstat(handle.fileno()).st_mode
        if mode & 0o077:
            log.warning("%s was readable by others; making it 0600", path)
            os.fchmod(handle.fileno(), 0o600)
        secret = handle.read().strip()
    if len(secret) < 32:
        raise RuntimeError(f"{path} does not hold a usable secret; delete it to make a new one "
                           "(URLs handed out so far then stop working)")
    return secret.encode()


def _sign(key: bytes, name: str, expires: int) -> str:
    # The newline keeps (name, expires) pairs apart: names never contain one.
    return hmac.new(key, f"{name}\n{expires}".encode(), hashlib.sha256).hexdigest()


def _unlink(path: str) -> bool:
    try:
        os.unlink(path)
    except FileNotFoundError:  # another gateway's sweep got there first
        return False
    return True

