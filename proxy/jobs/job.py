"""A job: one image request from the moment it has an id until its last event."""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from proxy.core.errors import GatewayError
from proxy.providers.base import Call, JobKind
from proxy.request.bind import ParsedRequest, bind
from proxy.request.bound import ImageRequest
from proxy.routing.table import ServedModel


class _RandomIds:
    """Version-4 UUIDs from random bytes drawn 4 KiB at a time (one ``getrandom`` call per 256
    ids, not one each; the same randomness as :func:`uuid.uuid4`). A forked child starts with
    a pool of its own, never its parent's."""

    SIZE = 16 * 256

    def __init__(self) -> None:
        self._pool = b""
        self._at = 0
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._pool, self._at = b"", 0

    def next(self) -> str:
        if self._at >= len(self._pool):
            self._pool, self._at = os.urandom(self.SIZE), 0
        raw = bytearray(self._pool[self._at:self._at + 16])
        self._at += 16
        raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
        raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
        h = raw.hex()
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_IDS = _RandomIds()


def new_job_id() -> str:
    """A fresh job id: a random (version 4) UUID in its canonical form."""
    return _IDS.next()


def parse_job_id(value: Any) -> str | None:
    """The canonical lowercase form of a UUID, or None if ``value`` is not one."""
    if not isinstance(value, str):
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


@dataclass(slots=True)
class Job:
    id: str
    # What the client sent (kept so a fallback model can be held to its own rules), and the
    # request bound to the model that runs it now.
    parsed: ParsedRequest
    model: ServedModel
    request: ImageRequest
    owner: str = ""
    kind: JobKind = "generation"
    created: int = field(default_factory=lambda: int(time.time()))
    # Set when the gateway ends the job itself (shutting down): it then ends failed, not
    # cancelled, and its reader is told why.
    aborted: GatewayError | None = None
    # USD, priced once when the job completed (None: unknown, or not completed).
    cost: float | None = None
    # Upstream attempts made so far, over retries and fallbacks (the job's log line).
    attempts: int = 0
    # The job's trace span while traces are on (the parent of its upstream attempts' spans).
    span: Any = None
    # Its answer is written while the upstream still sends it (``Call.pieces``).
    pieces: bool = False

    def call(self) -> Call:
        """What the adapter of the job's current model gets for one attempt."""
        return Call(self.id, self.kind, self.request, self.pieces)

    def rebind(self, model: ServedModel) -> None:
        """Hand the job to another model (a fallback): the request is bound again, to that
        model's rules; a GatewayError means this model cannot take it."""
        self.request = bind(self.parsed, model)
        self.model = model
