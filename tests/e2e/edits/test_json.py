"""JSON edits (base64, data URL, http(s) URL) through a real gateway, and the SSRF guard on the
URLs it fetches: internal addresses are refused without a request ever reaching them."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest

from tests.support.fakes.openai_upstream import API_KEY, FakeOpenAI
from tests.support.fetch_targets import GIF, PNG, FetchTarget
from tests.support.images import decode
from tests.support.schemas import validate
from tests.support.servers import RunningServer, serve
from tests.support.stack import Stack, upstream_and_gateway


@pytest.fixture
def targets() -> Iterator[tuple[FetchTarget, RunningServer, FetchTarget, RunningServer]]:
    """An image server the allow-list admits, and an internal one it does not."""
    trusted, internal = FetchTarget(), FetchTarget()
    with serve(trusted.build()) as trusted_server, serve(internal.build()) as internal_server:
        yield trusted, trusted_server, internal, internal_server


@pytest.fixture
def stack(targets) -> Iterator[Stack[FakeOpenAI]]:
    """A gateway that may fetch from the trusted image server only, serving ``local`` and a
    model behind the fake OpenAI upstream."""
    _, trusted_server, _, _ = targets

    def gateway_yaml(url: str) -> str:
        return f"""
fetch:
  allow_hosts: ["127.0.0.1:{trusted_server.port}"]
models:
  - {{name: local, provider: local}}
  - {{name: openai/gpt-image-1, provider: openai, base_url: "{url}/v1", api_key: {API_KEY}}}
"""

    with upstream_and_gateway(FakeOpenAI(), gateway_yaml) as stack:
        yield stack


@pytest.fixture
def gateway(stack) -> RunningServer:
    return stack.gateway


def edit(server: RunningServer, body: dict, path: str = "/v1/images/edits") -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json=body, timeout=60)


PNG_B64 = base64.b64encode(PNG).decode()


@pytest.mark.parametrize("image", [PNG_B64, f"data:image/png;base64,{PNG_B64}", "URL",
                                   ["URL", PNG_B64], {"image_url": "URL"}])
def test_json_edit_forms(gateway, targets, image) -> None:
    trusted, trusted_server, _, _ = targets
    url = f"{trusted_server.url}/a.png?sig=secret"

    def fill(value):
        if isinstance(value, list):
            return [fill(v) for v in value]
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        return url if value == "URL" else value

    response = edit(gateway, {"model": "local", "prompt": "a red apple", "image": fill(image)})
    assert response.status_code == 200, response.text
    validate("ImagesResponse", response.json())
    assert decode(response.json()["data"][0]["b64_json"]).size == (64, 64)
    if "URL" in str(image):
        assert trusted.paths == ["/a.png"]


def test_openai_json_images_form_and_url_reaches_the_upstream(stack, targets) -> None:
    fake, gateway = stack
    _, trusted_server, _, _ = targets
    response = edit(gateway, {"model": "openai/gpt-image-1", "prompt": "p",
                              "images": [{"image_url": f"{trusted_server.url}/a.png"}]})
    assert response.status_code == 200, response.text
    # The fetched bytes go upstream as a real file part, as a list (the client sent a list).
    assert [(f[0], f[2], f[3]) for f in fake.requests[-1].files] == [
        ("image[]", "image/png", PNG)]


def test_an_image_in_a_generation_body_makes_it_an_edit(gateway) -> None:
    response = edit(gateway, {"model": "local", "prompt": "p", "image": PNG_B64,
                              "stream": True}, path="/v1/images/generations")
    assert response.status_code == 200
    assert "event: image_edit.completed" in response.text


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:{internal}/a.png",              # loopback, another port
    "http://[::1]:{internal}/a.png",                  # IPv6 loopback
    "http://localhost:{internal}/a.png",              # a DNS name resolving to loopback
    "http://169.254.169.254/latest/meta-data/",       # cloud metadata
    "http://10.0.0.1/a.png",                          # private network
    "http://127.0.0.1:{trusted}/to?url=http://127.0.0.1:{internal}/a.png",  # redirect to one
    "http://127.0.0.1:{trusted}/to?url=http://169.254.169.254/",
])
def test_internal_urls_are_refused_without_a_request(gateway, targets, url) -> None:
    _, trusted_server, internal, internal_server = targets
    url = url.format(internal=internal_server.port, trusted=trusted_server.port)
    response = edit(gateway, {"model": "local", "prompt": "p", "image": url})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["param"], error["code"]) == ("image", "image_url_forbidden")
    validate("ErrorResponse", response.json())
    assert internal.requests == [], "the internal server was never contacted"


def test_mask_by_url_and_bad_values(gateway, targets) -> None:
    _, trusted_server, _, _ = targets
    response = edit(gateway, {"model": "local", "prompt": "p", "image": PNG_B64,
                              "mask": f"{trusted_server.url}/a.png"})
    # The served PNG has no alpha channel: it cannot be a mask.
    assert response.json()["error"]["code"] == "invalid_mask"
    for image, code in (("ftp://example.com/a.png", "image_url_invalid"),
                        ("not base64 at all!", "invalid_image"),
                        (base64.b64encode(b"hello").decode(), "invalid_image"),
                        ({"file_id": "file-123"}, "unsupported_value")):
        response = edit(gateway, {"model": "local", "prompt": "p", "image": image})
        assert response.status_code == 400
        assert response.json()["error"]["code"] == code
    missing = edit(gateway, {"model": "local", "prompt": "p"})
    assert missing.json()["error"]["param"] == "image"


@pytest.mark.parametrize(("payload", "path"), [(GIF, "/a.gif"),
                                             (b"<html>not a png</html>", "/liar.png")])
def test_an_unsupported_format_is_refused_alike_however_the_image_arrives(
        gateway, targets, payload, path) -> None:
    """One sniffer, one rule, one message: a GIF (or bytes that are no image at all) as a file
    part, base64, a data URL or a URL."""
    _, trusted_server, _, _ = targets
    encoded = base64.b64encode(payload).decode()
    answers = [
        httpx.post(f"{gateway.url}/v1/images/edits", timeout=60,
                   data={"model": "local", "prompt": "p"},
                   files={"image": ("a.png", payload, "image/png")}),
        *(edit(gateway, {"model": "local", "prompt": "p", "image": image})
          for image in (encoded, f"data:image/png;base64,{encoded}",
                        f"{trusted_server.url}{path}")),
    ]
    errors = [answer.json()["error"] for answer in answers]
    assert [answer.status_code for answer in answers] == [400] * 4
    assert {(e["param"], e["code"]) for e in errors} == {("image", "invalid_image")}
    assert len({e["message"] for e in errors}) == 1, errors
    assert "'image/png', 'image/jpeg' and 'image/webp'" in errors[0]["message"]
