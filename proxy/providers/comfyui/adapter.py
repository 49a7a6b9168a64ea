"""Provider ``comfyui``: ComfyUI servers running a workflow template.

One job = one prompt on one server of the model's pool (:mod:`.pool`: the least loaded one that
answers). Uploads (an edit's image and mask) go to that server, then its websocket is opened
(ComfyUI does not buffer events), then the workflow is queued with the request injected. The
prompt is followed to its end (:mod:`.follow`): its place in the queue while it waits, per-node
progress as one percentage, previews as partial images, ``executed`` outputs fetched from
``/view``. A job the caller abandons is dequeued, or interrupted if it runs, on that server.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import anyio

from proxy.core.errors import GatewayError, invalid_param, upstream_error
from proxy.core.events import Completed, Event, Image, Progress
from proxy.images.codec import to_b64
from proxy.images.inputs import InputImage
from proxy.models.rules import ModelRules
from proxy.providers.base import Call, ModelSpec, Provider, ProviderContext, ProviderSettings
from proxy.providers.comfyui.errors import PromptRefused, refusal
from proxy.providers.comfyui.follow import Follow
from proxy.providers.comfyui.pool import Server, ServerPool
from proxy.providers.comfyui.protocol import history_outcome, image_refs
from proxy.providers.comfyui.run import Clock, PromptRun
from proxy.providers.comfyui.settings import ComfyUISettings
from proxy.providers.comfyui.workflow import (
    Graph,
    Workflow,
    load_edit_workflow,
    load_workflow,
)

# The longest edge the catalog allows; an edit's input image larger than this is scaled down.
_MAX_EDGE = 4096

Socket = aiohttp.ClientWebSocketResponse


def _upload_stem(job_id: str) -> str:
    """Upload names: the job id, so concurrent edits never share (or overwrite) a file."""
    return "".join(c for c in job_id if c.isalnum() or c in "-_")[:64] or uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class _Upload:
    """One file to send to ``/upload/image``; its stored name fills ``parameters``."""

    image: InputImage
    filename: str
    parameters: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Plan:
    workflow: Workflow
    values: dict[str, Any]
    output_format: str
    uploads: tuple[_Upload, ...] = ()


def _multiple_of_8(value: int) -> int:
    return max(16, (value + 4) // 8 * 8)


def _input_size(image: InputImage) -> tuple[int, int]:
    """An edit's output size when the request gives none: the image's, in steps of 8 and
    scaled down to the 4096 px edge the catalog allows."""
    scale = min(1.0, _MAX_EDGE / max(image.width, image.height))
    return (min(_MAX_EDGE, _multiple_of_8(round(image.width * scale))),
            min(_MAX_EDGE, _multiple_of_8(round(image.height * scale))))


def _extension(image: InputImage) -> str:
    return {"jpeg": "jpg"}.get(image.format, image.format)


class ComfyUIProvider(Provider):
    name = "comfyui"
    settings_class = ComfyUISettings
    settings: ComfyUISettings

    def __init__(self, model: ModelSpec, settings: ProviderSettings,
                 context: ProviderContext) -> None:
        super().__init__(model, settings, context)
        self.workflow = load_workflow(self.settings, context.config_dir)
        self.edit_workflow = load_edit_workflow(self.settings, context.config_dir)
        self.pool = ServerPool(model.name if model is not None else self.name,
                               self.settings.pool(), context.http, self.settings.headers,
                               self.settings.health_interval)

    @property
    def upstream_key(self) -> str:
        """One circuit breaker for the model's pool (a failing server leaves the rotation on
        its own, see :mod:`.pool`)."""
        return f"{self.name}:{','.join(server.client.base for server in self.pool.servers)}"

    async def aclose(self) -> None:
        await self.pool.aclose()

    @classmethod
    def check(cls, settings: ProviderSettings, config_dir: Path) -> None:
        assert isinstance(settings, ComfyUISettings)
        load_workflow(settings, config_dir)
        load_edit_workflow(settings, config_dir)

    @classmethod
    def narrow_rules(cls, rules: ModelRules, settings: ProviderSettings,
                     config_dir: Path) -> ModelRules:
        """What the workflows can take: ``n`` above 1 needs a ``batch_size`` input, ``seed``,
        ``negative_prompt`` and ``quality`` (steps) need theirs; edits need an edit workflow.
        (A mask the edit workflow cannot take stays refused by the adapter, not dropped:
        docs/comfyui.md.)"""
        assert isinstance(settings, ComfyUISettings)
        workflow = load_workflow(settings, config_dir)
        edit = load_edit_workflow(settings, config_dir)
        qualities = None
        if rules.qualities is not None and workflow.maps("steps"):
            qualities = [q for q in rules.qualities if q == "auto" or q in workflow.quality_steps]
        return rules.model_copy(update={
            "n_max": rules.n_max if workflow.maps("batch_size") else 1,
            "seed": rules.seed and workflow.maps("seed"),
            "negative_prompt": rules.negative_prompt and workflow.maps("negative_prompt"),
            "qualities": qualities or None,
            "edits": rules.edits and edit is not None,
        })

    def _plan(self, call: Call) -> _Plan:
        request = call.request
        editing = call.kind == "edit"
        workflow = self.edit_workflow if editing else self.workflow
        if workflow is None:
            raise invalid_param("model", f"Model '{self.model.name}' has no edit workflow "
                                         "configured (its ComfyUI entry sets no edit_workflow).",
                                code="model_cannot_edit")
        uploads: tuple[_Upload, ...] = ()
        if editing:
            uploads = self._uploads(call, workflow)
        if request.size not in (None, "auto"):
            width, height = (_multiple_of_8(int(v)) for v in request.size.split("x"))
        elif editing:
            width, height = _input_size(request.images[0])
        else:
            width, height = (_multiple_of_8(int(v))
                             for v in self.settings.default_size.split("x"))
        if request.n > 1 and not workflow.maps("batch_size"):
            what = "edit workflow" if editing else "workflow"
            raise invalid_param("n", f"Model '{self.model.name}' makes one image per request: "
                                     f"its {what} has no batch_size input.")
        values: dict[str, Any] = {"prompt": request.prompt, "width": width, "height": height,
                                  "batch_size": request.n}
        if request.negative_prompt is not None:
            values["negative_prompt"] = request.negative_prompt
        # A fresh seed unless one is asked for: identical inputs are answered from ComfyUI's
        # cache, instantly and with the same picture.
        values["seed"] = request.seed if request.seed is not None else random.randrange(2**32)
        steps = workflow.quality_steps.get(request.quality or "")
        if steps is not None:
            values["steps"] = steps
        if workflow.denoise is not None:
            values["denoise"] = workflow.denoise
        return _Plan(workflow, {k: v for k, v in values.items() if workflow.maps(k)},
                     request.output_format or "png", uploads)

    def _uploads(self, call: Call, workflow: Workflow) -> tuple[_Upload, ...]:
        """What an edit uploads: the image, and the mask when the workflow has a mask input.

        OpenAI's mask marks the area to edit with fully transparent pixels; ComfyUI's
        ``LoadImage`` / ``LoadImageMask`` (channel alpha) make their MASK as 1 - alpha, so
        the same pixels are the masked (repainted) ones and the mask is uploaded unchanged.
        """
        request, name = call.request, self.model.name
        if not request.images:
            raise invalid_param("image", "Missing required parameter: 'image'.",
                                code="missing_required_parameter")
        if len(request.images) > 1:
            raise invalid_param("image", f"Model '{name}' edits one image: its ComfyUI edit "
                                         f"workflow has one image input, got "
                                         f"{len(request.images)}.", code="too_many_images")
        image = request.images[0]
        stem = _upload_stem(call.job_id)
        if request.mask is not None:
            if not workflow.maps("mask"):
                raise invalid_param(
                    "mask", f"Model '{name}' takes no mask: its ComfyUI edit workflow has no "
                            "mask input. Send the edit without 'mask', or use an inpainting "
                            "workflow (e.g. edit_workflow: sdxl_inpaint).",
                    code="unsupported_parameter")
            return (_Upload(image, f"{stem}.{_extension(image)}", ("image",)),
                    _Upload(request.mask, f"{stem}-mask.png", ("mask",)))
        if workflow.maps("mask"):
            if not image.has_alpha:
                raise invalid_param(
                    "mask", f"Model '{name}' inpaints: send a 'mask' (a PNG whose fully "
                            "transparent pixels mark the area to edit), or an image whose "
                            "transparent pixels do.", code="missing_required_parameter")
            # As OpenAI does without a mask: the image's own transparency is the mask.
            return (_Upload(image, f"{stem}.{_extension(image)}", ("image", "mask")),)
        return (_Upload(image, f"{stem}.{_extension(image)}", ("image",)),)

    async def _upload(self, server: Server, plan: _Plan, clock: Clock) -> Graph:
        """Upload the plan's files to ``server``; the graph with their stored names injected."""
        values = dict(plan.values)
        for upload in plan.uploads:
            stored = await server.client.upload(
                upload.image.data, upload.filename, upload.image.mime,
                self.settings.upload_subfolder, clock.http())
            for parameter in upload.parameters:
                values[parameter] = stored
        return plan.workflow.build(values)

    async def _place(self, call: Call, plan: _Plan,
                     clock: Clock) -> tuple[Server, Graph, Socket | None]:
        """A server for the job, its uploads done there and its websocket open. A server that
        cannot be reached leaves the rotation and the next one is tried."""
        tried: tuple[Server, ...] = ()
        while True:
            server = await self.pool.acquire(tried)
            try:
                graph = await self._upload(server, plan, clock)
                return server, graph, await server.client.connect(call.job_id, clock.http())
            except GatewayError as error:
                self.pool.release(server)
                if error.code != "upstream_unreachable":
                    raise
                server.went_down(error.message)
                tried += (server,)
            except BaseException:
                self.pool.release(server)
                raise

    async def generate(self, call: Call) -> AsyncGenerator[Event, None]:
        request = call.request
        plan = self._plan(call)
        clock = Clock(self.model.timeout)
        # Uploads come first, before any event: a failed upload is still an HTTP error.
        server, graph, ws = await self._place(call, plan, clock)
        # A fresh id for every attempt (a retry must not find the last attempt's history); the
        # client_id, which is the job id, ties prompts to their job on the server.
        sent = str(uuid.uuid4())
        prompt_id: str | None = None
        run: PromptRun | None = None
        maybe_queued = True  # from here on the prompt may exist on the server
        try:
            try:
                prompt_id = await server.client.submit(graph, call.job_id, sent, clock.http())
            except PromptRefused as refused:
                maybe_queued = False
                raise refusal(refused.raw, plan.workflow.inputs, server.host,
                              self.model.name) from None
            server.submitted += 1
            run = PromptRun(
                prompt_id, {node: spec["class_type"] for node, spec in graph.items()},
                host=server.host, partial_images=request.partial_images if request.stream else 0,
                output_format=plan.output_format, compression=request.output_compression,
                clock=clock)
            follow = Follow(server, run, ws, clock, self.settings.poll_interval,
                            self.settings.poll_grace)
            async for event in follow.events():
                yield event
            async for event in self._results(call, plan, server, run, follow.outputs, clock):
                yield event
        except BaseException:
            # Closed (client gone), cancelled, timed out or failed before the prompt ended:
            # stop it on the server so it does not keep a GPU busy for nobody.
            if maybe_queued and (run is None or not run.finished):
                with anyio.CancelScope(shield=True):
                    await server.client.abandon(prompt_id or sent)
            raise
        finally:
            if prompt_id is not None:
                server.submitted -= 1
                server.started.pop(prompt_id, None)
            self.pool.release(server)
            if ws is not None:
                with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                    await ws.close()

    async def _results(self, call: Call, plan: _Plan, server: Server, run: PromptRun,
                       outputs: dict[str, Any], clock: Clock) -> AsyncGenerator[Event, None]:
        """The finished prompt's images, fetched from ``/view``, then ``Completed``."""
        request = call.request
        refs = image_refs(outputs, self.settings.output_node)
        if not refs:  # e.g. an output node answered from cache by an older ComfyUI
            entry = await server.client.history(run.prompt_id, clock.http())
            refs = image_refs((entry and history_outcome(entry, server.host)) or {},
                              self.settings.output_node)
        if not refs:
            raise upstream_error(
                f"ComfyUI at {server.host} finished the workflow but it produced no images "
                "(does the workflow have a SaveImage node?).", code="upstream_no_image")
        if run.started_at is not None:
            server.measured((run.ended_at or time.monotonic()) - run.started_at)
        yield Progress(100.0, stage="finished", message="fetching images", measured=True)
        size = ""
        for index, ref in enumerate(refs[:request.n]):
            data = await server.client.view(ref, clock.http())
            b64, width, height = await anyio.to_thread.run_sync(
                to_b64, data, plan.output_format, request.output_compression)
            size = size or f"{width}x{height}"
            yield Image(index, b64_json=b64)
        resolved = {"size": size, "output_format": plan.output_format}
        if request.quality not in (None, "auto"):
            resolved["quality"] = request.quality
        yield Completed(usage=None, resolved=resolved)
