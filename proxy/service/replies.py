"""What the image service takes and gives: an :class:`Order` (a request as the transport read
it) in, a :class:`Reply` out (a job started for it, a job it attached to, or a job's kept
answer), and the errors about job ids."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

from proxy.core.errors import GatewayError
from proxy.images.inputs import InputImage
from proxy.jobs.job import Job
from proxy.jobs.runs import JobRun
from proxy.progress.tracker import JobTracker
from proxy.request.bound import ImageRequest
from proxy.service.gateway import Gateway
from proxy.service.kept import collect_answer
from proxy.service.passing import PassedAnswer, take_answer
from proxy.service.stream import Frame, LiveStream

# The header a client sends to choose the job id (named in errors about it).
JOB_ID_HEADER = "x-job-id"


@dataclass(slots=True)
class Order:
    """An image request as the transport read it: the fields as sent, and the images."""

    job_id: str
    fields: dict[str, Any]
    # Form fields arrive as strings and are converted before they are checked.
    from_form: bool = False
    # An edit: the edit endpoint, or images (or a mask) in the body.
    editing: bool = False
    images: list[InputImage] = field(default_factory=list)
    mask: InputImage | None = None
    listed: bool = False
    # The response_format of the mount it came through, when the request names none.
    response_format: str | None = None
    # Answer at once (202) and keep the result for ``GET {base}/images/jobs/{id}``.
    detached: bool = False
    # The client chose the job id: someone may be watching it already, and the request may be
    # a repeat (``id_param`` names the header it came in).
    watched: bool = False
    id_param: str = JOB_ID_HEADER
    # Where hosted image URLs point (the gateway's own address, as the client reached it).
    base_url: str = ""


class JobStream(Protocol):
    """One reader's SSE frames of a job (:mod:`proxy.service.stream`)."""

    async def open(self) -> GatewayError | None: ...

    def frames(self) -> AsyncGenerator[Frame, None]: ...

    async def aclose(self) -> None: ...

    @property
    def mid_frame(self) -> bool:
        """The last of ``frames()`` given out is not its frame's end (a frame written piece
        by piece): nothing, not even a keep-alive comment, may be written before the rest."""
        ...


class Reply(Protocol):
    """What a submitted request gets: a job started for it, a job it attached to, or a job's
    kept answer; the route writes it as JSON, a stream or a 202."""

    job_id: str
    headers: dict[str, str]  # for the client
    streamed: bool

    async def result(self) -> dict[str, Any]: ...

    async def json_body(self) -> dict[str, Any] | PassedAnswer:
        """``result()``, or the answer passed on while its upstream still sends it."""
        ...

    async def accepted(self) -> dict[str, Any]: ...

    def stream(self, after: int = 0) -> JobStream: ...


@dataclass(slots=True)
class Submission:
    """A running job with one reader, the request that started it (a job whose id the gateway
    made, answered on its own connection): its events or its result."""

    job: Job
    tracker: JobTracker
    run: JobRun
    headers: dict[str, str]
    base_url: str
    gateway: Gateway

    @property
    def job_id(self) -> str:
        return self.job.id

    @property
    def streamed(self) -> bool:
        return self.job.request.stream

    def events(self) -> Any:
        """The job's events, ending with its terminal one; leaving early cancels the job."""
        return self.run.stream()

    async def result(self) -> dict[str, Any]:
        """The job's ``ImagesResponse`` (images hosted when the client asked for URLs); raises
        the job's ``GatewayError`` when it failed."""
        async with aclosing(self.events()) as events:  # leaving early cancels the job
            return await collect_answer(self.job, events, self.gateway, self.base_url)

    async def json_body(self) -> dict[str, Any] | PassedAnswer:
        if not self.job.pieces:
            return await self.result()
        events = self.events()
        try:
            taken = await take_answer(self.job, events)
        except BaseException:
            await events.aclose()  # leaving early cancels the job
            raise
        if isinstance(taken, PassedAnswer):
            return taken
        return await collect_answer(self.job, taken, self.gateway, self.base_url)

    async def accepted(self) -> dict[str, Any]:
        wire = self.tracker.wire()
        return {"id": self.job.id, "object": "image.job", "model": self.job.model.name,
                "created": self.job.created, "status": wire["status"],
                "percent": wire["percent"]}

    def stream(self, after: int = 0) -> LiveStream:
        return LiveStream(self.job, self.events(), after)


def conflict(job_id: str, param: str) -> GatewayError:
    # A different request will not become the same one by being sent again: no SDK retry.
    return GatewayError(409, f"Job id '{job_id}' is already in use by a different request; "
                        "only the same request (the same body, from the same key) may be sent "
                        "again under it.", param=param, code="job_id_conflict", retryable=False)


def not_found(job_id: str) -> GatewayError:
    return GatewayError(404, f"No job '{job_id}' is known to this gateway for your key "
                        "(finished jobs are kept for a limited time).", param="job_id",
                        code="job_not_found")


def parameter_headers(request: ImageRequest) -> dict[str, str]:
    """What binding changed, for the client: ``x-dropped-params`` (parameters the model could
    not use) and ``x-adjusted-params`` (one spelling turned into another, see
    :class:`proxy.models.sizing.Adjustment`)."""
    headers: dict[str, str] = {}
    if request.dropped:
        # Names come from the client: percent-encoded so any name fits in a header.
        headers["x-dropped-params"] = ",".join(quote(name, safe="-_.[]")
                                               for name in request.dropped)
    if request.adjusted:
        headers["x-adjusted-params"] = ";".join(request.adjusted)
    return headers


def not_streamed(job_id: str) -> GatewayError:
    return GatewayError(400, f"Job '{job_id}' does not stream its answer: send its request "
                        "again (the same body, under the same job id) to read it.",
                        param="job_id", code="job_not_streamed")

