"""The image store interface, and the name and content-type rules every store applies."""

from __future__ import annotations

import re
import secrets
from typing import Protocol, runtime_checkable

# The only content types a store accepts: whatever is stored can never be served as a page or a
# script, even by a browser that ignores ``nosniff``.
CONTENT_TYPES: dict[str, tuple[str, ...]] = {
    "image/png": (".png",),
    "image/jpeg": (".jpg", ".jpeg"),
    "image/webp": (".webp",),
    "image/gif": (".gif",),
}
EXTENSION_TYPES: dict[str, str] = {
    ext: ctype for ctype, exts in CONTENT_TYPES.items() for ext in exts
}

# One path segment of plain characters: no separators, no leading dot (so no ``..`` and no
# hidden files), no control characters, nothing a URL or a shell would need to escape.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
MAX_NAME = 128


class InvalidImageName(ValueError):
    """A name that is not one safe path segment (or an unsupported content type)."""


def is_safe_name(name: str) -> bool:
    return bool(_NAME.fullmatch(name)) and ".." not in name


def check_name(name: str) -> str:
    if not isinstance(name, str) or not is_safe_name(name):
        raise InvalidImageName(
            f"unsafe image name {name!r}: use 1-{MAX_NAME} characters of [A-Za-z0-9._-], "
            "starting with a letter or digit, without '..'")
    return name


def stored_name(name: str, content_type: str) -> str:
    """The name an image is stored under: ``<random>-<name><ext>``.

    The random part keeps stored objects apart even when two requests give the same hint (job
    ids can be chosen by clients, so a hint alone would let one client overwrite another's
    image). The extension always agrees with ``content_type``: a hint without a known image
    extension gets the canonical one, a hint with a different image extension is refused.
    """
    check_name(name)
    extensions = CONTENT_TYPES.get(content_type)
    if extensions is None:
        raise InvalidImageName(
            f"unsupported content type {content_type!r}: one of {', '.join(CONTENT_TYPES)}")
    dot = name.rfind(".")
    suffix = name[dot:].lower() if dot > 0 else ""
    if suffix in EXTENSION_TYPES:
        if suffix not in extensions:
            raise InvalidImageName(f"name {name!r} does not match content type {content_type}")
    else:
        name += extensions[0]
    return check_name(_with_token(name))


def _with_token(name: str) -> str:
    token = secrets.token_hex(8)
    # Keep within MAX_NAME by shortening the hint's stem, never its extension.
    room = MAX_NAME - len(token) - 1
    if len(name) > room:
        dot = name.rfind(".")
        name = name[: room - (len(name) - dot)].rstrip(".") + name[dot:]
    return f"{token}-{name}"


def content_type_of(name: str) -> str | None:
    dot = name.rfind(".")
    return EXTENSION_TYPES.get(name[dot:].lower()) if dot > 0 else None


@runtime_checkable
class ImageStore(Protocol):
    """Where images go when a client asks for ``response_format: "url"``."""

    async def start(self) -> None:
        """Open connections, make directories, start background tasks (gateway startup)."""

    async def aclose(self) -> None:
        """Stop background tasks and close connections (gateway shutdown)."""

    async def put(self, data: bytes, *, content_type: str, name: str, base_url: str) -> str:
        """Store ``data`` and return the URL to hand the client.

        ``name`` is a hint such as ``<job_id>-<index>.png``; the store validates it (raising
        :class:`InvalidImageName`) and makes it unique. ``base_url`` is the gateway's public
        origin for this request (``http://127.0.0.1:8080``), used by stores the gateway serves.
        """
        ...
