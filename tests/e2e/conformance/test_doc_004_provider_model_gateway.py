"""Seed 004, a ``provider/model`` gateway at ``/v3/images/generations``: its request body
(placeholders filled in), only the host and the key changed. It promises ``cost`` and
``provider`` beside OpenAI's fields, carries ``metadata``, and forwards ``extra_headers``
(credential headers refused)."""

from __future__ import annotations

from tests.e2e.conformance.conftest import Conformance

SAMPLE = {
    "model": "openai/gpt-image-2",
    "prompt": "a lighthouse on a cliff at dusk",
    "n": 5,
    "size": "1024x1024",
    "user": "user-1234",
    "metadata": {"campaign": "spring", "order": 7},
    "extra_headers": {"X-Request-Source": "catalogue"},
    "quality": "high",
    "response_format": "b64_json",
}


def test_sample_request(conformance: Conformance) -> None:
    response = conformance.post("/v3/images/generations", SAMPLE)
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body["cost"], float) and body["cost"] > 0
    assert body["provider"] == "openai"
    assert isinstance(body["created"], int) and len(body["data"]) == 5
    assert all(item["b64_json"] for item in body["data"])
    assert isinstance(body["usage"], dict)
    sent = conformance.openai.requests[-1]
    assert sent.headers["x-request-source"] == "catalogue"
    assert sent.body["user"] == "user-1234" and "metadata" not in sent.body
    usage = conformance.get("/v3/usage").json()
    row = next(r for r in usage["data"] if r["job_id"] == body["id"])
    assert row["metadata"] == SAMPLE["metadata"] and row["user"] == "user-1234"


def test_credential_headers_are_refused(conformance: Conformance) -> None:
    response = conformance.post("/v3/images/generations", {
        **SAMPLE, "extra_headers": {"Authorization": "Bearer someone-elses"}})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "extra_headers"


def test_response_format_is_honoured_for_gpt_image(conformance: Conformance) -> None:
    """A legacy DALL-E field, ignored by gpt-image upstream: the gateway still honours it,
    hosting the images when URLs are asked for."""
    body = conformance.post("/v3/images/generations",
                            {**SAMPLE, "n": 1, "response_format": "url"}).json()
    assert body["data"][0]["url"].startswith("http")
    assert "response_format" not in conformance.openai.requests[-1].body
