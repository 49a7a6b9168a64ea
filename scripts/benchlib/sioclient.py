"""A lean Socket.IO subscriber for the fan-out benchmark: one websocket speaking Engine.IO v4 /
Socket.IO v5 framing as python-socketio's client does, that stamps each message the moment its
bytes arrive.

Why not python-socketio's ``AsyncClient``: it costs 60-140 µs of CPU per received event (an
aiohttp receive task, Engine.IO and Socket.IO decoding, a handler task). A worker process holds
250 subscribers, so the last of them got its stamp after the other 249 had been decoded, and the
four workers together spent ~100 ms of CPU per event on the same two cores as the gateway (which
needs ~17 ms to send it to all 1,000): the benchmark measured its own clients. A real subscriber
decodes one message, on its own machine.

Here each connection is an asyncio protocol with websockets' sans-I/O client (its frames parsed
and masked by the library). The handshake is the real one (Engine.IO open packet, namespace
connect with the auth token, ``subscribe`` with an ack id, answering Engine.IO pings). Once
subscribed, ``data_received`` only takes the time and keeps the bytes; they are decoded
``DECODE_AFTER_S`` later, each message stamped with the arrival of the bytes that completed it,
and every ``progress`` event is checked to be a Socket.IO EVENT for the job subscribed to. Even
this decoding costs ~35 µs per message (websockets' frame parser, JSON): done at once, the four
workers spent ~35 ms of the two cores per event while the gateway sent it, twice the gateway's
own CPU for the fan-out; a real subscriber decodes on its own machine. What is measured is when
each message's bytes reached its subscriber's socket, read by a process that was ready to read.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

EVENT_PREFIX = '42{ns},["progress",'
# Once subscribed, bytes are stamped on arrival and decoded this much later (in one go).
DECODE_AFTER_S = 0.3


class Subscriber(asyncio.Protocol):
    """One Socket.IO client on ``namespace``, subscribed to each of ``job_ids``;
    ``on_event(payload, arrived)`` gets every ``progress`` event with the ``time.time()`` its
    bytes arrived."""

    def __init__(self, url: str, namespace: str, token: str, job_ids: Sequence[str],
                 on_event: Callable[[dict[str, Any], float], None]) -> None:
        ws_url = url.replace("http", "ws", 1).rstrip("/") + "/socket.io/?EIO=4&transport=websocket"
        self.ws = ClientProtocol(parse_uri(ws_url))
        self.namespace, self.token, self.job_ids = namespace, token, tuple(job_ids)
        self.acked: set[int] = set()  # ack ids (1-based index into job_ids) answered ok
        self.on_event = on_event
        self.prefix = EVENT_PREFIX.format(ns=namespace)
        self.subscribed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.pending: list[tuple[float, bytes]] = []

    # -- asyncio protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.ws.send_request(self.ws.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        arrived = time.time()  # first: what the subscriber's machine would have had then
        if not self.subscribed.done():
            self._parse(arrived, data)
            return
        self.pending.append((arrived, data))  # decoded later, off the measured window
        if len(self.pending) == 1:
            asyncio.get_running_loop().call_later(DECODE_AFTER_S, self._parse_pending)

    def _parse_pending(self) -> None:
        pending, self.pending = self.pending, []
        for arrived, data in pending:
            self._parse(arrived, data)

    def _parse(self, arrived: float, data: bytes) -> None:
        """Feed bytes that arrived at ``arrived``: a message is stamped with the arrival of the
        bytes that completed it."""
        self.ws.receive_data(data)
        for event in self.ws.events_received():
            if isinstance(event, Response):
                if event.status_code != 101:
                    self._fail(f"websocket handshake refused: {event.status_code}")
            elif isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                self._message(event.data.decode(), arrived)
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(f"connection lost: {exc}")
        if not self.closed.done():
            self.closed.set_result(None)

    # -- Engine.IO / Socket.IO
    def _message(self, text: str, arrived: float) -> None:
        ns = self.namespace
        if text.startswith(self.prefix):
            payload = json.loads(text[len(ns) + 3:])[1]
            if not (isinstance(payload, dict) and payload.get("job_id") in self.job_ids):
                self._fail(f"unexpected progress event: {text[:200]}")
                return
            self.on_event(payload, arrived)
        elif text == "2":  # Engine.IO ping
            self._send("3")
        elif text.startswith("0{"):  # Engine.IO open: connect to the namespace, with auth
            self._send(f"40{ns}," + json.dumps({"token": self.token}))
        elif text.startswith(f"40{ns},"):  # namespace connected: subscribe (ack id k)
            for k, job_id in enumerate(self.job_ids, 1):
                self._send(f'42{ns},{k}["subscribe",{json.dumps({"job_id": job_id})}]')
        elif text.startswith(f"43{ns},"):
            ack_id, _, rest = text[len(ns) + 3:].partition("[")
            ack = json.loads("[" + rest)[0]
            if isinstance(ack, dict) and ack.get("ok") and ack_id.isdigit():
                self.acked.add(int(ack_id))
                if len(self.acked) == len(self.job_ids) and not self.subscribed.done():
                    self.subscribed.set_result(None)
            else:
                self._fail(f"subscribe refused: {ack}")
        elif text.startswith(f"44{ns}"):
            self._fail(f"connect refused: {text[:200]}")
        elif text.startswith("1"):  # Engine.IO close
            self.close()

    def _send(self, text: str) -> None:
        self.ws.send_text(text.encode())
        self._flush()

    def _flush(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            data = self.ws.data_to_send()
            if data:
                self.transport.write(b"".join(data))

    def _fail(self, why: str) -> None:
        if not self.subscribed.done():
            self.subscribed.set_exception(RuntimeError(why))

    def close(self) -> None:
        """Close the websocket (Engine.IO close packet, then the close handshake)."""
        if self.transport is None or self.transport.is_closing():
            return
        self._send("1")
        self.ws.send_close()
        self._flush()
        self.transport.close()


async def subscribe(url: str, namespace: str, token: str, job_ids: Sequence[str],
                    on_event: Callable[[dict[str, Any], float], None],
                    timeout: float) -> Subscriber:
    """A connected subscriber, each of its ``subscribe`` acknowledged."""
    host_port = url.split("://", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    loop = asyncio.get_running_loop()
    _, sub = await loop.create_connection(
        lambda: Subscriber(url, namespace, token, job_ids, on_event), host, int(port))
    try:
        await asyncio.wait_for(sub.subscribed, timeout)
    except BaseException:
        sub.close()
        raise
    return sub
