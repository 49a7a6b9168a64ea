"""What a job shows the operator while it runs: its trace span and one span per upstream attempt
(when traces are on, :mod:`proxy.observability.tracing`), and a warning line for every upstream
attempt that fails, saying which model and provider, where, and what the upstream said.

The job's own line, when it is over, is written by the service (``proxy.service.joblog``), which
knows its key, cost and usage record.
"""

from __future__ import annotations

import logging
from typing import Any

from proxy.billing.meter import UsageMeter
from proxy.core.errors import GatewayError
from proxy.core.events import Completed
from proxy.jobs.job import Job
from proxy.observability import tracing
from proxy.observability.tracing import GENAI_PROVIDERS
from proxy.routing.table import ServedModel

# Failed upstream attempts: one warning each (the upstream's words, secrets redacted by the
# log handler; its address is for the operator only).
log = logging.getLogger("proxy.upstream")

# gen_ai.operation.name: the conventions name no image operation; this one is "multimodal
# content generation", and gen_ai.output.type says what came out.
OPERATION = "generate_content"


def _genai_attributes(model: ServedModel, n: int) -> dict[str, Any]:
    provider = model.provider_name
    return {"gen_ai.operation.name": OPERATION, "gen_ai.output.type": "image",
            "gen_ai.provider.name": GENAI_PROVIDERS.get(provider, provider),
            "gen_ai.request.choice.count": n, "image_proxy.provider": provider}


def _usage(completed: Completed | None) -> dict[str, Any]:
    usage = completed.usage if completed is not None else None
    if usage is None:
        return {}
    return {"gen_ai.usage.input_tokens": usage.input_tokens,
            "gen_ai.usage.output_tokens": usage.output_tokens}


def start_job_span(job: Job) -> None:
    """The job's span, under the current one (its request's), when traces are on."""
    traces = tracing.active()
    if traces is None:
        return
    job.span = traces.start(f"{job.kind} {job.model.name}", "internal", {
        **_genai_attributes(job.model, job.request.n), "gen_ai.request.model": job.model.name,
        "image_proxy.job.id": job.id, "image_proxy.job.kind": job.kind,
        "image_proxy.key": job.owner})


def end_job_span(job: Job, meter: UsageMeter, cancelled: bool) -> None:
    traces = tracing.active()
    if traces is None or job.span is None:
        return
    span, job.span = job.span, None
    error = meter.failed.error if meter.failed is not None else None
    model = job.model  # the fallback that served it, if one did
    traces.end(span, {
        **_genai_attributes(model, job.request.n), **_usage(meter.completed),
        "gen_ai.response.model": model.upstream_model, "image_proxy.model": model.name,
        "image_proxy.job.status": meter.status(cancelled),
        "image_proxy.job.attempts": job.attempts, "image_proxy.job.images": meter.images,
        "image_proxy.job.cost_usd": job.cost},
        error=(error.code or error.type) if error is not None else None,
        description=error.message if error is not None else None)


class Attempt:
    """One upstream attempt of a job: its span (the current one while it runs, so the upstream
    request's client span and ``traceparent`` follow from it) and, if it fails, its warning."""

    __slots__ = ("job", "model", "number", "span", "token")

    def __init__(self, job: Job, model: ServedModel) -> None:
        job.attempts += 1
        self.job, self.model, self.number = job, model, job.attempts
        self.span: Any = None
        self.token: object = None
        traces = tracing.active()
        if traces is not None:
            self.span = traces.start(f"{OPERATION} {model.upstream_model}", "client", {
                **_genai_attributes(model, job.request.n),
                "gen_ai.request.model": model.upstream_model, "image_proxy.model": model.name,
                "image_proxy.job.id": job.id, "image_proxy.attempt": self.number},
                parent=job.span)
            self.token = traces.activate(self.span)

    def succeeded(self, completed: Completed) -> None:
        self._end(_usage(completed))

    def failed(self, error: GatewayError, retry_in: float | None) -> None:
        """Log the failure (a warning) and end the span with it. ``retry_in``: seconds before
        the next attempt at the same model, None when there is none."""
        model, code = self.model, error.code or error.type
        cause = f"{code}: {error.message}"
        status = error.upstream_status
        if status is not None and f"HTTP {status}" not in error.message:
            cause += f" (HTTP {status})"
        if error.reason:
            cause += f" ({error.reason})"
        if error.upstream:
            cause += f" at {error.upstream}"
        then = f"; retrying in {retry_in:.1f} s" if retry_in is not None else ""
        log.warning("%s (provider %s), attempt %d, failed: %s%s", model.name,
                    model.provider_name, self.number, cause, then, extra={
                        "job_id": self.job.id, "model": model.name,
                        "provider": model.provider_name, "attempt": self.number,
                        "error_code": code, "upstream_status": error.upstream_status,
                        "upstream": error.upstream, "reason": error.reason,
                        "retry_in_s": None if retry_in is None else round(retry_in, 3)})
        self._end({"http.response.status_code": error.upstream_status}, error=code,
                  description=error.message)

    def close(self) -> None:
        """When the attempt is over, however it ended (cancelled: its span just ends)."""
        traces = tracing.active()
        if self.token is not None and traces is not None:
            traces.deactivate(self.token)
            self.token = None
        self._end({})

    def _end(self, attributes: dict[str, Any], *, error: str | None = None,
             description: str | None = None) -> None:
        traces = tracing.active()
        if self.span is not None and traces is not None:
            span, self.span = self.span, None
            traces.end(span, attributes, error=error, description=description)
