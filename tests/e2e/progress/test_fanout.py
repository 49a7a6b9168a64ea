"""The fan-out's ways to a room's members, on a real uvicorn server with the gateway's websocket
protocol and real clients: websocket members get the frame written straight to their connection
(uncompressed, also to a member that negotiated ``permessage-deflate``, whose compressed messages
from uvicorn must still decode after it, and to a member that upgraded from long-polling once
its upgrade is complete), long-polling members through Engine.IO's queue. Every
member gets every event once and in order, across slices; a member whose connection is lost in
the middle of a fan-out is skipped, the others still get everything."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import aiohttp
import socketio

from proxy.http.socket import SLICE, ProcessManager
from proxy.http.websocket import record_websockets, session_sender
from tests.support.progress_client import NAMESPACE
from tests.support.servers import RunningServer, serve

ROOM = "room"
EVENTS = 12


class FanoutApp(socketio.AsyncNamespace):
    """``subscribe``: join the room (the ack says whether the fan-out can write to the member's
    connection directly); ``burst {n, drop}``: lose the connection of member ``drop`` (if any),
    then emit ``n`` numbered events to the room."""

    def __init__(self, server: socketio.AsyncServer) -> None:
        super().__init__(NAMESPACE)
        self.sio = server

    def sender(self, sid: str) -> Any:
        eio_sid = self.sio.manager.eio_sid_from_sid(sid, NAMESPACE)
        return session_sender(self.sio.eio.sockets.get(eio_sid))

    async def on_subscribe(self, sid: str, data: Any) -> dict[str, Any]:
        await self.enter_room(sid, ROOM)
        return {"direct": self.sender(sid) is not None}

    async def on_burst(self, sid: str, data: dict[str, Any]) -> None:
        if data.get("drop"):
            send = self.sender(data["drop"])
            assert send is not None
            send.__self__.transport.abort()  # type: ignore[attr-defined]  # still in the room
        for seq in range(data["n"]):
            await self.sio.emit("progress", {"seq": seq, "text": "é" * seq}, to=ROOM,
                                namespace=NAMESPACE)


@contextmanager
def fanout_server() -> Iterator[RunningServer]:
    # Pinged every second: a long-polling client's disconnect waits for its pending poll
    # (ping_interval + ping_timeout at most).
    sio = socketio.AsyncServer(async_mode="asgi", client_manager=ProcessManager(),
                               ping_interval=1, ping_timeout=2, logger=False,
                               engineio_logger=False)
    record_websockets(sio)  # as the gateway's app does
    sio.register_namespace(FanoutApp(sio))
    with serve(socketio.ASGIApp(sio), lifespan="off") as server:
        yield server


class Received:
    """The ``seq`` of every event a member got, in order."""

    def __init__(self) -> None:
        self.seqs: list[int] = []
        self.pings = 0  # Engine.IO pings (a raw member counts them)
        self._more = asyncio.Event()

    def add(self, data: dict[str, Any]) -> None:
        assert data["text"] == "é" * data["seq"]
        self.seqs.append(data["seq"])
        self._more.set()

    def pinged(self) -> None:
        self.pings += 1
        self._more.set()

    async def wait_for(self, count: int, pings: int = 0) -> None:
        async def wait() -> None:
            while len(self.seqs) < count or self.pings < pings:
                self._more.clear()
                await self._more.wait()
        await asyncio.wait_for(wait(), 20)


class Member(Received):
    """A python-socketio client: websocket, long-polling only, or ``upgrading`` (long-polling
    first, then upgraded to a websocket, as socket.io-client does by default)."""

    def __init__(self, transport: str) -> None:
        super().__init__()
        self.transports = ["polling", "websocket"] if transport == "upgrading" else [transport]
        self.client = socketio.AsyncClient(reconnection=False)
        self.client.on("progress", self.add, namespace=NAMESPACE)

    async def join(self, url: str) -> bool:
        await self.client.connect(url, namespaces=[NAMESPACE], transports=self.transports,
                                  wait_timeout=10)
        if len(self.transports) > 1:  # the client upgrades once connected
            for _ in range(200):
                if self.client.eio.current_transport == "websocket":
                    break
                await asyncio.sleep(0.05)
            assert self.client.eio.current_transport == "websocket", "it upgraded"
        ack = await self.client.call("subscribe", {}, namespace=NAMESPACE, timeout=10)
        return ack["direct"]


@asynccontextmanager
async def deflate_member(url: str, received: Received) -> AsyncIterator[str]:
    """A raw websocket client speaking Engine.IO/Socket.IO v4 that negotiates
    ``permessage-deflate`` (as browsers do); yields its Socket.IO sid, records the events and
    counts the pings (Engine.IO's, sent compressed by uvicorn)."""
    async with aiohttp.ClientSession() as session, session.ws_connect(
            f"{url}/socket.io/?EIO=4&transport=websocket", compress=15) as ws:
        assert ws.compress, "permessage-deflate was negotiated"
        assert (await ws.receive_str()).startswith("0")
        await ws.send_str(f"40{NAMESPACE},")
        connected = await ws.receive_str()
        sid = json.loads(connected.split(",", 1)[1])["sid"]
        await ws.send_str(f'42{NAMESPACE},1["subscribe",{{}}]')
        assert await ws.receive_str() == f'43{NAMESPACE},1[{{"direct":true}}]'

        async def read() -> None:
            async for message in ws:
                if message.data == "2":
                    await ws.send_str("3")
                    received.pinged()
                elif message.data.startswith(f'42{NAMESPACE},["progress"'):
                    received.add(json.loads(message.data.split(",", 1)[1])[1])

        reader = asyncio.create_task(read())
        try:
            yield sid
        finally:
            reader.cancel()


async def test_every_member_gets_every_event_once_and_in_order() -> None:
    members = [Member("websocket") for _ in range(2 * SLICE + 3)] + [Member("polling"),
                                                                    Member("upgrading")]
    deflated = Received()
    with fanout_server() as server:
        try:
            direct = await asyncio.gather(*(m.join(server.url) for m in members))
            async with deflate_member(server.url, deflated):
                # Websocket members (also the upgraded one) are written to directly, the
                # long-polling one is not.
                assert direct == [True] * (2 * SLICE + 3) + [False, True]
                await members[0].client.emit("burst", {"n": EVENTS}, namespace=NAMESPACE)
                everyone = [*members, deflated]
                await asyncio.gather(*(r.wait_for(EVENTS) for r in everyone))
                # What uvicorn compresses after the frames written uncompressed still decodes
                # (a ping comes every second).
                await deflated.wait_for(EVENTS, pings=deflated.pings + 1)
                await asyncio.sleep(0.2)  # nothing more comes
        finally:
            await asyncio.gather(*(m.client.disconnect() for m in members))
    for received in everyone:
        assert received.seqs == list(range(EVENTS))


async def test_a_member_lost_in_the_middle_of_a_fanout_does_not_stop_the_others() -> None:
    members = [Member("websocket") for _ in range(SLICE + 3)]
    lost = Received()
    with fanout_server() as server:
        try:
            await asyncio.gather(*(m.join(server.url) for m in members))
            async with deflate_member(server.url, lost) as victim:
                await members[0].client.emit("burst", {"n": EVENTS, "drop": victim},
                                             namespace=NAMESPACE)
                await asyncio.gather(*(m.wait_for(EVENTS) for m in members))
                # And the room still works once the lost member is gone.
                await members[0].client.emit("burst", {"n": 2}, namespace=NAMESPACE)
                await asyncio.gather(*(m.wait_for(EVENTS + 2) for m in members))
        finally:
            await asyncio.gather(*(m.client.disconnect() for m in members))
    assert lost.seqs == []
    for member in members:
        assert member.seqs == [*range(EVENTS), 0, 1]
