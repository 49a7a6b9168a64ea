"""Gateway keys for tests: four keys (admin, alice, bob, a viewer limited to ``local*``), a gateway
config that knows them, and the official SDK calling with one of them."""

from __future__ import annotations

import openai

from proxy.auth import new_key
from tests.support.fakes.openai_upstream import API_KEY
from tests.support.servers import RunningServer

ADMIN, ADMIN_HASH = new_key()
ALICE, ALICE_HASH = new_key()
BOB, BOB_HASH = new_key()
VIEWER, VIEWER_HASH = new_key()


def keys_config(base_url: str, *, data_dir: str = "", alice: str = "", bob: str = "") -> str:
    """The four keys (``alice``/``bob``: more settings of that key, e.g. ``", budget_usd: 1"``),
    the local renderer (also slowed down, as ``local/slow``) and ``openai/gpt-image-1`` behind
    the fake OpenAI upstream at ``base_url`` (``.../v1``)."""
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


def client(server: RunningServer, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0, timeout=60)
