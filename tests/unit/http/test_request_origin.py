"""The origin an image request's hosted URLs are built on reads the request as Starlette's
``request.url`` does: the Host header, else the server's address (its default port left out)."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from proxy.http.routes.images import request_origin


@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize("headers", [[(b"host", b"img.example.com:8443")], [(b"host", b"a")],
                                     [(b"x-other", b"1"), (b"host", b"[::1]:9000")], []])
@pytest.mark.parametrize("server", [("10.0.0.1", 80), ("10.0.0.1", 443), ("h", 8080)])
def test_the_origin_is_what_starlette_reads(scheme: str, headers: list[tuple[bytes, bytes]],
                                            server: tuple[str, int]) -> None:
    scope = {"type": "http", "scheme": scheme, "headers": headers, "server": server,
             "path": "/v1/images/generations", "query_string": b"", "root_path": ""}
    url = Request(scope).url
    assert request_origin(scope) == f"{url.scheme}://{url.netloc}"
