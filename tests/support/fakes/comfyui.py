"""A fake ComfyUI server that speaks the real protocol (``shared/reference/providers.md`` §E).

``POST /prompt`` validates an API-format workflow the way ComfyUI answers (400 with ``error`` and
``node_errors``: unknown node types, a checkpoint it lacks, latent sizes over its ``max_size``,
images never uploaded) and queues it. One worker runs the queue one prompt at a time, lowest
``number`` first, as ComfyUI's does: ``execution_start``, ``execution_cached``, ``executing`` per
node, ``progress`` plus binary preview frames (real JPEGs) for samplers, ``executed`` with image
refs for SaveImage, then ``execution_success`` and ``executing {node: null}``. Every change of
the queue (queued, started, done, deleted) is a ``status`` message to every socket.
``/history``, ``/view``, ``/interrupt``, ``/queue``, ``GET /prompt`` and ``/system_stats``
behave as documented; every route is also under ``/api``. ``paused`` holds the worker (prompts
pile up in the queue) until it is cleared.

Builds: a current one (``legacy=False``) keeps the ``prompt_id`` a client sends (a canonical
UUID, else 400 ``invalid_prompt_id``) and interrupts only the prompt a ``/interrupt`` body names
(no body: whatever runs). An older build (``legacy=True``, before ComfyUI 0.3.45 / September
2025) makes up every ``prompt_id`` itself, and its ``/interrupt`` stops whatever runs, body or
not. ``success_message`` / ``done_message`` choose the end messages it sends (a legacy fake ends
with ``execution_success`` alone; older real builds sent only ``executing {node: null}``).

Edits: ``POST /upload/image`` takes ComfyUI's multipart (``image`` file, ``type``, ``subfolder``,
``overwrite``), stores the bytes, records the upload and answers ``{name, subfolder, type}``
(a clash without ``overwrite`` is renamed ``x (1).png`` unless the bytes are the same).
``LoadImage`` / ``LoadImageMask`` refuse a file that was never uploaded, as ComfyUI's
``VALIDATE_INPUTS`` does. What graphs render: ``comfyui_graph.py``. ``upload_status`` makes
uploads fail with that HTTP status.

Modes: ``normal``; ``execution_error`` (the sampler raises ``error`` at step ``error_step``);
``drop_ws`` (the websocket is closed at step ``drop_step`` while the prompt keeps running);
``lose`` (at ``drop_step`` the websocket closes and the prompt vanishes without a history entry,
as when the server restarts). ``step_delay`` makes sampling slow; ``history_failures`` makes that
many ``/history`` reads answer 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from tests.support.fakes.comfyui_graph import (
    IMAGE_LOADERS,
    SAMPLERS,
    GraphImages,
    input_file,
    jpeg,
    order,
    png,
)

__all__ = ["COMFY_MODEL", "FakeComfyUI", "comfy_yaml", "jpeg", "png"]

NODE_TYPES = frozenset({
    "CheckpointLoaderSimple", "CLIPTextEncode", "EmptyLatentImage", "KSampler",
    "KSamplerAdvanced", "VAEDecode", "VAEEncode", "SaveImage", "PreviewImage", "LoadImage",
    "LoadImageMask", "ImageScale", "VAEEncodeForInpaint", "SetLatentNoiseMask",
    "RepeatLatentBatch",
})
OUTPUT_NODES = frozenset({"SaveImage", "PreviewImage"})
CHECKPOINTS = ("sd_xl_base_1.0.safetensors", "v1-5-pruned-emaonly.safetensors")
OUT_OF_MEMORY = ("torch.OutOfMemoryError", "CUDA out of memory. Tried to allocate 20.00 GiB")

COMFY_MODEL = "comfy/sdxl"


def comfy_yaml(base_url: str, *, workflow: str = "sdxl_text_to_image", total: float = 20,
               extra: str = "") -> str:
    """Gateway config serving ``COMFY_MODEL`` from the fake ComfyUI at ``base_url``; ``extra``
    holds more settings of that model (indented by four spaces), or more YAML."""
    return f"""
models:
  - name: {COMFY_MODEL}
    provider: comfyui
    base_url: {base_url}
    workflow: {workflow}
    poll_interval: 0.05
    timeout: {{connect: 5, first_byte: 10, total: {total}}}
{extra}
"""


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _now_ms() -> int:
    return int(time.time() * 1000)


def _refusal(kind: str, message: str, details: str, extra: dict | None = None,
             node_errors: dict | None = None) -> Response:
    return _json({"error": {"type": kind, "message": message, "details": details,
                            "extra_info": extra or {}},
                  "node_errors": node_errors or {}}, 400)


def _failed_validation(node_id: str, class_type: str, outputs: list[str],
                       error: dict[str, Any]) -> Response:
    return _refusal("prompt_outputs_failed_validation", "Prompt outputs failed validation", "",
                    node_errors={node_id: {"errors": [error], "dependent_outputs": outputs,
                                           "class_type": class_type}})


@dataclass
class Upload:
    """One ``POST /upload/image``, as received."""

    name: str
    subfolder: str
    type: str
    overwrite: str | None
    filename: str
    content_type: str | None
    data: bytes


@dataclass
class Prompt:
    prompt_id: str
    number: int
    client_id: str | None
    workflow: dict[str, Any]
    outputs_to_run: list[str]
    # pending | running | success | error | interrupted | deleted | lost
    status: str = "pending"


class _Lost(Exception):
    """The server forgets the prompt: no more events, no history."""


class _Stop(Exception):
    def __init__(self, kind: str, data: dict[str, Any]) -> None:
        self.kind, self.data = kind, data


@dataclass
class FakeComfyUI:
    mode: str = "normal"
    legacy: bool = False
    success_message: bool = True
    done_message: bool | None = None  # default: current builds send it, the legacy fake not
    step_delay: float = 0.01
    error_step: int = 2
    error: tuple[str, str] = OUT_OF_MEMORY
    drop_step: int = 3
    max_size: int = 16384  # EmptyLatentImage's width/height maximum (nodes.MAX_RESOLUTION)
    paused: bool = False
    prompts: dict[str, Prompt] = field(default_factory=dict)
    interrupts: list[str | None] = field(default_factory=list)
    queue_deletes: list[str] = field(default_factory=list)
    ws_clients: list[str] = field(default_factory=list)
    prompt_posts: int = 0
    sent_ids: list[str | None] = field(default_factory=list)  # prompt_id of each POST body
    history_reads: int = 0
    history_failures: int = 0  # the next this many /history reads answer 503
    health_checks: int = 0
    history: dict[str, dict[str, Any]] = field(default_factory=dict)
    files: dict[tuple[str, str, str], bytes] = field(default_factory=dict)
    uploads: list[Upload] = field(default_factory=list)
    upload_status: int | None = None
    _sockets: dict[str, WebSocket] = field(default_factory=dict)
    _running: str | None = None
    _interrupt: bool = False
    _loaded: set[str] = field(default_factory=set)
    _counter: int = 0

    @property
    def app(self) -> Starlette:
        routes: list[Route | WebSocketRoute] = []
        for prefix in ("", "/api"):
            routes += [
                Route(f"{prefix}/prompt", self._prompt, methods=["POST"]),
                Route(f"{prefix}/prompt", self._queue_info, methods=["GET"]),
                Route(f"{prefix}/upload/image", self._upload, methods=["POST"]),
                Route(f"{prefix}/history/{{prompt_id}}", self._history, methods=["GET"]),
                Route(f"{prefix}/view", self._view, methods=["GET"]),
                Route(f"{prefix}/interrupt", self._interrupt_route, methods=["POST"]),
                Route(f"{prefix}/queue", self._queue, methods=["GET", "POST"]),
                Route(f"{prefix}/system_stats", self._system_stats, methods=["GET"]),
                WebSocketRoute(f"{prefix}/ws", self._ws),
            ]
        return Starlette(routes=routes, lifespan=self._lifespan)

    @asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        worker = asyncio.create_task(self._work())
        yield
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker

    def prompt_of(self, client_id: str) -> Prompt:
        """The last prompt a client queued (the gateway's client id is the job id)."""
        return [p for p in self.prompts.values() if p.client_id == client_id][-1]

    def _with(self, status: str) -> list[Prompt]:
        return [p for p in self.prompts.values() if p.status == status]

    @property
    def remaining(self) -> int:
        return len(self._with("pending")) + len(self._with("running"))

    # -- HTTP ---------------------------------------------------------------------------------

    async def _prompt(self, request: Request) -> Response:
        self.prompt_posts += 1
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return _json({"error": "invalid json"}, 400)
        workflow = body.get("prompt") if isinstance(body, dict) else None
        self.sent_ids.append(body.get("prompt_id") if isinstance(body, dict) else None)
        if not isinstance(workflow, dict):
            return _refusal("no_prompt", "No prompt provided", "")
        prompt_id = str(uuid.uuid4()) if self.legacy else body.get("prompt_id")
        try:
            canonical = str(uuid.UUID(prompt_id)) == prompt_id
        except (ValueError, TypeError, AttributeError):
            canonical = prompt_id is None
        if not canonical:
            return _refusal("invalid_prompt_id", "Invalid prompt_id",
                            "prompt_id must be a lowercase hyphenated UUID")
        prompt_id = prompt_id or str(uuid.uuid4())
        problem = self._validate(workflow)
        if problem is not None:
            return problem
        self._counter += 1
        outputs = [n for n, spec in workflow.items() if spec["class_type"] in OUTPUT_NODES]
        prompt = Prompt(prompt_id, self._counter, body.get("client_id"), workflow, outputs)
        self.prompts[prompt_id] = prompt
        await self._status()
        return _json({"prompt_id": prompt_id, "number": prompt.number, "node_errors": {}})

    def _validate(self, workflow: dict[str, Any]) -> Response | None:
        for node_id, spec in workflow.items():
            title = (spec.get("_meta") or {}).get("title") if isinstance(spec, dict) else None
            if not isinstance(spec, dict) or "class_type" not in spec:
                return _refusal(
                    "missing_node_type", f"Node '{title or f'ID #{node_id}'}' has no class_type.",
                    f"Node ID '#{node_id}'", {"node_id": node_id, "class_type": None})
            if spec["class_type"] not in NODE_TYPES:
                return _refusal(
                    "missing_node_type",
                    f"Node '{title or spec['class_type']}' not found. The custom node may not "
                    "be installed.", f"Node ID '#{node_id}'",
                    {"node_id": node_id, "class_type": spec["class_type"], "node_title": title})
        outputs = [n for n, s in workflow.items() if s["class_type"] in OUTPUT_NODES]
        if not outputs:
            return _refusal("prompt_no_outputs", "Prompt has no outputs", "")
        for node_id, spec in workflow.items():
            error = self._input_error(spec["class_type"], spec.get("inputs") or {})
            if error is not None:
                return _failed_validation(node_id, spec["class_type"], outputs, error)
        return None

    def _input_error(self, class_type: str, inputs: dict[str, Any]) -> dict[str, Any] | None:
        """ComfyUI's validation of one node's literal inputs (the checks the fake knows)."""
        if class_type in IMAGE_LOADERS and input_file(self.files, inputs.get("image")) is None:
            # LoadImage.VALIDATE_INPUTS replaces the combo check (execution.py).
            return {"type": "custom_validation_failed",
                    "message": "Custom validation failed for node",
                    "details": f"image - Invalid image file: {inputs.get('image')}",
                    "extra_info": {"input_name": "image"}}
        ckpt = inputs.get("ckpt_name")
        if class_type == "CheckpointLoaderSimple" and ckpt not in CHECKPOINTS:
            return {"type": "value_not_in_list", "message": "Value not in list",
                    "details": f"ckpt_name: '{ckpt}' not in {list(CHECKPOINTS)}",
                    "extra_info": {"input_name": "ckpt_name", "received_value": ckpt}}
        if class_type == "EmptyLatentImage":
            for name in ("width", "height"):
                value = inputs.get(name)
                if isinstance(value, int) and value > self.max_size:
                    return {"type": "value_bigger_than_max",
                            "message": f"Value {value} bigger than max of {self.max_size}",
                            "details": name,
                            "extra_info": {"input_name": name, "received_value": value}}
        return None

    async def _upload(self, request: Request) -> Response:
        if self.upload_status is not None:
            return Response(b"500: Internal Server Error", status_code=self.upload_status)
        form = await request.form()
        image = form.get("image")
        if image is None or isinstance(image, str) or not image.filename:
            return Response(status_code=400)
        kind = str(form.get("type") or "input")
        subfolder = str(form.get("subfolder") or "")
        overwrite = form.get("overwrite")
        overwrite = overwrite if isinstance(overwrite, str) else None
        if kind not in ("input", "temp", "output") or subfolder.startswith("/") or \
                ".." in subfolder.split("/") or "/" in image.filename or ".." in image.filename:
            return Response(status_code=400)
        data = await image.read()
        name = image.filename
        if overwrite not in ("true", "1"):
            stem, dot, ext = name.rpartition(".")
            count = 1
            while (kind, subfolder, name) in self.files and \
                    self.files[(kind, subfolder, name)] != data:
                name = f"{stem} ({count}){dot}{ext}" if dot else f"{name} ({count})"
                count += 1
        self.files[(kind, subfolder, name)] = data
        self.uploads.append(Upload(name, subfolder, kind, overwrite, image.filename,
                                   image.content_type, data))
        return _json({"name": name, "subfolder": subfolder, "type": kind})

    async def _history(self, request: Request) -> Response:
        prompt_id = request.path_params["prompt_id"]
        self.history_reads += 1
        if self.history_failures > 0:
            self.history_failures -= 1
            return Response(b"503: restarting", status_code=503)
        entry = self.history.get(prompt_id)
        return _json({prompt_id: entry} if entry is not None else {})

    async def _view(self, request: Request) -> Response:
        q = request.query_params
        filename, subfolder, kind = q.get("filename", ""), q.get("subfolder", ""), q.get("type")
        if ".." in filename or filename.startswith("/"):
            return Response(status_code=400)
        data = self.files.get((kind or "output", subfolder, filename))
        if data is None:
            return Response(status_code=404)
        return Response(data, media_type="image/png")

    async def _interrupt_route(self, request: Request) -> Response:
        raw = await request.body()
        body = orjson.loads(raw) if raw else {}
        prompt_id = body.get("prompt_id") if isinstance(body, dict) else None
        self.interrupts.append(prompt_id)
        # An older build ignores the body: every interrupt stops whatever runs.
        if self._running is not None and (self.legacy or prompt_id in (None, self._running)):
            self._interrupt = True
        return Response(status_code=200)

    async def _queue(self, request: Request) -> Response:
        if request.method == "GET":
            def item(p: Prompt) -> list[Any]:
                return [p.number, p.prompt_id, p.workflow, {"client_id": p.client_id},
                        p.outputs_to_run]
            # ComfyUI lists its pending heap as it is stored: not in the order it will run.
            return _json({"queue_running": [item(p) for p in self._with("running")],
                          "queue_pending": [item(p) for p in reversed(self._with("pending"))]})
        body = orjson.loads(await request.body() or b"{}")
        pending = self._with("pending")
        targets = pending if body.get("clear") else [
            p for p in pending if p.prompt_id in (body.get("delete") or [])]
        self.queue_deletes += list(body.get("delete") or [])
        for prompt in targets:
            prompt.status = "deleted"
        if targets:
            await self._status()
        return Response(status_code=200)

    async def _queue_info(self, request: Request) -> Response:
        return _json({"exec_info": {"queue_remaining": self.remaining}})

    async def _system_stats(self, request: Request) -> Response:
        self.health_checks += 1
        return _json({"system": {"os": "posix", "comfyui_version": "0.3.40" if self.legacy
                                 else "0.4.0", "python_version": "3.12"},
                      "devices": [{"name": "fake", "type": "cuda", "index": 0}]})

    # -- websocket ----------------------------------------------------------------------------

    async def _ws(self, websocket: WebSocket) -> None:
        await websocket.accept()
        client_id = websocket.query_params.get("clientId") or uuid.uuid4().hex
        self._sockets[client_id] = websocket  # reusing an id replaces the old socket
        self.ws_clients.append(client_id)
        await websocket.send_text(orjson.dumps({"type": "status", "data": {
            "status": {"exec_info": {"queue_remaining": self.remaining}},
            "sid": client_id}}).decode())
        try:
            while True:
                message = orjson.loads(await websocket.receive_text())
                if message.get("type") == "feature_flags":
                    await websocket.send_text(orjson.dumps({"type": "feature_flags", "data": {
                        "supports_preview_metadata": False}}).decode())
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            if self._sockets.get(client_id) is websocket:
                del self._sockets[client_id]

    async def _status(self) -> None:
        """The queue changed: every socket is told (``PromptServer.queue_updated``)."""
        text = orjson.dumps({"type": "status", "data": {
            "status": {"exec_info": {"queue_remaining": self.remaining}}}}).decode()
        for client_id, socket in list(self._sockets.items()):
            try:
                await socket.send_text(text)
            except Exception:
                self._sockets.pop(client_id, None)

    async def _send(self, prompt: Prompt, kind: str, data: dict[str, Any]) -> None:
        socket = self._sockets.get(prompt.client_id or "")
        if socket is None:
            return  # events are not buffered: nobody listening, nobody told
        try:
            await socket.send_text(orjson.dumps({"type": kind, "data": data}).decode())
        except Exception:
            self._sockets.pop(prompt.client_id or "", None)

    async def _send_preview(self, prompt: Prompt, image: bytes) -> None:
        socket = self._sockets.get(prompt.client_id or "")
        if socket is not None:
            try:
                await socket.send_bytes(struct.pack(">II", 1, 1) + image)
            except Exception:
                self._sockets.pop(prompt.client_id or "", None)

    async def _drop_socket(self, prompt: Prompt) -> None:
        socket = self._sockets.pop(prompt.client_id or "", None)
        if socket is not None:
            await socket.close(code=1011)

    # -- execution ----------------------------------------------------------------------------

    async def _work(self) -> None:
        """ComfyUI's prompt worker: one prompt at a time, the lowest number first."""
        while True:
            pending = [] if self.paused else self._with("pending")
            if not pending:
                await asyncio.sleep(0.005)
                continue
            prompt = min(pending, key=lambda p: p.number)
            prompt.status, self._running, self._interrupt = "running", prompt.prompt_id, False
            await self._status()
            try:
                await self._execute(prompt)
            finally:
                self._running = None
            await self._status()

    async def _execute(self, prompt: Prompt) -> None:
        messages: list[list[Any]] = []
        pid = prompt.prompt_id

        async def event(kind: str, data: dict[str, Any]) -> None:
            data = {"prompt_id": pid, **data, "timestamp": _now_ms()}
            messages.append([kind, data])
            await self._send(prompt, kind, data)

        executed: list[str] = []
        outputs: dict[str, Any] = {}
        try:
            await event("execution_start", {})
            cached = [n for n, s in prompt.workflow.items()
                      if s["class_type"] == "CheckpointLoaderSimple"
                      and s["inputs"].get("ckpt_name") in self._loaded]
            await event("execution_cached", {"nodes": cached})
            for node_id in order(prompt.workflow):
                if node_id not in cached:
                    await self._run_node(prompt, node_id, outputs)
                    executed.append(node_id)
            if self.success_message:
                await event("execution_success", {})
            self._finish(prompt, "success", outputs, messages)
        except _Stop as stop:
            await event(stop.kind, {**stop.data, "executed": executed})
            self._finish(prompt, "error" if stop.kind == "execution_error"
                         else "interrupted", outputs, messages)
        except _Lost:
            prompt.status = "lost"
            return
        if self.done_message if self.done_message is not None else not self.legacy:
            await self._send(prompt, "executing", {"node": None, "prompt_id": pid})

    async def _run_node(self, prompt: Prompt, node_id: str, outputs: dict[str, Any]) -> None:
        spec = prompt.workflow[node_id]
        kind, inputs = spec["class_type"], spec.get("inputs") or {}
        if self._interrupt:
            raise _Stop("execution_interrupted", {"node_id": node_id, "node_type": kind})
        await self._send(prompt, "executing", {"node": node_id, "display_node": node_id,
                                               "prompt_id": prompt.prompt_id})
        if kind in SAMPLERS:
            await self._sample(prompt, node_id, kind, int(inputs.get("steps", 20)))
        else:
            await asyncio.sleep(0.001)
        if kind == "CheckpointLoaderSimple":
            self._loaded.add(inputs.get("ckpt_name"))
        if kind in OUTPUT_NODES:
            graph = GraphImages(prompt.workflow, self.files)
            names = []
            for _ in range(graph.latent()[2]):
                self._counter += 1
                names.append(f"{inputs.get('filename_prefix', 'ComfyUI')}_{self._counter:05}_.png")
            images = graph.save(names, "output" if kind == "SaveImage" else "temp")
            outputs[node_id] = {"images": images}
            await self._send(prompt, "executed", {
                "node": node_id, "display_node": node_id, "output": {"images": images},
                "prompt_id": prompt.prompt_id})

    async def _sample(self, prompt: Prompt, node_id: str, kind: str, steps: int) -> None:
        width, height, _ = GraphImages(prompt.workflow, self.files).latent()
        for value in range(1, steps + 1):
            await asyncio.sleep(self.step_delay)
            if self._interrupt:
                raise _Stop("execution_interrupted", {"node_id": node_id, "node_type": kind})
            if self.mode == "execution_error" and value == self.error_step:
                raise _Stop("execution_error", {
                    "node_id": node_id, "node_type": kind, "exception_type": self.error[0],
                    "exception_message": self.error[1],
                    "traceback": ["Traceback (most recent call last):\n", "...\n"],
                    "current_inputs": {}, "current_outputs": []})
            await self._send(prompt, "progress", {"value": value, "max": steps,
                                                  "prompt_id": prompt.prompt_id,
                                                  "node": node_id})
            shade = 255 * value // steps
            await self._send_preview(prompt, jpeg(max(8, width // 8), max(8, height // 8),
                                                  (shade, 80, 255 - shade)))
            if self.mode in ("drop_ws", "lose") and value == self.drop_step:
                await self._drop_socket(prompt)
                if self.mode == "lose":
                    raise _Lost

    def _finish(self, prompt: Prompt, status: str, outputs: dict[str, Any],
                messages: list[list[Any]]) -> None:
        prompt.status = status
        self.history[prompt.prompt_id] = {
            "prompt": [prompt.number, prompt.prompt_id, prompt.workflow,
                       {"client_id": prompt.client_id}, prompt.outputs_to_run],
            "outputs": outputs,
            "status": {"status_str": "success" if status == "success" else "error",
                       "completed": status == "success", "messages": messages},
            "meta": {n: {"node_id": n, "display_node": n, "parent_node": None,
                         "real_node_id": n} for n in outputs},
        }
