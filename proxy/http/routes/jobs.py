"""``GET {base}/images/jobs/{job_id}``: a job's progress snapshot (and a detached job's answer);
``GET {base}/images/jobs/{job_id}/events``: a streamed job's events again, for a client that lost
its connection (after its ``Last-Event-ID``)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from proxy.core.errors import GatewayError
from proxy.http.disconnect import CLIENT_CLOSED, ClientGone, ClientWatch
from proxy.http.responses import JSONBody, error_response
from proxy.http.sse_writer import last_event_id, sse_response
from proxy.jobs.job import parse_job_id
from proxy.service.images import ImageService
from proxy.service.replies import not_found


def _unknown(request: Request) -> GatewayError:
    return not_found(request.path_params["job_id"])


async def get_job(request: Request) -> Response:
    service: ImageService = request.app.state.service
    key = service.gateway.keys.authenticate_request(request)
    job_id = parse_job_id(request.path_params["job_id"])
    view = await service.job_view(key, job_id) if job_id else None
    if view is None:
        raise _unknown(request)
    return JSONBody(view)


async def get_job_events(request: Request) -> Response:
    """Re-attach to a streamed job of the caller's key: the frames after ``Last-Event-ID``
    (all of them without it), live while the job runs, replayed once it ended."""
    service: ImageService = request.app.state.service
    key = service.gateway.keys.authenticate_request(request)
    job_id = parse_job_id(request.path_params["job_id"])
    if job_id is None:
        raise _unknown(request)
    after = last_event_id(request)
    try:
        async with ClientWatch(request):  # it may wait for a job running elsewhere
            stream = await service.reattach(key, job_id, after)
            failed = await stream.open()
    except ClientGone:
        return Response(status_code=CLIENT_CLOSED)
    if failed is not None:
        return error_response(failed)
    return sse_response(stream, {}, service.gateway)
