"""The load generator (aiohttp, in the benchmark's own process) and the SSE latency probe.

Every loop is bounded: a load run sends exactly ``n`` requests, each with a total timeout; the
probe opens exactly ``n`` streams, each with a total timeout.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from benchlib import payloads
from benchlib.fleet import cpu_seconds

JSON_HEADERS = {"content-type": "application/json"}
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=60)


def pct(values: list[float], q: float) -> float:
    """The q-quantile of ``values`` (nearest rank); 0.0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class LoadResult:
    path: str
    group: str
    conns: int
    requests: int
    errors: int
    seconds: float
    req_s: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    extra: dict[str, Any] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list, repr=False)


def combine(rounds: list[LoadResult]) -> LoadResult:
    """Interleaved rounds of one path as one result: req/s is the median round's (a neighbour's
    burst spoils a round, not the result); percentiles come from every latency pooled."""
    lat = [v for r in rounds for v in r.latencies_ms]
    first = rounds[0]
    res = LoadResult(first.path, first.group, first.conns, sum(r.requests for r in rounds),
                     sum(r.errors for r in rounds), round(sum(r.seconds for r in rounds), 3),
                     round(statistics.median(r.req_s for r in rounds), 1),
                     round(pct(lat, 0.50), 3), round(pct(lat, 0.99), 3),
                     round(sum(lat) / len(lat), 3), latencies_ms=lat)
    res.extra["rounds_req_s"] = [r.req_s for r in rounds]
    for key in first.extra:  # CPU per request, cores used ...: the median round's
        values = [r.extra.get(key) for r in rounds]
        if all(isinstance(v, int | float) for v in values):
            res.extra[key] = round(statistics.median(values), 3)
    return res


async def run_load(url: str, conns: int, n: int, body: bytes,
                   headers: dict[str, str] | None = None) -> tuple[list[float], int, float]:
    """Send exactly ``n`` POSTs over at most ``conns`` keep-alive connections; read every
    answer whole. Returns (latencies in s, failures, wall seconds)."""
    remaining = n
    lat: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=conns, limit_per_host=conns)
    async with aiohttp.ClientSession(connector=connector, timeout=REQUEST_TIMEOUT) as session:

        async def worker() -> None:
            nonlocal remaining, errors
            while remaining > 0:
                remaining -= 1
                t0 = time.perf_counter()
                try:
                    async with session.post(url, data=body,
                                            headers=headers or JSON_HEADERS) as r:
                        await r.read()
                        ok = r.status == 200
                except (TimeoutError, aiohttp.ClientError):
                    ok = False
                lat.append(time.perf_counter() - t0)
                errors += not ok

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(conns)))
        return lat, errors, time.perf_counter() - t0


async def measure(path: str, group: str, url: str, conns: int, n: int, body: bytes,
                  warmup: int | None = None, server_pid: int | None = None,
                  cpu_meters: dict[str, Callable[[], float]] | None = None) -> LoadResult:
    """Warm up, then time ``n`` requests; with ``server_pid``, also the CPU the server process
    spent per request (all its threads: the gateway's ledger writer included). ``cpu_meters``
    name other CPU-seconds readings (``server`` replaces ``server_pid``'s): each gives
    ``cpu_ms_per_req[_name]`` and ``cores[_name]``, the cores it used while the run lasted."""
    await run_load(url, conns, warmup if warmup is not None else max(conns * 2, n // 10), body)
    meters = dict(cpu_meters or {})
    if server_pid and "server" not in meters:
        meters["server"] = lambda: cpu_seconds(server_pid)
    cpu0 = {name: read() for name, read in meters.items()}
    lat, errors, secs = await run_load(url, conns, n, body)
    res = LoadResult(path, group, conns, n, errors, round(secs, 3), round(n / secs, 1),
                     round(pct(lat, 0.50) * 1e3, 3), round(pct(lat, 0.99) * 1e3, 3),
                     round(sum(lat) / n * 1e3, 3), latencies_ms=[round(v * 1e3, 3) for v in lat])
    for name, read in meters.items():
        used = read() - cpu0[name]
        suffix = "" if name == "server" else f"_{name}"
        res.extra[f"cpu_ms_per_req{suffix}"] = round(used / n * 1e3, 3)
        res.extra[f"cores{suffix}"] = round(used / secs, 3)
    flag = f"  ERRORS={errors}" if errors else ""
    cpu = (f"  server CPU {res.extra['cpu_ms_per_req']:.2f} ms/req"
           if "server" in meters else "")
    log(f"  {group:<6} {path:<8} c={conns:<3} {res.req_s:>8.1f} req/s  p50={res.p50_ms:.2f}ms"
        f"  p99={res.p99_ms:.2f}ms{cpu}{flag}")
    return res


# ------------------------------------------------------------------------------ SSE
@dataclass
class StreamResult:
    first_partial_ms: float | None  # upstream stamp -> client has the whole frame
    events: int
    ok: bool


async def one_stream(session: aiohttp.ClientSession, url: str, body: bytes,
                     headers: dict[str, str] | None = None) -> StreamResult:
    """POST a streaming request; time the first partial-image frame; read to the end."""
    buffer = bytearray()
    first: float | None = None
    events = 0
    async with session.post(url, data=body, headers=headers or JSON_HEADERS) as r:
        if r.status != 200:
            await r.read()
            return StreamResult(None, 0, False)
        async for chunk in r.content.iter_any():
            arrived = time.monotonic_ns()
            search = max(0, len(buffer) - 3)  # earlier bytes hold no frame end
            buffer += chunk
            while True:
                end, after = payloads.frame_end(buffer, search)
                search = 0
                if end < 0:
                    break
                frame = payloads.without_comments(bytes(buffer[:end]))
                del buffer[:after]
                if not frame:
                    continue  # a keep-alive alone
                events += 1
                if first is None and payloads.PARTIAL_KIND in frame[:64]:
                    stamp = payloads.read_stamp(frame)
                    if stamp is not None:
                        first = (arrived - stamp) / 1e6
    return StreamResult(first, events, first is not None and events >= 2)


async def sse_latencies(urls: dict[str, str], n: int, body: bytes,
                        warmup: int = 3) -> dict[str, tuple[list[float], int]]:
    """``n`` streams per path, one at a time, the paths taking turns (so a neighbour's burst
    hits them all alike); the upstream-to-client time of each first partial (ms), and the
    failures, per path."""
    timeout = aiohttp.ClientTimeout(total=30)
    out: dict[str, tuple[list[float], int]] = {path: ([], 0) for path in urls}
    sessions = {path: aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1),
                                            timeout=timeout) for path in urls}
    try:
        for i in range(warmup + n):
            for path, url in urls.items():
                try:
                    res = await one_stream(sessions[path], url, body)
                except (TimeoutError, aiohttp.ClientError):
                    res = StreamResult(None, 0, False)
                if i < warmup:
                    continue
                lat, failures = out[path]
                if res.ok and res.first_partial_ms is not None:
                    lat.append(res.first_partial_ms)
                else:
                    out[path] = (lat, failures + 1)
    finally:
        for session in sessions.values():
            await session.close()
    return out


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
