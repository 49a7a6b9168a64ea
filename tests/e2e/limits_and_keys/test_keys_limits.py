"""Gateway keys: who may call, what each may do, and how much (rate, budget, concurrency)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable

import httpx
import openai
import pytest
from PIL import Image

from tests.support.fakes.openai_upstream import API_KEY, FakeOpenAI
from tests.support.keys import ADMIN, ALICE, BOB, VIEWER, client, keys_config
from tests.support.schemas import validate
from tests.support.stack import upstream_and_gateway


def png() -> io.BytesIO:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(buffer, "PNG")
    buffer.seek(0)
    buffer.name = "a.png"
    return buffer


def expect(exc_type, call) -> openai.APIStatusError:
    with pytest.raises(exc_type) as caught:
        call()
    validate("ErrorResponse", caught.value.response.json())
    return caught.value


def keyed(**settings: str) -> Callable[[str], str]:
    """The keys' config (``alice=``/``bob=``: more settings of that key) for the fake's URL."""
    return lambda url: keys_config(f"{url}/v1", **settings)


def test_401_403() -> None:
    with upstream_and_gateway(FakeOpenAI(), keyed()) as (_, server):
        error = expect(openai.AuthenticationError, lambda: client(server, "ipk_not-a-key")
                       .images.generate(model="local", prompt="p"))
        assert error.code == "invalid_api_key"
        # No key at all (the SDK will not send none, so plain HTTP).
        anonymous = httpx.post(f"{server.url}/v1/images/generations",
                               json={"model": "local", "prompt": "p"})
        assert anonymous.status_code == 401
        assert anonymous.json()["error"]["code"] == "invalid_api_key"
        viewer = client(server, VIEWER)
        assert viewer.images.generate(model="local", prompt="p", size="64x64").data
        error = expect(openai.PermissionDeniedError, lambda: viewer.images.edit(
            model="local", prompt="p", image=png()))
        assert error.code == "capability_missing"
        error = expect(openai.PermissionDeniedError, lambda: viewer.images.generate(
            model="openai/gpt-image-1", prompt="p"))
        assert (error.code, error.param) == ("model_not_allowed", "model")
        # Admin can do everything; usage and models need a key too.
        assert client(server, ADMIN).images.edit(model="local", prompt="p", image=png()).data
        assert httpx.get(f"{server.url}/v1/usage").status_code == 401


def test_rate_limit_429_with_retry_after() -> None:
    with upstream_and_gateway(FakeOpenAI(),
                              keyed(alice=", requests_per_minute: 2")) as (_, server):
        alice = client(server, ALICE)
        first = alice.images.with_raw_response.generate(model="local", prompt="p", size="64x64")
        assert first.headers["x-ratelimit-limit-requests"] == "2"
        assert first.headers["x-ratelimit-remaining-requests"] == "1"
        alice.images.generate(model="local", prompt="p", size="64x64")
        error = expect(openai.RateLimitError, lambda: alice.images.generate(
            model="local", prompt="p", size="64x64"))
        assert error.code == "rate_limit_exceeded"
        assert 1 <= int(error.response.headers["retry-after"]) <= 60
        assert error.response.headers["x-ratelimit-remaining-requests"] == "0"
        # Another key is not limited by alice's window.
        assert client(server, BOB).images.generate(model="local", prompt="p", size="64x64").data


def test_budget_429_insufficient_quota(fake_openai, start_gateway, tmp_path) -> None:
    _, base_url = fake_openai
    # The fake's usage costs $0.01094 per request (12 text tokens in, 272 image tokens out).
    with start_gateway(keys_config(base_url, data_dir=str(tmp_path),
                              alice=", budget_usd: 0.015, budget_period: day")) as server:
        alice = client(server, ALICE)
        alice.images.generate(model="openai/gpt-image-1", prompt="p")
        alice.images.generate(model="openai/gpt-image-1", prompt="p")  # 0.01094 < 0.015
        error = expect(openai.RateLimitError, lambda: alice.images.generate(
            model="openai/gpt-image-1", prompt="p"))
        assert error.code == "insufficient_quota"
        assert error.response.headers["x-should-retry"] == "false"
    # The spend is in the ledger: a restarted gateway still refuses.
    with start_gateway(keys_config(base_url, data_dir=str(tmp_path),
                              alice=", budget_usd: 0.015, budget_period: day")) as server:
        error = expect(openai.RateLimitError, lambda: client(server, ALICE).images.generate(
            model="openai/gpt-image-1", prompt="p"))
        assert error.code == "insufficient_quota"


async def test_concurrent_jobs_never_exceed_the_limit() -> None:
    with upstream_and_gateway(FakeOpenAI(delay=0.5),
                              keyed(alice=", concurrent_jobs: 3")) as (fake, server):
        alice = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key=ALICE, max_retries=0)

        async def one() -> str:
            try:
                await alice.images.generate(model="openai/gpt-image-1", prompt="p")
                return "ok"
            except openai.RateLimitError as error:
                assert error.code == "concurrency_limit_exceeded"
                return "refused"

        outcomes = await asyncio.gather(*(one() for _ in range(20)))
        assert fake.max_in_flight <= 3
        assert outcomes.count("ok") >= 3 and outcomes.count("refused") >= 1
        assert outcomes.count("ok") + outcomes.count("refused") == 20
        # Every slot came back: three at once work again.
        again = await asyncio.gather(*(one() for _ in range(3)))
        assert again == ["ok"] * 3


def test_extra_headers_forwarded_and_credentials_refused() -> None:
    with upstream_and_gateway(FakeOpenAI(), keyed()) as (fake, server):
        alice = client(server, ALICE)
        alice.images.generate(model="openai/gpt-image-1", prompt="p",
                              extra_body={"extra_headers": {"X-Trace-Id": "abc-123"}})
        sent = fake.requests[-1].headers
        assert sent["x-trace-id"] == "abc-123"
        assert sent["authorization"] == f"Bearer {API_KEY}", "the gateway's own credentials"
        assert "extra_headers" not in fake.requests[-1].body
        for header in ("Authorization", "x-api-key", "api-key", "Cookie", "x-goog-api-key",
                       "Proxy-Authorization"):
            error = expect(openai.BadRequestError, lambda h=header: alice.images.generate(
                model="openai/gpt-image-1", prompt="p",
                extra_body={"extra_headers": {h: "secret"}}))
            assert (error.param, error.code) == ("extra_headers", "forbidden_header")
