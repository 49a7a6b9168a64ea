"""``GET {base}/images/jobs/{job_id}``: a job's progress snapshot (and a detached job's answer)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from proxy.core.errors import GatewayError
from proxy.http.responses import JSONBody
from proxy.jobs.job import parse_job_id
from proxy.service.images import ImageService


async def get_job(request: Request) -> Response:
    service: ImageService = request.app.state.service
    key = service.gateway.keys.authenticate_request(request)
    job_id = parse_job_id(request.path_params["job_id"])
    view = await service.job_view(key, job_id) if job_id else None
    if view is None:
        raise GatewayError(404, f"No job '{request.path_params['job_id']}' is known to this "
                           "gateway for your key (finished jobs are kept for a limited time).",
                           param="job_id", code="job_not_found")
    return JSONBody(view)
