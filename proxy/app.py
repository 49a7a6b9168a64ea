"""Build the ASGI application from a configuration: Starlette for HTTP, Socket.IO beside it."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import socketio
from sse_starlette.sse import AppStatus
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from proxy.config import GatewayConfig, load_config, load_default_config
from proxy.core.errors import GatewayError
from proxy.http.direct import INTERNAL_ERROR, Dispatch, Endpoint, direct_endpoint
from proxy.http.files import file_route
from proxy.http.middleware import RequestIdMiddleware
from proxy.http.openapi import openapi_route
from proxy.http.playground import playground_routes
from proxy.http.responses import JSONBody, error_response
from proxy.http.routes.images import image_endpoints
from proxy.http.routes.jobs import get_job
from proxy.http.routes.models import get_model, list_models
from proxy.http.routes.usage import get_usage
from proxy.http.socket import ProcessManager, ProgressNamespace, RedisManager, watchers_here
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
    message = (f"No route for {request.method} {request.url.path}." if exc.status_code == 404
               else str(exc.detail))
    return error_response(GatewayError(exc.status_code, message, code=code))


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
            Route(f"{base}/models", list_models, methods=["GET"]),
            Route(f"{base}/usage", get_usage, methods=["GET"]),
            Route(f"{base}/models/{{model:path}}", get_model, methods=["GET"]),
        ]
    routes += playground_routes(config.server.base_paths)
    routes.append(openapi_route(config))
    return routes


def image_routes(config: GatewayConfig) -> dict[str, Endpoint]:
    """``POST {base}/images/generations`` and ``/images/edits`` of every mount."""
    routes: dict[str, Endpoint] = {}
    for base in config.server.base_paths:
        generation, edit = image_endpoints(config.server.response_format_by_path.get(base))
        routes[f"{base}/images/generations"] = generation
        routes[f"{base}/images/edits"] = edit
    return routes


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
    gateway = Gateway.from_config(config)
    # Streams are ended by the gateway's own shutdown (after a grace period, with an error
    # event), not cancelled at the first signal as sse-starlette would.
    AppStatus.disable_automatic_graceful_drain()
    # Same-origin only unless origins are configured; /socket.io/ never passes through
    # Starlette's middleware, so CORS for it is set here.
    # With Redis, any process can emit to a subscriber connected to any other.
    manager = (RedisManager(config.redis_url, channel=f"{config.redis_prefix}:socketio")
               if config.redis_url else ProcessManager())
    sio = socketio.AsyncServer(
        async_mode="asgi",
        client_manager=manager,
        cors_allowed_origins=config.server.cors_origins or None,
        logger=False,
        engineio_logger=False,
    )
    sio.register_namespace(ProgressNamespace(gateway.hub, gateway.keys,
                                             gateway.metrics.socket_clients))
    # Progress events go out only for watched jobs; who watches is in the server's rooms.
    gateway.hub.attach(sio, watchers_here(sio))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            await sio.shutdown()
            await gateway.aclose()

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
    app.state.service = ImageService(gateway)
    # Socket.IO answers /socket.io/ and hands everything else (lifespan included: no startup
    # hooks are given to it) to Starlette; image requests skip both (proxy/http/direct.py).
    rest = socketio.ASGIApp(sio, other_asgi_app=RequestIdMiddleware(app),
                            socketio_path="socket.io")
    return Dispatch({path: RequestIdMiddleware(direct_endpoint(endpoint, app))
                     for path, endpoint in image_routes(config).items()}, rest)
