"""A key with a budget can never spend through a request whose cost is unknown: requests that
leave their settings out are priced as the provider bills them, and models with no price are
refused to keys with a budget (README: "Requests whose cost is unknown")."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.support.fakes.xai import API_KEY, FakeXAI
from tests.support.keys import ALICE, ALICE_HASH, BOB, BOB_HASH
from tests.support.stack import Stack, upstream_and_gateway


def budget_yaml(url: str, data_dir: Path) -> str:
    return f"""
data_dir: {data_dir}
keys:
  - {{name: alice, key_sha256: {ALICE_HASH}, budget_usd: 0.095, budget_period: total}}
  - {{name: bob, key_sha256: {BOB_HASH}}}
providers:
  xai: {{api_key: {API_KEY}, base_url: "{url}/v1"}}
models:
  - {{name: xai/unpriced, provider: xai, upstream_model: grok-imagine-image-next}}
  - {{name: xai/backed-up, provider: xai, upstream_model: grok-imagine-image,
      fallbacks: [xai/unpriced]}}
"""


@pytest.fixture
def xai(tmp_path: Path) -> Iterator[Stack[FakeXAI]]:
    """The fake xAI behind a gateway with a ledger of its own (a total budget counts every
    record of its key)."""
    with upstream_and_gateway(FakeXAI(), lambda url: budget_yaml(url, tmp_path)) as stack:
        yield stack


def post(stack: Stack[FakeXAI], key: str, path: str, **body: object) -> httpx.Response:
    return httpx.post(f"{stack.gateway.url}/v1/images/{path}", json={"prompt": "p", **body},
                      headers={"Authorization": f"Bearer {key}"}, timeout=30)


def png_data_url() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (9, 9, 9)).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_requests_without_quality_or_resolution_count_against_the_budget(xai) -> None:
    xai.fake.reports_cost = False  # nothing but the price table to go by
    model = "grok-imagine-image-2.0"
    generated = post(xai, ALICE, "generations", model=model)
    assert generated.status_code == 200 and generated.json()["cost"] == 0.04  # auto: low, 1k
    edited = post(xai, ALICE, "edits", model=model, image=png_data_url())
    assert edited.status_code == 200 and edited.json()["cost"] == 0.06  # edits: medium
    assert "quality" not in xai.fake.calls[0].body and "resolution" not in xai.fake.calls[0].body
    spent = post(xai, ALICE, "generations", model=model)
    assert spent.status_code == 429, "$0.10 spent of a $0.095 budget"
    assert spent.json()["error"]["code"] == "insufficient_quota"
    assert len(xai.fake.calls) == 2


def test_a_key_with_a_budget_may_not_use_a_model_without_a_price(xai) -> None:
    xai.fake.reports_cost = False
    for model in ("xai/unpriced", "xai/backed-up"):  # itself, or through its fallback
        refused = post(xai, ALICE, "generations", model=model)
        assert refused.status_code == 403, refused.text
        error = refused.json()["error"]
        assert (error["code"], error["param"]) == ("model_unpriced", "model")
        assert "xai/unpriced" in error["message"]
    assert xai.fake.calls == [], "nothing was sent upstream"
    # A key without a budget may: its usage is recorded, at no known cost.
    allowed = post(xai, BOB, "generations", model="xai/unpriced")
    assert allowed.status_code == 200 and allowed.json()["cost"] is None
