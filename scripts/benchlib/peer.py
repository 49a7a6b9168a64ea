"""Optional: LiteLLM's proxy in front of the same fake upstream, when it is installed (a peer row:
small JSON at 16 connections)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from benchlib import payloads
from benchlib.fleet import Fleet, free_port, wait_ready
from benchlib.load import LoadResult, measure

HOST = "127.0.0.1"


async def measure_litellm(fleet: Fleet, tmp: Path, upstream_url: str,
                          notes: list[tuple[str, str]]) -> LoadResult | None:
    if importlib.util.find_spec("litellm") is None:
        notes.append(("LiteLLM proxy (peer)", "skipped: litellm is not importable"))
        return None
    port = free_port()
    config = tmp / "litellm.yaml"
    upstream_base = upstream_url.rsplit("/images/", 1)[0]
    config.write_text(f"""\
model_list:
  - model_name: {payloads.MODEL}
    litellm_params:
      model: openai/gpt-image-1
      api_base: {upstream_base}
      api_key: sk-bench-not-a-real-key
""")
    proc = fleet.spawn("litellm", [sys.executable, "-m", "litellm.proxy.proxy_cli",
                                   "--config", str(config), "--host", HOST, "--port", str(port)],
                       stdout=subprocess.DEVNULL)
    url = f"http://{HOST}:{port}/v1/images/generations"
    try:
        await wait_ready(proc, f"http://{HOST}:{port}/health/liveliness", timeout=90)
        res = await measure("litellm", "peer", url, 16, 300, payloads.request_body())
        notes.append(("LiteLLM proxy (peer), small JSON, 16 conns",
                      f"{res.req_s:,.0f} req/s, p50 {res.p50_ms:.1f} ms, "
                      f"p99 {res.p99_ms:.1f} ms, {res.errors} errors"))
        return res
    except RuntimeError as exc:
        notes.append(("LiteLLM proxy (peer)", f"skipped: {exc}"))
        return None
    finally:
        fleet.stop(proc)
