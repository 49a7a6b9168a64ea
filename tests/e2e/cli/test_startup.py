"""What ``image-proxy serve`` says when it starts: the models it serves and the URLs of the
playground and the API reference, each of which answers."""

from __future__ import annotations

import json

import httpx

from tests.support.processes import serving


def test_startup_names_the_playground_and_docs_urls_and_both_answer(tmp_path) -> None:
    log = tmp_path / "serve.log"
    with serving(log=log) as url:
        lines = [json.loads(line) for line in log.read_text().splitlines()
                 if line.startswith("{")]
        messages = [line["message"] for line in lines if line["logger"] == "proxy.cli"]
        assert f"playground: {url}/" in messages, messages
        reference = next(m for m in messages if m.startswith("API reference: "))
        assert reference == (f"API reference: {url}/docs (OpenAPI document: "
                             f"{url}/openapi.json)")
        assert messages[0].startswith("image-proxy ") and "2 model(s)" in messages[0]
        page = httpx.get(f"{url}/", timeout=10)
        assert page.status_code == 200 and 'href="/docs"' in page.text  # linked
        docs = httpx.get(f"{url}/docs", timeout=10)
        assert docs.status_code == 200 and "swagger-ui-bundle.js" in docs.text
        assert httpx.get(f"{url}/openapi.json", timeout=10).json()["info"]["title"] == \
            "image-proxy"
