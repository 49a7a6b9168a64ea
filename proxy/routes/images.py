"""``POST {base}/images/generations``."""

from __future__ import annotations

from contextlib import aclosing

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import Response

from proxy.events import Failed
from proxy.gateway import Gateway
from proxy.jobs import Job, run_job
from proxy.params import apply_rules, parse_params
from proxy.responses import JSONBody, error_response
from proxy.routes.body import read_json_object
from proxy.writers.json_body import collect_response
from proxy.writers.sse_stream import sse_events


async def create_generation(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    body = await read_json_object(request, gateway.config.server.max_body_bytes)
    known, unknown = parse_params(body)
    served = gateway.models.resolve(known.get("model"))
    image_request = apply_rules(known, unknown, served.name, served.rules,
                                drop_unsupported=served.drop_unsupported)
    job = Job(id=request.state.request_id, request=image_request, model=served)
    return await respond(job, gateway)


async def respond(job: Job, gateway: Gateway) -> Response:
    """Run the job and answer as JSON or SSE; errors before the first byte stay HTTP errors."""
    headers = {}
    if job.request.dropped:
        headers["x-dropped-params"] = ",".join(job.request.dropped)
    events = run_job(job)
    if not job.request.stream:
        async with aclosing(events):
            body = await collect_response(job, events)
        return JSONBody(body, headers=headers)

    # Wait for the job's first event before committing to a 200 stream, so a request the
    # upstream refuses outright gets a real status code (the SDKs raise on it).
    first = await anext(events)
    if isinstance(first, Failed):
        await events.aclose()
        return error_response(first.error, headers)
    return EventSourceResponse(
        sse_events(job, first, events),
        headers=headers,
        sep="\n",
        ping=gateway.config.server.sse_keepalive,
        ping_message_factory=lambda: ServerSentEvent(comment="keep-alive"),
    )
