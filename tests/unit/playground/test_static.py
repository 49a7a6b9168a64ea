"""The web playground's routes and vendored assets, without a server (Starlette's TestClient).

The page itself, in headless Chromium against a real gateway, is in ``tests/e2e/playground/``."""

from __future__ import annotations

import hashlib

from starlette.applications import Starlette
from starlette.testclient import TestClient

from proxy.http.playground import STATIC, api_base, playground_routes

SOCKET_IO_SHA256 = "d5d79a35039e860b32bdef4795528b05c2f788d4b2d9dacc913120e2878f7b3f"


def test_routes_serve_the_page_and_only_its_assets() -> None:
    client = TestClient(Starlette(routes=playground_routes(["/v1", "/api/v1"])))
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<meta name="api-base" content="/v1">' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    for name, kind in [("playground.js", "text/javascript"), ("playground.css", "text/css"),
                       ("socket.io.min.js", "text/javascript")]:
        asset = client.get(f"/playground/{name}")
        assert asset.status_code == 200 and asset.headers["content-type"].startswith(kind)
    for name in ["README.md", "index.html", "..%2F__init__.py", "nope.js"]:
        assert client.get(f"/playground/{name}").status_code == 404
    assert api_base(["/api/v1", "/v3"]) == "/api/v1" and api_base([""]) == ""


def test_vendored_socket_io_client_is_the_recorded_release() -> None:
    data = (STATIC / "socket.io.min.js").read_bytes()
    assert hashlib.sha256(data).hexdigest() == SOCKET_IO_SHA256
    assert b"Socket.IO v4.8.4" in data[:200]
