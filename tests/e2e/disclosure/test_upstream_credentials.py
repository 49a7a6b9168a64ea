"""An upstream that repeats the credential it received (self-hosted OpenAI-compatible servers
do, in their error messages; some answer a bad request with every header they saw) never gets
it to a client: not in a JSON error, a stream's error event or an async job's error, whatever
the provider, the status or the shape of the body."""

from __future__ import annotations

import re
import time
import uuid

import httpx
import pytest

from tests.support.fakes.echoing import EchoingUpstream
from tests.support.stack import Stack, stack_fixture

# Shaped like no known kind of key: only the configuration says it is a secret.
SECRET = "k7-self-hosted-CREDENTIAL-4242"
MODELS = ["echo/openai", "echo/azure", "echo/xai", "echo/gemini"]
# A credential after an authorization scheme, whatever it is (a redacted one is "[redacted]").
BEARER = re.compile(r"(?i)\b(bearer|basic)\s+(?!\[redacted\])[A-Za-z0-9._~+/-]{4,}")


def echo_yaml(url: str) -> str:
    return f"""
models:
  - {{name: echo/openai, provider: openai, upstream_model: gpt-image-1, base_url: "{url}/v1",
      api_key: {SECRET}}}
  - {{name: echo/azure, provider: azure, upstream_model: gpt-image-1, endpoint: "{url}",
      deployment: img, api_key: {SECRET}}}
  - {{name: echo/xai, provider: xai, upstream_model: grok-imagine-image, base_url: "{url}/v1",
      api_key: {SECRET}}}
  - {{name: echo/gemini, provider: gemini, upstream_model: gemini-2.5-flash-image,
      base_url: "{url}", api_key: {SECRET}}}
"""


echoing = stack_fixture(EchoingUpstream, echo_yaml)


def assert_clean(text: str) -> None:
    assert SECRET not in text
    assert BEARER.search(text) is None, text


@pytest.mark.parametrize("body", ["json", "text"])
@pytest.mark.parametrize("status", [400, 401, 403, 404, 422, 429, 500, 503])
@pytest.mark.parametrize("model", MODELS)
def test_an_upstream_repeating_its_credential_never_shows_it_to_the_client(
        echoing: Stack[EchoingUpstream], model: str, status: int, body: str) -> None:
    echoing.fake.status, echoing.fake.body = status, body
    response = httpx.post(f"{echoing.gateway.url}/v1/images/generations", timeout=30,
                          json={"model": model, "prompt": "p"})
    # The upstream really did repeat what it received, and the client still got an answer.
    assert SECRET in echoing.fake.message(echoing.fake.received[-1])
    assert response.status_code >= 400
    assert response.json()["error"]["message"]
    assert_clean(response.text)


def test_an_upstream_repeating_its_credential_mid_stream(echoing: Stack[EchoingUpstream]) -> None:
    echoing.fake.body = "stream"
    with httpx.stream("POST", f"{echoing.gateway.url}/v1/images/generations", timeout=30,
                      json={"model": "echo/openai", "prompt": "p", "stream": True}) as response:
        text = response.read().decode()
    assert response.status_code == 200 and "event: error" in text
    assert "upstream failed mid-stream" in text
    assert_clean(text)


def test_an_async_job_keeps_no_credential_in_its_error(echoing: Stack[EchoingUpstream]) -> None:
    echoing.fake.status = 400
    job_id = str(uuid.uuid4())
    url = echoing.gateway.url
    accepted = httpx.post(f"{url}/v1/images/generations", timeout=30,
                          headers={"Prefer": "respond-async", "X-Job-Id": job_id},
                          json={"model": "echo/openai", "prompt": "p"})
    assert accepted.status_code == 202
    deadline = time.monotonic() + 20
    while (job := httpx.get(f"{url}/v1/images/jobs/{job_id}")).json()["status"] != "failed":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert job.json()["error"]["message"]
    assert_clean(job.text)
