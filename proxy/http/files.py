"""``GET|HEAD {url_path}/{name}?expires=..&signature=..``: images kept by the local store, served
under signed, expiring URLs. No key is needed: the signature is the credential."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from proxy.core.errors import GatewayError
from proxy.http.responses import error_response
from proxy.storage import LocalImageStore


def file_route(store: LocalImageStore) -> Route:
    """The route serving ``store``'s URLs: mounted outside the API-key check."""

    async def serve(request: Request) -> Response:
        try:
            found = await store.open(request.path_params.get("name", ""),
                                     request.query_params.get("expires"),
                                     request.query_params.get("signature"))
        except GatewayError as error:
            return error_response(error)
        headers = {
            "cache-control": f"private, max-age={found.remaining}",
            "x-content-type-options": "nosniff",
            "content-security-policy": "default-src 'none'",
        }
        if request.method == "HEAD":
            headers["content-length"] = str(len(found.data))
            return Response(status_code=200, media_type=found.content_type, headers=headers)
        return Response(found.data, media_type=found.content_type, headers=headers)

    return Route(f"{store.url_path}/{{name}}", serve, methods=["GET", "HEAD"],
                 name="image_file")
