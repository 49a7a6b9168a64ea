"""ComfyUI's wire format: websocket messages, binary preview frames, history entries, errors,
and the weighting that turns per-node progress into one percentage.

Shapes follow ``shared/reference/providers.md`` §E. Nothing here does I/O.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from proxy.core.errors import upstream_error
from proxy.providers.comfyui.errors import execution_error, interrupted_error

# Binary websocket frames start with a big-endian uint32 event type.
PREVIEW_IMAGE = 1
PREVIEW_IMAGE_WITH_METADATA = 4
_PREVIEW_MIME = {1: "image/jpeg", 2: "image/png"}

SAMPLERS = frozenset({"KSampler", "KSamplerAdvanced", "SamplerCustom", "SamplerCustomAdvanced"})

ImageRef = dict[str, str]  # {"filename", "subfolder", "type"}


@dataclass(frozen=True, slots=True)
class Preview:
    mime: str
    data: bytes
    prompt_id: str | None = None


def parse_text(raw: str | bytes) -> tuple[str, dict[str, Any]] | None:
    """``{"type": ..., "data": {...}}`` -> ``(type, data)``; None for anything else."""
    try:
        message = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        return None
    data = message.get("data")
    return message["type"], data if isinstance(data, dict) else {}


def parse_binary(frame: bytes) -> Preview | None:
    """A preview image frame, or None for other binary events (text, unknown)."""
    if len(frame) < 8:
        return None
    kind, second = struct.unpack_from(">II", frame)
    if kind == PREVIEW_IMAGE:
        return Preview(_PREVIEW_MIME.get(second, "image/jpeg"), frame[8:])
    if kind == PREVIEW_IMAGE_WITH_METADATA and len(frame) >= 8 + second:
        try:
            meta = orjson.loads(frame[8:8 + second])
        except orjson.JSONDecodeError:
            return None
        if not isinstance(meta, dict):
            return None
        return Preview(str(meta.get("image_type") or "image/jpeg"), frame[8 + second:],
                       meta.get("prompt_id"))
    return None


def node_weight(class_type: str) -> int:
    """How much of the run a node is: samplers dominate, VAE passes count a little."""
    if class_type in SAMPLERS or (class_type.startswith("KSampler")
                                  and not class_type.endswith("Select")):
        return 10
    if class_type.startswith(("VAEDecode", "VAEEncode")):
        return 2
    return 1


class ProgressTracker:
    """Per-node events -> one overall percentage that never goes down.

    percent = (finished weight + current node weight x value/max) / total weight x 100
    """

    def __init__(self, class_types: dict[str, str]) -> None:
        self.class_types = class_types
        self._weights = {node: node_weight(ct) for node, ct in class_types.items()}
        self._total = sum(self._weights.values()) or 1
        self._done: set[str] = set()
        self._aliases: dict[str, str] = {}
        self.current: str | None = None
        self.fraction = 0.0
        self.percent = 0.0

    def _node(self, node: Any, display: Any = None) -> str | None:
        node = str(node) if node is not None else None
        if node is None or node in self._weights:
            return node
        if display is not None and str(display) in self._weights:
            self._aliases[node] = str(display)
        return self._aliases.get(node)

    def cached(self, nodes: Iterable[Any]) -> float:
        for node in nodes:
            self._finish(self._node(node))
        return self._update()

    def executing(self, node: Any, display: Any = None) -> float:
        resolved = self._node(node, display)
        if self.current is not None and self.current != resolved:
            self._finish(self.current)
        if resolved is not None and resolved not in self._done:
            self.current, self.fraction = resolved, 0.0
        return self._update()

    def progress(self, node: Any, value: Any, maximum: Any) -> float:
        resolved = self._node(node)
        if resolved is not None and resolved != self.current:
            self.executing(resolved)
        if isinstance(value, (int, float)) and isinstance(maximum, (int, float)) and maximum > 0:
            self.fraction = min(max(value / maximum, 0.0), 1.0)
        return self._update()

    def executed(self, node: Any) -> float:
        self._finish(self._node(node))
        return self._update()

    def current_class(self) -> str | None:
        return self.class_types.get(self.current) if self.current else None

    def _finish(self, node: str | None) -> None:
        if node is None or node not in self._weights:
            return
        self._done.add(node)
        if node == self.current:
            self.current, self.fraction = None, 0.0

    def _update(self) -> float:
        done = sum(self._weights[n] for n in self._done)
        if self.current is not None:
            done += self._weights[self.current] * self.fraction
        self.percent = max(self.percent, min(100.0, 100.0 * done / self._total))
        return self.percent


def image_refs(outputs: dict[str, Any], output_node: str | None) -> list[ImageRef]:
    """The images of ``outputs`` (node id -> node output), saved ones before temp previews:
    a workflow with SaveImage and PreviewImage answers with the saved images only."""
    found: list[ImageRef] = []
    for node_id, output in outputs.items():
        if output_node is not None and str(node_id) != output_node:
            continue
        images = output.get("images") if isinstance(output, dict) else None
        for image in images or ():
            if isinstance(image, dict) and isinstance(image.get("filename"), str):
                found.append({"filename": image["filename"],
                              "subfolder": str(image.get("subfolder") or ""),
                              "type": str(image.get("type") or "output")})
    saved = [ref for ref in found if ref["type"] == "output"]
    return saved or found


def history_outcome(entry: dict[str, Any], host: str) -> dict[str, Any] | None:
    """A finished ``/history/{id}`` entry -> its outputs; raises if the run failed.

    None while the entry is not finished (it normally appears only when it is).
    """
    status = entry.get("status") if isinstance(entry.get("status"), dict) else {}
    outputs = entry.get("outputs") if isinstance(entry.get("outputs"), dict) else {}
    if status.get("status_str") == "error":
        for message in reversed(status.get("messages") or []):
            if isinstance(message, list) and len(message) == 2 and isinstance(message[1], dict):
                if message[0] == "execution_error":
                    raise execution_error(message[1], host)
                if message[0] == "execution_interrupted":
                    raise interrupted_error(message[1], host)
        raise upstream_error(f"ComfyUI at {host} reports the job failed.",
                             code="upstream_execution_error")
    if status.get("completed") or outputs:
        return outputs
    return None


@dataclass(frozen=True, slots=True)
class QueueState:
    """``GET /queue``: the prompt ids running, and those waiting in the order they will run."""

    running: tuple[str, ...] = ()
    pending: tuple[str, ...] = ()

    def where(self, prompt_id: str) -> str:
        """``running``, ``pending``, or ``absent`` (finished, deleted or never queued)."""
        if prompt_id in self.running:
            return "running"
        return "pending" if prompt_id in self.pending else "absent"

    def position(self, prompt_id: str) -> int | None:
        """1 for the next prompt to run, 2 for the one after it, ...; None unless waiting."""
        try:
            return self.pending.index(prompt_id) + 1
        except ValueError:
            return None


def _queue_items(items: Any) -> list[tuple[float, str]]:
    """``[[number, prompt_id, prompt, extra_data, outputs, ...], ...]`` -> (number, id)."""
    found = []
    for item in items if isinstance(items, list) else ():
        if isinstance(item, list) and len(item) > 1 and isinstance(item[1], str):
            number = item[0] if isinstance(item[0], (int, float)) else float("inf")
            found.append((float(number), item[1]))
    return found


def queue_state(body: Any) -> QueueState:
    """ComfyUI keeps its pending prompts in a heap: they run by ``number`` (lowest first; a
    prompt queued with ``front`` has a negative one), not in the order ``/queue`` lists them."""
    if not isinstance(body, dict):
        return QueueState()
    running = tuple(pid for _, pid in _queue_items(body.get("queue_running")))
    pending = tuple(pid for _, pid in sorted(_queue_items(body.get("queue_pending")),
                                             key=lambda item: item[0]))
    return QueueState(running, pending)


def queue_remaining(data: Any) -> int | None:
    """``{"status": {"exec_info": {"queue_remaining": N}}}`` (a ``status`` message) or
    ``{"exec_info": {...}}`` (``GET /prompt``) -> N, the prompts running or waiting."""
    if isinstance(data, dict) and isinstance(data.get("status"), dict):
        data = data["status"]
    info = data.get("exec_info") if isinstance(data, dict) else None
    remaining = info.get("queue_remaining") if isinstance(info, dict) else None
    return remaining if isinstance(remaining, int) and remaining >= 0 else None
