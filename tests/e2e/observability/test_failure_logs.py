"""Logs that explain a failure, from a real ``image-proxy serve`` at its default level (info, no
--access-log): one warning per failed upstream attempt naming the model, the provider and the
cause (the upstream's address and words included), one line per finished job (JSON, SSE, async
and edits alike), and never a gateway key, an upstream key or a prompt."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.support.fakes.openai_upstream import API_KEY, FakeOpenAI
from tests.support.images import encoded
from tests.support.keys import ALICE, ALICE_HASH
from tests.support.processes import GatewayProcess
from tests.support.servers import free_port, serve

# An upstream key of no recognisable shape: only the gateway's care keeps it out of the log.
UPSTREAM_KEY = "upstream-credential-7f3a9c2e1b"
PROMPT = "a lighthouse painted by a secretive client"


def config(models: str, *, reliability: str = "{retries: 0}", extra: str = "") -> str:
    return f"""
reliability: {reliability}
keys:
  - {{name: alice, key_sha256: {ALICE_HASH}}}
models:
{models}
{extra}
"""


def openai_model(name: str, base_url: str, key: str = UPSTREAM_KEY) -> str:
    return (f"  - {{name: {name}, provider: openai, upstream_model: gpt-image-1, "
            f"base_url: \"{base_url}\", api_key: {key}}}\n")


@asynccontextmanager
async def gateway(tmp_path: Path, text: str) -> AsyncIterator[GatewayProcess]:
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    process = GatewayProcess(path, tmp_path / "gateway.log")
    await process.start()
    try:
        await process.ready()
        yield process
    finally:
        await process.stop()


def lines(process: GatewayProcess) -> list[dict[str, Any]]:
    return [json.loads(line) for line in process.logged().splitlines() if line.startswith("{")]


def client(process: GatewayProcess) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{process.url}/v1", api_key=ALICE, max_retries=0,
                              timeout=30)


def only(found: list[dict[str, Any]], what: str) -> dict[str, Any]:
    assert len(found) == 1, f"{what}: {found}"
    return found[0]


def jobs_of(logged: list[dict[str, Any]], where: Callable[[dict[str, Any]], bool] = bool
            ) -> list[dict[str, Any]]:
    return [line for line in logged if line["logger"] == "proxy.jobs" and "job_status" in line
            and where(line)]


async def test_a_dead_upstream_logs_one_warning_with_its_cause_and_one_job_line(
        tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    text = config(openai_model("dead", f"http://127.0.0.1:{port}/v1"))
    async with gateway(tmp_path, text) as process:
        async with client(process) as sdk:
            with pytest.raises(openai.APIStatusError) as refused:
                await sdk.images.generate(model="dead", prompt=PROMPT)
    error = refused.value
    assert error.status_code == 502 and error.code == "upstream_unreachable"
    request_id = error.response.headers["x-request-id"]
    logged = lines(process)
    warning = only([line for line in logged if line["level"] == "warning"], "warnings")
    assert (warning["model"], warning["provider"]) == ("dead", "openai")
    assert warning["error_code"] == "upstream_unreachable" and warning["attempt"] == 1
    assert f"127.0.0.1:{port}" in warning["upstream"] and warning["reason"]
    for word in ("dead", "openai", "upstream_unreachable", f"127.0.0.1:{port}"):
        assert word in warning["message"], word
    assert warning["request_id"] == request_id == warning["job_id"]
    job = only(jobs_of(logged), "job lines")
    assert job["level"] == "info" and job["request_id"] == request_id == job["job_id"]
    assert (job["key"], job["model"], job["provider"], job["kind"]) == (
        "alice", "dead", "openai", "generation")
    assert (job["job_status"], job["error_code"], job["attempts"]) == (
        "failed", "upstream_unreachable", 1)
    assert job["latency_ms"] >= 0 and "upstream_status" not in job
    text = process.logged()
    for secret in (ALICE, UPSTREAM_KEY, PROMPT):
        assert secret not in text


async def test_an_upstream_error_is_logged_with_its_words_each_attempt(tmp_path: Path) -> None:
    """A 500 that repeats the credential it received: each attempt's warning has the HTTP status
    and the upstream's message, without the credential; the job line counts the attempts."""
    fake = FakeOpenAI(mode="status", status=500, status_times=5, status_body=json.dumps(
        {"error": {"message": f"shard 7 overloaded (key {API_KEY})",
                   "type": "server_error"}}).encode())
    with serve(fake.app) as upstream:
        text = config(openai_model("flaky", f"{upstream.url}/v1", API_KEY),
                      reliability="{retries: 1, backoff_base: 0.01, backoff_max: 0.02}")
        async with gateway(tmp_path, text) as process:
            async with client(process) as sdk:
                with pytest.raises(openai.InternalServerError):
                    await sdk.images.generate(model="flaky", prompt=PROMPT)
    logged = lines(process)
    warnings = [line for line in logged if line["level"] == "warning"]
    assert [line["attempt"] for line in warnings] == [1, 2]
    for line in warnings:
        assert (line["model"], line["provider"], line["upstream_status"]) == (
            "flaky", "openai", 500)
        assert "shard 7 overloaded" in line["message"] and "[redacted]" in line["message"]
    assert "retrying in" in warnings[0]["message"] and "retrying" not in warnings[1]["message"]
    job = only(jobs_of(logged), "job lines")
    assert (job["job_status"], job["error_code"], job["upstream_status"], job["attempts"]) == (
        "failed", "upstream_error", 500, 2)
    assert API_KEY not in process.logged() and ALICE not in process.logged()


async def test_every_kind_of_job_has_one_line_and_no_prompt(tmp_path: Path) -> None:
    text = config("  - {name: local, provider: local}\n")
    async with gateway(tmp_path, text) as process:
        async with client(process) as sdk:
            generated, stream_id, edited = await three_jobs(sdk)
        async with httpx.AsyncClient(base_url=process.url, timeout=30, headers={
                "authorization": f"Bearer {ALICE}"}) as http:
            accepted = await http.post("/v1/images/generations", headers={
                "prefer": "respond-async"}, json={"model": "local", "prompt": PROMPT,
                                                  "size": "64x64"})
            assert accepted.status_code == 202
            for _ in range(200):
                job = (await http.get(accepted.headers["location"])).json()
                if job["status"] == "succeeded":
                    break
                await asyncio.sleep(0.05)
    logged = lines(process)
    jobs = jobs_of(logged)
    assert len(jobs) == 4, jobs
    assert {line["job_id"] for line in jobs} == {generated, stream_id, edited,
                                                 accepted.json()["id"]}
    assert sorted(line["kind"] for line in jobs) == ["edit", "generation", "generation",
                                                     "generation"]
    for line in jobs:
        assert (line["job_status"], line["key"], line["model"], line["provider"]) == (
            "succeeded", "alice", "local", "local")
        assert line["attempts"] == 1 and line["image_bytes"] > 0 and line["images"] == 1
        assert line["request_id"] and "error_code" not in line and "prompt" not in line
    assert sum(1 for line in jobs if line.get("partial_bytes")) == 1  # the stream's
    assert not [line for line in logged if line["level"] in ("warning", "error")]
    assert PROMPT not in process.logged() and ALICE not in process.logged()


async def three_jobs(sdk: openai.AsyncOpenAI) -> tuple[str, str, str]:
    """A JSON generation, a streamed one and an edit: their job ids."""
    generated = await sdk.images.generate(model="local", prompt=PROMPT, size="64x64")
    streamed = await sdk.images.with_raw_response.generate(
        model="local", prompt=PROMPT, size="64x64", stream=True, partial_images=1)
    async for _ in streamed.parse():
        pass
    edited = await sdk.images.edit(model="local", prompt=PROMPT, size="64x64",
                                   image=("in.png", encoded(64, 64), "image/png"))
    return generated.id, streamed.headers["x-request-id"], edited.id


async def test_prompts_are_logged_only_when_the_config_says_so(tmp_path: Path) -> None:
    text = config("  - {name: local, provider: local}\n", extra="logs: {prompts: true}")
    async with gateway(tmp_path, text) as process, client(process) as sdk:
        await sdk.images.generate(model="local", size="64x64", prompt=f"{PROMPT} sk-{'x' * 24}")
    job = only(jobs_of(lines(process)), "job lines")
    assert job["prompt"] == f"{PROMPT} [redacted]"
