"""The web playground: a static page at ``/`` that talks to the gateway like any client would.

Plain HTML, CSS and JavaScript shipped in ``static/`` (no build step). The page calls the API
under one base path (``/v1`` when it is mounted, else the first configured one), which is written
into the page when it is served. Assets are served from a fixed list, under ``/playground/``.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

from starlette.routing import Route

from proxy.http.pages import page_routes

STATIC = Path(__file__).parent / "static"

ASSETS = {
    "playground.css": "text/css; charset=utf-8",
    "playground.js": "text/javascript; charset=utf-8",
    "socket.io.min.js": "text/javascript; charset=utf-8",
}

# The page holds a gateway key: nothing but its own files may run in it or frame it.
PAGE_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
        "style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


def api_base(base_paths: Sequence[str]) -> str:
    """The base path the page calls: ``/v1`` if served, else the first one."""
    paths = list(base_paths)
    if not paths or "/v1" in paths:
        return "/v1"
    return paths[0].rstrip("/")


def playground_routes(base_paths: Sequence[str] = ("/v1",)) -> list[Route]:
    """``GET /`` (the page) and ``GET /playground/{asset}`` (its files)."""
    page = (STATIC / "index.html").read_text(encoding="utf-8").replace(
        "{{API_BASE}}", html.escape(api_base(base_paths), quote=True))
    return page_routes("/", page, PAGE_HEADERS, "/playground", STATIC, ASSETS)


__all__ = ["playground_routes"]
