"""Long jobs: thousands of concurrent 10-20 s image jobs in one process, the bare relay and the
gateway taking turns in the same run.

Every burst runs on a freshly started relay or gateway (warmed by a few short jobs), so its RSS
growth is its own, not memory an earlier burst left in the allocator. A burst is ``n`` jobs of
one kind (``sse``: streamed, two ~100 KB partial images then a ~1.5 MB final image; ``json``: one
~1.5 MB image at the end), each taking a seeded random duration (``payloads.long_durations``),
all started within the ramp by client processes (``longclient``, ~500 jobs each) and cut off at
the cap. For each burst and path it records:

- jobs completed, errors by kind, and jobs unfinished at the cap;
- wall time from the burst's start until the last job completed (only when all did);
- the server's RSS just before, at peak (``VmHWM`` reset before the burst, and ``VmRSS``
  sampled every 50 ms), right after, and ``after_s`` later (a minute in the full run), and the
  growth per concurrent job, (peak - before) / n;
- server CPU (and minor page faults) per completed job, and the cores each party used meanwhile:
  the server, the fake upstream, the client processes, other work on the machine;
- the final image's delivery time (upstream sent it -> the client has all of it), p50/p99/max;
- what the upstream saw of the path's calls: started, finished, most in flight at once.

The minute after one path's burst is spent on the other path's burst (an idle process's RSS is
not moved by another's load): relay, gateway, relay's reading, new relay's burst, gateway's
reading, new gateway's burst ... Each server is stopped after its reading. Before each burst the
upstream must have no long job in flight (bounded wait), so one burst's leftovers do not load the
next. A server that grows past ``RSS_LIMIT`` (12 GB, or half the machine's memory) has its burst
ended there and then: other people share this machine; the table says so.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from benchlib.fleet import (
    Fleet,
    LoadMeter,
    PeakSampler,
    cpu_seconds,
    memory,
    minor_faults,
    reset_peak,
)
from benchlib.load import log, pct
from benchlib.longclient import job_body, one_job, write_whole

PATHS = ("relay", "gateway")
JOBS_PER_CLIENT = 500  # jobs one client process holds
READY_WAIT_S = 60.0
UNFINISHED = "unfinished at the cap"
# A burst whose server grows past this is ended early: the machine is shared.
RSS_LIMIT = min(12 * 2**30, int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * 0.5))


async def preflight(urls: dict[str, str]) -> None:
    """Each path relays a short long-job of each kind, stamp included, before anything counts."""
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for path, url in urls.items():
            for kind in ("sse", "json"):
                error, _ = await one_job(session, url, kind, job_body(kind, 0.3, "preflight"))
                if error:
                    raise RuntimeError(f"{path}: a short {kind} long-job failed: {error}")


async def _upstream_stats(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    try:
        async with session.get(url) as r:
            return dict(await r.json())
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return {}


async def _wait_files(paths: list[Path], workers: list[Any], seconds: float) -> bool:
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        if all(p.exists() for p in paths):
            return True
        for proc in workers:
            if proc.poll() is not None and proc.returncode != 0:
                raise RuntimeError(f"a long-jobs client exited with {proc.returncode}")
        await asyncio.sleep(0.02)
    return False


Spawn = Callable[[str, str], Awaitable[tuple["subprocess.Popen[bytes]", str]]]


class LongJobs:
    def __init__(self, fleet: Fleet, script: str, spawn: Spawn, upstream_pid: int,
                 stats_url: str, tmp: Path, plan: dict[str, Any]) -> None:
        self.fleet, self.script, self.spawn = fleet, script, spawn
        self.upstream_pid, self.stats_url, self.tmp, self.plan = (
            upstream_pid, stats_url, tmp, plan)
        self.session: aiohttp.ClientSession | None = None
        self.servers: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
        low, high = plan["long_seconds"]
        self.out: dict[str, Any] = {
            "bursts": [], "seconds": [low, high], "cap_s": plan["long_cap"],
            "after_s": plan["long_after"], "ramp_s": plan["long_ramp"],
            "seed": plan["long_seed"], "jobs_per_client": JOBS_PER_CLIENT}

    async def run(self) -> None:
        plan, out = self.plan, self.out
        pending: dict[str, tuple[float, dict[str, Any]]] = {}
        timeout = aiohttp.ClientTimeout(total=5)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as self.session:
                for number, (kind, n) in enumerate(plan["long_bursts"]):
                    for path in PATHS:
                        if path in pending:
                            await self._settle(path, *pending.pop(path))
                        await self._fresh(path, number)
                        rec = await self._burst(path, kind, n)
                        out["bursts"].append(rec)
                        pending[path] = (time.monotonic() + plan["long_after"], rec)
                for path, (due, rec) in sorted(pending.items(), key=lambda item: item[1][0]):
                    await self._settle(path, due, rec)
        finally:
            for proc, _ in self.servers.values():
                self.fleet.stop(proc)

    async def _fresh(self, path: str, number: int) -> None:
        """Stop this path's server of the last burst; start and warm up a new one."""
        if path in self.servers:
            self.fleet.stop(self.servers.pop(path)[0])
        self.fleet.check_alive()
        name = f"{'relay' if path == 'relay' else 'gateway'} long {number}"
        self.servers[path] = await self.spawn(path, name)
        await preflight({path: self.servers[path][1]})

    async def _quiet(self) -> int:
        """Wait (bounded) until the upstream has no long job in flight; how many still were."""
        assert self.session is not None
        until = time.monotonic() + self.plan["long_quiet_wait"]
        busy = 0
        while True:
            stats = await _upstream_stats(self.session, self.stats_url)
            busy = sum(row.get("in_flight", 0) for row in stats.values())
            if busy == 0 or time.monotonic() > until:
                return busy
            await asyncio.sleep(0.2)

    async def _watch(self, outs: list[Path], workers: list[Any], pid: int, go: Path,
                     seconds: float) -> str:
        """Wait for the clients' reports; end the burst early (the stop file) if the server
        grows past RSS_LIMIT: other people share this machine. Why it was stopped, or ""."""
        until = time.monotonic() + seconds
        stopped = ""
        while not await _wait_files(outs, workers, 0.25):
            rss = memory(pid).get("VmRSS", 0)
            if not stopped and rss > RSS_LIMIT:
                stopped = (f"stopped at {time.monotonic() - until + seconds:.0f} s: server RSS "
                           f"{rss / 2**30:.2f} GB > {RSS_LIMIT / 2**30:.2f} GB")
                log(f"  long   {stopped}")
                write_whole(go.with_suffix(".stop"), "stop")
            if time.monotonic() > until:
                raise RuntimeError("the long-jobs clients did not report in time")
        return stopped

    async def _settle(self, path: str, due: float, rec: dict[str, Any]) -> None:
        """The RSS a while after the burst (the server idle meanwhile)."""
        assert self.session is not None
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        rec["rss_after"] = memory(self.servers[path][0].pid)["VmRSS"]
        rec["after_waited_s"] = round(time.monotonic() - rec.pop("_ended"), 1)
        stats = await _upstream_stats(self.session, self.stats_url)
        rec["upstream_in_flight_after"] = stats.get(rec["tag"], {}).get("in_flight", 0)
        log(f"  long   {path:<8} {rec['kind']} {rec['n']:>5}: RSS "
            f"{rec['rss_after'] / 2**20:.0f} MB {rec['after_waited_s']:.0f}s after "
            f"(before {rec['rss_before'] / 2**20:.0f} MB)")

    async def _burst(self, path: str, kind: str, n: int) -> dict[str, Any]:
        plan = self.plan
        assert self.session is not None
        low, high = plan["long_seconds"]
        cap, ramp = plan["long_cap"], plan["long_ramp"]
        tag = f"{path}-{kind}{n}"
        busy_before = await self._quiet()
        folder = self.tmp / f"long-{tag}"
        folder.mkdir(parents=True, exist_ok=True)
        go = folder / "go"
        procs = max(1, math.ceil(n / JOBS_PER_CLIENT))
        shares = [n // procs + (i < n % procs) for i in range(procs)]
        outs = [folder / f"client-{i}.json" for i in range(procs)]
        workers = []
        first = 0
        server, url = self.servers[path]
        for i, (count, result) in enumerate(zip(shares, outs, strict=True)):
            workers.append(self.fleet.spawn(f"long client {i}", [
                sys.executable, self.script, "--long-worker", "--url", url,
                "--kind", kind, "--first", str(first), "--count", str(count), "--n", str(n),
                "--seed", str(plan["long_seed"]), "--low", str(low), "--high", str(high),
                "--tag", tag, "--ramp", str(ramp), "--cap", str(cap), "--out", str(result),
                "--go", str(go)]))
            first += count
        try:
            if not await _wait_files([o.with_suffix(".ready") for o in outs], workers,
                                     READY_WAIT_S):
                raise RuntimeError("the long-jobs clients did not get ready in time")
            pid = server.pid
            before = memory(pid)["VmRSS"]
            reset = reset_peak(pid)
            sampler = PeakSampler(pid, interval=0.05)
            sampler.start(asyncio.get_running_loop())
            cpu0, up0 = cpu_seconds(pid), cpu_seconds(self.upstream_pid)
            faults0 = minor_faults(pid)
            meter = LoadMeter(self.fleet)
            started = time.monotonic()
            go_ns = time.monotonic_ns() + 200_000_000
            write_whole(go, str(go_ns))
            stopped = await self._watch(outs, workers, pid, go, cap + 30)
            window = time.monotonic() - started
            cpu1, up1 = cpu_seconds(pid), cpu_seconds(self.upstream_pid)
            faults = minor_faults(pid) - faults0
            peak = max(await sampler.stop(), memory(pid).get("VmHWM", 0) if reset else 0)
            rss_end = memory(pid)["VmRSS"]
            lap = meter.lap()
            stats = (await _upstream_stats(self.session, self.stats_url)).get(tag, {})
            reports = [_read(o) for o in outs]
        finally:
            for proc in workers:
                self.fleet.stop(proc)
        rows = [row for rep in reports for row in rep["rows"]]
        rec = summarise(rows, n)
        completed = rec["completed"]
        rec.update(
            path=path, kind=kind, n=n, tag=tag, _ended=time.monotonic(),
            rss_before=before, rss_peak=peak, rss_end=rss_end,
            rss_peak_from="VmHWM reset + VmRSS samples" if reset else "VmRSS samples",
            growth_per_job=(peak - before) / n,
            cpu_ms_per_job=round((cpu1 - cpu0) * 1e3 / completed, 2) if completed else None,
            faults_per_job=round(faults / completed) if completed else None,
            window_s=round(window, 2), server_cores=round((cpu1 - cpu0) / window, 2),
            upstream_cores=round((up1 - up0) / window, 2),
            client_cores=round(sum(rep["cpu_s"] for rep in reports) / window, 2),
            others_cores=lap["others_cores"], busy_cores=lap["busy_cores"],
            upstream=stats, upstream_busy_before=busy_before, client_processes=procs,
            stopped=stopped)
        wall = f"{rec['wall_s']:.1f}s" if rec["wall_s"] is not None else f"not all by {cap:g}s"
        log(f"  long   {path:<8} {kind} {n:>5}: {completed}/{n} done, "
            f"{rec['error_count']} errors, {rec['unfinished']} unfinished, wall {wall}, "
            f"final p50/p99 {rec['final_p50_ms']:.0f}/{rec['final_p99_ms']:.0f} ms, RSS "
            f"{before / 2**20:.0f}->{peak / 2**20:.0f} MB "
            f"({rec['growth_per_job'] / 1024:.0f} KB/job), CPU {rec['cpu_ms_per_job']} ms/job, "
            f"upstream max in flight {stats.get('max_in_flight')}, cores: server "
            f"{rec['server_cores']:.2f} upstream {rec['upstream_cores']:.2f} clients "
            f"{rec['client_cores']:.2f} others {rec['others_cores']:.2f}"
            + (f"  ERRORS: {rec['errors']}" if rec["errors"] else ""))
        return rec


def _read(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def summarise(rows: list[list[Any]], n: int) -> dict[str, Any]:
    """Per-job rows [index, error, done_s, final_ms] as the burst's figures."""
    done = [r for r in rows if r[1] == ""]
    errors = Counter(r[1] for r in rows if r[1] not in ("", UNFINISHED))
    finals = [r[3] for r in done if r[3] is not None]
    return {
        "completed": len(done), "error_count": sum(errors.values()),
        "errors": dict(errors.most_common(5)),
        "unfinished": sum(1 for r in rows if r[1] == UNFINISHED) + max(0, n - len(rows)),
        "wall_s": max(r[2] for r in done) if len(done) == n and done else None,
        "last_done_s": max((r[2] for r in done), default=None),
        "final_p50_ms": round(pct(finals, 0.5), 2), "final_p99_ms": round(pct(finals, 0.99), 2),
        "final_max_ms": round(max(finals), 2) if finals else None,
    }
