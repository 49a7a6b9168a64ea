"""``GET /v1/usage``: what each key spent, from the ledger, exactly the same after a restart."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.support.keys import ADMIN, ALICE, BOB, client, keys_config


def test_usage_ledger_survives_a_restart_with_exact_totals(fake_openai, start_gateway,
                                                           tmp_path) -> None:
    _, base_url = fake_openai
    text = keys_config(base_url, data_dir=str(tmp_path))
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
