"""Gateway keys: who may call, what each may do, how much, and what each spent."""

from __future__ import annotations

import asyncio
import io

import httpx
import openai
import pytest
from PIL import Image

from proxy.auth import new_key
from tests.support.fakes.openai_upstream import API_KEY
from tests.support.schemas import validate

ADMIN, ADMIN_HASH = new_key()
ALICE, ALICE_HASH = new_key()
BOB, BOB_HASH = new_key()
VIEWER, VIEWER_HASH = new_key()


def config(base_url: str, *, data_dir: str = "", alice: str = "", bob: str = "") -> str:
    return f"""
{f"data_dir: {data_dir}" if data_dir else ""}
keys:
  - {{name: admin, key_sha256: {ADMIN_HASH}, capabilities: [admin]}}
  - {{name: alice, key_sha256: {ALICE_HASH}{alice}}}
  - {{name: bob, key_sha256: {BOB_HASH}{bob}}}
  - {{name: viewer, key_sha256: {VIEWER_HASH}, capabilities: [images], models: ["local*"]}}
models:
  - {{name: local, provider: local}}
  - {{name: local/slow, provider: local, step_delay: 0.2}}
  - {{name: openai/gpt-image-1, provider: openai, base_url: "{base_url}", api_key: {API_KEY}}}
"""


def client(server, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0, timeout=60)


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


def test_401_403(fake_openai, start_gateway) -> None:
    _, base_url = fake_openai
    with start_gateway(config(base_url)) as server:
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


def test_rate_limit_429_with_retry_after(fake_openai, start_gateway) -> None:
    _, base_url = fake_openai
    with start_gateway(config(base_url, alice=", requests_per_minute: 2")) as server:
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
    with start_gateway(config(base_url, data_dir=str(tmp_path),
                              alice=", budget_usd: 0.015, budget_period: day")) as server:
        alice = client(server, ALICE)
        alice.images.generate(model="openai/gpt-image-1", prompt="p")
        alice.images.generate(model="openai/gpt-image-1", prompt="p")  # 0.01094 < 0.015
        error = expect(openai.RateLimitError, lambda: alice.images.generate(
            model="openai/gpt-image-1", prompt="p"))
        assert error.code == "insufficient_quota"
        assert error.response.headers["x-should-retry"] == "false"
    # The spend is in the ledger: a restarted gateway still refuses.
    with start_gateway(config(base_url, data_dir=str(tmp_path),
                              alice=", budget_usd: 0.015, budget_period: day")) as server:
        error = expect(openai.RateLimitError, lambda: client(server, ALICE).images.generate(
            model="openai/gpt-image-1", prompt="p"))
        assert error.code == "insufficient_quota"


async def test_concurrent_jobs_never_exceed_the_limit(fake_openai, start_gateway) -> None:
    fake, base_url = fake_openai
    fake.delay = 0.5
    with start_gateway(config(base_url, alice=", concurrent_jobs: 3")) as server:
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


def test_extra_headers_forwarded_and_credentials_refused(fake_openai, start_gateway) -> None:
    fake, base_url = fake_openai
    with start_gateway(config(base_url)) as server:
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


def test_usage_ledger_survives_a_restart_with_exact_totals(fake_openai, start_gateway,
                                                           tmp_path) -> None:
    _, base_url = fake_openai
    text = config(base_url, data_dir=str(tmp_path))
    with start_gateway(text) as server:
        alice, bob = client(server, ALICE), client(server, BOB)
        for _ in range(3):
            alice.images.generate(model="openai/gpt-image-1", prompt="p", user="u-1",
                                  extra_body={"metadata": {"order": 7}})
        bob.images.generate(model="local", prompt="p", size="64x64", n=2)
        with pytest.raises(openai.BadRequestError):  # refused before it ran: not a job
            bob.images.generate(model="local", prompt="p", size="1x1")
        mine = httpx.get(f"{server.url}/v1/usage", headers={"authorization": f"Bearer {ALICE}"})
        before = mine.json()
    assert before["totals"]["requests"] == 3
    assert before["totals"]["cost"] == pytest.approx(3 * 0.01094, abs=1e-12)
    row = before["data"][0]
    assert (row["key"], row["model"], row["user"], row["metadata"]) == (
        "alice", "openai/gpt-image-1", "u-1", {"order": 7})
    assert row["status"] == "succeeded" and row["output_tokens"] == 272

    with start_gateway(text) as server:
        after = httpx.get(f"{server.url}/v1/usage",
                          headers={"authorization": f"Bearer {ALICE}"}).json()
        everyone = httpx.get(f"{server.url}/v1/usage",
                             headers={"authorization": f"Bearer {ADMIN}"}).json()
        only_bob = httpx.get(f"{server.url}/v1/usage", params={"key": "bob"},
                             headers={"authorization": f"Bearer {ADMIN}"}).json()
        forbidden = httpx.get(f"{server.url}/v1/usage", params={"key": "bob"},
                              headers={"authorization": f"Bearer {ALICE}"})
    assert after["totals"] == before["totals"], "exactly the same totals after a restart"
    assert everyone["totals"]["requests"] == 4 and everyone["totals"]["images"] == 5
    assert only_bob["totals"]["requests"] == 1 and only_bob["data"][0]["images"] == 2
    assert forbidden.status_code == 403
