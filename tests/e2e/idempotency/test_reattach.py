"""Streams carry ``id:`` on every event. With ``on_disconnect: finish`` a client that lost its
stream re-attaches (``GET {base}/images/jobs/{id}/events`` or the same POST, with
``Last-Event-ID``) and receives what it missed and the rest, nothing twice; with the default
``cancel`` a dropped stream still cancels the upstream call."""

from __future__ import annotations

import time
import uuid

import httpx

from tests.e2e.idempotency.conftest import MODEL, frames, gateway_yaml, usage_rows
from tests.support.fakes.openai_upstream import FakeOpenAI
from tests.support.keys import ALICE, ALICE_HASH
from tests.support.stack import upstream_and_gateway

BODY = {"model": MODEL, "prompt": "a harbour", "stream": True, "partial_images": 3}
GAP = 0.5  # seconds between the upstream's events: the client drops during the first gap


def first_frame_then_hang_up(url: str, job_id: str, **headers: str) -> bytes:
    """POST the stream, read its first frame, and close the connection."""
    received = b""
    with httpx.stream("POST", url, json=BODY, timeout=30,
                      headers={"X-Job-Id": job_id, **headers}) as response:
        assert response.status_code == 200
        for chunk in response.iter_bytes():
            received += chunk
            if b"\n\n" in received.lstrip(b": keep-alive\n"):
                break
    return received


def wait_until(condition, seconds: float = 10) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_dropped_stream_re_attaches_and_gets_the_rest(tmp_path) -> None:
    fake = FakeOpenAI(event_gap=GAP)
    yaml = gateway_yaml(tmp_path, model_extra="on_disconnect: finish")
    with upstream_and_gateway(fake, yaml) as stack:
        job_id = str(uuid.uuid4())
        url = f"{stack.gateway.url}/v1/images/generations"
        seen = frames(first_frame_then_hang_up(url, job_id))
        assert [(n, event) for n, event, _ in seen] == [(1, "image_generation.partial_image")]
        assert not fake.completed_sent, "the job still runs upstream"
        # Re-attach while it runs: live from after the last event received.
        rest = frames(httpx.get(f"{stack.gateway.url}/v1/images/jobs/{job_id}/events",
                                headers={"Last-Event-ID": "1"}, timeout=30).content)
        # And once it ended, by sending the same POST again: replayed from its kept answer.
        again = frames(httpx.post(url, json=BODY, timeout=30,
                                  headers={"X-Job-Id": job_id, "Last-Event-ID": "2"}).content)
        rows = usage_rows(stack.gateway.url, job_id)
    assert [(n, event) for n, event, _ in rest] == [
        (2, "image_generation.partial_image"), (3, "image_generation.partial_image"),
        (4, "image_generation.completed")]
    assert [data["partial_image_index"] for _, _, data in seen + rest[:2]] == [0, 1, 2]
    assert [(n, data["b64_json"]) for n, _, data in again] == [
        (n, data["b64_json"]) for n, _, data in rest[1:]]
    assert len(fake.requests) == 1 and fake.completed_sent, "one call, run to its end"
    assert [row["status"] for row in rows] == ["succeeded"]


def test_a_json_client_that_left_gets_the_finished_answer_on_its_repeat(tmp_path) -> None:
    """``on_disconnect: finish`` on the key: a JSON request timed out by its client runs on,
    and the client's retry gets its answer (one upstream call)."""
    keys = f"keys: [{{name: alice, key_sha256: {ALICE_HASH}, on_disconnect: finish}}]"
    fake = FakeOpenAI(delay=1.0)
    with upstream_and_gateway(fake, gateway_yaml(tmp_path, keys)) as stack:
        job_id = str(uuid.uuid4())
        headers = {"X-Job-Id": job_id, "authorization": f"Bearer {ALICE}"}
        body = {"model": MODEL, "prompt": "p"}
        url = f"{stack.gateway.url}/v1/images/generations"
        try:
            httpx.post(url, json=body, headers=headers, timeout=0.3)
            raise AssertionError("the client should have given up")
        except httpx.ReadTimeout:
            pass
        answer = httpx.post(url, json=body, headers=headers, timeout=30)
    assert answer.status_code == 200 and answer.json()["data"][0]["b64_json"]
    assert len(fake.requests) == 1


def test_by_default_a_dropped_stream_cancels_the_upstream_call(tmp_path) -> None:
    fake = FakeOpenAI(event_gap=GAP)
    with upstream_and_gateway(fake, gateway_yaml(tmp_path)) as stack:
        job_id = str(uuid.uuid4())
        url = f"{stack.gateway.url}/v1/images/generations"
        first_frame_then_hang_up(url, job_id)
        wait_until(lambda: fake.stream_abandoned)
        snapshot = f"{stack.gateway.url}/v1/images/jobs/{job_id}"
        wait_until(lambda: httpx.get(snapshot).json()["status"] == "cancelled")
        assert not fake.completed_sent
        # Cancelled, the id is free: the same request runs again.
        fake.event_gap = 0.0
        again = frames(httpx.post(url, json=BODY, headers={"X-Job-Id": job_id},
                                  timeout=30).content)
    assert [n for n, _, _ in again] == [1, 2, 3, 4] and len(fake.requests) == 2

