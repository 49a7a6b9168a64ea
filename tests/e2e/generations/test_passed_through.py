"""A large JSON answer is written to the client while the upstream still sends it: the client
has its first bytes before the upstream has sent its last, gets the same answer as a buffered
one, a broken connection (and no charge) when the upstream breaks off, and a client that
leaves stops the upstream's answer."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest

from tests.support.fakes.slow_body import IMAGES, SlowBody
from tests.support.keys import ADMIN, ALICE, client, keys_config
from tests.support.processes import serving
from tests.support.servers import serve
from tests.support.stack import Stack, upstream_and_gateway

MODEL = "openai/gpt-image-1"


@pytest.fixture(scope="module")
def module_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack[SlowBody]]:
    data_dir = tmp_path_factory.mktemp("ledger")
    with upstream_and_gateway(SlowBody(), lambda url: keys_config(
            f"{url}/v1", data_dir=str(data_dir))) as stack:
        yield stack


@pytest.fixture
def stack(module_stack: Stack[SlowBody]) -> Stack[SlowBody]:
    module_stack.fake.reset()
    return module_stack


def _post(stack: Stack[SlowBody], **headers: str) -> Any:
    return httpx.Client(timeout=60).stream(
        "POST", f"{stack.gateway.url}/v1/images/generations",
        headers={"authorization": f"Bearer {ALICE}", **headers},
        json={"model": MODEL, "prompt": "p", "n": 2})


def _without_ids(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in ("id", "created")}


def _buffered(stack: Stack[SlowBody]) -> dict[str, Any]:
    """The same request's answer as a buffered one: a job whose client chose its id is kept
    whole (for repeats of it)."""
    stack.fake.go_on.set()
    answer = httpx.post(f"{stack.gateway.url}/v1/images/generations", timeout=60,
                        headers={"authorization": f"Bearer {ALICE}",
                                 "x-job-id": str(uuid.uuid4())},
                        json={"model": MODEL, "prompt": "p", "n": 2})
    assert answer.status_code == 200 and "content-length" in answer.headers
    return answer.json()


@pytest.mark.parametrize(("sized", "plain"), [(False, False), (True, False), (True, True)],
                         ids=["chunked", "content-length", "images-only"])
def test_the_client_reads_the_answer_while_the_upstream_still_sends_it(stack, sized,
                                                                       plain) -> None:
    stack.fake.sized, stack.fake.plain = sized, plain
    with _post(stack) as response:
        assert response.status_code == 200
        body = stack.fake.read_meanwhile(response)
    assert [item["b64_json"] for item in body["data"]] == [IMAGES[0], IMAGES[1]]
    assert _without_ids(body) == _without_ids(_buffered(stack))
    assert ("usage" not in body) if plain else body["usage"]["output_tokens"] == 272
    assert [item.get("revised_prompt") for item in body["data"]] == (
        [None, None] if plain else ["picture 0", "picture 1"])


def test_the_sdk_reads_it_as_a_buffered_answer(stack) -> None:
    stack.fake.go_on.set()
    result = client(stack.gateway, ALICE).images.with_raw_response.generate(
        model=MODEL, prompt="p", n=2)
    assert "content-length" not in result.headers  # it was passed through, not buffered
    images = result.parse()
    assert [d.b64_json for d in images.data] == IMAGES
    assert [d.revised_prompt for d in images.data] == ["picture 0", "picture 1"]
    assert _without_ids(orjson.loads(result.content)) == _without_ids(_buffered(stack))


def _ledger(stack: Stack[SlowBody]) -> list[dict[str, Any]]:
    return httpx.get(f"{stack.gateway.url}/v1/usage", timeout=30,
                     headers={"authorization": f"Bearer {ADMIN}"}).json()["data"]


def test_an_upstream_that_breaks_off_breaks_the_clients_answer_and_costs_nothing(stack) -> None:
    stack.fake.drop = True
    before = len(_ledger(stack))
    with pytest.raises(openai.APIConnectionError):
        client(stack.gateway, ALICE).images.generate(model=MODEL, prompt="p", n=2)
    with _post(stack) as response, pytest.raises(httpx.RemoteProtocolError):
        assert response.status_code == 200  # the answer had begun
        response.read()
    rows = _ledger(stack)
    assert len(rows) == before + 2
    assert all(row["status"] == "failed" and not row["cost"] for row in rows[:2]), rows[:2]


def test_a_client_that_leaves_midway_ends_the_upstreams_answer(stack) -> None:
    with _post(stack) as response:
        next(response.iter_raw())
        assert stack.fake.halfway.is_set()
    # The client closed its connection: the gateway closes the upstream's, which the fake
    # sees while it waits halfway (it gives up waiting after 30 s, and would then finish).
    assert stack.fake.abandoned.wait(30)
    assert not stack.fake.finished.is_set()


def test_a_broken_off_answer_is_logged_once_as_the_gateways_warning(tmp_path: Path) -> None:
    """``image-proxy serve``'s log says why the connection was aborted (the job's failure), and
    not also uvicorn's ERROR "returned without completing response", which reads as a bug."""
    fake = SlowBody(drop=True)
    config = tmp_path / "gateway.yaml"
    log = tmp_path / "gateway.log"
    with serve(fake.app) as upstream:
        config.write_text(keys_config(f"{upstream.url}/v1", data_dir=str(tmp_path / "data")))
        with serving("--config", str(config), "--log-level", "info", log=log) as url, \
                httpx.stream("POST", f"{url}/v1/images/generations", timeout=60,
                             headers={"authorization": f"Bearer {ALICE}"},
                             json={"model": MODEL, "prompt": "p", "n": 2}) as response, \
                pytest.raises(httpx.RemoteProtocolError):
            assert response.status_code == 200
            response.read()
    logged = log.read_text(errors="replace")
    assert "failed after its answer began" in logged, logged
    assert "without completing response" not in logged, logged
