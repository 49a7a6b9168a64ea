"""``extra_headers`` go to the provider, but never choose who pays (the operator's organisation,
project or quota project), never reshape the request an intermediary sees (its encoding,
framing, method or apparent origin), and come in bounded numbers and sizes. Every refusal is a
400 naming ``extra_headers``, before anything is sent upstream."""

from __future__ import annotations

import httpx

from tests.support.fakes.openai_upstream import API_KEY

REFUSED = ["OpenAI-Organization", "OpenAI-Project", "x-goog-user-project", "Content-Encoding",
           "Trailer", "Proxy-Connection", "Proxy-Anything", "Forwarded", "X-Forwarded-For",
           "x-forwarded-host", "X-Forwarded-Proto", "X-HTTP-Method-Override", "Via",
           "Authorization", "Transfer-Encoding"]


def post(server, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/images/generations", timeout=30, json={
        "model": "openai/gpt-image-1", "prompt": "p", "extra_headers": headers})


def assert_refused(response: httpx.Response, code: str) -> None:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["param"], error["code"]) == ("extra_headers", code), error


def test_a_client_cannot_choose_who_pays_or_reshape_the_upstream_request(
        openai_gateway) -> None:
    fake, server = openai_gateway
    for name in REFUSED:
        assert_refused(post(server, {"X-Trace-Id": "t-1", name: "org-someone-else"}),
                       "forbidden_header")
    assert fake.requests == []
    assert post(server, {"X-Trace-Id": "t-1", "OpenAI-Beta": "x"}).status_code == 200
    sent = fake.requests[-1].headers
    assert sent["x-trace-id"] == "t-1" and sent["authorization"] == f"Bearer {API_KEY}"
    assert "openai-organization" not in sent and "openai-project" not in sent


def test_extra_headers_are_capped_in_number_and_in_size(openai_gateway) -> None:
    fake, server = openai_gateway
    assert_refused(post(server, {f"x-h-{i}": "v" for i in range(1000)}), "too_many_headers")
    assert_refused(post(server, {f"x-h-{i}": "v" for i in range(33)}), "too_many_headers")
    assert_refused(post(server, {f"x-h-{i}": "v" * 3000 for i in range(3)}),
                   "headers_too_large")
    assert fake.requests == []
    most = {f"x-h-{i}": "v" * 200 for i in range(32)}
    assert post(server, most).status_code == 200
    assert all(fake.requests[-1].headers[name] == value for name, value in most.items())
