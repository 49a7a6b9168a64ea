"""Bad input over HTTP: OpenAI-shaped errors with the right status, never a 500."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.support.clients import sdk
from tests.support.schemas import validate


def post(server, content: bytes | str, **kwargs) -> httpx.Response:
    response = httpx.post(f"{server.url}/v1/images/generations", content=content, timeout=30,
                          headers={"content-type": "application/json"}, **kwargs)
    validate("ErrorResponse", response.json())
    assert response.headers.get("x-request-id")
    return response


@pytest.mark.parametrize(("body", "status", "param"), [
    (b'{"model": "local", "prompt": ', 400, None),           # malformed JSON
    (b'["a list"]', 400, None),                               # not an object
    (b'{"model": "local", "prompt": "p", "n": "2"}', 400, "n"),
    (b'{"model": "local", "prompt": "p", "n": 0}', 400, "n"),
    (b'{"model": "local", "prompt": "p", "n": 11}', 400, "n"),
    (b'{"model": "local", "prompt": "p", "size": "1024x1023"}', 400, "size"),
    (b'{"model": "local", "prompt": "p", "size": "huge"}', 400, "size"),
    (b'{"model": "local", "prompt": "p", "stream": 1}', 400, "stream"),
    (b'{"model": "local", "prompt": 42}', 400, "prompt"),
    (b'{"model": "local"}', 400, "prompt"),
    (b'{"model": 7, "prompt": "p"}', 400, "model"),
    (b'{"model": "local", "prompt": "p", "stream": true, "n": 2}', 400, "n"),
    (b'{"model": "lcoal", "prompt": "p"}', 404, "model"),
])
def test_bad_json_bodies(local_gateway, body: bytes, status: int, param: str | None) -> None:
    response = post(local_gateway, body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["param"] == param


def test_long_prompt(local_gateway) -> None:
    response = post(local_gateway, '{"model": "local", "prompt": "%s"}' % ("a" * 40000))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "string_above_max_length"


def test_unknown_model_suggests_close_matches(local_gateway) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        sdk(local_gateway).images.generate(model="local/slwo", prompt="p")
    assert caught.value.code == "model_not_found" and "local/slow" in caught.value.message


def test_body_too_large_is_413(start_gateway) -> None:
    with start_gateway("""
server: {max_body_bytes: 1000}
models: [{name: local, provider: local}]
""") as server:
        response = post(server, '{"model": "local", "prompt": "%s"}' % ("a" * 2000))
        assert response.status_code == 413
        # Without a content-length too (chunked upload).
        chunked = post(server, iter([b'{"model": "local", "prompt": "', b"a" * 2000, b'"}']))
        assert chunked.status_code == 413


def test_missing_model_without_default_names_model(start_gateway) -> None:
    with start_gateway("""
models: [{name: a, provider: local}, {name: b, provider: local}]
""") as server:
        response = post(server, b'{"prompt": "p"}')
    assert response.status_code == 400 and response.json()["error"]["param"] == "model"


def test_unknown_route_and_method_are_openai_shaped(local_gateway) -> None:
    missing = httpx.get(f"{local_gateway.url}/v1/nothing-here")
    assert missing.status_code == 404 and missing.headers["x-request-id"]
    validate("ErrorResponse", missing.json())
    wrong = httpx.get(f"{local_gateway.url}/v1/images/generations")
    assert wrong.status_code == 405
    validate("ErrorResponse", wrong.json())


def test_models_endpoint_lists_served_models(local_gateway) -> None:
    names = [m.id for m in sdk(local_gateway).models.list()]
    assert names == ["local", "local/slow"]


def test_dropped_parameters_are_reported(local_gateway) -> None:
    """By default a parameter the model cannot use (or does not know) is dropped, never
    silently: the response lists it."""
    response = httpx.post(f"{local_gateway.url}/v1/images/generations", timeout=60, json={
        "model": "local", "prompt": "p", "size": "64x64", "style": "vivid", "mystery": 1})
    assert response.status_code == 200
    assert response.headers["x-dropped-params"] == "mystery,style"


def test_strict_policy_refuses_them(start_gateway) -> None:
    with start_gateway("""
drop_unsupported: false
models: [{name: local, provider: local}]
""") as server:
        for extra, code in (({"style": "vivid"}, "unsupported_parameter"),
                            ({"mystery": 1}, "unknown_parameter")):
            response = post(server, json.dumps({"model": "local", "prompt": "p", **extra}))
            assert response.status_code == 400
            assert response.json()["error"]["code"] == code
            assert response.json()["error"]["param"] == next(iter(extra))
