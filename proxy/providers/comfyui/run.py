"""Following one prompt: websocket messages in, gateway events out.

:class:`PromptRun` keeps what is known about the prompt (progress, outputs, whether it ended) and
turns each websocket message into zero or more events. It never yields itself, so the adapter's
generator stays the only one that has to be closed.
"""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import anyio

from proxy.config import TimeoutConfig
from proxy.core.errors import GatewayError, upstream_timeout
from proxy.core.events import Event, PartialImage, Progress
from proxy.images.codec import to_b64
from proxy.providers.comfyui.errors import execution_error, interrupted_error
from proxy.providers.comfyui.protocol import (
    ProgressTracker,
    node_weight,
    parse_binary,
    parse_text,
    queue_remaining,
)

_LOST = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED,
         aiohttp.WSMsgType.ERROR)
# Messages that only come once the prompt runs.
_RUNNING = frozenset({"execution_start", "execution_cached", "executing", "progress",
                      "executed"})


class Clock:
    """The job's whole-run deadline (``timeout.total``), lent to every wait."""

    def __init__(self, timeout: TimeoutConfig) -> None:
        self.timeout = timeout
        self.end = time.monotonic() + timeout.total

    def remaining(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise self.expired()
        return left

    def expired(self) -> GatewayError:
        return upstream_timeout(
            f"ComfyUI did not finish the job within {self.timeout.total:g} seconds.")

    def http(self) -> TimeoutConfig:
        """Per-request timeouts: the model's, cut to what is left of the job."""
        left = self.remaining()
        return TimeoutConfig.model_construct(
            connect=min(self.timeout.connect, left),
            first_byte=min(self.timeout.first_byte, left), total=left)


class PromptRun:
    """One prompt, from the websocket's messages. It has ended on ``execution_success``,
    ``execution_error`` or ``execution_interrupted``, or on ``executing`` with no node: builds
    differ in which of the two ends they send (current ones send both), so either will do.
    Every progress event it makes is ``measured``: ComfyUI reports the run itself, and from
    its ``execution_start`` on, 0 % is real."""

    def __init__(self, prompt_id: str, class_types: dict[str, str], *, host: str,
                 partial_images: int, output_format: str, compression: int | None,
                 clock: Clock) -> None:
        self.prompt_id = prompt_id
        self.host = host
        self.tracker = ProgressTracker(class_types)
        self.clock = clock
        self.partials_wanted = partial_images
        self.partials_sent = 0
        self.output_format = output_format
        self.compression = compression
        # node id -> its ``executed`` output ({"images": [...]}), in arrival order.
        self.outputs: dict[str, dict[str, Any]] = {}
        self.succeeded = False  # execution_success seen
        self.finished = False   # the prompt is over on the server (any outcome)
        self.lost = False       # the websocket closed or failed before the end
        self.waiting = True     # not known to run yet: it waits in the server's queue
        self.started_at: float | None = None  # when it began to run (monotonic)
        self.ended_at: float | None = None
        # The server's queue changed (a ``status`` message) and how long it is now.
        self.queue_changed = False
        self.queue_remaining: int | None = None

    async def receive(self, ws: aiohttp.ClientWebSocketResponse) -> list[Event]:
        """Wait for the next message; the events it means (possibly none)."""
        try:
            message = await ws.receive(timeout=self.clock.remaining())
        except TimeoutError:
            raise self.clock.expired() from None
        if message.type is aiohttp.WSMsgType.TEXT:
            return self.on_text(message.data)
        if message.type is aiohttp.WSMsgType.BINARY:
            return await self.on_binary(message.data)
        if message.type in _LOST:
            self.lost = True
        return []

    def on_text(self, raw: str) -> list[Event]:
        parsed = parse_text(raw)
        if parsed is None:
            return []
        kind, data = parsed
        if kind == "status":
            self.queue_remaining = queue_remaining(data)
            self.queue_changed = True
            return []
        prompt_id = data.get("prompt_id")
        if prompt_id is not None and prompt_id != self.prompt_id:
            return []
        if kind in _RUNNING and (prompt_id is not None or kind != "executing"):
            self.running()
        return self._event(kind, data, prompt_id)

    def running(self) -> None:
        """The prompt has begun to run (its first message says so, or ``/queue`` does)."""
        if self.waiting:
            self.waiting = False
            self.started_at = time.monotonic()

    def _end(self, succeeded: bool) -> None:
        if not self.finished:
            self.finished, self.ended_at = True, time.monotonic()
        self.succeeded = self.succeeded or succeeded

    def _event(self, kind: str, data: dict[str, Any], prompt_id: Any) -> list[Event]:
        tracker = self.tracker
        if kind == "execution_start":
            return [Progress(tracker.percent, stage="running", message="started", measured=True)]
        if kind == "execution_cached":
            nodes = data.get("nodes") or []
            return [Progress(tracker.cached(nodes), stage="running", measured=True,
                             message=f"{len(nodes)} node(s) cached")]
        if kind == "executing":
            if prompt_id is None:  # a reconnect echo of the last node, not news
                return []
            if data.get("node") is None:
                self._end(succeeded=False)
                return []
            percent = tracker.executing(data["node"], data.get("display_node"))
            name = tracker.current_class() or "node"
            return [Progress(percent, stage=name, message=f"running {name}", measured=True)]
        if kind == "progress":
            return [self._step(data)]
        if kind == "executed":
            self._collect(str(data.get("node")), data.get("output"))
            return [Progress(tracker.executed(data.get("node")), measured=True,
                             stage=tracker.current_class() or "running")]
        if kind == "execution_success":
            self._end(succeeded=True)
        elif kind == "execution_error":
            self._end(succeeded=False)
            raise execution_error(data, self.host)
        elif kind == "execution_interrupted":
            self._end(succeeded=False)
            raise interrupted_error(data, self.host)
        return []

    def _step(self, data: dict[str, Any]) -> Progress:
        value, maximum = data.get("value"), data.get("max")
        percent = self.tracker.progress(data.get("node"), value, maximum)
        name = self.tracker.current_class() or "node"
        stage = "sampling" if node_weight(name) >= 10 else name
        steps = isinstance(value, int) and isinstance(maximum, int)
        return Progress(percent, step=value if steps else None,
                        total_steps=maximum if steps else None, stage=stage,
                        message=f"{name} step {value}/{maximum}", measured=True)

    async def on_binary(self, frame: bytes) -> list[Event]:
        """A preview becomes the next partial image once sampling has come far enough:
        the k-th of P when the previewing node is k/(P+1) done, so they spread over it."""
        if self.partials_sent >= self.partials_wanted:
            return []  # previews nobody asked for cost one comparison
        preview = parse_binary(frame)
        if preview is None or preview.prompt_id not in (None, self.prompt_id):
            return []
        if self.tracker.fraction < (self.partials_sent + 1) / (self.partials_wanted + 1):
            return []
        index = self.partials_sent
        self.partials_sent += 1
        b64, _, _ = await anyio.to_thread.run_sync(
            to_b64, preview.data, self.output_format, self.compression)
        return [PartialImage(0, index, b64)]

    def _collect(self, node: str, output: Any) -> None:
        if not isinstance(output, dict):
            return
        known = self.outputs.setdefault(node, {})
        for key, value in output.items():
            if isinstance(value, list) and isinstance(known.get(key), list):
                known[key] = known[key] + value
            else:
                known[key] = value
