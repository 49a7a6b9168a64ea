"""A job id is reserved only by a job that really starts, and freed by a failure worth
retrying: the official SDK's automatic retries under a client-chosen ``X-Job-Id`` really run
again and end with the error the upstream gave (not ``409 job_id_conflict``); a failure for good
is replayed, not run again; a request refused before its job started leaves the id free."""

from __future__ import annotations

import threading
import uuid

import httpx
import openai
import orjson
import pytest

from tests.e2e.idempotency.conftest import MODEL, gateway_yaml, retrying_sdk, usage_rows
from tests.support.fakes.openai_upstream import FakeOpenAI
from tests.support.keys import ALICE, ALICE_HASH
from tests.support.stack import upstream_and_gateway


def upstream_error(status: int, code: str) -> bytes:
    return orjson.dumps({"error": {"message": f"upstream says {status}", "code": code,
                                   "type": "invalid_request_error", "param": None}})


@pytest.mark.parametrize(("status", "raised"), [
    (429, openai.RateLimitError), (500, openai.InternalServerError)], ids=["429", "500"])
def test_sdk_retries_under_one_job_id_run_again_and_raise_the_upstream_error(
        tmp_path, status, raised) -> None:
    fake = FakeOpenAI(mode="status", status=status, status_body=upstream_error(status, "busy"))
    with upstream_and_gateway(fake, gateway_yaml(tmp_path)) as stack:
        job_id = str(uuid.uuid4())
        client = retrying_sdk(stack.gateway)
        with pytest.raises(raised) as caught:
            client.images.generate(model=MODEL, prompt="p", extra_headers={"X-Job-Id": job_id})
        assert caught.value.request_id == job_id
        assert len(fake.requests) == 3, "the first call and both SDK retries reached upstream"
        # The id is still free: once the upstream recovers, the same request runs.
        fake.mode = "ok"
        image = client.images.generate(model=MODEL, prompt="p",
                                       extra_headers={"X-Job-Id": job_id})
        assert image.data[0].b64_json and len(fake.requests) == 4
        rows = usage_rows(stack.gateway.url, job_id)
    assert sorted(row["status"] for row in rows) == ["failed"] * 3 + ["succeeded"]


def test_a_failure_for_good_is_replayed_not_run_again(tmp_path) -> None:
    fake = FakeOpenAI(mode="status", status=400,
                      status_body=upstream_error(400, "content_policy_violation"))
    with upstream_and_gateway(fake, gateway_yaml(tmp_path)) as stack:
        job_id = str(uuid.uuid4())
        client = retrying_sdk(stack.gateway)
        for attempt in range(2):
            with pytest.raises(openai.BadRequestError) as caught:
                client.images.with_raw_response.generate(
                    model=MODEL, prompt="p", extra_headers={"X-Job-Id": job_id})
            assert caught.value.code == "content_policy_violation"
            replayed = caught.value.response.headers.get("idempotent-replayed")
            assert replayed == (None if attempt == 0 else "true")
        assert len(fake.requests) == 1, "the refusal was kept and replayed"


@pytest.mark.parametrize("refused", [
    {"size": "3x3"},                      # 400, refused while binding
    {"model": "openai/gpt-image-9"},      # 404
], ids=["400", "404"])
def test_a_request_refused_before_it_starts_leaves_the_id_free(tmp_path, refused) -> None:
    with upstream_and_gateway(FakeOpenAI(), gateway_yaml(tmp_path)) as stack:
        job_id = str(uuid.uuid4())
        client = retrying_sdk(stack.gateway)
        with pytest.raises(openai.APIStatusError) as caught:
            client.images.generate(**{"model": MODEL, "prompt": "p", **refused},
                                   extra_headers={"X-Job-Id": job_id})
        assert caught.value.status_code in (400, 404)
        image = client.images.generate(model=MODEL, prompt="p",
                                       extra_headers={"X-Job-Id": job_id})
        assert image.data[0].b64_json and len(fake_calls(stack)) == 1


def fake_calls(stack) -> list:  # type: ignore[no-untyped-def]
    return stack.fake.requests


def test_a_request_refused_by_the_keys_limits_leaves_the_id_free(tmp_path) -> None:
    """Claimed, then refused at admission (the key's one concurrent job is busy): the claim is
    given back, so the same request runs once the key has room."""
    extra = f"keys: [{{name: alice, key_sha256: {ALICE_HASH}, concurrent_jobs: 1}}]"
    with upstream_and_gateway(FakeOpenAI(delay=1.0), gateway_yaml(tmp_path, extra)) as stack:
        # A claim left behind would hold the id (until it lapses): the retry would hang.
        client = openai.OpenAI(base_url=f"{stack.gateway.url}/v1", api_key=ALICE,
                               max_retries=0, timeout=10)
        busy = threading.Thread(target=client.images.generate,
                                kwargs={"model": MODEL, "prompt": "busy"})
        busy.start()
        while not stack.fake.requests:
            threading.Event().wait(0.01)
        job_id = str(uuid.uuid4())
        with pytest.raises(openai.RateLimitError) as caught:
            client.images.generate(model=MODEL, prompt="p", extra_headers={"X-Job-Id": job_id})
        assert caught.value.code == "concurrency_limit_exceeded"
        busy.join()
        image = client.images.generate(model=MODEL, prompt="p",
                                       extra_headers={"X-Job-Id": job_id})
        assert image.data[0].b64_json and len(stack.fake.requests) == 2


def test_another_request_under_a_used_id_is_a_conflict_the_sdk_does_not_retry(tmp_path) -> None:
    with upstream_and_gateway(FakeOpenAI(), gateway_yaml(tmp_path)) as stack:
        job_id = str(uuid.uuid4())
        client = retrying_sdk(stack.gateway)
        client.images.generate(model=MODEL, prompt="a cat", extra_headers={"X-Job-Id": job_id})
        with pytest.raises(openai.ConflictError) as caught:
            client.images.generate(model=MODEL, prompt="a dog",
                                   extra_headers={"X-Job-Id": job_id})
        assert caught.value.code == "job_id_conflict" and caught.value.param == "x-job-id"
        assert caught.value.response.headers["x-should-retry"] == "false"
        # Idempotency-Key names a job per key: the same text, another body, is a conflict too.
        url = f"{stack.gateway.url}/v1/images/generations"
        body = {"model": MODEL, "prompt": "a cow"}
        first = httpx.post(url, json=body, headers={"Idempotency-Key": "order-17"}, timeout=30)
        other = httpx.post(url, json={**body, "prompt": "a hen"}, timeout=30,
                           headers={"Idempotency-Key": "order-17"})
        assert first.status_code == 200 and other.status_code == 409
        assert other.json()["error"]["param"] == "idempotency-key"
        assert first.json()["id"] == first.headers["x-request-id"] == other.headers[
            "x-request-id"], "the job id the key names"
        assert len(stack.fake.requests) == 2
