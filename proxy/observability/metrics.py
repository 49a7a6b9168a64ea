"""Prometheus metrics, one registry per gateway (tests run many gateways in one process)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response

# Image jobs take seconds to minutes: buckets to match.
JOB_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 900)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "image_proxy_requests", "Finished image jobs.",
            ["model", "provider", "kind", "status"], registry=r)
        self.job_seconds = Histogram(
            "image_proxy_job_seconds", "Time from accepting a job to its end, in the gateway.",
            ["model", "provider"], buckets=JOB_BUCKETS, registry=r)
        self.upstream_seconds = Histogram(
            "image_proxy_upstream_seconds", "Time of each upstream attempt.",
            ["provider", "outcome"], buckets=JOB_BUCKETS, registry=r)
        self.jobs_in_flight = Gauge(
            "image_proxy_jobs_in_flight", "Jobs running now.", registry=r)
        self.sse_streams = Gauge(
            "image_proxy_sse_streams_open", "SSE responses being written now.", registry=r)
        self.socket_clients = Gauge(
            "image_proxy_socket_clients", "Socket.IO clients connected to /image-progress.",
            registry=r)
        self.image_bytes = Counter(
            "image_proxy_image_bytes", "Base64 image bytes relayed (partial and final).",
            ["kind"], registry=r)
        self.retries = Counter(
            "image_proxy_retries", "Upstream attempts retried after a transient failure.",
            ["model"], registry=r)
        self.fallbacks = Counter(
            "image_proxy_fallbacks", "Jobs handed to a fallback model.", ["model"], registry=r)
        self.store_up = Gauge(
            "image_proxy_shared_store_up",
            "1 while the shared store (Redis) answers, 0 during an outage (with redis_url).",
            registry=r)

        # Label children of the per-job metrics, found once per label set (``labels()`` checks
        # and locks on every call; a finished job counts into four of them).
        self._finished: dict[tuple[str, str, str, str], tuple[Any, Any]] = {}
        self._final_bytes = self.image_bytes.labels("final")
        self._partial_bytes = self.image_bytes.labels("partial")

    def job_finished(self, model: str, provider: str, kind: str, status: str, seconds: float,
                     final_bytes: int, partial_bytes: int) -> None:
        """Count one finished job (its status, duration and image bytes)."""
        key = (model, provider, kind, status)
        children = self._finished.get(key)
        if children is None:
            children = self._finished[key] = (self.requests.labels(*key),
                                              self.job_seconds.labels(model, provider))
        requests, job_seconds = children
        requests.inc()
        job_seconds.observe(seconds)
        self._final_bytes.inc(final_bytes)
        self._partial_bytes.inc(partial_bytes)

    async def endpoint(self, request: Request) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)
