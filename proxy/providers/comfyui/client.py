"""The HTTP and websocket calls the adapter makes to one ComfyUI server.

Transport failures surface as ``GatewayError`` (via :class:`proxy.upstream.client.UpstreamClient`);
each method turns ComfyUI's answer into data or a ``GatewayError`` saying what went wrong.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import aiohttp
import orjson

from proxy.config import TimeoutConfig
from proxy.core.errors import GatewayError, upstream_error, upstream_timeout
from proxy.providers.comfyui.errors import PromptRefused
from proxy.providers.comfyui.protocol import (
    ImageRef,
    QueueState,
    queue_remaining,
    queue_state,
)
from proxy.upstream.client import UpstreamClient

log = logging.getLogger("proxy.providers.comfyui")

# Cleanup calls (interrupt, dequeue) made while a job is being abandoned: short and bounded.
CLEANUP_TIMEOUT = TimeoutConfig(connect=2.0, first_byte=3.0, total=3.0)


class ComfyClient:
    def __init__(self, http: UpstreamClient, base_url: str, headers: dict[str, str]) -> None:
        self.http = http
        self.base = base_url.rstrip("/")
        self.host = urlsplit(self.base).netloc
        self.headers = dict(headers)
        self._json_headers = {"content-type": "application/json", **self.headers}

    def ws_url(self, client_id: str) -> str:
        scheme, rest = self.base.split("://", 1)
        return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/ws?clientId={quote(client_id)}"

    async def connect(
        self, client_id: str, timeout: TimeoutConfig
    ) -> aiohttp.ClientWebSocketResponse | None:
        """Open the event websocket; None when the server (or a proxy) refuses the upgrade,
        in which case the job is followed by polling ``/history`` instead."""
        async def open_socket() -> aiohttp.ClientWebSocketResponse:
            # max_msg_size=0: preview frames (and SaveImageWebsocket images) can be large.
            return await self.http.session.ws_connect(
                self.ws_url(client_id), headers=self.headers, max_msg_size=0, heartbeat=30.0,
            )

        try:
            return await asyncio.wait_for(
                open_socket(), min(timeout.total, timeout.connect + timeout.first_byte))
        except aiohttp.WSServerHandshakeError as exc:
            log.warning("ComfyUI at %s refused the websocket (HTTP %s); polling instead",
                        self.host, exc.status)
            return None
        except (TimeoutError, aiohttp.ClientError) as exc:
            # The client learns what happened; the server's address and the cause are logged.
            log.warning("ComfyUI at %s: the websocket failed: %s", self.host,
                        str(exc) or type(exc).__name__)
            if isinstance(exc, TimeoutError):
                raise upstream_timeout("The ComfyUI server did not open its websocket in "
                                       "time.") from None
            if isinstance(exc, aiohttp.ClientConnectorError):
                raise upstream_error("Could not connect to the ComfyUI server.",
                                     code="upstream_unreachable") from None
            raise upstream_error("The websocket to the ComfyUI server failed.") from None

    async def submit(self, graph: dict[str, Any], client_id: str, prompt_id: str,
                     timeout: TimeoutConfig) -> str:
        """Queue the prompt; the id ComfyUI gave it. Current builds keep the ``prompt_id`` we
        send; builds before 0.3.45 ignore it and make their own, which is the one that counts.
        A 400 raises :class:`PromptRefused` with ComfyUI's reasons."""
        body = orjson.dumps({"prompt": graph, "client_id": client_id, "prompt_id": prompt_id})
        async with self.http.request("POST", f"{self.base}/prompt", timeout=timeout,
                                     headers=self._json_headers, body=body) as response:
            raw = await response.read()
            if response.status == 400:
                raise PromptRefused(raw)
            if response.status != 200:
                # Refused before anything was queued: another try (or server) may do.
                raise self._status_error(response.status, raw, "the prompt",
                                         transient=response.status >= 500)
        try:
            answer = orjson.loads(raw)
        except orjson.JSONDecodeError:
            answer = None
        chosen = answer.get("prompt_id") if isinstance(answer, dict) else None
        if isinstance(chosen, str) and chosen:
            return chosen
        log.warning("ComfyUI at %s queued a prompt without saying its id; assuming %s",
                    self.host, prompt_id)
        return prompt_id

    async def upload(self, data: bytes, filename: str, content_type: str, subfolder: str,
                     timeout: TimeoutConfig) -> str:
        """``POST /upload/image`` into the input folder; the name ``LoadImage`` takes for it
        (``subfolder/name``, as ComfyUI answered it)."""
        form = aiohttp.FormData()
        form.add_field("image", data, filename=filename, content_type=content_type)
        form.add_field("type", "input")
        form.add_field("subfolder", subfolder)
        form.add_field("overwrite", "true")  # names are unique per job; a retry replaces
        async with self.http.request("POST", f"{self.base}/upload/image", timeout=timeout,
                                     headers=self.headers, body=form) as response:
            raw = await response.read()
            if response.status != 200:
                what = f"the upload of {filename!r}"
                if response.status == 413:
                    what += " (larger than the server's --max-upload-size)"
                raise self._status_error(response.status, raw, what)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("name"), str) or not body["name"]:
            raise upstream_error(f"ComfyUI answered the upload of {filename!r} without the "
                                 "stored file's name.", code="upstream_invalid_response")
        folder = str(body.get("subfolder") or "").strip("/")
        return f"{folder}/{body['name']}" if folder else body["name"]

    async def history(self, prompt_id: str, timeout: TimeoutConfig) -> dict[str, Any] | None:
        """The prompt's history entry, or None while ComfyUI has none (not finished)."""
        body = await self._get_json(f"/history/{quote(prompt_id)}", timeout)
        entry = body.get(prompt_id) if isinstance(body, dict) else None
        return entry if isinstance(entry, dict) else None

    async def queue(self, timeout: TimeoutConfig) -> QueueState:
        """``GET /queue``: what runs and what waits, in the order it will run."""
        return queue_state(await self._get_json("/queue", timeout))

    async def queue_remaining(self, timeout: TimeoutConfig) -> int:
        """``GET /prompt``: how many prompts run or wait (anyone's), a cheap read."""
        remaining = queue_remaining(await self._get_json("/prompt", timeout))
        if remaining is None:
            raise upstream_error(f"ComfyUI at {self.host} answered GET /prompt without its "
                                 "queue's length.", code="upstream_invalid_response")
        return remaining

    async def system_stats(self, timeout: TimeoutConfig) -> dict[str, Any]:
        """``GET /system_stats``: the health check (the server is up and its Python answers)."""
        body = await self._get_json("/system_stats", timeout)
        if not isinstance(body, dict):
            raise upstream_error(f"ComfyUI at {self.host} answered /system_stats with "
                                 "something else than its stats.",
                                 code="upstream_invalid_response")
        return body

    async def view(self, ref: ImageRef, timeout: TimeoutConfig) -> bytes:
        query = urlencode({"filename": ref["filename"], "subfolder": ref["subfolder"],
                           "type": ref["type"]})
        async with self.http.request("GET", f"{self.base}/view?{query}", timeout=timeout,
                                     headers=self.headers) as response:
            raw = await response.read()
            if response.status != 200:
                raise self._status_error(response.status, raw, f"image {ref['filename']!r}")
            return raw

    async def abandon(self, prompt_id: str) -> None:
        """Stop the prompt without touching anyone else's; best effort, never raises.

        A waiting prompt is deleted from the queue; a running one is interrupted, and only when
        ``/queue`` shows it running: builds before September 2025 ignore the ``prompt_id`` of
        ``/interrupt`` and stop whatever runs, another client's prompt included. When ``/queue``
        cannot be read, only the (harmless) delete is sent.
        """
        where = await self._where(prompt_id)
        if where == "pending":
            await self._post_quietly("/queue", {"delete": [prompt_id]}, prompt_id)
            where = await self._where(prompt_id)  # it may have started in between
        if where == "running":
            await self._post_quietly("/interrupt", {"prompt_id": prompt_id}, prompt_id)
        elif where is None:
            await self._post_quietly("/queue", {"delete": [prompt_id]}, prompt_id)

    async def _where(self, prompt_id: str) -> str | None:
        try:
            return (await self.queue(CLEANUP_TIMEOUT)).where(prompt_id)
        except Exception as exc:  # the job is over either way; report, never raise
            log.warning("ComfyUI /queue at %s for prompt %s failed: %r", self.host, prompt_id,
                        exc)
            return None

    async def _post_quietly(self, path: str, payload: dict[str, Any], prompt_id: str) -> None:
        try:
            async with self.http.request(
                "POST", f"{self.base}{path}", timeout=CLEANUP_TIMEOUT,
                headers=self._json_headers, body=orjson.dumps(payload),
            ) as response:
                await response.read()
        except Exception as exc:
            log.warning("ComfyUI %s at %s for prompt %s failed: %r", path, self.host,
                        prompt_id, exc)

    async def _get_json(self, path: str, timeout: TimeoutConfig) -> Any:
        async with self.http.request("GET", f"{self.base}{path}", timeout=timeout,
                                     headers=self.headers) as response:
            raw = await response.read()
            if response.status != 200:
                raise self._status_error(response.status, raw, path)
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise upstream_error(f"ComfyUI answered {path} with data that is not JSON.",
                                 code="upstream_invalid_response") from None

    def _status_error(self, status: int, raw: bytes, what: str,
                      transient: bool = False) -> GatewayError:
        snippet = raw[:300].decode("utf-8", "replace").strip()
        return upstream_error(f"ComfyUI at {self.host} answered HTTP {status} for {what}"
                              + (f": {snippet}" if snippet else "."), transient=transient)
