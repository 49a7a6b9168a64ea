"""``GET {base}/images/jobs/{job_id}``: a job's progress snapshot, for plain-JSON backends."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from proxy.errors import GatewayError
from proxy.gateway import Gateway
from proxy.progress.socket import parse_job_id
from proxy.responses import JSONBody


async def get_job(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    key = gateway.keys.authenticate_request(request)
    job_id = parse_job_id(request.path_params["job_id"])
    snapshot = await gateway.hub.get(job_id, key.name) if job_id else None
    if snapshot is None:
        raise GatewayError(404, f"No job '{request.path_params['job_id']}' is known to this "
                           "gateway for your key (finished jobs are kept for a limited time).",
                           param="job_id", code="job_not_found")
    # A detached job's answer (ImagesResponse) or error, once it has one.
    return JSONBody({**snapshot.to_wire(), **(await gateway.results.get(snapshot.job_id) or {})})
