"""Seed 001, a gpt-image-2 proxy at ``{BASE_URL}/api/v1/images/generations``: its cURL sample,
only the host and the key changed."""

from __future__ import annotations

import base64

from tests.e2e.conformance.conftest import Conformance

SAMPLE = {
    "model": "gpt-image-2",
    "prompt": "A simple red apple on a white table, photorealistic",
    "size": "1024x1024",
    "n": 1,
}


def test_sample_request(conformance: Conformance) -> None:
    response = conformance.post("/api/v1/images/generations", SAMPLE)
    assert response.status_code == 200, response.text
    body = response.json()
    # created, data[] with url and/or b64_json (revised_prompt optional), usage.
    assert isinstance(body["created"], int)
    assert len(body["data"]) == 1
    image = base64.b64decode(body["data"][0]["b64_json"])
    assert image[:8] == b"\x89PNG\r\n\x1a\n"
    assert isinstance(body["usage"], dict) and body["usage"]["total_tokens"] > 0
    assert conformance.openai.requests[-1].body["model"] == "gpt-image-2"


def test_error_response_shape(conformance: Conformance) -> None:
    response = conformance.post("/api/v1/images/generations", {**SAMPLE, "size": "1000x1000"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert {"message", "type", "code"} <= set(error) and error["param"] == "size"
