"""Pure ASGI middleware (no response buffering, so streams stay streams)."""

from __future__ import annotations

import logging
import time
import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from proxy.http.responses import ERROR_CODE_STATE
from proxy.jobs.job import new_job_id
from proxy.observability import tracing
from proxy.observability.logs import request_id as log_context
from proxy.observability.metrics import UNMATCHED, Metrics

access = logging.getLogger("proxy.access")

# Not traced: probes and scrapes, every few seconds, would bury the requests in the traces.
UNTRACED = frozenset(("/healthz", "/readyz", "/metrics"))


def _client_job_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-job-id":
            try:
                return str(uuid.UUID(value.decode("latin-1")))
            except ValueError:
                return None
    return None


class RequestIdMiddleware:
    """Give every HTTP request an id and put it in ``x-request-id`` on every response.

    It wraps the whole application, outside Starlette's error handling, so 404s, 405s and our
    500s carry the id too. The id is also the job id for image requests.

    With ``metrics``, it counts every request once answered: by ``route`` (an image endpoint's
    own path, given), or else by the template of the Starlette route that answered it, and by
    status code and error code (what an error answer noted in the scope's state).
    """

    def __init__(self, app: ASGIApp, metrics: Metrics | None = None,
                 route: str | None = None) -> None:
        self.app = app
        self.metrics = metrics
        # The route's template when this wraps one route (an image endpoint), for the span.
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # A client-chosen job id (a UUID in X-Job-Id) is also the request id, so the
        # x-request-id header, the response id and the progress room all agree.
        request_id = _client_job_id(scope) or new_job_id()
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        context = log_context.set(request_id)
        started = time.monotonic()
        status = 500
        traces = tracing.active()
        span = token = None
        if traces is not None and scope["path"] not in UNTRACED:
            span = traces.start(scope["method"], "server", _server_attributes(scope, request_id),
                                headers=scope["headers"])
            token = traces.activate(span)

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                if "x-request-id" not in headers:
                    # The job id, when the route learnt it from the request (Idempotency-Key).
                    headers.append("x-request-id", state["request_id"])
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if self.metrics is not None:
                route = self.route
                if route is None:
                    matched = scope.get("route")  # set by Starlette's router
                    route = getattr(matched, "path", None) or UNMATCHED
                self.metrics.request_answered(route, status, state.get(ERROR_CODE_STATE, ""))
            if access.isEnabledFor(logging.INFO):
                # The path without its query string: signed URLs must not reach the logs.
                access.info("%s %s %d", scope["method"], scope["path"], status, extra={
                    "method": scope["method"], "path": scope["path"], "status": status,
                    "duration_ms": round((time.monotonic() - started) * 1000, 1)})
            if span is not None:
                assert traces is not None
                traces.deactivate(token)
                route = self.route or getattr(scope.get("route"), "path", None)
                if route:
                    span.update_name(f"{scope['method']} {route}")
                traces.end(span, {"http.route": route, "http.response.status_code": status},
                           error=str(status) if status >= 500 else None)
            log_context.reset(context)


def _server_attributes(scope: Scope, request_id: str) -> dict[str, object]:
    """The request's attributes in the HTTP semantic conventions (no query string)."""
    attributes: dict[str, object] = {
        "http.request.method": scope["method"], "url.path": scope["path"],
        "url.scheme": scope.get("scheme", "http"), "image_proxy.request_id": request_id}
    server, client = scope.get("server"), scope.get("client")
    if server:
        attributes["server.address"], attributes["server.port"] = server[0], server[1]
    if client:
        attributes["client.address"] = client[0]
    for name, value in scope["headers"]:
        if name == b"user-agent":
            attributes["user_agent.original"] = value.decode("latin-1")
    return attributes
