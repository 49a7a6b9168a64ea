"""The API reference at ``/docs`` in headless Chromium against a real gateway: it renders the
gateway's own ``/openapi.json`` from vendored files, and the page asks nothing of any other
host (every request it makes is recorded and checked). The vendored files' checksums are in
``tests/unit/docs/``."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from proxy.auth import new_key
from tests.support.browser import artifact, chromium
from tests.support.gateways import start_gateway
from tests.support.servers import RunningServer

KEY, KEY_HASH = new_key()
CONFIG = f"""
keys:
  - {{name: docs-reader, key_sha256: {KEY_HASH}}}
server:
  base_paths: ["/v1", "/api/v1"]
models:
  - {{name: local, provider: local}}
"""


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with start_gateway(CONFIG) as running:
        yield running


@pytest.fixture(scope="module")
def browser():
    with chromium() as running:
        yield running


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def test_docs_renders_every_operation_with_no_request_beyond_the_gateway(server, browser) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    requests: list[str] = []
    problems: list[str] = []
    # Every request the page makes, whatever its kind (document, script, fetch, image, font).
    context.on("request", lambda request: requests.append(request.url))
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.on("pageerror", lambda exc: problems.append(f"uncaught: {exc}"))
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    try:
        response = page.goto(f"{server.url}/docs")
        assert response is not None and response.status == 200
        page.wait_for_selector(".opblock-summary-path")
        paths = page.locator(".opblock-summary-path").all_inner_texts()
        # Every mount's image operations, and the gateway's own endpoints.
        for path in ["/v1/images/generations", "/v1/images/edits", "/api/v1/images/generations",
                     "/v1/models", "/v1/usage", "/healthz", "/openapi.json"]:
            assert any(p.replace("\u200b", "") == path for p in paths), (path, paths)
        assert "image-proxy" in page.locator(".info .title").inner_text()
        # Keys are configured: the page offers to authorize with one (bearer).
        assert page.locator(".auth-wrapper .authorize").count() == 1

        # An operation opens, with its parameters and responses, from the local document.
        page.locator(".opblock-summary-path", has_text="/v1/images/generations").first.click()
        page.wait_for_selector(".opblock.is-open .responses-table")
        page.screenshot(path=str(artifact("docs.png")), full_page=False)

        # "Try it out" calls this gateway from the page (the CSP allows only its own origin).
        health = page.locator(".opblock", has=page.locator(".opblock-summary-path",
                                                            has_text="/healthz"))
        health.locator(".opblock-summary").click()
        health.locator(".try-out__btn").click()
        health.locator(".execute").click()
        status = health.locator(".live-responses-table tr.response .response-col_status").first
        status.wait_for()
        assert status.inner_text().strip() == "200"
        assert '"status": "ok"' in health.locator(".live-responses-table").inner_text()

        # With a key given to "Authorize", "Try it out" calls a keyed endpoint with it.
        page.locator(".auth-wrapper .authorize").click()
        page.locator(".modal-ux input").fill(KEY)
        page.locator(".modal-ux .auth-btn-wrapper .authorize").click()
        page.locator(".modal-ux .btn-done").click()
        models = page.locator(".opblock", has=page.locator(".opblock-summary-path",
                                                            has_text="/v1/models"))
        models = models.filter(has_not=page.locator(".opblock-summary-path",
                                                    has_text="/v1/models/")).first
        models.locator(".opblock-summary").click()
        models.locator(".try-out__btn").click()
        models.locator(".execute").click()
        status = models.locator(".live-responses-table tr.response .response-col_status").first
        status.wait_for()
        assert status.inner_text().strip() == "200"
        assert '"id": "local"' in models.locator(".live-responses-table").inner_text()

        # Back to the playground: the link resolves to the gateway's own page.
        assert page.locator("#playground-link").evaluate("a => a.href") == f"{server.url}/"
    finally:
        context.close()

    gateway = origin(server.url)
    assert requests, "the page made no request at all"
    elsewhere = [url for url in requests
                 if origin(url) != gateway and not url.startswith("data:")]
    assert not elsewhere, elsewhere
    assert f"{server.url}/openapi.json" in requests
    assert f"{server.url}/docs/swagger-ui-bundle.js" in requests
    assert not problems, problems
