"""``GET {base}/usage``: what a key spent (an admin key: everyone, or one key by ``key=``)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from proxy.core.errors import GatewayError
from proxy.http.responses import JSONBody
from proxy.http.usage_query import usage_endpoint
from proxy.service.gateway import Gateway


async def get_usage(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    key = gateway.keys.authenticate_request(request)
    if gateway.usage is None:
        raise GatewayError(404, "Usage tracking is disabled on this gateway (usage.enabled).",
                           code="usage_disabled")
    return JSONBody(await usage_endpoint(request, gateway.usage, key_name=key.name,
                                         is_admin=key.admin))
