"""Schemathesis against the gateway's own OpenAPI document, as a real gateway serves it.

Every operation of ``GET /openapi.json`` is fuzzed (fixed seed, derandomized, a bounded number
of examples) with valid and with invalid data against a gateway under uvicorn serving the
``local`` renderer with small rules, so renders stay cheap. No response may be a 5xx, every
response must be documented (status code, content type, required headers) and match its schema,
event by event for streams, and invalid JSON or query data must be refused with a 4xx. The
paths fuzzing rarely reaches (a stream, an async job and its snapshot, a hosted file, a JSON
edit) are then walked explicitly through the same checks.

Bugs found on the way (all fixed) are pinned at the end as regression tests, one each. The
checks that need schemathesis's own phases (coverage: undeclared methods and their ``Allow``,
missing headers; stateful; acceptance of valid data) run in ``test_every_check.py``, which runs
every check the CLI has.
"""

from __future__ import annotations

import base64
import io
import struct
import time
import uuid
import zlib
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from openapi_spec_validator import validate as validate_openapi
from PIL import Image
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from proxy.app import create_app
from proxy.config import load_config_text, load_default_config
from proxy.http.openapi import DOCUMENT_PATH, openapi_document
from tests.support.servers import RunningServer, serve

# Small renders (at most 128 px, n <= 2) keep a few hundred requests to seconds. Two mounts:
# /v1 and the root, whose default response_format is "url" (hosted images); the other mounts
# are the same endpoints again.
GATEWAY_YAML = """
server:
  base_paths: ["/v1", ""]
  max_body_bytes: 262144
  max_upload_bytes: 1048576
fetch: {timeout: 2, connect_timeout: 1}
models:
  - name: local
    provider: local
    aliases: [local/painter]
    rules:
      n_max: 2
      default_size: 64x64
      size_range: {multiple_of: 8, min_edge: 64, max_edge: 128, max_pixels: 16384,
                   max_ratio: 2}
default_model: local
"""
CONFIG = load_config_text(GATEWAY_YAML)

CHECKS = [
    schemathesis.checks.not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Invalid data must also be refused (4xx): the document states no constraint the gateway
# does not hold.
NEGATIVE_CHECKS = [*CHECKS, negative_data_rejection]
SCHEMATHESIS = {"seed": 20260901}
EXAMPLES = {GenerationMode.POSITIVE: 30, GenerationMode.NEGATIVE: 15}
OPERATIONS = [(path, method) for path, item in openapi_document(
    CONFIG, default_model="local")["paths"].items()
              for method in item]


@pytest.fixture(scope="module")
def gateway() -> Iterator[RunningServer]:
    with serve(create_app(CONFIG)) as server:
        yield server


@pytest.fixture(scope="module")
def api_schema(gateway: RunningServer) -> schemathesis.BaseSchema:
    """The document as the running gateway serves it."""
    config = SchemathesisConfig.from_dict(SCHEMATHESIS)
    return schemathesis.openapi.from_url(f"{gateway.url}{DOCUMENT_PATH}", config=config)


_job_ids: set[str] = set()


def _header_safe(name: str) -> bool:
    return name.isascii() and name.isprintable()


def prepare(case: schemathesis.Case) -> None:
    """Adjust a generated case so fuzzing spends its examples on new ground.

    - Derandomized generation repeats its UUIDs (and its ``Idempotency-Key`` texts): a job id
      used before replays its answer or is a 409 (both documented, and covered once is
      enough), and the job would never run. Repeats get a fresh id.
    - Unknown parameters are dropped and listed in ``x-dropped-params``: a name that cannot be
      a header value (non-Latin-1, CR/LF) has its own regression test below (bug 1). Such
      names are escaped, so the rest of the body is still fuzzed.
    - ``extra_headers`` that no upstream would take (control characters, non-ASCII names) are
      refused (bug 5, pinned below): invalid ones are left out.
    """
    for name in list(case.headers or {}):
        if name.lower() in ("x-job-id", "idempotency-key") and isinstance(
                case.headers[name], str):
            if case.headers[name] in _job_ids:
                case.headers[name] = str(uuid.uuid4())
            _job_ids.add(case.headers[name])
    if isinstance(case.body, dict):
        case.body = {name if _header_safe(name) else
                     name.encode("unicode_escape").decode().replace("\\", "_"): value
                     for name, value in case.body.items()}
        if not _valid_extra_headers(case.body.get("extra_headers")):
            del case.body["extra_headers"]


def _valid_extra_headers(headers: object) -> bool:
    return not isinstance(headers, dict) or all(
        isinstance(value, str) and name and name.isascii() and name.replace("-", "").isalnum()
        and value.isprintable() for name, value in headers.items())


@pytest.mark.parametrize("mode", list(EXAMPLES), ids=lambda mode: mode.value)
@pytest.mark.parametrize(("path", "method"), OPERATIONS,
                         ids=[f"{method.upper()} {path}" for path, method in OPERATIONS])
def test_every_response_is_documented_and_no_server_error(
        api_schema: schemathesis.BaseSchema, gateway: RunningServer, path: str, method: str,
        mode: GenerationMode) -> None:
    operation = api_schema[path][method]

    @settings(max_examples=EXAMPLES[mode], deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
    @given(case=operation.as_strategy(generation_mode=mode))
    def fuzz(case: schemathesis.Case) -> None:
        prepare(case)
        # Multipart turns every value into text (an empty array into no part at all), so
        # there "invalid" data may arrive valid: only JSON and query data must be refused.
        strict = mode is GenerationMode.NEGATIVE and case.media_type != "multipart/form-data"
        checks = NEGATIVE_CHECKS if strict else CHECKS
        case.call_and_validate(base_url=gateway.url, checks=checks, timeout=30)

    try:
        fuzz()
    except Unsatisfiable:
        if mode is GenerationMode.POSITIVE:
            raise
        pytest.skip("nothing this operation takes can be invalid")


# -- the paths fuzzing rarely reaches, through the same checks --------------------------------


def _call(api_schema: schemathesis.BaseSchema, gateway: RunningServer, path: str, method: str,
          **kwargs) -> schemathesis.Response:
    case = api_schema[path][method].Case(**kwargs)
    return case.call_and_validate(base_url=gateway.url, checks=CHECKS, timeout=30)


def _png(width: int, height: int, mode: str = "RGB", colour=(40, 90, 200)) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), colour).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("path", ["/v1/images/generations", "/v1/images/edits"])
def test_a_stream_is_documented_event_by_event(api_schema, gateway, path) -> None:
    body = {"prompt": "a red apple", "stream": True, "partial_images": 2}
    if path.endswith("edits"):
        body["image"] = "data:image/png;base64," + base64.b64encode(_png(64, 64)).decode()
    response = _call(api_schema, gateway, path, "post", body=body,
                     media_type="application/json")
    assert response.status_code == 200
    assert response.headers["content-type"][0].startswith("text/event-stream")
    kind = "image_edit" if path.endswith("edits") else "image_generation"
    assert response.text.count(f"event: {kind}.partial_image") == 2
    assert response.text.count(f"event: {kind}.completed") == 1


def test_a_stream_re_attached_is_documented_event_by_event(api_schema, gateway) -> None:
    job_id = str(uuid.uuid4())
    body = {"prompt": "a red apple", "stream": True, "partial_images": 2}
    posted = _call(api_schema, gateway, "/v1/images/generations", "post", body=body,
                   headers={"X-Job-Id": job_id}, media_type="application/json")
    assert posted.status_code == 200
    resumed = _call(api_schema, gateway, "/v1/images/jobs/{job_id}/events", "get",
                    path_parameters={"job_id": job_id}, headers={"Last-Event-ID": "1"})
    assert resumed.status_code == 200
    assert resumed.text.count("event: image_generation.partial_image") == 1
    assert resumed.text.count("id: ") == 2 and "id: 1\n" not in resumed.text
    unknown = _call(api_schema, gateway, "/v1/images/jobs/{job_id}/events", "get",
                    path_parameters={"job_id": str(uuid.uuid4())})
    assert unknown.status_code == 404


def test_a_multipart_edit_with_a_mask_is_documented(api_schema, gateway) -> None:
    response = _call(api_schema, gateway, "/v1/images/edits", "post",
                     body={"image": _png(64, 64), "mask": _png(64, 64, "RGBA", (0, 0, 0, 0)),
                           "prompt": "a green tree", "n": 2, "output_format": "webp"},
                     media_type="multipart/form-data")
    assert response.status_code == 200
    assert len(response.json()["data"]) == 2


def test_an_async_job_and_its_snapshots_are_documented(api_schema, gateway) -> None:
    accepted = _call(api_schema, gateway, "/v1/images/generations", "post",
                     headers={"Prefer": "respond-async"}, body={"prompt": "a blue sea"},
                     media_type="application/json")
    assert accepted.status_code == 202
    job = accepted.json()
    assert job["object"] == "image.job"
    deadline = time.monotonic() + 20
    while True:
        snapshot = _call(api_schema, gateway, "/v1/images/jobs/{job_id}", "get",
                         path_parameters={"job_id": job["id"]})
        assert snapshot.status_code == 200
        body = snapshot.json()
        if body["status"] in ("succeeded", "failed", "cancelled") and (
                "result" in body or body["status"] != "succeeded"):
            break
        assert time.monotonic() < deadline, body
        time.sleep(0.05)
    assert body["status"] == "succeeded"
    assert body["result"]["id"] == job["id"]


def test_a_hosted_image_is_documented(api_schema, gateway) -> None:
    # The root mount answers with URLs unless asked otherwise.
    made = _call(api_schema, gateway, "/images/generations", "post",
                 body={"prompt": "the moon at night", "output_format": "jpeg"},
                 media_type="application/json")
    assert made.status_code == 200
    url = urlsplit(made.json()["data"][0]["url"])
    query = {name: values[0] for name, values in parse_qs(url.query).items()}
    name = url.path.rsplit("/", 1)[1]
    for method in ("get", "head"):
        response = _call(api_schema, gateway, "/v1/images/files/{name}", method,
                         path_parameters={"name": name}, query=query)
        assert response.status_code == 200
        assert response.headers["content-type"] == ["image/jpeg"]
    tampered = {**query, "signature": "0" * 64}
    refused = _call(api_schema, gateway, "/v1/images/files/{name}", "get",
                    path_parameters={"name": name}, query=tampered)
    assert refused.status_code == 403


def test_a_model_is_documented_by_name_and_alias(api_schema, gateway) -> None:
    for name in ("local", "local/painter"):
        response = _call(api_schema, gateway, "/v1/models/{model}", "get",
                         path_parameters={"model": name})
        assert response.status_code == 200
        assert response.json()["id"] == "local"


def test_the_served_document_is_the_configs_and_valid_openapi_3_1(gateway) -> None:
    served = httpx.get(f"{gateway.url}{DOCUMENT_PATH}").json()
    assert served == openapi_document(CONFIG, default_model="local")
    validate_openapi(served)


def test_the_default_config_documents_every_mount() -> None:
    config = load_default_config()
    document = openapi_document(config, default_model=config.default_model)
    validate_openapi(document)
    paths = document["paths"]
    for base in ("/v1", "", "/api/v1", "/v3"):
        for path in ("/images/generations", "/images/edits", "/images/jobs/{job_id}",
                     "/images/jobs/{job_id}/events", "/models", "/models/{model}", "/usage"):
            assert f"{base}{path}" in paths
    assert {"/healthz", "/readyz", "/metrics", "/", "/playground/{name}",
            "/v1/images/files/{name}", DOCUMENT_PATH} <= paths.keys()
    # No keys: the gateway is open, and never answers 401 or 403 on the image routes.
    assert {} in document["security"]
    assert "401" not in paths["/v1/images/generations"]["post"]["responses"]


def test_keys_make_bearer_required_and_document_401_and_403() -> None:
    config = load_config_text(GATEWAY_YAML + f"""
keys:
  - {{name: app, key_sha256: "{'a' * 64}"}}
""")
    document = openapi_document(config, default_model="local")
    assert document["security"] == [{"bearerAuth": []}]
    responses = document["paths"]["/v1/images/edits"]["post"]["responses"]
    assert {"401", "403"} <= responses.keys()
    assert document["paths"]["/healthz"]["get"]["security"] == []


# -- bugs found by fuzzing, outside this file's reach: fixed when these pass -----------------


def expect_status(gateway: RunningServer, wanted: int, path: str = "/v1/images/generations",
                  **kwargs) -> None:
    """POST and require ``wanted``, failing without a Python traceback (``pytrace=False``).

    The server thread may be printing the traceback of its 500 at that moment, and CPython
    3.11's ``ast`` is not thread-safe: pytest parsing source for a traceback meanwhile can die
    with "SystemError: AST constructor recursion depth mismatch" (an INTERNALERROR).
    """
    try:
        with httpx.Client(base_url=gateway.url, timeout=30) as client:
            response = client.post(path, **kwargs)
        problem = None if response.status_code == wanted else (
            f"{response.status_code} instead of {wanted}: {response.text[:300]}")
    except httpx.HTTPError as exc:
        problem = f"no answer instead of {wanted}: {exc!r}"
    if problem:
        pytest.fail(problem, pytrace=False)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header says ``width`` x ``height`` and whose pixel data is cut short."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 4)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("name", ["名前", "x\r\ny"], ids=["non-latin-1", "crlf"])
def test_bug_unknown_parameter_names_that_cannot_be_header_values(gateway, name) -> None:
    expect_status(gateway, 200, json={"prompt": "p", name: 1})


@pytest.mark.parametrize("headers", [{"x-a": "\x00"}, {"x-a": "a\x7f"}, {"x-é": "v"}],
                         ids=["nul", "del", "non-ascii-name"])
def test_bug_extra_headers_no_upstream_would_take(gateway, headers) -> None:
    expect_status(gateway, 400, json={"prompt": "p", "extra_headers": headers})


@pytest.mark.parametrize("ratio", ["1" * 400 + ":1", "1:" + "1" * 400], ids=["inf", "zero"])
def test_bug_aspect_ratio_of_huge_numbers(gateway, ratio) -> None:
    expect_status(gateway, 400, json={"prompt": "p", "aspect_ratio": ratio})


def test_bug_a_size_with_a_trailing_newline(gateway) -> None:
    expect_status(gateway, 400, json={"prompt": "p", "size": "64x64\n"})


def test_bug_an_image_claiming_400_megapixels(gateway) -> None:
    files = {"image": ("bomb.png", _png_header_only(20000, 20000), "image/png")}
    expect_status(gateway, 400, "/v1/images/edits", files=files, data={"prompt": "p"})


def test_bug_an_image_whose_pixel_data_is_cut_short(gateway) -> None:
    files = {"image": ("cut.png", _png_header_only(64, 64), "image/png")}
    expect_status(gateway, 400, "/v1/images/edits", files=files, data={"prompt": "p"})
