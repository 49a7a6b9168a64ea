"""A web page the gateway serves, and the files it loads: the playground (``/``) and the API
reference (``/docs``) are both one HTML page plus a fixed list of static files."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import Route

ASSET_HEADERS = {"cache-control": "no-cache", "x-content-type-options": "nosniff"}


def page_routes(path: str, page: str, headers: Mapping[str, str], assets_path: str,
                folder: Path, assets: Mapping[str, str]) -> list[Route]:
    """``GET path`` answers ``page`` (HTML) with ``headers``; ``GET assets_path/{name}`` answers
    the file ``name`` of ``folder`` if ``assets`` lists it (with its media type), else 404."""

    async def index(request: Request) -> Response:
        return HTMLResponse(page, headers=dict(headers))

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        media_type = assets.get(name)
        if media_type is None:
            raise HTTPException(404)
        return FileResponse(folder / name, media_type=media_type, headers=ASSET_HEADERS)

    return [
        Route(path, index, methods=["GET"]),
        Route(f"{assets_path.rstrip('/')}/{{name}}", asset, methods=["GET"]),
    ]
