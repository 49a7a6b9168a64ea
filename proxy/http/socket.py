"""Socket.IO namespace ``/image-progress``: subscribe to a job, receive its ``progress`` events.

Connect with ``auth: {"token": <gateway key>}`` (a bad token is refused with ``connect_error``;
a gateway without keys lets any local client in). ``subscribe {job_id}`` joins the job's room
and tells the progress hub someone watches it (a job nobody watches sends no events at all);
the ack carries its current snapshot, or null if the job has not started (yet). A job that had
already ended sends no more updates: its terminal snapshot is then also sent to the subscriber
as a ``progress`` event, right after the ack (a client that listens only to ``progress`` events
still hears how the job ended; one that also reads the ack drops the repeat by ``seq``).

Also here: the client managers the Socket.IO server is built with (one process, or several
sharing Redis). They deliver an event to a room's members one after another instead of one task
per member, and let other tasks run between slices of members, so a fan-out to a thousand
subscribers neither costs a thousand tasks nor holds the event loop for its whole length.
With Redis, the manager survives Redis going away (see :class:`RedisManager`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import socketio
from engineio import packet as eio_packet
from engineio.exceptions import SocketIsClosedError
from prometheus_client import Gauge
from redis.asyncio import Redis
from socketio import packet
from socketio.exceptions import ConnectionRefusedError

from proxy.auth import KeyRing
from proxy.core.errors import GatewayError, StoreUnavailable
from proxy.fleet.client import redis_options
from proxy.fleet.policy import StorePolicy, background
from proxy.http.websocket import PreparedMessage, session_sender
from proxy.jobs.job import parse_job_id
from proxy.progress.hub import EVENT, NAMESPACE, ProgressHub, room_for

log = logging.getLogger("proxy.http.socket")

# Members served before other tasks get a turn (about a tenth of a millisecond of work).
SLICE = 32


def _bearer(environ: dict[str, Any]) -> str | None:
    header = environ.get("HTTP_AUTHORIZATION", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else None


class ProgressNamespace(socketio.AsyncNamespace):
    def __init__(self, hub: ProgressHub, keys: KeyRing, clients: Gauge | None = None) -> None:
        super().__init__(NAMESPACE)
        self.hub = hub
        self.keys = keys
        self.clients = clients
        self._sending: set[asyncio.Task[None]] = set()

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
        existing = await self.hub.find(job_id)
        if existing is None or existing.owner == session["owner"]:
            # Not started yet (subscribe, then POST) or the caller's own: its own room.
            return session["owner"], job_id
        if session["admin"]:
            return existing.owner, job_id
        return {"ok": False, "error": {"message": "This job belongs to another key.",
                                       "code": "job_forbidden"}}

    async def on_subscribe(self, sid: str, data: Any) -> dict[str, Any]:
        try:
            return await self._subscribe(sid, data)
        except GatewayError as error:  # the shared store cannot be reached: say so, now
            return {"ok": False, "error": {"message": error.message, "code": error.code}}

    async def _subscribe(self, sid: str, data: Any) -> dict[str, Any]:
        target = await self._target(sid, data)
        if isinstance(target, dict):
            return target
        owner, job_id = target
        await self.enter_room(sid, room_for(owner, job_id))
        await self.hub.watch(owner, job_id)
        snapshot = await self.hub.get(job_id, owner)
        wire = snapshot.to_wire() if snapshot else None
        if snapshot is not None and snapshot.terminal:
            # The job already ended: no update will come, so its end is also sent as a
            # ``progress`` event (after the ack), for clients that listen only to those.
            sending = background(self._send_ended(sid, wire))
            self._sending.add(sending)  # held until done: a task nobody holds may be collected
            sending.add_done_callback(self._sending.discard)
        return {"ok": True, "job_id": job_id, "snapshot": wire}

    async def _send_ended(self, sid: str, wire: dict[str, Any] | None) -> None:
        try:
            # To this subscriber only, who is connected here: never through Redis.
            await self.emit(EVENT, wire, to=sid, ignore_queue=True)
        except Exception:  # it left meanwhile
            log.debug("the ended job's snapshot could not be sent to %s", sid, exc_info=True)

    async def on_unsubscribe(self, sid: str, data: Any) -> dict[str, Any]:
        """Leave the room (the job stops sending events once nobody is left in it)."""
        try:
            target = await self._target(sid, data)
        except GatewayError as error:
            return {"ok": False, "error": {"message": error.message, "code": error.code}}
        if isinstance(target, dict):
            return target
        owner, job_id = target
        await self.leave_room(sid, room_for(owner, job_id))
        return {"ok": True, "job_id": job_id}


def watchers_here(server: socketio.AsyncServer) -> Callable[[str], bool]:
    """Whether a room of ``/image-progress`` has a member connected to this process."""
    def watched(room: str) -> bool:
        return bool(server.manager.rooms.get(NAMESPACE, {}).get(room))
    return watched


class _SlicedEmit(socketio.AsyncManager):
    """``emit`` that encodes the event once and delivers it to each member in turn, yielding to
    other tasks every ``SLICE`` members (python-socketio's own makes a task per member and waits
    for them all).

    A member whose session uses a websocket of this gateway's own protocol (connected so, or
    upgraded from long-polling) gets the websocket frame built once for all, written straight
    to its connection (:mod:`proxy.http.websocket`): no queue, no writer task woken, no frame
    built per member. Any other member (long-polling, upgrading, or a server without that
    protocol) gets it through Engine.IO's queue, as before.
    A member that is leaving (its connection closing) is skipped, and does not stop the rest."""

    async def emit(self, event: str, data: Any, namespace: str, room: Any = None,
                   skip_sid: Any = None, callback: Any = None, to: Any = None,
                   **kwargs: Any) -> None:
        room = to or room
        if callback is not None or namespace not in self.rooms:
            await super().emit(event, data, namespace, room=room, skip_sid=skip_sid,
                               callback=callback, **kwargs)
            return
        args = list(data) if isinstance(data, tuple) else [] if data is None else [data]
        encoded = self.server.packet_class(packet.EVENT, namespace=namespace,
                                           data=[event, *args]).encode()
        packets = [eio_packet.Packet(eio_packet.MESSAGE, p)
                   for p in (encoded if isinstance(encoded, list) else [encoded])]
        # One text frame for all (binary attachments: Engine.IO's way only).
        prepared = PreparedMessage(packets[0].encode()) if len(packets) == 1 else None
        skip = skip_sid if isinstance(skip_sid, list) else [skip_sid]
        sessions = self.server.eio.sockets
        for n, (sid, eio_sid) in enumerate(self.get_participants(namespace, room), 1):
            if sid not in skip:
                send_prepared = session_sender(sessions.get(eio_sid)) if prepared else None
                if send_prepared is not None:
                    send_prepared(prepared)  # False: it is leaving; nothing more to do
                else:
                    await self._queue(eio_sid, packets)
            if n % SLICE == 0:
                await asyncio.sleep(0)

    async def _queue(self, eio_sid: str, packets: list[eio_packet.Packet]) -> None:
        """Engine.IO's way: on the member's queue, for its writer task."""
        try:
            for pkt in packets:
                await self.server.eio.send_packet(eio_sid, pkt)
        except SocketIsClosedError:  # it left meanwhile
            pass


class ProcessManager(_SlicedEmit):
    """The client manager of a gateway that runs as one process."""


# The subscription is pinged after this many quiet seconds, and opened again when nothing
# (not even a pong) came back for DEAD_AFTER; a lost one is opened again every RESUBSCRIBE.
IDLE_PING = 1.0
DEAD_AFTER = 3.0
RESUBSCRIBE = 0.5
# Updates that could not be published are sent again this long after Redis is back, when the
# other processes have subscribed again; at most UNSENT_MOST rooms' latest update are kept.
RESEND_AFTER = 1.5
UNSENT_MOST = 10_000


class RedisManager(socketio.AsyncRedisManager, _SlicedEmit):
    """The client manager of gateway processes sharing Redis: an event emitted in one
    process is published to the others, and each delivers it to its own members (sliced).

    Redis may go away. python-socketio's own manager waits up to a minute between attempts to
    subscribe again (so a process stays deaf long after Redis is back), makes a new client per
    reconnection, retries each publish with redis-py's defaults (seconds per call against a
    Redis that does not answer) and logs every failure. Here: publishing goes through the
    shared store's policy (at once during an outage, one log line per outage); the latest update
    of each room that could not be published is sent again once Redis is back (watchers drop
    what they have seen by ``seq``); the subscription is tried again every half second, pinged
    when quiet and opened again when it stops answering."""

    def __init__(self, url: str, *, channel: str, policy: StorePolicy, timeout: float) -> None:
        super().__init__(url, channel=channel, redis_options=redis_options(timeout))
        self.policy = policy
        self.client: Redis | None = None
        self._unsent: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._resend: asyncio.Task[None] | None = None
        policy.watchers.append(self._store_changed)

    def _client(self) -> Redis:
        if self.client is None:
            self.client = Redis.from_url(self.redis_url, **self.redis_options)
        return self.client

    async def _publish(self, data: Any) -> Any:
        message = self.json.dumps(data)
        try:
            return await self.policy.call("Socket.IO publish", lambda: self._client().publish(
                self.channel, message))
        except StoreUnavailable:
            if isinstance(data, dict) and data.get("method") == "emit" and data.get("room"):
                key = (data.get("namespace"), data["room"], data.get("event"))
                self._unsent.pop(key, None)  # the latest goes last
                self._unsent[key] = data
                if len(self._unsent) > UNSENT_MOST:
                    del self._unsent[next(iter(self._unsent))]
            return None

    def _store_changed(self, up: bool) -> None:
        if up and self._unsent and (self._resend is None or self._resend.done()):
            self._resend = background(self._send_unsent())

    async def _send_unsent(self) -> None:
        await asyncio.sleep(RESEND_AFTER)
        unsent, self._unsent = self._unsent, {}
        for data in unsent.values():
            await self._publish(data)

    async def _listen(self) -> AsyncIterator[Any]:
        channel = self.channel.encode()
        async for message in self._messages():
            if message["type"] == "message" and message["channel"] == channel:
                yield message["data"]

    async def _messages(self) -> AsyncIterator[dict[str, Any]]:
        """Every message of the subscription, which is opened again (for ever) whenever it is
        lost."""
        loop = asyncio.get_running_loop()
        while True:
            pubsub = self._client().pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                heard = loop.time()
                while True:
                    message = await pubsub.get_message(timeout=IDLE_PING)
                    now = loop.time()
                    if message is not None:
                        heard = now
                        yield message
                    elif now - heard > DEAD_AFTER:
                        raise ConnectionError("the subscription stopped answering")
                    else:
                        await pubsub.ping()
            except Exception as exc:
                self.policy.report("Socket.IO subscription", exc)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(RESUBSCRIBE)

    async def aclose(self) -> None:
        """Stop listening and close the connections."""
        for task in (getattr(self, "thread", None), self._resend):
            if isinstance(task, asyncio.Task) and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.client is not None:
            await self.client.aclose()
