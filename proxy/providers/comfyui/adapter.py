"""Provider ``comfyui``: a ComfyUI server running a workflow template.

One job = one prompt. The websocket is opened first (ComfyUI does not buffer events), the
workflow is queued with the request injected, and the prompt is followed to its end: per-node
progress becomes one percentage, previews become partial images, ``executed`` outputs are
fetched from ``/view``. A lost websocket falls back to polling ``/history``; a job the caller
abandons is interrupted and dequeued on the server.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from proxy.config import ModelConfig
from proxy.errors import GatewayError, invalid_param, upstream_error
from proxy.events import Completed, Event, Image, Progress
from proxy.imaging import to_b64
from proxy.providers.base import Provider, ProviderContext, ProviderSettings
from proxy.providers.comfyui.client import ComfyClient
from proxy.providers.comfyui.protocol import history_outcome, image_refs
from proxy.providers.comfyui.run import Clock, PromptRun
from proxy.providers.comfyui.settings import ComfyUISettings
from proxy.providers.comfyui.workflow import Graph, load_workflow

if TYPE_CHECKING:
    from proxy.jobs import Job

# Every this many empty ``/history`` polls, ask ``/queue`` whether the prompt still exists.
_QUEUE_CHECK_EVERY = 5


@dataclass(frozen=True, slots=True)
class _Plan:
    graph: Graph
    width: int
    height: int
    output_format: str


def _multiple_of_8(value: int) -> int:
    return max(16, (value + 4) // 8 * 8)


def _prompt_id(job_id: str) -> str:
    """ComfyUI wants a canonical lowercase UUID; the job id normally is one already."""
    try:
        return str(uuid.UUID(job_id))
    except ValueError:
        return str(uuid.uuid4())


class ComfyUIProvider(Provider):
    name = "comfyui"
    settings_class = ComfyUISettings
    settings: ComfyUISettings

    def __init__(self, model: ModelConfig, settings: ProviderSettings,
                 context: ProviderContext) -> None:
        super().__init__(model, settings, context)
        self.workflow = load_workflow(self.settings, context.config_dir)
        self.client = ComfyClient(context.http, self.settings.base_url, self.settings.headers)

    @classmethod
    def check(cls, settings: ProviderSettings, config_dir: Path) -> None:
        assert isinstance(settings, ComfyUISettings)
        load_workflow(settings, config_dir)

    def _plan(self, job: Job) -> _Plan:
        request = job.request
        workflow = self.workflow
        size = request.size if request.size not in (None, "auto") else self.settings.default_size
        width, height = (_multiple_of_8(int(v)) for v in size.split("x"))
        if request.n > 1 and not workflow.maps("batch_size"):
            raise invalid_param("n", f"Model '{job.model.name}' makes one image per request: "
                                     "its workflow has no batch_size input.")
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
        graph = workflow.build({k: v for k, v in values.items() if workflow.maps(k)})
        return _Plan(graph, width, height, request.output_format or "png")

    async def generate(self, job: Job) -> AsyncGenerator[Event, None]:
        request = job.request
        if job.kind != "generation":
            # The workflows have no image input yet; never answer an edit with a new picture.
            raise GatewayError(400, f"Model '{job.model.name}' cannot edit images yet: its "
                                    "ComfyUI workflow only generates.",
                               code="unsupported_operation")
        plan = self._plan(job)
        clock = Clock(job.model.config.timeout)
        prompt_id = _prompt_id(job.id)
        run = PromptRun(
            prompt_id, {node: spec["class_type"] for node, spec in plan.graph.items()},
            partial_images=request.partial_images if request.stream else 0,
            output_format=plan.output_format, compression=request.output_compression,
            clock=clock,
        )
        ws = await self.client.connect(job.id, clock.http())
        try:
            # From here on the prompt may exist on the server, even if its answer is lost.
            await self.client.submit(plan.graph, job.id, prompt_id, clock.http())
            yield Progress(0.0, stage="queued")
            while ws is not None and not run.finished and not run.lost:
                for event in await run.receive(ws):
                    yield event
            outputs = run.outputs
            if not run.finished:
                yield Progress(run.tracker.percent, stage="waiting",
                               message="websocket lost; following the job through /history")
                outputs = await self._poll(run, clock)
            refs = image_refs(outputs, self.settings.output_node)
            if not refs:  # e.g. an output node answered from cache by an older ComfyUI
                entry = await self.client.history(prompt_id, clock.http())
                refs = image_refs((entry and history_outcome(entry)) or {},
                                  self.settings.output_node)
            if not refs:
                raise upstream_error(
                    "ComfyUI finished the workflow but it produced no images "
                    "(does the workflow have a SaveImage node?).", code="upstream_no_image")
            yield Progress(100.0, stage="finished", message="fetching images")
            size = ""
            for index, ref in enumerate(refs[:request.n]):
                data = await self.client.view(ref, clock.http())
                b64, width, height = await anyio.to_thread.run_sync(
                    to_b64, data, plan.output_format, request.output_compression)
                size = size or f"{width}x{height}"
                yield Image(index, b64_json=b64)
            resolved = {"size": size, "output_format": plan.output_format}
            if request.quality not in (None, "auto"):
                resolved["quality"] = request.quality
            yield Completed(usage=None, resolved=resolved)
        except BaseException as exc:
            # Closed (client gone), cancelled, timed out or failed before the prompt ended:
            # stop it on the server so it does not keep a GPU busy for nobody.
            refused = isinstance(exc, GatewayError) and exc.code == "workflow_invalid"
            if not run.finished and not refused:
                with anyio.CancelScope(shield=True):
                    await self.client.abandon(prompt_id)
            raise
        finally:
            if ws is not None:
                with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                    await ws.close()

    async def _poll(self, run: PromptRun, clock: Clock) -> dict[str, Any]:
        """Poll ``/history`` until the prompt's entry is complete; its outputs."""
        polls = 0
        while True:
            entry = await self.client.history(run.prompt_id, clock.http())
            if entry is not None:
                run.finished = True  # ComfyUI writes the entry when the prompt is over
                outputs = history_outcome(entry)
                if outputs is not None:
                    return outputs
            polls += 1
            if entry is None and polls % _QUEUE_CHECK_EVERY == 0:
                if not await self.client.queued(run.prompt_id, clock.http()) and (
                        await self.client.history(run.prompt_id, clock.http()) is None):
                    run.finished = True
                    raise upstream_error(
                        "ComfyUI no longer knows the job (was the server restarted?).",
                        code="upstream_lost")
            await asyncio.sleep(min(self.settings.poll_interval, clock.remaining()))
