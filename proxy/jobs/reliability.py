"""Run a job's provider with retries, then its fallback models, behind per-upstream breakers.

Adapters fail by raising ``GatewayError`` (a yielded ``Failed`` is treated the same way). Only
transient failures are retried: the upstream refused before doing any work (connection
refused, 429, 5xx before an answer), so nothing was billed. And only while nothing has reached
the client: once a partial image or an image was produced, a failure is final (a retry could
bill twice and the client has already seen part of the answer).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

from proxy.config.schema import ReliabilityConfig
from proxy.core.errors import GatewayError
from proxy.core.events import Completed, Event, Failed, Image, ImagePiece, PartialImage, Progress
from proxy.jobs.breaker import Breakers
from proxy.jobs.job import Job
from proxy.jobs.telemetry import Attempt
from proxy.observability.metrics import Metrics
from proxy.routing.table import ModelTable, ServedModel

_VISIBLE = (PartialImage, Image, ImagePiece, Completed)


class _Shown:
    """One upstream attempt's events as they pass: whether it has shown the client something
    (then a failure is final), a ``Failed`` raised (the one way to fail is to raise), and the
    queued gauge up while the upstream holds the job in its queue."""

    __slots__ = ("metrics", "model", "queue", "visible")

    def __init__(self, metrics: Metrics | None, model: str) -> None:
        self.metrics = metrics
        self.model = model
        self.visible = False
        self.queue: Any = None

    def see(self, event: Event) -> None:
        if isinstance(event, Failed):
            raise event.error
        self.visible = self.visible or isinstance(event, _VISIBLE)
        if isinstance(event, Progress) and event.stage == "queued":
            if self.queue is None and self.metrics is not None:
                self.queue = self.metrics.queued(self.model)
                self.queue.inc()
        elif self.queue is not None:
            self.queue.dec()
            self.queue = None

    def close(self) -> None:
        if self.queue is not None:
            self.queue.dec()
            self.queue = None


class Reliability:
    def __init__(self, config: ReliabilityConfig, models: ModelTable,
                 metrics: Metrics | None = None) -> None:
        self.config = config
        self.models = models
        self.metrics = metrics
        self.breakers = Breakers(config.circuit_failures, config.circuit_cooldown,
                                 watcher=metrics.circuit if metrics is not None else None)
        for served in models.models:  # every upstream's circuit shown from the start (closed)
            self.breakers.get(served.upstream_key)

    def delay(self, attempt: int, error: GatewayError) -> float | None:
        """How long to wait before retry ``attempt + 1``; None when not worth waiting."""
        asked = error.retry_after
        if asked is not None:
            return asked if asked <= self.config.retry_after_max else None
        ceiling = min(self.config.backoff_max, self.config.backoff_base * 2 ** attempt)
        return random.uniform(ceiling / 2, ceiling)  # jitter: retries do not stampede

    def _timed(self, model: ServedModel, started: float, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.upstream_attempt(model.name, model.provider_name, outcome,
                                          time.monotonic() - started)

    def chain(self, job: Job) -> list[ServedModel]:
        return [job.model, *(self.models.resolve(name) for name in job.model.config.fallbacks)]

    def events(self, job: Job) -> AsyncGenerator[Event, None]:
        """The events of the first model in the job's chain that succeeds (a model without
        fallbacks: its attempts' events as they are, one generator fewer per job)."""
        if not job.model.config.fallbacks:
            return self._attempts(job, job.model)
        return self._chain_events(job)

    async def _chain_events(self, job: Job) -> AsyncGenerator[Event, None]:
        last: GatewayError | None = None
        for position, model in enumerate(self.chain(job)):
            if position:
                try:
                    job.rebind(model)
                except GatewayError:
                    continue  # this fallback cannot take the request as it was made
                if self.metrics is not None:
                    self.metrics.fallbacks.labels(model.name).inc()
                yield Progress(0.0, stage="fallback", message=f"trying {model.name}")
            visible = False
            try:
                async for event in self._attempts(job, model):
                    visible = visible or isinstance(event, _VISIBLE)
                    yield event
                return
            except GatewayError as error:
                if visible or not error.transient:
                    raise
                last = error
        assert last is not None
        raise last

    async def _attempts(self, job: Job, model: ServedModel) -> AsyncGenerator[Event, None]:
        retries = model.config.retries if model.config.retries is not None else (
            self.config.retries)
        breaker = self.breakers.get(model.upstream_key)
        for attempt in range(retries + 1):
            started = time.monotonic()
            timed = False
            wait: float | None = None  # before the next attempt; None: this one is the last
            try:
                # The breaker records how the call ends, whatever way it ends (cancelled too).
                with breaker.call(model.upstream_key) as call:
                    report = Attempt(job, model)
                    shown = _Shown(self.metrics, model.name)
                    try:
                        async with aclosing(model.provider.generate(job.call())) as events:
                            async for event in events:
                                shown.see(event)  # raises a Failed's error
                                if isinstance(event, Completed):
                                    # Recorded before handing it on: a reader stops at the
                                    # terminal event, and nothing after this loop would run.
                                    call.succeeded()
                                    self._timed(model, started, "ok")
                                    timed = True
                                    report.succeeded(event)
                                yield event
                    except GatewayError as error:
                        if attempt < retries and not shown.visible and error.transient:
                            wait = self.delay(attempt, error)
                        report.failed(error, wait)
                        raise
                    finally:
                        shown.close()
                        report.close()
                return
            except GatewayError as error:
                self._timed(model, started, error.code or "error")
                timed = True
                if wait is None:  # final, not worth waiting for, or the circuit is open
                    raise
            except BaseException as exc:  # the reader left (or a bug, which the run reports)
                if not timed:
                    self._timed(model, started, "internal_error" if isinstance(exc, Exception)
                                else "cancelled")
                raise
            if self.metrics is not None:
                self.metrics.retries.labels(model.name).inc()
            yield Progress(0.0, stage="retrying",
                           message=f"{model.name}: attempt {attempt + 2} in {wait:.1f} s")
            await asyncio.sleep(wait)
