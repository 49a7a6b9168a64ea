"""The gateway's websocket protocol: uvicorn's own (``websockets-sansio``, what ``ws="auto"``
picks), plus one way for the Socket.IO fan-out to write a message to many connections at once.

A ``progress`` event to a room of a thousand subscribers is the same text for all of them. Through
Engine.IO, each member costs a queue put, a wake-up of that connection's writer task (with a
timeout task per wait) and a websocket frame built for it: about 60 µs of the event loop per
member, most of a 1,000-member fan-out. Here the frame is built once
(:class:`PreparedMessage`) and written to each connection's transport as it is: a connection
offers :meth:`FanoutProtocol.send_prepared` to the application through an ASGI scope extension
(``scope["extensions"][EXTENSION]``), which :mod:`proxy.http.socket` finds in the environ of the
connection's Engine.IO session.

Written at once, in the order called, never waiting: a message goes into the transport's buffer
even when the peer reads slowly (as Engine.IO's queue would hold it: unbounded either way; a
client that stops reading is dropped by Engine.IO's ping timeout). A connection that negotiated
``permessage-deflate`` (browsers do) gets the same uncompressed frame: the extension lets a
sender leave any message uncompressed (RSV1 clear, RFC 7692 §6), and such a message passes by
both sides' compression contexts, so what uvicorn sends compressed afterwards still decodes.
Compressing a ~300-byte event for each member would cost ~20-30 µs more per member. Frames
written here and those of uvicorn's own ``send`` never interleave (each is one
``transport.write``); what Engine.IO still has queued for the connection (pings, acks) may go
after a message written here.

A member that connected by long-polling and then upgraded to a websocket (socket.io-client's
default, so most browsers) gets the same once its upgrade is complete: Engine.IO's session
keeps the environ of its first (polling) request, so the websocket's own is recorded on the
session when it opens (:class:`RecordingWebSocket`). A progress event still queued from before
the upgrade may then arrive after a newer one written here; clients drop what is older than the
``seq`` they hold (the README's client does).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import socketio
from engineio.async_drivers.asgi import WebSocket as EngineIOWebSocket
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import Frame, Opcode
from websockets.protocol import State

# The ASGI scope extension under which a websocket connection offers ``send_prepared``.
EXTENSION = "image-proxy.send_prepared"
# The value of ``uvicorn.Config(ws=...)`` that serves websockets with this protocol.
PROTOCOL = "proxy.http.websocket:FanoutProtocol"


class PreparedMessage:
    """A text message encoded once: its UTF-8 bytes and its unmasked, uncompressed frame (what a
    server sends on a connection without extensions)."""

    __slots__ = ("data", "frame")

    def __init__(self, text: str) -> None:
        self.data = text.encode()
        self.frame = Frame(Opcode.TEXT, self.data).serialize(mask=False, extensions=[])


class FanoutProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websocket protocol, offering :meth:`send_prepared` in each connection's scope."""

    _plain: bool | None = None  # whether the shared uncompressed frame may be written

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # absent when the handshake was refused
        if scope is not None:
            scope["extensions"][EXTENSION] = self.send_prepared

    def send_prepared(self, message: PreparedMessage) -> bool:
        """Write ``message`` now; False (nothing written) when the connection is closing or
        closed, or its handshake is not done."""
        if (not self.handshake_complete or self.close_sent or self.disconnected
                or self.initial_response is not None or self.conn.state is not State.OPEN
                or self.transport.is_closing()):
            return False
        if self._plain is None:  # the extensions negotiated: known once the handshake is done
            self._plain = all(isinstance(e, PerMessageDeflate) for e in self.conn.extensions)
        if self._plain:
            self.transport.write(message.frame)
        else:  # an extension that must see every frame (uvicorn offers none)
            self.conn.send_text(message.data)
            self.transport.write(b"".join(self.conn.data_to_send()))
        return True


# Where an Engine.IO session keeps the environ (the ASGI scope) of its websocket.
WEBSOCKET_ENVIRON = "image_proxy_websocket_environ"


class RecordingWebSocket(EngineIOWebSocket):
    """Engine.IO's ASGI websocket, which also records its environ on the Engine.IO session it
    serves (the session's ``_websocket_handler`` is what it is made with)."""

    async def __call__(self, environ: dict[str, Any]) -> Any:
        session = getattr(self.handler, "__self__", None)
        if session is not None:
            setattr(session, WEBSOCKET_ENVIRON, environ)
        return await super().__call__(environ)


def record_websockets(server: socketio.AsyncServer) -> None:
    """Have ``server``'s Engine.IO (ASGI mode) open websockets with :class:`RecordingWebSocket`
    (python-engineio takes the class from its async driver's table, with no public setting)."""
    drivers = server.eio._async
    if drivers.get("websocket") is EngineIOWebSocket:
        server.eio._async = {**drivers, "websocket": RecordingWebSocket}


def direct_sender(environ: dict[str, Any] | None) -> Callable[[PreparedMessage], bool] | None:
    """The ``send_prepared`` of the websocket connection ``environ`` is of, if it offers it."""
    if environ is None:
        return None
    scope = environ.get("asgi.scope")
    if scope is None or scope.get("type") != "websocket":
        return None
    return scope.get("extensions", {}).get(EXTENSION)


def session_sender(session: Any) -> Callable[[PreparedMessage], bool] | None:
    """The ``send_prepared`` of an Engine.IO session's websocket, once the session uses it
    (connected by websocket, or its upgrade from long-polling complete); None otherwise."""
    if session is None or not session.upgraded or session.upgrading:
        return None
    return direct_sender(getattr(session, WEBSOCKET_ENVIRON, None))
