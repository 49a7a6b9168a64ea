"""``GET {base}/models`` and ``GET {base}/models/{id}``: what this gateway serves, in OpenAI's
list shape, with each model's parameters described so clients can build forms from them."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from proxy.http.responses import JSONBody
from proxy.request.describe import describe_parameters
from proxy.routing.table import ServedModel
from proxy.service.gateway import Gateway


def model_card(served: ServedModel) -> dict[str, Any]:
    rules = served.rules
    price = served.price
    return {
        "id": served.name,
        "object": "model",
        "created": 0,
        "owned_by": served.provider_name,
        "provider": served.provider_name,
        "upstream_model": served.upstream_model,
        "aliases": list(served.config.aliases),
        "capabilities": {
            "generations": True,
            "edits": rules.edits,
            "streaming": "native" if rules.streaming else "emulated",
        },
        "parameters": describe_parameters(rules),
        "pricing": None if price is None else {
            "currency": "USD",
            "tokens_per_million": price.tokens or None,
            "per_image": price.per_image or None,
            "source": price.source,
            "taken": price.taken,
        },
    }


async def list_models(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    gateway.keys.authenticate_request(request)
    return JSONBody({"object": "list",
                     "data": [model_card(served) for served in gateway.models.models]})


async def get_model(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    gateway.keys.authenticate_request(request)
    return JSONBody(model_card(gateway.models.resolve(request.path_params["model"])))
