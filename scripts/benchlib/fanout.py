"""Socket.IO fan-out: many subscribers to one job, and how long one ``progress`` event takes to
reach all of them.

Subscribers live in worker processes (``bench.py --sio-worker``), a few hundred lean Socket.IO
clients each (:mod:`benchlib.sioclient`: websocket transport, the real Engine.IO/Socket.IO
handshake, each message stamped as its bytes arrive, then decoded and checked). Each worker
connects its clients (bounded concurrency), subscribes them to the job id, writes
``<out>.ready``, records every ``progress`` event it receives with ``arrived - updated_at``
(the gateway stamps ``updated_at`` just before it emits; one machine, one clock), and when every
client has seen the terminal event, or its deadline passes, writes ``<out>``;
it closes them all when the coordinator has every worker's report (SIGUSR2).

Every subscriber subscribes to the same few job ids (``JOBS``). The coordinator then POSTs one
streaming job after another, each with one of those ``X-Job-Id``s, to the gateway's ``openai``
model. The fake upstream holds the partial image for 1.5 s and the completion for 1 s more, so
the partial-image ``progress`` event (percent 50) goes out alone, not behind another fan-out.
Fan-out latencies are pooled over the jobs; the watched job's own first partial is the median
of the jobs' (one job alone is one sample: a single loop stall lands on it whole).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from benchlib import payloads, sioclient
from benchlib.fleet import Fleet
from benchlib.load import JSON_HEADERS, log, one_stream, pct

NAMESPACE = "/image-progress"
TERMINAL = ("succeeded", "failed", "cancelled")
CONNECT_CONCURRENCY = 25  # per worker process
LEAD_S, GAP_S = 1.5, 1.0
JOBS = 5  # watched jobs, one after another (each ~2.5 s)


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text())


# ------------------------------------------------------------------------------ worker
async def worker(url: str, clients: int, job_ids: list[str], out: Path,
                 deadline_s: float) -> None:
    started = time.monotonic()
    hard = started + deadline_s
    received: list[list[list[Any]]] = [[] for _ in range(clients)]
    subscribed: list[sioclient.Subscriber] = []
    failures: list[str] = []
    done = asyncio.Event()
    terminal = 0
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    def on_progress_for(index: int) -> Any:
        def on_progress(data: dict[str, Any], arrived: float) -> None:
            nonlocal terminal
            received[index].append([job_ids.index(data["job_id"]), data.get("seq"),
                                    data.get("status"), data.get("percent"),
                                    bool(data.get("estimated")), data.get("step"),
                                    data.get("stage"),
                                    round((arrived - float(data.get("updated_at") or arrived))
                                          * 1e3, 3)])
            if data.get("status") in TERMINAL:
                terminal += 1
                if terminal >= len(subscribed) * len(job_ids):
                    done.set()

        return on_progress

    async def join(index: int) -> None:
        async with gate:
            try:
                subscribed.append(await sioclient.subscribe(
                    url, NAMESPACE, "bench", job_ids, on_progress_for(index), timeout=30))
            except Exception as exc:
                failures.append(f"{type(exc).__name__}: {exc}")

    # The coordinator sends SIGUSR1 when the job is over and some events never came.
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, done.set)
    release = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR2, release.set)
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(join(i) for i in range(clients))),
                                   max(1.0, hard - time.monotonic()))
        _write_json(out.with_suffix(".ready"), {
            "connected": len(subscribed), "failed": clients - len(subscribed),
            "errors": sorted(set(failures))[:5], "seconds": time.monotonic() - started})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), max(0.1, hard - time.monotonic()))
        _write_json(out, {"connected": len(subscribed), "events": received})
        # Closing a few hundred connections costs the gateway CPU: not while the other workers'
        # subscribers still wait for their terminal event. The coordinator says when (SIGUSR2).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(release.wait(), max(0.1, hard - time.monotonic()))
    finally:
        for client in subscribed:
            client.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(c.closed for c in subscribed)), 30)


# ------------------------------------------------------------------------------ coordinator
async def _wait_files(paths: list[Path], fleet: Fleet, workers: list[Any], until: float) -> bool:
    """Poll for files (bounded by ``until``); False if time ran out."""
    while time.monotonic() < until:
        if all(p.exists() for p in paths):
            return True
        for proc in workers:
            if proc.poll() is not None and proc.returncode != 0:
                raise RuntimeError(f"socket.io worker exited with {proc.returncode}")
        await asyncio.sleep(0.1)
    return False


async def measure_fanout(fleet: Fleet, script: str, base_url: str, gateway_url: str,
                         clients: int, processes: int, tmpdir: Path,
                         budget_s: float) -> dict[str, Any]:
    """Subscribe ``clients`` watchers to ``JOBS`` job ids, run those jobs one after another,
    and summarise the delivery times."""
    job_ids = [str(uuid.uuid4()) for _ in range(JOBS)]
    started = time.monotonic()
    until = started + budget_s
    processes = max(1, min(processes, clients))
    shares = [clients // processes + (i < clients % processes) for i in range(processes)]
    outs = [tmpdir / f"sio-{i}.json" for i in range(processes)]
    workers = [fleet.spawn(f"socket.io worker {i}", [
        sys.executable, script, "--sio-worker", "--url", base_url, "--clients", str(n),
        "--job-id", ",".join(job_ids), "--out", str(out), "--deadline", f"{budget_s:.0f}",
    ]) for i, (n, out) in enumerate(zip(shares, outs, strict=True))]
    try:
        ready_files = [o.with_suffix(".ready") for o in outs]
        if not await _wait_files(ready_files, fleet, workers, until):
            raise RuntimeError("socket.io workers did not finish connecting in time")
        ready = [_read_json(p) for p in ready_files]
        connected = sum(r["connected"] for r in ready)
        connect_s = time.monotonic() - started
        log(f"  socket.io: {connected}/{clients} subscribed in {connect_s:.1f}s"
            + (f"  errors: {ready[0]['errors']}" if connected < clients else ""))

        body = payloads.request_body(stream=True, partial_images=1, prompt=payloads.sse_prompt(
            payloads.SMALL_RAW, LEAD_S, GAP_S))
        timeout = aiohttp.ClientTimeout(total=60)
        streams = []
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for job_id in job_ids:  # the last fan-out is over before the next job begins
                streams.append(await one_stream(session, gateway_url, body,
                                                headers={**JSON_HEADERS, "x-job-id": job_id}))
                await asyncio.sleep(0.5)
        # Every subscriber saw the terminal event: the workers report at once. Otherwise give
        # stragglers a few seconds, then tell the workers to report what they have.
        if not await _wait_files(outs, fleet, workers, time.monotonic() + 10):
            for proc in workers:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGUSR1)
            if not await _wait_files(outs, fleet, workers, time.monotonic() + 10):
                raise RuntimeError("socket.io workers did not report in time")
        events = [client for out in outs for client in _read_json(out)["events"]]
        for proc in workers:  # now they may close their subscribers
            if proc.poll() is None:
                proc.send_signal(signal.SIGUSR2)
        # The workers now disconnect their clients (bounded at 30 s by each worker).
        for _ in range(350):
            if all(p.poll() is not None for p in workers):
                break
            await asyncio.sleep(0.1)
    finally:
        for proc in workers:
            fleet.stop(proc)
    summary = summarise(events, connected, len(job_ids))
    firsts = [s.first_partial_ms for s in streams if s.first_partial_ms is not None]
    summary.update(clients=clients, connected=connected, processes=processes, jobs=len(job_ids),
                   connect_s=round(connect_s, 2), stream_ok=all(s.ok for s in streams),
                   stream_first_partial_ms=pct(firsts, 0.5) if firsts else None,
                   stream_first_partials_ms=[round(v, 3) for v in firsts])
    return summary


def summarise(per_client: list[list[list[Any]]], connected: int,
              jobs: int = 1) -> dict[str, Any]:
    """Delivery times per event (by seq, pooled over the jobs, whose events follow the same
    course); the partial-image event is the one measured. ``received``: of the jobs, the
    fewest subscribers that got the event."""
    by_seq: dict[int, list[float]] = {}
    per_job: dict[int, list[int]] = {}
    label: dict[int, str] = {}
    partial_seq = None
    for events in per_client:
        for job, seq, status, percent, estimated, step, stage, ms in events:
            by_seq.setdefault(seq, []).append(ms)
            per_job.setdefault(seq, [0] * jobs)[job] += 1
            what = "estimate" if estimated else stage or (f"step {step}" if step else "")
            label[seq] = f"{status} {percent:g}% {what}".strip()
            if status == "running" and not estimated and step == 1:
                partial_seq = seq  # the progress the partial image caused (step 1 of 2)
    rows = []
    for seq in sorted(by_seq):
        lat = by_seq[seq]
        rows.append({"seq": seq, "event": label[seq], "received": min(per_job[seq]),
                     "p50_ms": round(pct(lat, 0.5), 2), "p99_ms": round(pct(lat, 0.99), 2),
                     "max_ms": round(max(lat), 2), "partial": seq == partial_seq})
    measured = next((r for r in rows if r["partial"]), None)
    return {"per_event": rows, "measured": measured}


def worker_main(url: str, clients: int, job_ids: str, out: str, deadline: float) -> None:
    import uvloop

    uvloop.run(worker(url, clients, job_ids.split(","), Path(out), deadline))
