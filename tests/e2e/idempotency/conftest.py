"""Helpers for the idempotent job id tests: a gateway in front of the fake OpenAI upstream with
its own usage ledger, the official SDK with its automatic retries on, and an SSE frame reader
that keeps each frame's ``id:``."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson

from tests.support.fakes.openai_upstream import openai_models_yaml
from tests.support.servers import RunningServer

MODEL = "openai/gpt-image-1"


def gateway_yaml(data_dir: Path, extra: str = "", model_extra: str = "") -> Callable[[str], str]:
    """The fake's models, a ledger in ``data_dir``, and ``extra`` top-level YAML;
    ``model_extra`` is added to gpt-image-1's entry (e.g. ``on_disconnect: finish``)."""
    def make(url: str) -> str:
        models = openai_models_yaml(f"{url}/v1")
        if model_extra:
            models = models.replace("    timeout: {connect: 5",
                                    f"    {model_extra}\n    timeout: {{connect: 5", 1)
        return f"data_dir: {data_dir}\n{extra}\n{models}"
    return make


def retrying_sdk(server: RunningServer, key: str = "unused") -> openai.OpenAI:
    """The official SDK as clients use it: two automatic retries (its default)."""
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=2, timeout=30)


def usage_rows(gateway_url: str, job_id: str, key: str = "unused") -> list[dict[str, Any]]:
    """The ledger's rows for ``job_id``, once the first is written (and a moment more, so a
    second charge would have been written too)."""
    deadline = time.monotonic() + 10
    while True:
        answer = httpx.get(f"{gateway_url}/v1/usage", params={"limit": 1000},
                           headers={"authorization": f"Bearer {key}"}).json()
        rows = [row for row in answer["data"] if row["job_id"] == job_id]
        if rows or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    time.sleep(0.3)
    answer = httpx.get(f"{gateway_url}/v1/usage", params={"limit": 1000},
                       headers={"authorization": f"Bearer {key}"}).json()
    return [row for row in answer["data"] if row["job_id"] == job_id]


def frames(raw: bytes) -> list[tuple[int, str, dict[str, Any]]]:
    """Each SSE frame as (id, event, data); keep-alive comment lines are skipped."""
    out = []
    for block in raw.decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.split("\n")
                      if line and not line.startswith(":"))
        if fields:
            out.append((int(fields["id"]), fields["event"], orjson.loads(fields["data"])))
    return out


def without_times(frame: tuple[int, str, dict[str, Any]]) -> tuple[int, str, dict[str, Any]]:
    number, event, data = frame
    return number, event, {k: v for k, v in data.items() if k != "created_at"}
