"""Build the ASGI application from a configuration: Starlette for HTTP, Socket.IO beside it."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import FrameType
from typing import Any

import socketio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from proxy.config import GatewayConfig, load_config, load_default_config
from proxy.core.errors import GatewayError
from proxy.http.direct import INTERNAL_ERROR, Dispatch, Endpoint, direct_endpoint
from proxy.http.docs import docs_routes
from proxy.http.files import file_route
from proxy.http.middleware import RequestIdMiddleware
from proxy.http.openapi import openapi_route
from proxy.http.playground import playground_routes
from proxy.http.responses import JSONBody, error_response
from proxy.http.routes.images import image_endpoints
from proxy.http.routes.jobs import get_job, get_job_events
from proxy.http.routes.models import get_model, list_models
from proxy.http.routes.usage import get_usage
from proxy.http.socket import ProcessManager, ProgressNamespace, RedisManager, watchers_here
from proxy.http.websocket import record_websockets
from proxy.observability import tracing
from proxy.service.gateway import Gateway
from proxy.service.images import ImageService
from proxy.storage import LocalImageStore

log = logging.getLogger("proxy.app")


async def _gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
    message = str(exc.detail)
    headers = dict(exc.headers or {})
    if exc.status_code == 404:
        message = f"No route for {request.method} {request.url.path}."
    elif exc.status_code == 405 and "allow" in {name.lower() for name in headers}:
        # Starlette's ``Allow`` header (the methods the path takes) stays on the answer.
        allowed = next(value for name, value in headers.items() if name.lower() == "allow")
        message = f"{request.method} is not allowed on {request.url.path}: use {allowed}."
    return error_response(GatewayError(exc.status_code, message, code=code), headers)


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    # Starlette logs the traceback; the client gets the envelope, never the traceback.
    return error_response(INTERNAL_ERROR)


async def _healthz(request: Request) -> Response:
    return JSONBody({"status": "ok"})


def build_routes(config: GatewayConfig, gateway: Gateway) -> list[Route]:
    async def readyz(request: Request) -> Response:
        reason = await gateway.ready()
        if reason is None:
            return JSONBody({"status": "ready"})
        return JSONBody({"status": "not ready", "reason": reason}, status_code=503)

    routes = [
        Route("/healthz", _healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", gateway.metrics.endpoint, methods=["GET"]),
    ]
    if isinstance(gateway.store, LocalImageStore):
        # Hosted images: no key needed, the URL's signature is the credential.
        routes.append(file_route(gateway.store))
    routes += [Route(path, endpoint, methods=["POST"])
               for path, endpoint in image_routes(config).items()]
    for base in config.server.base_paths:
        routes += [
            Route(f"{base}/images/jobs/{{job_id}}", get_job, methods=["GET"]),
            Route(f"{base}/images/jobs/{{job_id}}/events", get_job_events, methods=["GET"]),
            Route(f"{base}/models", list_models, methods=["GET"]),
            Route(f"{base}/usage", get_usage, methods=["GET"]),
            Route(f"{base}/models/{{model:path}}", get_model, methods=["GET"]),
        ]
    routes += playground_routes(config.server.base_paths)
    routes += docs_routes()
    routes.append(openapi_route(config, default_model=gateway.models.default))
    return routes


def image_routes(config: GatewayConfig) -> dict[str, Endpoint]:
    """``POST {base}/images/generations`` and ``/images/edits`` of every mount."""
    routes: dict[str, Endpoint] = {}
    for base in config.server.base_paths:
        generation, edit = image_endpoints(config.server.response_format_by_path.get(base))
        routes[f"{base}/images/generations"] = generation
        routes[f"{base}/images/edits"] = edit
    return routes


SignalHandler = Callable[[int, FrameType | None], Any]

# How long a drained process waits, its listening sockets closed, for connections it accepted
# with no request yet to send one (a client sends its request right after connecting).
ACCEPTED_LINGER = 1.0


class ServerStop:
    """How the process stops when uvicorn serves the app (``image-proxy serve``, and each
    process of ``serve --workers N``). uvicorn installs its signal handlers before it starts the
    app; the lifespan finds the server through them and wraps them.

    - SIGTERM drains first. The listening socket stays open while the gateway refuses new image
      requests (503 ``server_shutting_down``, with ``retry-after``), ``/readyz`` answers 503, and
      the running jobs (JSON, SSE, async) go on for up to ``server.shutdown_grace`` seconds (those
      that outstay it are ended). Only then is the server told to stop: it closes its socket,
      waits for the answers still being written, runs the lifespan's shutdown, and the process
      exits 0. A second SIGTERM hands over to the server's own shutdown at once.
    - SIGINT (Ctrl-C) is the server's own: it closes its socket at once (a second one forces the
      exit); the gateway still refuses new jobs and gives the running ones the grace.
    """

    def __init__(self, gateway: Gateway, server: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.gateway = gateway
        self.server = server
        self.loop = loop
        self._server_handlers: dict[int, SignalHandler] = {
            sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
        self._ours: dict[int, SignalHandler] = {signal.SIGTERM: self._on_sigterm,
                                                signal.SIGINT: self._on_sigint}
        self._draining = False
        self._drain: asyncio.Task[None] | None = None

    @classmethod
    def install(cls, gateway: Gateway) -> ServerStop | None:
        """Take SIGTERM and SIGINT over from the uvicorn server running this app; None (nothing
        done) when there is none: a server in a thread, or another ASGI server."""
        if threading.current_thread() is not threading.main_thread():
            return None  # only the main thread handles signals
        server = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
        if not hasattr(server, "should_exit"):
            return None
        stop = cls(gateway, server, asyncio.get_running_loop())
        for sig, handler in stop._ours.items():
            signal.signal(sig, handler)
        return stop

    def uninstall(self) -> None:
        """Give the signals back to the server (when it did not already take them back)."""
        for sig, handler in self._ours.items():
            if signal.getsignal(sig) == handler:
                signal.signal(sig, self._server_handlers[sig])
        if self._drain is not None:
            self._drain.cancel()

    def _on_sigterm(self, sig: int, frame: FrameType | None) -> None:
        if self._draining or self.server.should_exit:
            self._hand_over(sig, frame)  # again, or already stopping: the server's way, now
            return
        self._draining = True
        self.loop.call_soon_threadsafe(self._start_drain)

    def _on_sigint(self, sig: int, frame: FrameType | None) -> None:
        self.loop.call_soon_threadsafe(self.gateway.begin_shutdown)
        self._hand_over(sig, frame)

    def _hand_over(self, sig: int, frame: FrameType | None) -> None:
        handler = self._server_handlers[sig]
        if callable(handler):
            handler(sig, frame)

    def _start_drain(self) -> None:
        self._drain = self.loop.create_task(self._drain_then_stop(), name="drain")

    async def _drain_then_stop(self) -> None:
        try:
            await self.gateway.drain()
            await self._stop_accepting()
        finally:
            # Set directly, not through the server's handler: a drained process exits 0, where
            # uvicorn would raise the signal again once it stopped.
            self.server.should_exit = True

    async def _stop_accepting(self) -> None:
        """Close this process's listening sockets, then give the connections it accepted just
        before a moment to send their request. uvicorn's own shutdown closes every connection
        with no request under way; one accepted an instant earlier, whose request was still on
        its way, would be closed unanswered (under ``--workers N`` the other processes, still
        draining, keep the shared socket open, so clients go on connecting to it). Its request
        now gets the draining answer (503 for a new job, ``/healthz`` 200), and uvicorn's
        shutdown then ends its connection once that answer is written."""
        for listener in getattr(self.server, "servers", ()):
            listener.close()
        connections = getattr(getattr(self.server, "server_state", None), "connections", ())
        deadline = self.loop.time() + ACCEPTED_LINGER
        # Polled: uvicorn's connections say when a request starts by no event.
        while self.loop.time() < deadline and any(  # noqa: ASYNC110
                getattr(connection, "cycle", ...) is None for connection in connections):
            await asyncio.sleep(0.01)


# How ``serve --workers N`` hands the configuration to each worker process.
CONFIG_ENV = "IMAGE_PROXY_CONFIG"
OVERRIDES_ENV = "IMAGE_PROXY_SERVER_OVERRIDES"


def from_environment() -> ASGIApp:
    """The app of one ``serve --workers N`` worker: the configuration the parent named."""
    path = os.environ.get(CONFIG_ENV)
    config = load_config(path) if path else load_default_config()
    for name, value in json.loads(os.environ.get(OVERRIDES_ENV, "{}")).items():
        setattr(config.server, name, value)
    return create_app(config)


def create_app(config: GatewayConfig) -> ASGIApp:
    # Traces, when the OTEL_* environment asks for them (once per process; off by default).
    tracing.configure_from_environment()
    gateway = Gateway.from_config(config)
    # Same-origin only unless origins are configured; /socket.io/ never passes through
    # Starlette's middleware, so CORS for it is set here.
    # With Redis, any process can emit to a subscriber connected to any other.
    manager: ProcessManager | RedisManager = ProcessManager()
    if config.redis_url and gateway.policy is not None:
        manager = RedisManager(config.redis_url, channel=f"{config.redis_prefix}:socketio",
                               policy=gateway.policy, timeout=config.fleet.store_timeout)
    sio = socketio.AsyncServer(
        async_mode="asgi",
        client_manager=manager,
        cors_allowed_origins=config.server.cors_origins or None,
        logger=False,
        engineio_logger=False,
    )
    record_websockets(sio)  # the fan-out writes to upgraded members' websockets too
    sio.register_namespace(ProgressNamespace(gateway.hub, gateway.keys,
                                             gateway.metrics.socket_clients))
    # Progress events go out only for watched jobs; who watches is in the server's rooms.
    gateway.hub.attach(sio, watchers_here(sio))

    service = ImageService(gateway)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        service.start()  # with Redis: takes queued async jobs
        stop = ServerStop.install(gateway)
        try:
            yield
        finally:
            if stop is not None:
                stop.uninstall()
            await sio.shutdown()
            if isinstance(manager, RedisManager):
                await manager.aclose()
            await service.aclose()
            await gateway.aclose()
            if tracing.active() is not None:
                await asyncio.to_thread(tracing.flush)

    app = Starlette(
        routes=build_routes(config, gateway),
        lifespan=lifespan,
        exception_handlers={
            GatewayError: _gateway_error,
            HTTPException: _http_error,
            Exception: _unexpected_error,
        },
    )
    app.state.gateway = gateway
    app.state.service = service
    # Socket.IO answers /socket.io/ and hands everything else (lifespan included: no startup
    # hooks are given to it) to Starlette; image requests skip both (proxy/http/direct.py).
    metrics = gateway.metrics
    rest = socketio.ASGIApp(sio, other_asgi_app=RequestIdMiddleware(app, metrics),
                            socketio_path="socket.io")
    return Dispatch({path: RequestIdMiddleware(direct_endpoint(endpoint, app), metrics, route=path)
                     for path, endpoint in image_routes(config).items()}, rest)
