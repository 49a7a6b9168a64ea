"""A fake ComfyUI server that speaks the real protocol (``shared/reference/providers.md`` §E).

``POST /prompt`` validates an API-format workflow the way ComfyUI answers (400 with ``error`` and
``node_errors``), records it and runs it in a task, one prompt at a time: ``execution_start``,
``execution_cached``, ``executing`` per node, ``progress`` plus binary preview frames (real JPEGs)
for samplers, ``executed`` with image refs for SaveImage, ``execution_success`` and
``executing {node: null}``. ``/history``, ``/view`` (real PNGs of the latent size, one per batch
item), ``/interrupt`` and ``/queue`` behave as documented. Every route is also under ``/api``.

Edits: ``POST /upload/image`` takes ComfyUI's multipart (``image`` file, ``type``, ``subfolder``,
``overwrite``), stores the bytes, records the upload and answers ``{name, subfolder, type}``
(a clash without ``overwrite`` is renamed ``x (1).png`` unless the bytes are the same).
``LoadImage`` / ``LoadImageMask`` refuse a file that was never uploaded as ComfyUI does: its
``VALIDATE_INPUTS`` check, ``custom_validation_failed`` "Invalid image file". The saved image of
an edit graph is computed from the upload like ComfyUI would shape it: scaled by ``ImageScale``,
kept where the noise mask (1 - alpha, from ``LoadImage``'s MASK or ``LoadImageMask``) is 0 and
blended toward the paint by the sampler's ``denoise`` where it is 1 (everywhere without one).
``upload_status`` makes uploads fail with that HTTP status.

Modes: ``normal``; ``execution_error`` (the sampler fails at step ``error_step``); ``drop_ws``
(the websocket is closed at step ``drop_step`` while the prompt keeps running); ``lose`` (at
``drop_step`` the websocket closes and the prompt vanishes without a history entry, as when the
server restarts). ``step_delay`` makes sampling slow.
"""

from __future__ import annotations

import asyncio
import io
import struct
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from PIL import Image, ImageOps
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

NODE_TYPES = frozenset({
    "CheckpointLoaderSimple", "CLIPTextEncode", "EmptyLatentImage", "KSampler",
    "KSamplerAdvanced", "VAEDecode", "VAEEncode", "SaveImage", "PreviewImage", "LoadImage",
    "LoadImageMask", "ImageScale", "VAEEncodeForInpaint", "SetLatentNoiseMask",
    "RepeatLatentBatch",
})
IMAGE_LOADERS = frozenset({"LoadImage", "LoadImageMask"})
SAMPLERS = frozenset({"KSampler", "KSamplerAdvanced"})
OUTPUT_NODES = frozenset({"SaveImage", "PreviewImage"})
CHECKPOINTS = ("sd_xl_base_1.0.safetensors", "v1-5-pruned-emaonly.safetensors")

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


def jpeg(width: int, height: int, colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, "JPEG", quality=80)
    return buffer.getvalue()


def png(width: int, height: int, colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, "PNG")
    return buffer.getvalue()


def _png_of(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _link(value: Any) -> tuple[str, int] | None:
    """``["12", 0]`` -> ``("12", 0)``: an input wired to another node's output."""
    if isinstance(value, list) and len(value) == 2 and isinstance(value[1], int):
        return str(value[0]), value[1]
    return None


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
    status: str = "pending"  # pending | running | success | error | interrupted
    task: asyncio.Task | None = None


class _Lost(Exception):
    """The server forgets the prompt: no more events, no history."""


class _Stop(Exception):
    def __init__(self, kind: str, data: dict[str, Any]) -> None:
        self.kind, self.data = kind, data


@dataclass
class FakeComfyUI:
    mode: str = "normal"
    step_delay: float = 0.01
    error_step: int = 2
    drop_step: int = 3
    prompts: dict[str, Prompt] = field(default_factory=dict)
    interrupts: list[str | None] = field(default_factory=list)
    queue_deletes: list[str] = field(default_factory=list)
    ws_clients: list[str] = field(default_factory=list)
    history_reads: int = 0
    history: dict[str, dict[str, Any]] = field(default_factory=dict)
    files: dict[tuple[str, str, str], bytes] = field(default_factory=dict)
    uploads: list[Upload] = field(default_factory=list)
    upload_status: int | None = None
    _sockets: dict[str, WebSocket] = field(default_factory=dict)
    _lock: asyncio.Lock | None = None
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
                Route(f"{prefix}/upload/image", self._upload, methods=["POST"]),
                Route(f"{prefix}/history/{{prompt_id}}", self._history, methods=["GET"]),
                Route(f"{prefix}/view", self._view, methods=["GET"]),
                Route(f"{prefix}/interrupt", self._interrupt_route, methods=["POST"]),
                Route(f"{prefix}/queue", self._queue, methods=["GET", "POST"]),
                WebSocketRoute(f"{prefix}/ws", self._ws),
            ]
        return Starlette(routes=routes, lifespan=self._lifespan)

    @asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        yield
        for prompt in self.prompts.values():
            if prompt.task is not None:
                prompt.task.cancel()

    # -- HTTP ---------------------------------------------------------------------------------

    async def _prompt(self, request: Request) -> Response:
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return _json({"error": "invalid json"}, 400)
        workflow = body.get("prompt") if isinstance(body, dict) else None
        if not isinstance(workflow, dict):
            return self._refusal("no_prompt", "No prompt provided", "")
        prompt_id = body.get("prompt_id") or str(uuid.uuid4())
        try:
            canonical = str(uuid.UUID(prompt_id)) == prompt_id
        except (ValueError, TypeError, AttributeError):
            canonical = False
        if not canonical:
            return self._refusal("invalid_prompt_id", "Invalid prompt_id",
                                 "prompt_id must be a lowercase hyphenated UUID")
        problem = self._validate(workflow)
        if problem is not None:
            return problem
        self._counter += 1
        outputs = [n for n, spec in workflow.items() if spec["class_type"] in OUTPUT_NODES]
        prompt = Prompt(prompt_id, self._counter, body.get("client_id"), workflow, outputs)
        self.prompts[prompt_id] = prompt
        prompt.task = asyncio.create_task(self._execute(prompt))
        return _json({"prompt_id": prompt_id, "number": prompt.number, "node_errors": {}})

    @staticmethod
    def _refusal(kind: str, message: str, details: str, extra: dict | None = None,
                 node_errors: dict | None = None) -> Response:
        return _json({"error": {"type": kind, "message": message, "details": details,
                                "extra_info": extra or {}},
                      "node_errors": node_errors or {}}, 400)

    def _validate(self, workflow: dict[str, Any]) -> Response | None:
        for node_id, spec in workflow.items():
            title = (spec.get("_meta") or {}).get("title") if isinstance(spec, dict) else None
            if not isinstance(spec, dict) or "class_type" not in spec:
                return self._refusal(
                    "missing_node_type", f"Node '{title or f'ID #{node_id}'}' has no class_type.",
                    f"Node ID '#{node_id}'", {"node_id": node_id, "class_type": None})
            if spec["class_type"] not in NODE_TYPES:
                return self._refusal(
                    "missing_node_type",
                    f"Node '{title or spec['class_type']}' not found. The custom node may not "
                    "be installed.", f"Node ID '#{node_id}'",
                    {"node_id": node_id, "class_type": spec["class_type"], "node_title": title})
        outputs = [n for n, s in workflow.items() if s["class_type"] in OUTPUT_NODES]
        if not outputs:
            return self._refusal("prompt_no_outputs", "Prompt has no outputs", "")
        for node_id, spec in workflow.items():
            image = (spec.get("inputs") or {}).get("image")
            if spec["class_type"] in IMAGE_LOADERS and self._input_file(image) is None:
                # LoadImage.VALIDATE_INPUTS replaces the combo check (execution.py).
                details = f"image - Invalid image file: {image}"
                errors = {node_id: {
                    "errors": [{"type": "custom_validation_failed",
                                "message": "Custom validation failed for node",
                                "details": details, "extra_info": {"input_name": "image"}}],
                    "dependent_outputs": outputs, "class_type": spec["class_type"]}}
                return self._refusal("prompt_outputs_failed_validation",
                                     "Prompt outputs failed validation",
                                     f"Custom validation failed for node: {details}",
                                     node_errors=errors)
        for node_id, spec in workflow.items():
            ckpt = (spec.get("inputs") or {}).get("ckpt_name")
            if spec["class_type"] == "CheckpointLoaderSimple" and ckpt not in CHECKPOINTS:
                errors = {node_id: {
                    "errors": [{"type": "value_not_in_list", "message": "Value not in list",
                                "details": f"ckpt_name: '{ckpt}' not in {list(CHECKPOINTS)}",
                                "extra_info": {"input_name": "ckpt_name"}}],
                    "dependent_outputs": outputs, "class_type": spec["class_type"]}}
                return self._refusal("prompt_outputs_failed_validation",
                                     "Prompt outputs failed validation", "", node_errors=errors)
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

    def _input_file(self, name: Any) -> bytes | None:
        """The file a ``LoadImage.image`` value names (``sub/name``, maybe ``name [input]``)."""
        if not isinstance(name, str):
            return None
        kind = "input"
        for annotation in ("output", "input", "temp"):
            if name.endswith(f" [{annotation}]"):
                name, kind = name[:-len(annotation) - 3], annotation
        folder, _, filename = name.rpartition("/")
        return self.files.get((kind, folder, filename))

    async def _history(self, request: Request) -> Response:
        prompt_id = request.path_params["prompt_id"]
        self.history_reads += 1
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
        if self._running is not None and prompt_id in (None, self._running):
            self._interrupt = True
        return Response(status_code=200)

    async def _queue(self, request: Request) -> Response:
        if request.method == "GET":
            def item(p: Prompt) -> list[Any]:
                return [p.number, p.prompt_id, p.workflow, {"client_id": p.client_id},
                        p.outputs_to_run]
            return _json({
                "queue_running": [item(p) for p in self.prompts.values() if p.status == "running"],
                "queue_pending": [item(p) for p in self.prompts.values() if p.status == "pending"],
            })
        body = orjson.loads(await request.body() or b"{}")
        pending = [p for p in self.prompts.values() if p.status == "pending"]
        targets = pending if body.get("clear") else [
            p for p in pending if p.prompt_id in (body.get("delete") or [])]
        self.queue_deletes += list(body.get("delete") or [])
        for prompt in targets:
            prompt.status = "deleted"
            if prompt.task is not None:
                prompt.task.cancel()
        return Response(status_code=200)

    # -- websocket ----------------------------------------------------------------------------

    async def _ws(self, websocket: WebSocket) -> None:
        await websocket.accept()
        client_id = websocket.query_params.get("clientId") or uuid.uuid4().hex
        self._sockets[client_id] = websocket  # reusing an id replaces the old socket
        self.ws_clients.append(client_id)
        queued = sum(p.status in ("pending", "running") for p in self.prompts.values())
        await websocket.send_text(orjson.dumps({"type": "status", "data": {
            "status": {"exec_info": {"queue_remaining": queued}}, "sid": client_id}}).decode())
        try:
            while True:
                text = await websocket.receive_text()
                message = orjson.loads(text)
                if message.get("type") == "feature_flags":
                    await websocket.send_text(orjson.dumps({"type": "feature_flags", "data": {
                        "supports_preview_metadata": False}}).decode())
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            if self._sockets.get(client_id) is websocket:
                del self._sockets[client_id]

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

    async def _execute(self, prompt: Prompt) -> None:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # ComfyUI runs one prompt at a time
            if prompt.status != "pending":
                return
            prompt.status, self._running, self._interrupt = "running", prompt.prompt_id, False
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
                for node_id in self._order(prompt.workflow):
                    if node_id in cached:
                        continue
                    await self._run_node(prompt, node_id, executed, outputs)
                    executed.append(node_id)
                await event("execution_success", {})
                self._finish(prompt, "success", outputs, messages)
            except _Stop as stop:
                await event(stop.kind, {**stop.data, "executed": executed})
                self._finish(prompt, "error" if stop.kind == "execution_error"
                             else "interrupted", outputs, messages)
            except _Lost:
                prompt.status = "lost"
                return
            finally:
                self._running = None
            await self._send(prompt, "executing", {"node": None, "prompt_id": pid})

    async def _run_node(self, prompt: Prompt, node_id: str, executed: list[str],
                        outputs: dict[str, Any]) -> None:
        spec = prompt.workflow[node_id]
        kind, inputs = spec["class_type"], spec.get("inputs") or {}
        pid = prompt.prompt_id
        if self._interrupt:
            raise _Stop("execution_interrupted", {"node_id": node_id, "node_type": kind})
        await self._send(prompt, "executing",
                         {"node": node_id, "display_node": node_id, "prompt_id": pid})
        if kind in SAMPLERS:
            steps = int(inputs.get("steps", 20))
            width, height, _ = self._latent(prompt.workflow)
            for value in range(1, steps + 1):
                await asyncio.sleep(self.step_delay)
                if self._interrupt:
                    raise _Stop("execution_interrupted", {"node_id": node_id, "node_type": kind})
                if self.mode == "execution_error" and value == self.error_step:
                    raise _Stop("execution_error", {
                        "node_id": node_id, "node_type": kind,
                        "exception_message": "CUDA out of memory. Tried to allocate 20.00 GiB",
                        "exception_type": "torch.OutOfMemoryError",
                        "traceback": ["Traceback (most recent call last):\n", "...\n"],
                        "current_inputs": {}, "current_outputs": []})
                await self._send(prompt, "progress", {"value": value, "max": steps,
                                                      "prompt_id": pid, "node": node_id})
                shade = 255 * value // steps
                await self._send_preview(prompt, jpeg(max(8, width // 8), max(8, height // 8),
                                                      (shade, 80, 255 - shade)))
                if self.mode in ("drop_ws", "lose") and value == self.drop_step:
                    await self._drop_socket(prompt)
                    if self.mode == "lose":
                        raise _Lost
        else:
            await asyncio.sleep(0.001)
        if kind == "CheckpointLoaderSimple":
            self._loaded.add(inputs.get("ckpt_name"))
        if kind in OUTPUT_NODES:
            images = self._save(prompt.workflow, inputs.get("filename_prefix", "ComfyUI"),
                                "output" if kind == "SaveImage" else "temp")
            outputs[node_id] = {"images": images}
            await self._send(prompt, "executed", {"node": node_id, "display_node": node_id,
                                                  "output": {"images": images}, "prompt_id": pid})

    @staticmethod
    def _order(workflow: dict[str, Any]) -> list[str]:
        """Nodes after the nodes their inputs link to (``[node_id, slot]``)."""
        done: list[str] = []

        def visit(node_id: str) -> None:
            if node_id in done:
                return
            for value in (workflow[node_id].get("inputs") or {}).values():
                if isinstance(value, list) and len(value) == 2 and str(value[0]) in workflow:
                    visit(str(value[0]))
            done.append(node_id)

        for node_id in workflow:
            visit(node_id)
        return done

    def _latent(self, workflow: dict[str, Any]) -> tuple[int, int, int]:
        """Width, height and batch of the sampled latent: EmptyLatentImage's, or for an edit
        the ImageScale size (else the uploaded image's) times RepeatLatentBatch's amount."""
        for spec in workflow.values():
            if spec["class_type"] == "EmptyLatentImage":
                i = spec["inputs"]
                return int(i.get("width", 512)), int(i.get("height", 512)), int(
                    i.get("batch_size", 1))
        batch = 1
        for spec in workflow.values():
            if spec["class_type"] == "RepeatLatentBatch":
                batch *= int(spec["inputs"].get("amount", 1))
        for spec in workflow.values():
            i = spec["inputs"]
            if spec["class_type"] == "ImageScale" and (i.get("width") or i.get("height")):
                return int(i.get("width") or 512), int(i.get("height") or 512), batch
        source = self._source(workflow)
        if source is not None:
            return source.width, source.height, batch
        return 512, 512, batch

    def _load_input(self, workflow: dict[str, Any], node_id: str) -> Image.Image | None:
        spec = workflow.get(node_id) or {}
        data = self._input_file((spec.get("inputs") or {}).get("image"))
        if spec.get("class_type") not in IMAGE_LOADERS or data is None:
            return None
        image = Image.open(io.BytesIO(data))
        image.load()
        return image

    def _source(self, workflow: dict[str, Any]) -> Image.Image | None:
        """The picture an edit graph encodes: the LoadImage behind VAEEncode's pixels."""
        for spec in workflow.values():
            if spec["class_type"] in ("VAEEncode", "VAEEncodeForInpaint"):
                link = _link(spec["inputs"].get("pixels"))
                while link is not None and workflow[link[0]]["class_type"] == "ImageScale":
                    link = _link(workflow[link[0]]["inputs"].get("image"))
                if link is not None and workflow[link[0]]["class_type"] == "LoadImage":
                    return self._load_input(workflow, link[0])
        return None

    def _noise_mask(self, workflow: dict[str, Any]) -> Image.Image | None:
        """The MASK an inpaint graph samples under (L, 255 = repaint), as ComfyUI makes it:
        ``LoadImage`` output 1 and ``LoadImageMask`` channel alpha are 1 - alpha."""
        for spec in workflow.values():
            if spec["class_type"] not in ("SetLatentNoiseMask", "VAEEncodeForInpaint"):
                continue
            link = _link(spec["inputs"].get("mask"))
            if link is None:
                continue
            image = self._load_input(workflow, link[0])
            if image is None:
                continue
            loader = workflow[link[0]]
            channel = "alpha" if loader["class_type"] == "LoadImage" else \
                loader["inputs"].get("channel", "alpha")
            if channel == "alpha":
                if "A" not in image.getbands() and "transparency" not in image.info:
                    return Image.new("L", image.size, 0)  # ComfyUI: an all-zero mask
                return ImageOps.invert(image.convert("RGBA").getchannel("A"))
            return image.convert("RGB").getchannel("RGB".index(channel[0].upper()))
        return None

    def _denoise(self, workflow: dict[str, Any]) -> float:
        for spec in workflow.values():
            if spec["class_type"] in SAMPLERS:
                return float(spec["inputs"].get("denoise", 1.0))
        return 1.0

    def _save(self, workflow: dict[str, Any], prefix: str, kind: str) -> list[dict[str, str]]:
        width, height, batch = self._latent(workflow)
        source, mask = self._source(workflow), self._noise_mask(workflow)
        images = []
        for index in range(batch):
            self._counter += 1
            name = f"{prefix}_{self._counter:05}_.png"
            colour = (200, 40 * index % 256, 30)
            if source is None:
                data = png(width, height, colour)
            else:
                base = source.convert("RGB").resize((width, height))
                paint = Image.blend(base, Image.new("RGB", (width, height), colour),
                                    self._denoise(workflow))
                if mask is not None:
                    paint = Image.composite(paint, base, mask.resize((width, height)))
                data = _png_of(paint)
            self.files[(kind, "", name)] = data
            images.append({"filename": name, "subfolder": "", "type": kind})
        return images

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
