"""The image endpoints' short way in.

Every image request used to cross Socket.IO's ASGI app, Starlette's error middleware, its
exception middleware, its router (a regular expression per route until one matches) and its
endpoint wrapper before reaching the code that does the work: a tenth of the event loop's time
on small requests. An image endpoint needs none of that: :class:`Dispatch` sends a ``POST`` to
an image path straight to it (through :class:`~proxy.http.middleware.RequestIdMiddleware`, for
the request id and the access log), and :func:`direct_endpoint` gives it what Starlette's layers
did: the app on the request, and a ``GatewayError`` (or a bug) answered in OpenAI's envelope.
Everything else takes the full way, unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from proxy.core.errors import GatewayError
from proxy.http.responses import error_response

log = logging.getLogger("proxy.http")

Endpoint = Callable[[Request], Awaitable[Response]]

INTERNAL_ERROR = GatewayError(
    500, "The gateway failed while handling this request; it has been logged.",
    type="server_error", code="internal_error")


def direct_endpoint(endpoint: Endpoint, app: ASGIApp) -> ASGIApp:
    """``endpoint`` as an ASGI app of its own; ``app`` is what ``request.app`` names."""

    async def handle(scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = app
        try:
            response = await endpoint(Request(scope, receive, send))
        except GatewayError as error:
            response = error_response(error)
        except Exception:
            log.exception("%s %s failed", scope["method"], scope["path"])
            response = error_response(INTERNAL_ERROR)
        # Writing the answer (a stream's too) fails the way it would behind Starlette: the
        # server logs it and closes the connection.
        await response(scope, receive, send)

    return handle


class Dispatch:
    """The outermost app: ``POST`` to a path in ``direct`` goes there, the rest to ``rest``."""

    __slots__ = ("_direct", "_rest")

    def __init__(self, direct: Mapping[str, ASGIApp], rest: ASGIApp) -> None:
        self._direct = dict(direct)
        self._rest = rest

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            target = self._direct.get(scope["path"])
            if target is not None:
                await target(scope, receive, send)
                return
        await self._rest(scope, receive, send)
