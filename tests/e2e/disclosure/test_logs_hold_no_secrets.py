"""``image-proxy serve --log-level debug --access-log``, as an operator debugging it runs it, with
everything that carries a secret going on at once: gateway keys on Socket.IO (websocket and
long-polling, in the auth packet and in handshake headers) and on HTTP, refused keys, upstream
errors that repeat the upstream's credential, an unreachable upstream, signed image URLs fetched
and tampered with. Nothing in the whole log (stdout and stderr), nor in any body a client sees,
holds a key, a token, a signature or an upstream secret."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import sys
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import socketio

from tests.support.fakes.echoing import EchoingUpstream
from tests.support.fakes.openai_upstream import API_KEY, FakeOpenAI
from tests.support.keys import ADMIN, ADMIN_HASH, ALICE, ALICE_HASH, BOB, BOB_HASH
from tests.support.progress_client import NAMESPACE
from tests.support.servers import free_port, serve

# Shaped like no known kind of key: only the configuration says it is a secret.
UPSTREAM_SECRET = "k7-self-hosted-CREDENTIAL-4242"
# Tokens that authenticate nothing, one shaped like a gateway key and one not.
WRONG_TOKENS = ["ipk_0000wrong0000wrong0000wrong", "plain-wrong-token-0000"]
BEARER = re.compile(r"(?i)\bbearer\s+(?!\[redacted\])[A-Za-z0-9._~+/-]{4,}")


def config(data_dir: Path, openai_url: str, echo_url: str, gone_port: int) -> str:
    upstream = "provider: openai, upstream_model: gpt-image-1"
    return f"""
data_dir: {data_dir}
keys:
  - {{name: admin, key_sha256: {ADMIN_HASH}, capabilities: [admin]}}
  - {{name: alice, key_sha256: {ALICE_HASH}}}
  - {{name: bob, key_sha256: {BOB_HASH}}}
models:
  - {{name: local/slow, provider: local, step_delay: 0.05}}
  - {{name: openai/gpt-image-1, provider: openai, base_url: "{openai_url}/v1",
      api_key: {API_KEY}}}
  - {{name: echo, {upstream}, base_url: "{echo_url}/v1", api_key: {UPSTREAM_SECRET}}}
  - {{name: gone, {upstream}, base_url: "http://127.0.0.1:{gone_port}/v1",
      api_key: {UPSTREAM_SECRET}}}
"""


class Session:
    """A client of the gateway that keeps every body it was shown."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.seen: list[str] = []
        self.http = httpx.AsyncClient(base_url=url, timeout=60)

    async def call(self, method: str, path: str, key: str | None = ALICE,
                   **kwargs: object) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))  # type: ignore[call-overload]
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        response = await self.http.request(method, path, headers=headers, **kwargs)
        self.seen.append(response.text if "image/" not in response.headers.get(
            "content-type", "") else "")
        return response

    async def watch(self, transport: str) -> str:
        """Over ``transport``, watch a hosted-URL job of alice's to its end; its image URL."""
        client = socketio.AsyncClient(reconnection=False)
        events: list[dict] = []
        ended = asyncio.Event()

        async def on_progress(data: dict) -> None:
            events.append(data)
            if data["status"] in ("succeeded", "failed"):
                ended.set()

        client.on("progress", on_progress, namespace=NAMESPACE)
        await client.connect(self.url, namespaces=[NAMESPACE], transports=[transport],
                             auth={"token": ALICE}, wait_timeout=10,
                             headers={"Authorization": f"Bearer {ALICE}",
                                      "Cookie": f"session={ALICE}"})
        job_id = str(uuid.uuid4())
        ack = await client.call("subscribe", {"job_id": job_id}, namespace=NAMESPACE,
                                timeout=10)
        answer = await self.call("POST", "/v1/images/generations", headers={"X-Job-Id": job_id},
                                 json={"model": "local/slow", "prompt": "p", "size": "64x64",
                                       "response_format": "url"})
        await asyncio.wait_for(ended.wait(), 30)
        await leave(client)
        self.seen.append(json.dumps([ack, *events]))
        assert events[-1]["status"] == "succeeded" and answer.status_code == 200
        return answer.json()["data"][0]["url"]


async def leave(client: socketio.AsyncClient) -> None:
    """Disconnect without waiting for a pending long-poll request to come back (it would take
    up to the ping interval)."""
    await client.eio.disconnect(abort=True)


async def accepted(url: str, transport: str, token: str) -> bool:
    """Whether the namespace takes ``token`` (waiting for the answer here: the client's own
    wait would end with a disconnect that waits for the long-poll)."""
    client = socketio.AsyncClient(reconnection=False)
    answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def settle(outcome: bool) -> None:
        if not answer.done():
            answer.set_result(outcome)

    client.on("connect", lambda: settle(True), namespace=NAMESPACE)
    client.on("connect_error", lambda _: settle(False), namespace=NAMESPACE)
    await client.connect(url, namespaces=[NAMESPACE], transports=[transport],
                         auth={"token": token}, wait=False)
    try:
        return await asyncio.wait_for(answer, 10)
    finally:
        await leave(client)


async def exercise(session: Session, echo: EchoingUpstream) -> list[str]:
    """Everything that carries a secret; the signatures of the image URLs handed out."""
    urls = [await session.watch(transport) for transport in ("websocket", "polling")]
    for transport in ("websocket", "polling"):
        for token in WRONG_TOKENS:
            assert not await accepted(session.url, transport, token)
    for url in urls:
        assert (await session.call("GET", url, key=None)).status_code == 200
        bad = url.replace("signature=", "signature=0")
        assert (await session.call("GET", bad, key=None)).status_code == 403
    for body in ("json", "text", "stream"):
        echo.body = body
        await session.call("POST", "/v1/images/generations", json={
            "model": "echo", "prompt": "p", "stream": body == "stream"})
    assert echo.received, "the echoing upstream was called"
    assert (await session.call("POST", "/v1/images/generations", json={
        "model": "gone", "prompt": "p"})).status_code == 502
    for token in WRONG_TOKENS:
        assert (await session.call("GET", "/v1/models", key=token)).status_code == 401
    job_id = str(uuid.uuid4())
    await session.call("POST", "/v1/images/generations", json={
        "model": "openai/gpt-image-1", "prompt": "p", "extra_headers": {"X-Trace-Id": "t"}},
        headers={"Prefer": "respond-async", "X-Job-Id": job_id})
    await asyncio.sleep(0.5)
    await session.call("GET", f"/v1/images/jobs/{job_id}", key=ADMIN)
    await session.call("GET", "/v1/usage?key=alice", key=ADMIN)
    await session.call("GET", "/v1/usage", key=BOB)
    return [parse_qs(urlsplit(url).query)["signature"][0] for url in urls]


async def wait_until_up(url: str, process: asyncio.subprocess.Process) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(300):
            assert process.returncode is None, "the gateway exited"
            try:
                if (await client.get(f"{url}/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("the gateway did not start")


async def stop(process: asyncio.subprocess.Process) -> None:
    """SIGTERM; then, if long-poll requests of the aborted polling clients keep uvicorn's
    graceful shutdown waiting (up to the ping interval), two SIGINTs: exit at once."""
    process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(asyncio.shield(process.wait()), 5)
    except TimeoutError:
        for _ in range(2):
            # It may end on its own meanwhile: its graceful shutdown takes about as long as
            # the wait above, and a signal to a process that is gone raises.
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGINT)
            await asyncio.sleep(0.2)
        await asyncio.wait_for(process.wait(), 30)


async def test_debug_logs_and_client_bodies_hold_no_secret(tmp_path: Path) -> None:
    echo, fake = EchoingUpstream(), FakeOpenAI()
    port, gone = free_port(), free_port()
    with serve(fake.app) as openai_server, serve(echo.app) as echo_server:
        path = tmp_path / "gateway.yaml"
        path.write_text(config(tmp_path / "data", openai_server.url, echo_server.url, gone))
        out, err = (tmp_path / "stdout").open("wb"), (tmp_path / "stderr").open("wb")
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "proxy", "serve", "--config", str(path), "--port", str(port),
            "--log-level", "debug", "--access-log", stdout=out, stderr=err)
        session = Session(f"http://127.0.0.1:{port}")
        try:
            await wait_until_up(session.url, process)
            signatures = await exercise(session, echo)
        finally:
            await session.http.aclose()
            await stop(process)
            out.close()
            err.close()
    log = (tmp_path / "stdout").read_text() + (tmp_path / "stderr").read_text()
    url_secret = next((tmp_path / "data").rglob(".url-secret")).read_text().strip()

    secrets = [ADMIN, ALICE, BOB, *WRONG_TOKENS, API_KEY, UPSTREAM_SECRET, url_secret]
    for secret in [*secrets, *signatures]:
        assert secret not in log, f"{secret[:6]}… is in the log"
    assert BEARER.search(log) is None, BEARER.search(log)
    bodies = "\n".join(session.seen)
    for secret in secrets:
        assert secret not in bodies, f"{secret[:6]}… reached a client"
    assert BEARER.search(bodies) is None, BEARER.search(bodies)

    # The log is the debug log of all that happened (the test cannot pass by logging nothing).
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert {"debug", "info"} <= {line["level"] for line in lines}
    assert any("WebSocket /socket.io/" in line["message"] for line in lines)
    assert sum(line["logger"] == "proxy.access" for line in lines) >= 15
    assert f"127.0.0.1:{gone}" in log, "an unreachable upstream's address is logged"
