"""A circuit breaker per upstream: after N failures in a row it opens, and requests fail fast
(to a fallback, if one is configured) instead of hammering an upstream that keeps failing. After
a cooldown one request is let through as a probe; success closes it, failure opens it again."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from proxy.core.errors import GatewayError


@dataclass
class Breaker:
    failures_to_open: int
    cooldown: float
    failures: int = 0
    opened_at: float | None = None
    probing: bool = False

    def check(self, name: str) -> None:
        """Raise (a transient error, so fallbacks step in) while the circuit is open."""
        if self.opened_at is None:
            return
        waited = time.monotonic() - self.opened_at
        if waited >= self.cooldown and not self.probing:
            self.probing = True  # half-open: this request is the probe
            return
        raise GatewayError(
            503, f"The upstream {name} is failing repeatedly; requests to it are paused for "
                 f"{max(1, round(self.cooldown - waited))} s.",
            type="upstream_error", code="upstream_circuit_open", transient=True,
            headers={"retry-after": str(max(1, round(self.cooldown - waited)))})

    def success(self) -> None:
        self.failures, self.opened_at, self.probing = 0, None, False

    def failure(self) -> None:
        self.failures += 1
        if self.probing or self.failures >= self.failures_to_open:
            self.opened_at, self.probing = time.monotonic(), False


@dataclass
class Breakers:
    failures_to_open: int = 5
    cooldown: float = 30.0
    _by_upstream: dict[str, Breaker] = field(default_factory=dict)

    def get(self, upstream: str) -> Breaker:
        breaker = self._by_upstream.get(upstream)
        if breaker is None:
            breaker = Breaker(self.failures_to_open, self.cooldown)
            self._by_upstream[upstream] = breaker
        return breaker
