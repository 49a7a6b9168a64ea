"""The circuit breaker: every way a half-open probe can end resolves it.

A fake clock stands in for ``time.monotonic``, so cooldowns pass without waiting.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator

import pytest

from proxy.core.errors import GatewayError
from proxy.jobs import breaker as breaker_module
from proxy.jobs.breaker import Breaker, Breakers

COOLDOWN = 30.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(breaker_module.time, "monotonic", clock)
    return clock


def upstream_503() -> GatewayError:
    return GatewayError(502, "The upstream failed (HTTP 503)", type="upstream_error",
                        code="upstream_error", transient=True)


def upstream_400() -> GatewayError:
    return GatewayError(400, "Invalid size", param="size", code="invalid_value")


def fail(breaker: Breaker, error: GatewayError) -> None:
    with pytest.raises(GatewayError), breaker.call("up"):
        raise error


def refused(breaker: Breaker) -> GatewayError:
    """The error a request gets while the circuit is open (asserts it gets one)."""
    with pytest.raises(GatewayError) as caught, breaker.call("up"):
        pytest.fail("the call was let through an open circuit")
    assert caught.value.code == "upstream_circuit_open"
    return caught.value


def opened(clock: Clock, failures: int = 2) -> Breaker:
    """A breaker opened by ``failures`` failures in a row, its cooldown over."""
    breaker = Breaker(failures_to_open=failures, cooldown=COOLDOWN)
    for _ in range(failures):
        fail(breaker, upstream_503())
    assert breaker.opened_at is not None
    clock.now += COOLDOWN
    return breaker


def test_failures_in_a_row_open_the_circuit(clock: Clock) -> None:
    breaker = Breaker(failures_to_open=3, cooldown=COOLDOWN)
    for _ in range(2):
        fail(breaker, upstream_503())
    with breaker.call("up") as call:
        assert not call.probe  # still closed after two
    fail(breaker, upstream_503())
    clock.now += 10
    error = refused(breaker)
    assert error.status == 503 and error.transient
    assert error.headers == {"retry-after": "20"}


def test_a_client_error_breaks_the_row(clock: Clock) -> None:
    breaker = Breaker(failures_to_open=2, cooldown=COOLDOWN)
    fail(breaker, upstream_503())
    fail(breaker, upstream_400())  # the upstream answered: it is up
    fail(breaker, upstream_503())
    assert breaker.opened_at is None and breaker.failures == 1


def test_only_one_probe_at_a_time(clock: Clock) -> None:
    breaker = opened(clock)
    with breaker.call("up") as probe:
        assert probe.probe and breaker.probing
        refused(breaker)  # everyone else still fails fast while the probe runs
        probe.succeeded()


def test_a_probe_that_succeeds_closes_the_circuit(clock: Clock) -> None:
    breaker = opened(clock)
    with breaker.call("up") as probe:
        probe.succeeded()
    assert breaker.opened_at is None and not breaker.probing and breaker.failures == 0
    with breaker.call("up") as call:
        assert not call.probe


def test_a_probe_answered_400_closes_the_circuit(clock: Clock) -> None:
    breaker = opened(clock)
    fail(breaker, upstream_400())
    assert breaker.opened_at is None and not breaker.probing
    with breaker.call("up") as call:
        assert not call.probe


def test_a_probe_that_fails_opens_it_for_another_cooldown(clock: Clock) -> None:
    breaker = opened(clock)
    fail(breaker, upstream_503())
    assert not breaker.probing
    refused(breaker)
    clock.now += COOLDOWN - 1
    refused(breaker)
    clock.now += 1
    with breaker.call("up") as call:
        assert call.probe  # the next cooldown is over: a new probe
        call.succeeded()


@pytest.mark.parametrize("exc_type", [asyncio.CancelledError, GeneratorExit, RuntimeError])
def test_a_probe_cancelled_or_broken_frees_its_slot(clock: Clock, exc_type) -> None:
    breaker = opened(clock)
    with pytest.raises(exc_type), breaker.call("up"):
        raise exc_type()
    assert not breaker.probing and breaker.opened_at is not None  # no evidence either way
    with breaker.call("up") as call:
        assert call.probe, "the next request (the cooldown is over) probes"
        call.succeeded()


def test_a_probe_ended_by_the_gateways_own_error_frees_its_slot(clock: Clock) -> None:
    breaker = opened(clock)
    fail(breaker, GatewayError(500, "bug", type="server_error", code="internal_error"))
    assert not breaker.probing and breaker.opened_at is not None
    with breaker.call("up") as call:
        assert call.probe


def test_a_probe_that_ends_without_a_verdict_frees_its_slot(clock: Clock) -> None:
    breaker = opened(clock)
    with breaker.call("up"):
        pass  # ended, but never said it succeeded
    with breaker.call("up") as call:
        assert call.probe


async def test_a_probe_whose_reader_left_frees_its_slot(clock: Clock) -> None:
    """The probe's events are read by a client that leaves mid-call: the generator is closed
    (or its task cancelled) at the ``yield`` inside the breaker's block."""
    breaker = opened(clock)
    held = asyncio.Event()

    async def events() -> AsyncGenerator[str, None]:
        with breaker.call("up"):
            yield "progress"
            held.set()
            await asyncio.sleep(3600)  # the upstream holds the request
            yield "image"

    stream = events()
    assert await anext(stream) == "progress"
    reader = asyncio.ensure_future(anext(stream))
    await held.wait()
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    assert not breaker.probing
    with breaker.call("up") as call:
        assert call.probe


def test_calls_from_before_the_circuit_opened_leave_its_probe_alone(clock: Clock) -> None:
    """Two calls started while the circuit was closed end while a probe is in flight: one
    cancelled, one failing. Neither frees nor resolves the probe; the probe decides."""
    breaker = Breaker(failures_to_open=1, cooldown=COOLDOWN)
    cancelled, failing = breaker.call("up"), breaker.call("up")
    cancelled.__enter__()
    failing.__enter__()
    fail(breaker, upstream_503())  # the circuit opens
    clock.now += COOLDOWN
    probing = breaker.call("up")
    assert probing.__enter__().probe
    opened_at = breaker.opened_at

    cancelled.__exit__(asyncio.CancelledError, asyncio.CancelledError(), None)
    error = upstream_503()
    failing.__exit__(GatewayError, error, None)
    assert breaker.probing and breaker.opened_at == opened_at
    refused(breaker)

    assert not probing.__exit__(None, None, None)  # ended without a verdict: slot freed
    with breaker.call("up") as call:
        assert call.probe


def test_a_watcher_is_told_every_change_of_state(clock: Clock) -> None:
    told: list[tuple[str, str, bool]] = []
    breakers = Breakers(failures_to_open=2, cooldown=COOLDOWN,
                        watcher=lambda *change: told.append(change))
    breaker = breakers.get("up")
    assert told == [("up", "closed", False)]  # known from the start
    fail(breaker, upstream_503())
    fail(breaker, upstream_503())
    refused(breaker)
    clock.now += COOLDOWN
    with pytest.raises(GatewayError), breaker.call("up"):  # the probe fails: open again
        raise upstream_503()
    clock.now += COOLDOWN
    with breaker.call("up"):  # a probe that ends without evidence (its client left)
        pass
    with breaker.call("up") as probe:
        probe.succeeded()
    assert told[1:] == [("up", "open", True), ("up", "half_open", False),
                        ("up", "open", True), ("up", "half_open", False),
                        ("up", "open", False), ("up", "half_open", False),
                        ("up", "closed", False)]


def test_the_circuit_says_when_it_opens_stays_open_and_closes(
        clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="proxy.upstream")
    breaker = Breaker(failures_to_open=2, cooldown=COOLDOWN, name="openai:http://gpu-1")
    for _ in range(2):
        fail(breaker, upstream_503())
    refused(breaker)  # refusals while open are the jobs' lines, not the circuit's
    clock.now += COOLDOWN
    fail(breaker, upstream_503())  # the probe
    clock.now += COOLDOWN
    with breaker.call("up") as probe:
        probe.succeeded()
    said = [(record.levelname, record.getMessage()) for record in caplog.records]
    assert said == [
        ("WARNING", "the circuit of upstream openai:http://gpu-1 opened after 2 failures in a "
                    "row; requests to it are paused for 30 s"),
        ("WARNING", "the circuit of upstream openai:http://gpu-1 stays open: its probe failed; "
                    "requests to it are paused for another 30 s"),
        ("INFO", "the circuit of upstream openai:http://gpu-1 closed: it answered again")]
