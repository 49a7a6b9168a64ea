"""The API reference at ``/docs``: Swagger UI showing the gateway's own ``/openapi.json``.

Swagger UI is vendored in ``static/`` (``vendored.json`` records the npm package, its version,
where it came from and every file's SHA-256); nothing is loaded from a CDN. The page uses
relative URLs (``docs/…`` for its files, ``openapi.json`` for the document, ``./`` for the
playground), so it loads behind a reverse proxy that serves the gateway under a prefix too
("Try it out" calls the paths the document names, from the root).
"""

from __future__ import annotations

from pathlib import Path

from starlette.routing import Route

from proxy.http.pages import page_routes

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
    return page_routes(DOCS_PATH, page, PAGE_HEADERS, DOCS_PATH, STATIC, ASSETS)


__all__ = ["DOCS_PATH", "STATIC", "docs_routes"]
