"""A circuit breaker per upstream: after N failures in a row it opens, and requests fail fast
(to a fallback, if one is configured) instead of hammering an upstream that keeps failing. After
a cooldown one request is let through as a probe, and every way a probe can end resolves it:

- it succeeds, or the upstream refuses the request itself (a 4xx: the upstream is alive and
  answering) — the circuit closes;
- it fails the way that counts (an ``upstream_error``: unreachable, 5xx, timed out, …) — the
  circuit opens again for another cooldown;
- it is cancelled (its client left, the gateway stopped) or ends in any other way (the gateway's
  own error, a bug) — no evidence either way: the probe's slot is freed and the next request
  probes.

Calls go through :meth:`Breaker.call`, a context manager, so no path can leave a probe in flight.
Each probe is its own token: a call that started earlier cannot resolve a later probe.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from proxy.core.errors import GatewayError

# Told of every change of a circuit: the upstream, its state now (closed, half_open, open), and
# whether it has just opened (from closed, or after a failed probe).
CircuitWatcher = Callable[[str, str, bool], None]
log = logging.getLogger("proxy.upstream")


def counts_against(error: GatewayError) -> bool:
    """Whether ``error`` is the upstream failing: unreachable, 5xx, timed out, garbled."""
    return error.type == "upstream_error" and error.code != "upstream_circuit_open"


def proves_alive(error: GatewayError) -> bool:
    """Whether ``error`` is the upstream refusing the request itself (400, 404, 413, 429, …):
    it answered, so it is up, whatever it thought of this request. (An adapter that refuses a
    request before sending it is taken at its word too: a request error is never a sign that
    the upstream is down.)"""
    return 400 <= error.status < 500 and not counts_against(error)


class Call:
    """One call through a breaker (:meth:`Breaker.call`). The caller says when it succeeded
    (before handing on the terminal event: nothing after that point may run); how it failed,
    or that it was cancelled, is judged when the ``with`` block ends."""

    __slots__ = ("_breaker", "probe", "settled")

    def __init__(self, breaker: Breaker, probe: bool) -> None:
        self._breaker = breaker
        self.probe = probe  # this call is the half-open circuit's probe
        self.settled = False  # its outcome has been recorded

    def succeeded(self) -> None:
        self._breaker.succeeded(self)


@dataclass
class Breaker:
    failures_to_open: int
    cooldown: float
    failures: int = 0
    opened_at: float | None = None
    _probe: Call | None = field(default=None, repr=False)
    name: str = ""
    watcher: CircuitWatcher | None = field(default=None, repr=False)

    def _tell(self, state: str, opened: bool = False) -> None:
        if self.watcher is not None:
            self.watcher(self.name, state, opened)

    @property
    def probing(self) -> bool:
        """A probe is in flight: every other request fails fast until it ends."""
        return self._probe is not None

    @contextmanager
    def call(self, name: str) -> Iterator[Call]:
        """One call to upstream ``name``. Raises ``upstream_circuit_open`` (transient, so fallbacks
        step in) while the circuit is open; otherwise the call's outcome is recorded however
        the block ends."""
        call = self._admit(name)
        try:
            yield call
        except GatewayError as error:
            if not call.settled and counts_against(error):
                self._failed(call)
            elif not call.settled and proves_alive(error):
                self.succeeded(call)
            raise
        finally:
            if not call.settled:
                self._release(call)  # cancelled, closed early or broken: no evidence

    def succeeded(self, call: Call) -> None:
        """The upstream answered: the circuit closes, and the failures in a row start again
        from nought (a probe's answer, or that of a call that started before the circuit
        opened: the upstream works now either way)."""
        call.settled = True
        was_closed = self.opened_at is None
        if not was_closed:
            log.info("the circuit of upstream %s closed: it answered again", self.name)
        self.failures, self.opened_at, self._probe = 0, None, None
        if not was_closed:
            self._tell("closed")

    def _admit(self, name: str) -> Call:
        if self.opened_at is None:
            return Call(self, probe=False)
        waited = time.monotonic() - self.opened_at
        if waited >= self.cooldown and self._probe is None:
            self._probe = Call(self, probe=True)  # half-open: this request is the probe
            self._tell("half_open")
            return self._probe
        wait = max(1, round(self.cooldown - waited))
        raise GatewayError(
            503, f"The upstream {name} is failing repeatedly; requests to it are paused for "
                 f"{wait} s.",
            type="upstream_error", code="upstream_circuit_open", transient=True,
            headers={"retry-after": str(wait)})

    def _failed(self, call: Call) -> None:
        call.settled = True
        self.failures += 1
        if self._probe is call:
            self.opened_at, self._probe = time.monotonic(), None  # open for another cooldown
            self._tell("open", opened=True)
            log.warning("the circuit of upstream %s stays open: its probe failed; requests to "
                        "it are paused for another %g s", self.name, self.cooldown)
        elif self.opened_at is None and self.failures >= self.failures_to_open:
            self.opened_at = time.monotonic()
            self._tell("open", opened=True)
            log.warning("the circuit of upstream %s opened after %d failures in a row; requests "
                        "to it are paused for %g s", self.name, self.failures, self.cooldown)

    def _release(self, call: Call) -> None:
        call.settled = True
        if self._probe is call:
            self._probe = None  # the cooldown is over: the next request probes
            self._tell("open")


@dataclass
class Breakers:
    failures_to_open: int = 5
    cooldown: float = 30.0
    _by_upstream: dict[str, Breaker] = field(default_factory=dict)
    watcher: CircuitWatcher | None = field(default=None, repr=False)

    def get(self, upstream: str) -> Breaker:
        breaker = self._by_upstream.get(upstream)
        if breaker is None:
            breaker = Breaker(self.failures_to_open, self.cooldown, name=upstream,
                              watcher=self.watcher)
            self._by_upstream[upstream] = breaker
            breaker._tell("closed")
        return breaker
