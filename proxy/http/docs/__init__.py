"""The API reference at ``/docs``: Swagger UI showing the gateway's own ``/openapi.json``.

Swagger UI is vendored in ``static/`` (``vendored.json`` records the npm package, its version,
where it came from and every file's SHA-256); nothing is loaded from a CDN. The page uses
relative URLs (``docs/…`` for its files, ``openapi.json`` for the document, ``./`` for the
playground), so it loads behind a reverse proxy that serves the gateway under a prefix too
("Try it out" calls the paths the document names, from the root).
"""

from __future__ import annotations

from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import Route

STATIC = Path(__file__).parent / "static"
DOCS_PATH = "/docs"

ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "docs.js": "text/javascript; charset=utf-8",
    "docs.css": "text/css; charset=utf-8",
}

# Only the page's own files run in it. Swagger UI sets element styles from script and shows
# SVG icons as data: URLs; "Try it out" calls this gateway (connect-src 'self').
PAGE_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "style-src 'self' 'unsafe-inline'; script-src 'self'; object-src 'none'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


def docs_routes() -> list[Route]:
    """``GET /docs`` (the page) and ``GET /docs/{asset}`` (its files)."""
    page = (STATIC / "index.html").read_text(encoding="utf-8")

    async def index(request: Request) -> Response:
        return HTMLResponse(page, headers=PAGE_HEADERS)

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        media_type = ASSETS.get(name)
        if media_type is None:
            raise HTTPException(404)
        return FileResponse(STATIC / name, media_type=media_type,
                            headers={"cache-control": "no-cache",
                                     "x-content-type-options": "nosniff"})

    return [
        Route(DOCS_PATH, index, methods=["GET"]),
        Route(f"{DOCS_PATH}/{{name}}", asset, methods=["GET"]),
    ]


__all__ = ["DOCS_PATH", "STATIC", "docs_routes"]
