"""``GET {base}/models``: the models this gateway serves, in OpenAI's list shape."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from proxy.gateway import Gateway
from proxy.responses import JSONBody


async def list_models(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    data = []
    for served in gateway.models.models:
        rules = served.rules
        data.append({
            "id": served.name,
            "object": "model",
            "created": 0,
            "owned_by": served.provider_name,
            "aliases": served.config.aliases,
            "parameters": rules.model_dump(exclude_none=True),
        })
    return JSONBody({"object": "list", "data": data})
