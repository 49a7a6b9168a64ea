"""Async jobs of a fleet (``Prefer: respond-async`` with ``redis_url``): what is queued for them
and what their client gets back at once.

A queued job is its request as the transport read it (an :class:`~proxy.service.replies.Order`:
the fields as sent, input images as bytes, base64 in the entry), the *name* of the key that
sent it (never the key: the instance that runs it finds the key in its own configuration, and
the upstream's credentials in its own models), the claim on its id if the client chose one, and
where its updates continue from. The entry is JSON (:func:`encode`, :func:`decode`).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from proxy.auth import Key
from proxy.core.errors import GatewayError
from proxy.fleet.queue import JobQueue, QueueFull
from proxy.images.inputs import InputImage
from proxy.jobs.claims import Claim
from proxy.progress.snapshot import JobSnapshot
from proxy.service.gateway import Gateway
from proxy.service.kept import accepted_body
from proxy.service.replies import Order, conflict, not_streamed

VERSION = 1
QUEUE_FULL_RETRY_AFTER = 5


def queue_full(most: int) -> GatewayError:
    return GatewayError(503, f"The gateway's queue of asynchronous jobs is full ({most} jobs "
                        "wait or run); send the request again in a moment.", type="server_error",
                        code="queue_full", headers={"retry-after": str(QUEUE_FULL_RETRY_AFTER)})


@dataclass(frozen=True, slots=True)
class Queued:
    """What a queued job's runner needs: the order, whose it is, and how it was claimed."""

    order: Order
    key: str  # the key's name
    seq: int  # the sequence number of the snapshot written when it was queued
    created: float  # when it was accepted (seconds since the epoch)
    claim: Claim | None = None


def _image(image: InputImage) -> dict[str, Any]:
    return {"data": image.b64, "format": image.format, "width": image.width,
            "height": image.height, "has_alpha": image.has_alpha, "filename": image.filename}


def _from_image(data: dict[str, Any]) -> InputImage:
    return InputImage(base64.b64decode(data["data"]), data["format"], data["width"],
                      data["height"], data["has_alpha"], data["filename"])


def encode(queued: Queued) -> bytes:
    order, claim = queued.order, queued.claim
    return orjson.dumps({
        "v": VERSION, "key": queued.key, "seq": queued.seq, "created": queued.created,
        "job_id": order.job_id, "fields": order.fields, "from_form": order.from_form,
        "editing": order.editing, "images": [_image(image) for image in order.images],
        "mask": None if order.mask is None else _image(order.mask), "listed": order.listed,
        "response_format": order.response_format, "watched": order.watched,
        "id_param": order.id_param, "base_url": order.base_url,
        "claim": None if claim is None else {
            "fingerprint": claim.fingerprint, "owner": claim.owner, "token": claim.token,
            "stream": claim.stream},
    })


def decode(raw: bytes) -> Queued:
    """The queued job; ``ValueError`` for an entry this version cannot read."""
    try:
        data = orjson.loads(raw)
        if data.get("v") != VERSION:
            raise ValueError(f"queue entry version {data.get('v')!r}")
        claim = data["claim"]
        order = Order(job_id=data["job_id"], fields=data["fields"], from_form=data["from_form"],
                      editing=data["editing"],
                      images=[_from_image(image) for image in data["images"]],
                      mask=None if data["mask"] is None else _from_image(data["mask"]),
                      listed=data["listed"], response_format=data["response_format"],
                      detached=True, watched=data["watched"], id_param=data["id_param"],
                      base_url=data["base_url"])
        return Queued(order, data["key"], int(data["seq"]), float(data["created"]),
                      None if claim is None else Claim(**claim))
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"unreadable queue entry: {type(exc).__name__}") from None


async def enqueue(gateway: Gateway, queue: JobQueue, key: Key, order: Order, model: str,
                  claim: Claim | None) -> dict[str, Any]:
    """Store the job's ``queued`` snapshot and queue it, in one step; the snapshot's wire form.
    A client-chosen id used before (freed by its last attempt) continues its updates' ``seq``
    and replaces that attempt's snapshot and result."""
    previous = await gateway.hub.find(order.job_id) if claim is not None else None
    seq = 0 if previous is None else previous.seq + 1
    now = time.time()
    snapshot = JobSnapshot(job_id=order.job_id, seq=seq, status="queued", percent=0.0,
                           model=model, created_at=now, updated_at=now, owner=key.name)
    try:
        entry = await queue.enqueue(order.job_id, encode(Queued(order, key.name, seq, now, claim)),
                                    orjson.dumps(snapshot.to_store()), replace=claim is not None)
    except QueueFull:
        raise queue_full(queue.max_length) from None
    if entry is None:
        raise conflict(order.job_id, order.id_param)
    return snapshot.to_wire()


class QueuedReply:
    """The answer to a request for an async job of the queue (started for it, or a repeat of
    it): 202 with the job's snapshot as it is now."""

    streamed = False

    def __init__(self, job_id: str, headers: dict[str, str],
                 view: Callable[[], Awaitable[dict[str, Any] | None]]) -> None:
        self.job_id = job_id
        self.headers = headers
        self._view = view

    async def accepted(self) -> dict[str, Any]:
        return accepted_body(self.job_id, await self._view())

    async def result(self) -> dict[str, Any]:
        raise not_streamed(self.job_id)  # never asked: an async job is answered with a 202

    async def json_body(self) -> dict[str, Any]:
        raise not_streamed(self.job_id)

    def stream(self, after: int = 0) -> Any:
        raise not_streamed(self.job_id)
