"""Prometheus metrics, one registry per gateway (tests run many gateways in one process).

Under ``serve --workers N`` every worker is a process of its own: the command line gives them a
directory (``PROMETHEUS_MULTIPROC_DIR``, :mod:`proxy.observability.multiprocess`) before they
import prometheus_client, each writes its values there, and ``/metrics``, whichever worker
answers it, reads them all. Counters and histograms add up over every worker that ever ran;
gauges say how they combine (``multiprocess_mode``: in-flight counts are summed over the live
workers, a circuit is as open as the worst worker sees it, ...). A single process keeps its
values in memory and answers from its own registry.

The hot path (a request answered, a job finished, an upstream attempt) finds its label children
in a dict keyed by the label values: ``labels()`` checks its arguments and takes a lock on
every call.
"""

from __future__ import annotations

import platform
import re
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.requests import Request
from starlette.responses import Response

from proxy import __version__
from proxy.core.redact import redact

# Image jobs take seconds to minutes: buckets to match.
JOB_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 900)

# Whether this process writes its values to the multiprocess directory: decided when
# prometheus_client was imported (``PROMETHEUS_MULTIPROC_DIR`` set then), not by the
# environment now.
MULTIPROCESS: bool = bool(getattr(values.ValueClass, "_multiprocess", False))

# Probes and the scrape itself: not client traffic, and counting the scrape would move the
# counters by the act of reading them.
UNCOUNTED_ROUTES = frozenset({"/metrics", "/healthz", "/readyz"})
# The route label of a request no route matched (a 404): one value, whatever the path was.
UNMATCHED = "unmatched"

# The value of ``image_proxy_upstream_circuit_state``.
CIRCUIT_STATES = {"closed": 0, "half_open": 1, "open": 2}

# Error codes are ours or an upstream's (kept as it sent them): a label value only when shaped
# like one, so a strange upstream cannot grow the series without bound.
_CODE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def code_label(code: str | None) -> str:
    """``code`` as a label value: "" for none, "other" for one not shaped like a code."""
    if not code:
        return ""
    return code if _CODE.fullmatch(code) else "other"


class Metrics:
    def __init__(self, shared_store: bool = False) -> None:
        """``shared_store``: the gateway uses Redis (``image_proxy_shared_store_up`` exists
        only then: a gateway without one has no outage to report)."""
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "image_proxy_requests",
            "HTTP requests answered, by route template, status code and error code (refusals "
            "included; not /metrics, /healthz, /readyz).",
            ["route", "status_code", "error_code"], registry=r)
        self.jobs = Counter(
            "image_proxy_jobs", "Finished image jobs, by how they ended.",
            ["model", "provider", "kind", "status", "error_code"], registry=r)
        self.job_seconds = Histogram(
            "image_proxy_job_seconds", "Time from accepting a job to its end, in the gateway.",
            ["model", "provider"], buckets=JOB_BUCKETS, registry=r)
        self.cost = Counter(
            "image_proxy_cost_usd", "What finished jobs cost, in USD (the upstream's own figure "
            "when it gives one, else the price table's; unpriced jobs add nothing).",
            ["model", "provider"], registry=r)
        self.upstream_seconds = Histogram(
            "image_proxy_upstream_seconds", "Time of each upstream attempt.",
            ["provider", "outcome"], buckets=JOB_BUCKETS, registry=r)
        self.upstream_attempts = Counter(
            "image_proxy_upstream_attempts",
            "Upstream attempts by how they ended: ok, an error code, or cancelled.",
            ["model", "provider", "outcome"], registry=r)
        self.circuit_state = Gauge(
            "image_proxy_upstream_circuit_state",
            "Each upstream's circuit breaker: 0 closed, 1 half-open (a probe is in flight), "
            "2 open (failing fast); with several workers, the worst any live worker sees.",
            ["upstream"], multiprocess_mode="livemax", registry=r)
        self.circuit_opened = Counter(
            "image_proxy_upstream_circuit_opened", "Times an upstream's circuit opened.",
            ["upstream"], registry=r)
        self.jobs_in_flight = Gauge(
            "image_proxy_jobs_in_flight", "Jobs running now.",
            multiprocess_mode="livesum", registry=r)
        self.jobs_queued = Gauge(
            "image_proxy_jobs_queued", "Jobs waiting in their upstream's own queue now.",
            ["model"], multiprocess_mode="livesum", registry=r)
        self.jobs_capacity = Gauge(
            "image_proxy_jobs_capacity", "Jobs this host may run at once (jobs.max_concurrent, "
            "per worker, summed).", multiprocess_mode="livesum", registry=r)
        self.sse_streams = Gauge(
            "image_proxy_sse_streams_open", "SSE responses being written now.",
            multiprocess_mode="livesum", registry=r)
        self.socket_clients = Gauge(
            "image_proxy_socket_clients", "Socket.IO clients connected to /image-progress.",
            multiprocess_mode="livesum", registry=r)
        self.image_bytes = Counter(
            "image_proxy_image_bytes", "Base64 image bytes relayed (partial and final).",
            ["kind"], registry=r)
        self.retries = Counter(
            "image_proxy_retries", "Upstream attempts retried after a transient failure.",
            ["model"], registry=r)
        self.fallbacks = Counter(
            "image_proxy_fallbacks", "Jobs handed to a fallback model.", ["model"], registry=r)
        self.store_up: Gauge | None = None
        if shared_store:
            self.store_up = Gauge(
                "image_proxy_shared_store_up",
                "1 while the shared store (Redis) answers, 0 during an outage; with several "
                "workers, 0 if any live worker sees it down.",
                multiprocess_mode="livemin", registry=r)
        self.workers = Gauge(
            "image_proxy_worker_processes", "Worker processes serving on this host.",
            multiprocess_mode="livesum", registry=r)
        self.build_info = Gauge(
            "image_proxy_build_info", "Always 1: the gateway's version and Python's.",
            ["version", "python"], multiprocess_mode="max", registry=r)
        self.build_info.labels(__version__, platform.python_version()).set(1)
        self.workers.set(1)

        # What /metrics reads: this registry, or every worker's files.
        self.exposed = r
        if MULTIPROCESS:
            self.exposed = CollectorRegistry()
            MultiProcessCollector(self.exposed)

        # Label children of the hot-path metrics, found once per label set.
        self._answered: dict[tuple[str, int, str], Any] = {}
        self._finished: dict[tuple[str, str, str, str, str | None], tuple[Any, Any, Any]] = {}
        self._attempted: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        self._queued: dict[str, Any] = {}
        self._final_bytes = self.image_bytes.labels("final")
        self._partial_bytes = self.image_bytes.labels("partial")

    def request_answered(self, route: str, status: int, error_code: str) -> None:
        """Count one answered HTTP request (``route``: its template, or ``UNMATCHED``)."""
        key = (route, status, error_code)
        child = self._answered.get(key)
        if child is None:
            if route in UNCOUNTED_ROUTES:
                return
            child = self._answered[key] = self.requests.labels(route, str(status),
                                                               code_label(error_code))
        child.inc()

    def job_finished(self, model: str, provider: str, kind: str, status: str,
                     error_code: str | None, seconds: float, cost: float | None,
                     final_bytes: int, partial_bytes: int) -> None:
        """Count one finished job (its status, duration, cost and image bytes)."""
        key = (model, provider, kind, status, error_code)
        children = self._finished.get(key)
        if children is None:
            children = self._finished[key] = (
                self.jobs.labels(model, provider, kind, status, code_label(error_code)),
                self.job_seconds.labels(model, provider), self.cost.labels(model, provider))
        jobs, job_seconds, spent = children
        jobs.inc()
        job_seconds.observe(seconds)
        if cost:
            spent.inc(cost)
        self._final_bytes.inc(final_bytes)
        self._partial_bytes.inc(partial_bytes)

    def upstream_attempt(self, model: str, provider: str, outcome: str, seconds: float) -> None:
        """Count one upstream attempt and its time (``outcome``: ok, an error code,
        cancelled)."""
        key = (model, provider, outcome)
        children = self._attempted.get(key)
        if children is None:
            label = code_label(outcome) or "error"
            children = self._attempted[key] = (
                self.upstream_attempts.labels(model, provider, label),
                self.upstream_seconds.labels(provider, label))
        attempts, upstream_seconds = children
        attempts.inc()
        upstream_seconds.observe(seconds)

    def queued(self, model: str) -> Any:
        """The gauge of ``model``'s jobs waiting in their upstream's queue."""
        child = self._queued.get(model)
        if child is None:
            child = self._queued[model] = self.jobs_queued.labels(model)
        return child

    def circuit(self, upstream: str, state: str, opened: bool = False) -> None:
        """Upstream ``upstream``'s circuit is now ``state`` (``opened``: it just opened)."""
        name = redact(upstream)
        self.circuit_state.labels(name).set(CIRCUIT_STATES[state])
        if opened:
            self.circuit_opened.labels(name).inc()
        else:
            self.circuit_opened.labels(name)  # present from the start, at 0

    async def endpoint(self, request: Request) -> Response:
        return Response(generate_latest(self.exposed), media_type=CONTENT_TYPE_LATEST)
