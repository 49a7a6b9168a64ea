"""Socket.IO namespace ``/image-progress``: subscribe to a job, receive its ``progress`` events.

Connect with ``auth: {"token": <gateway key>}`` (a bad token is refused with ``connect_error``;
a gateway without keys lets any local client in). ``subscribe {job_id}`` joins the job's room
and the ack carries its current snapshot, or null if the job has not started (yet).
"""

from __future__ import annotations

from typing import Any

import socketio
from prometheus_client import Gauge
from socketio.exceptions import ConnectionRefusedError

from proxy.auth import KeyRing
from proxy.jobs.job import parse_job_id
from proxy.progress.hub import NAMESPACE, ProgressHub, room_for


def _bearer(environ: dict[str, Any]) -> str | None:
    header = environ.get("HTTP_AUTHORIZATION", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else None


class ProgressNamespace(socketio.AsyncNamespace):
    def __init__(self, hub: ProgressHub, keys: KeyRing, clients: Gauge | None = None) -> None:
        super().__init__(NAMESPACE)
        self.hub = hub
        self.keys = keys
        self.clients = clients

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        token = auth.get("token") if isinstance(auth, dict) else None
        key = self.keys.authenticate(token if isinstance(token, str) else _bearer(environ))
        if key is None:
            raise ConnectionRefusedError("unauthorized", {"code": "ERR_UNAUTHENTICATED"})
        await self.save_session(sid, {"owner": key.name, "admin": key.admin})
        if self.clients is not None:
            self.clients.inc()

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        if self.clients is not None:
            self.clients.dec()

    async def _target(self, sid: str, data: Any) -> tuple[str, str] | dict[str, Any]:
        """(the room's owner, job id), or the refusal to send back."""
        job_id = parse_job_id(data.get("job_id") if isinstance(data, dict) else None)
        if job_id is None:
            return {"ok": False, "error": {"message": "job_id must be a UUID.",
                                           "code": "invalid_job_id"}}
        session = await self.get_session(sid)
        existing = await self.hub.store.get(job_id)
        if existing is None or existing.owner == session["owner"]:
            # Not started yet (subscribe, then POST) or the caller's own: its own room.
            return session["owner"], job_id
        if session["admin"]:
            return existing.owner, job_id
        return {"ok": False, "error": {"message": "This job belongs to another key.",
                                       "code": "job_forbidden"}}

    async def on_subscribe(self, sid: str, data: Any) -> dict[str, Any]:
        target = await self._target(sid, data)
        if isinstance(target, dict):
            return target
        owner, job_id = target
        await self.enter_room(sid, room_for(owner, job_id))
        snapshot = await self.hub.get(job_id, owner)
        return {"ok": True, "job_id": job_id,
                "snapshot": snapshot.to_wire() if snapshot else None}

    async def on_unsubscribe(self, sid: str, data: Any) -> dict[str, Any]:
        target = await self._target(sid, data)
        if isinstance(target, dict):
            return target
        owner, job_id = target
        await self.leave_room(sid, room_for(owner, job_id))
        return {"ok": True, "job_id": job_id}
