"""What the document and the wire promise beyond one body's schema: a wrong method names the
right ones (``Allow``), the document says ``model`` is required exactly when the gateway has no
default model, ``end_time`` must follow ``start_time`` on ``/usage``, and a body is read only as
the content type it declares (415 otherwise: browsers post text and forms across origins
without a CORS preflight)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from proxy.app import create_app
from proxy.config import load_config_text, load_default_config
from proxy.http.openapi import DOCUMENT_PATH, openapi_document
from tests.support.paths import REPO_ROOT
from tests.support.schemas import validate
from tests.support.servers import RunningServer, serve

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
SAMPLE = {"{job_id}": "8f7d2f0e-9a51-4d55-8a38-2b0e0b0f2a61", "{model}": "local",
          "{name}": "x.png"}
DEFAULT = load_default_config()


def _concrete(path: str) -> str:
    for template, value in SAMPLE.items():
        path = path.replace(template, value)
    return path or "/"


def _wrong_methods() -> Iterator[tuple[str, str, set[str]]]:
    """Every documented path (every mount, the image endpoints' short way in included), with
    each method it does not take and the methods it does."""
    document = openapi_document(DEFAULT, default_model=DEFAULT.default_model)
    for path, item in document["paths"].items():
        allowed = {method.upper() for method in item}
        if "GET" in allowed:
            allowed.add("HEAD")
        for method in METHODS:
            if method not in allowed:
                yield _concrete(path), method, allowed


WRONG = list(_wrong_methods())


@pytest.mark.parametrize(("path", "method", "allowed"), WRONG,
                         ids=[f"{method} {path}" for path, method, _ in WRONG])
def test_a_wrong_method_is_a_405_that_names_the_allowed_ones(
        local_gateway: RunningServer, path: str, method: str, allowed: set[str]) -> None:
    response = httpx.request(method, f"{local_gateway.url}{path}", timeout=30)
    assert response.status_code == 405, response.text
    assert {m.strip() for m in response.headers["allow"].split(",")} == allowed
    validate("ErrorResponse", response.json())
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_every_mount_is_checked_for_405() -> None:
    paths = {path for path, _, _ in WRONG}
    for base in ("/v1", "", "/api/v1", "/v3"):
        assert {f"{base}/images/generations", f"{base}/images/edits", f"{base}/usage",
                f"{base}/models"} <= paths


# -- model: required exactly when the gateway has no default ---------------------------------

TWO_MODELS = """
server: {base_paths: ["/v1"]}
models:
  - {name: local, provider: local, rules: {default_size: 64x64}}
  - {name: local-b, provider: local, rules: {default_size: 64x64}}
"""


@pytest.fixture(scope="module")
def no_default_gateway() -> Iterator[RunningServer]:
    with serve(create_app(load_config_text(TWO_MODELS))) as server:
        yield server


@pytest.fixture(scope="module")
def default_gateway() -> Iterator[RunningServer]:
    with serve(create_app(load_config_text(TWO_MODELS + "default_model: local-b\n"))) as server:
        yield server


def _bodies(server: RunningServer) -> dict[str, dict]:
    schemas = httpx.get(f"{server.url}{DOCUMENT_PATH}").json()["components"]["schemas"]
    return {name: schemas[name] for name in ("CreateImageRequest", "CreateImageEditJsonRequest",
                                             "CreateImageEditFormRequest")}


def test_model_is_documented_required_when_the_gateway_has_no_default(
        no_default_gateway: RunningServer) -> None:
    for name, schema in _bodies(no_default_gateway).items():
        assert "model" in schema["required"], name
        assert {"type": "null"} not in schema["properties"]["model"].get("anyOf", []), name
    response = httpx.post(f"{no_default_gateway.url}/v1/images/generations", timeout=30,
                          json={"prompt": "p"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "model"


def test_model_is_documented_optional_with_a_default_model(default_gateway) -> None:
    for name, schema in _bodies(default_gateway).items():
        assert "model" not in schema["required"], name
        assert "`local-b`" in str(schema["properties"]["model"]), name
    response = httpx.post(f"{default_gateway.url}/v1/images/generations", timeout=30,
                          json={"prompt": "p"})
    assert response.status_code == 200, response.text
    assert response.json()["model"] == "local-b"


# -- /usage: end_time after start_time --------------------------------------------------------


@pytest.mark.parametrize(("start", "end"), [("100", "50"), ("100", "100"), ("7.5", "7.25")])
def test_an_end_time_not_after_start_time_is_a_400_naming_end_time(
        local_gateway: RunningServer, start: str, end: str) -> None:
    response = httpx.get(f"{local_gateway.url}/v1/usage", timeout=30,
                         params={"start_time": start, "end_time": end})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "end_time"


def test_the_document_states_that_end_time_follows_start_time(local_gateway) -> None:
    document = httpx.get(f"{local_gateway.url}{DOCUMENT_PATH}").json()
    described = document["components"]["parameters"]["EndTime"]["description"]
    assert "later than `start_time`" in described and "400" in described


# -- bodies are read as the type they declare --------------------------------------------------

BODY = b'{"model": "local", "prompt": "p", "size": "64x64"}'


NOT_JSON = [
    None,                                    # a Blob with no type: no header at all
    "text/plain",                            # fetch() with a string body
    "text/plain;charset=UTF-8",
    "application/x-www-form-urlencoded",     # curl -d, an HTML form
    "multipart/form-data; boundary=x",       # generations take no form (edits do)
    "application/json; charset=latin-1",     # JSON is UTF-8
    "application/jsonp",
]
REFUSED = [(path, kind) for path in ("/v1/images/generations", "/images/generations",
                                     "/v1/images/edits") for kind in NOT_JSON
           if not (path.endswith("edits") and kind and kind.startswith("multipart/"))]


@pytest.mark.parametrize(("path", "content_type"), REFUSED,
                         ids=[f"{path} {kind}" for path, kind in REFUSED])
def test_json_is_read_only_when_declared_as_json(
        local_gateway: RunningServer, path: str, content_type: str | None) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    response = httpx.post(f"{local_gateway.url}{path}", content=BODY, headers=headers,
                          timeout=30)
    assert ("content-type" in response.request.headers) == (content_type is not None)
    assert response.status_code == 415, response.text
    validate("ErrorResponse", response.json())
    error = response.json()["error"]
    assert error["code"] == "unsupported_media_type" and error["param"] == "content-type"
    assert (repr(content_type) if content_type else "none") in error["message"]


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8",
                                          "APPLICATION/JSON;Charset=\"UTF-8\"",
                                          "application/vnd.image-proxy+json"])
def test_json_declared_as_json_is_read(local_gateway: RunningServer, content_type: str) -> None:
    response = httpx.post(f"{local_gateway.url}/v1/images/generations", content=BODY,
                          headers={"content-type": content_type}, timeout=30)
    assert response.status_code == 200, response.text


def test_the_readme_curl_example_declares_json() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    example = readme.split("```bash", 2)[2].split("```", 1)[0]
    assert "curl" in example and "-H 'Content-Type: application/json'" in example
