"""One log line per finished job, at ``INFO`` on ``proxy.jobs``: JSON, streamed, asynchronous
jobs and edits alike (a request refused before its job started has none: that is the access
log's). It names the job and its request, the key by its name (never the key), the model and
provider that served it, how it ended and why, the upstream's HTTP status when it failed after
an answer, attempts over retries and fallbacks, latency, image bytes relayed and cost.

No payload is ever in it, and the prompt only with ``logs: {prompts: true}``. The line is built
only when ``proxy.jobs`` is enabled for ``INFO``.
"""

from __future__ import annotations

import logging
from typing import Any

from proxy.billing.meter import UsageMeter
from proxy.billing.record import UsageRecord
from proxy.jobs.job import Job

log = logging.getLogger("proxy.jobs")

# Characters of a prompt kept in the job's line, with logs.prompts on.
PROMPT_LOGGED = 1000


def log_finished(job: Job, record: UsageRecord, meter: UsageMeter, *,
                 prompts: bool = False) -> None:
    """The job's line (nothing is built when ``proxy.jobs`` does not log ``INFO``)."""
    if not log.isEnabledFor(logging.INFO):
        return
    error = meter.failed.error if meter.failed is not None else None
    fields: dict[str, Any] = {
        "job_id": record.job_id, "key": record.key, "model": record.model,
        "provider": record.provider, "kind": record.kind, "job_status": record.status,
        "error_code": record.error_code, "attempts": job.attempts,
        "latency_ms": record.latency_ms, "images": record.images,
        "image_bytes": meter.image_bytes, "partial_bytes": meter.partial_bytes,
        "cost": record.cost}
    if error is not None:
        fields["upstream_status"] = error.upstream_status
    if prompts:
        fields["prompt"] = job.request.prompt[:PROMPT_LOGGED]
    outcome = record.status if error is None else f"{record.status} ({record.error_code})"
    # The same few messages recur (the job's id and numbers are fields): each is redacted once.
    log.info("job %s: %s on %s, %d attempt(s)", outcome, record.model, record.provider,
             job.attempts, extra=fields)
