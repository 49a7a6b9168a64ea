"""The official OpenAI SDK pointed at a gateway under test."""

from __future__ import annotations

import openai
import pytest

from tests.support.schemas import validate
from tests.support.servers import RunningServer


def sdk(server: RunningServer) -> openai.OpenAI:
    # max_retries=0: a test must see our first answer, not the SDK's retry of it.
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0,
                         timeout=60)


def async_sdk(server: RunningServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0,
                              timeout=60)


def expect_error(server: RunningServer, exc_type: type[openai.APIStatusError], *,
                 prompt: str = "p", **kwargs) -> openai.APIStatusError:
    """Generate through the SDK expecting ``exc_type``; the error body must be OpenAI's
    envelope and the response must carry an x-request-id."""
    with pytest.raises(exc_type) as caught:
        sdk(server).images.generate(prompt=prompt, **kwargs)
    error = caught.value
    validate("ErrorResponse", error.response.json())
    assert error.request_id, "every error carries x-request-id"
    return error
