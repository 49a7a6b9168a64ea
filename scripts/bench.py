"""Benchmark the gateway against the fake upstream called directly and against a bare relay.

What: in one run, on 127.0.0.1 only, starts a fake OpenAI upstream (pre-built answers: a ~4 KB
image, n=4 x 4 MB, an SSE stream whose partial image carries its send time, and long jobs of
10-20 s), a bare Starlette + aiohttp relay, and the gateway (``python -m proxy serve`` with an
``openai`` model pointing at the fake upstream, its usage ledger in a temporary data_dir, no
keys). It measures each path side by side: small JSON at 1 and 16 connections (req/s, p50, p99);
the 16 MB answer (latency added, and the relay's and gateway's peak RSS against the bytes in
flight); the first partial image of a stream (upstream sent -> client has it); one Socket.IO
``progress`` event fanned out to 1,000 websocket subscribers; Redis mode against memory mode,
and ``--workers 2`` against 1 worker (``benchlib.redismode``); and thousands of concurrent long
jobs, streamed and JSON, relay and gateway taking turns (``benchlib.longjobs``). Prints one
markdown table with the targets, met or missed.

Why: the gateway must do its work (auth, validation, routing, progress, usage) and stay near
the floor a bare relay sets; these are the numbers that say whether it does.

Usage: ``scripts/bench [--quick] [--only SECTIONS] [--json FILE] [--sio-clients N]``. Every
server and worker is this file (or the gateway, or redis-server) in a subprocess; all are stopped
on exit, Ctrl-C, SIGTERM or error, and the whole run is cut off at a hard time limit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from benchlib import fanout, longclient, payloads, peer, report, runinfo, servers
from benchlib.fleet import (
    Fleet,
    LoadMeter,
    PeakSampler,
    free_port,
    memory,
    raise_nofile,
    reset_peak,
    wait_ready,
)
from benchlib.gateway import gateway_config, spawn_gateway
from benchlib.load import LoadResult, combine, log, measure, one_stream, pct, sse_latencies
from benchlib.longjobs import LongJobs
from benchlib.redismode import measure_redis

SCRIPT = os.path.abspath(__file__)
ROOT = os.path.dirname(os.path.dirname(SCRIPT))
HOST = "127.0.0.1"
MB = 1024 * 1024
PATHS = ("direct", "relay", "gateway")
SSE_BIG_RAW = 1_179_648  # -> ~1.5 MB of base64: a real 1024x1024 partial PNG's order of size

PLANS: dict[str, dict[str, Any]] = {
    # small_n and large (connections, requests) are per round; every path runs each round.
    # long_bursts: (kind, concurrent jobs), each run by the relay, then the gateway.
    "full": {"rounds": 3, "small_n": 1500, "small_conns": (1, 16), "large": ((1, 16), (4, 20)),
             "sse_n": 60, "sio_clients": 1000, "sio_procs": 4, "redis_n": 1500,
             "long_bursts": (("sse", 500), ("sse", 1000), ("sse", 2000), ("json", 2000)),
             "long_seconds": (10.0, 20.0), "long_cap": 60.0, "long_after": 60.0,
             "long_ramp": 1.0, "long_seed": 15, "long_quiet_wait": 30.0, "hard_limit": 780.0},
    "quick": {"rounds": 1, "small_n": 300, "small_conns": (1, 16), "large": ((1, 8), (4, 8)),
              "sse_n": 10, "sio_clients": 100, "sio_procs": 1, "redis_n": 300,
              "long_bursts": (("sse", 200), ("sse", 500), ("json", 500)),
              "long_seconds": (3.0, 6.0), "long_cap": 30.0, "long_after": 10.0,
              "long_ramp": 1.0, "long_seed": 15, "long_quiet_wait": 10.0, "hard_limit": 170.0},
}
SECTIONS = ("small", "large", "sse", "fanout", "litellm", "redis", "long")


def plan_for(args: argparse.Namespace) -> dict[str, Any]:
    """The run's plan: full or quick, with the long-jobs bursts and wait the options name."""
    plan = dict(PLANS["quick" if args.quick else "full"])
    if args.long_bursts:
        bursts = []
        for item in args.long_bursts.split(","):
            kind, _, n = item.strip().partition(":")
            if kind not in ("sse", "json") or not n.isdigit():
                raise SystemExit(f"--long-bursts: {item!r} is not sse:N or json:N")
            bursts.append((kind, int(n)))
        plan["long_bursts"] = tuple(bursts)
    if args.long_after is not None:
        plan["long_after"] = args.long_after
    return plan


class Bench:
    def __init__(self, loop: asyncio.AbstractEventLoop, args: argparse.Namespace,
                 tmp: Path) -> None:
        self.loop, self.args, self.tmp = loop, args, tmp
        self.plan = plan_for(args)
        self.fleet = Fleet()
        self.urls: dict[str, str] = {}
        self.pids: dict[str, int] = {}
        self.cpu_pids: dict[str, int] = {}
        self.loads: list[LoadResult] = []
        self.notes: list[tuple[str, str]] = []
        self.results: dict[str, Any] = {"loads": [], "sse": [], "notes": self.notes,
                                        "large_body_bytes": 0}

    def run_async(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    # -------------------------------------------------------------------------- servers
    def start_servers(self) -> None:
        up_port = free_port()
        up = self.fleet.spawn("fake upstream", [sys.executable, SCRIPT, "--serve", "upstream",
                                                "--port", str(up_port)])
        self.urls["direct"] = f"http://{HOST}:{up_port}{servers.ROUTE}"
        self.run_async(wait_ready(up, self.urls["direct"], body=payloads.request_body()))
        self.upstream = (up.pid, up_port)
        relay, self.urls["relay"] = self.run_async(self.spawn_path("relay", "bare relay"))
        gateway, self.urls["gateway"] = self.run_async(self.spawn_path("gateway", "gateway"))
        self.urls["gateway_base"] = self.urls["gateway"].removesuffix(servers.ROUTE)
        self.pids = {"relay": relay.pid, "gateway": gateway.pid}  # RSS is tracked for these
        self.cpu_pids = {"direct": up.pid, **self.pids}  # CPU per request for all three
        self.run_async(self.preflight())
        log(f"servers up: upstream {self.urls['direct']}, relay {self.urls['relay']}, "
            f"gateway {self.urls['gateway']}")

    async def spawn_path(self, path: str, name: str) -> tuple[subprocess.Popen[bytes], str]:
        """A relay or a gateway (``name`` also names its config) in front of the upstream,
        answering; and its URL."""
        port = free_port()
        url = f"http://{HOST}:{port}{servers.ROUTE}"
        if path == "relay":
            proc = self.fleet.spawn(name, [sys.executable, SCRIPT, "--serve", "relay", "--port",
                                           str(port), "--upstream", self.urls["direct"]])
            await wait_ready(proc, url, body=payloads.request_body())
        else:
            config = gateway_config(self.tmp, name.replace(" ", "-"), port, self.upstream[1])
            self.results.setdefault("code", {})[name] = runinfo.code_version(ROOT)
            proc = spawn_gateway(self.fleet, ROOT, name, config, port)
            await wait_ready(proc, f"http://{HOST}:{port}/healthz", timeout=60)
        return proc, url

    async def preflight(self) -> None:
        """Each path answers what it should before anything is timed."""
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for path in ("direct", "relay", "gateway"):
                for n in (1, payloads.LARGE_N):
                    async with session.post(self.urls[path], data=payloads.request_body(n=n),
                                            headers={"content-type": "application/json"}) as r:
                        raw = await r.read()
                        if r.status != 200:
                            raise RuntimeError(f"{path} answered {r.status}: {raw[:300]!r}")
                        images = orjson.loads(raw).get("data") or []
                        if len(images) != n:
                            raise RuntimeError(f"{path} returned {len(images)} images, not {n}")
                        if n > 1:
                            self.results["large_body_bytes"] = max(
                                self.results["large_body_bytes"], len(raw))
                body = payloads.request_body(stream=True, partial_images=1,
                                             prompt=payloads.sse_prompt(4096, 0.0, 0.0))
                stream = await one_stream(session, self.urls[path], body)
                if not stream.ok:
                    raise RuntimeError(f"{path}: the SSE stream did not relay a stamped partial")

    # -------------------------------------------------------------------------- phases
    # Paths take turns, round after round: on a shared machine a neighbour's burst then lands
    # on every path alike instead of on whichever happened to run at that moment.

    def small_json(self) -> None:
        body = payloads.request_body()
        n, rounds = self.plan["small_n"], self.plan["rounds"]
        for conns in self.plan["small_conns"]:
            runs: dict[str, list[LoadResult]] = {p: [] for p in PATHS}
            for r in range(rounds):
                for path in PATHS:
                    runs[path].append(self.run_async(measure(
                        path, "small", self.urls[path], conns, n, body,
                        warmup=max(conns * 2, n // 10) if r == 0 else conns * 2,
                        server_pid=self.cpu_pids[path])))
            self.loads += [combine(runs[path]) for path in PATHS]

    def large_payload(self) -> None:
        body = payloads.request_body(n=payloads.LARGE_N)
        idle = {p: memory(pid)["VmRSS"] for p, pid in self.pids.items()}
        log("  idle RSS before the 16 MB runs: "
            + ", ".join(f"{p} {v / MB:.0f} MB" for p, v in idle.items()))
        for conns, n in self.plan["large"]:
            runs: dict[str, list[LoadResult]] = {p: [] for p in PATHS}
            peaks: dict[str, list[tuple[int, bool]]] = {p: [] for p in self.pids}
            for _ in range(self.plan["rounds"]):
                for path in PATHS:
                    pid = self.pids.get(path)
                    sampler = PeakSampler(pid) if pid is not None else None
                    reset = reset_peak(pid) if pid is not None else False
                    if sampler is not None:
                        sampler.start(self.loop)
                    runs[path].append(self.run_async(measure(
                        path, "large", self.urls[path], conns, n, body, warmup=conns,
                        server_pid=self.cpu_pids[path])))
                    if pid is not None and sampler is not None:
                        sampled = self.run_async(sampler.stop())
                        hwm = memory(pid).get("VmHWM", 0) if reset else 0
                        peaks[path].append((max(hwm, sampled), reset))
            for path in PATHS:
                res = combine(runs[path])
                if peaks.get(path):
                    peak = max(v for v, _ in peaks[path])
                    res.extra.update(rss_idle=idle[path], rss_peak=peak,
                                     rss_growth=peak - idle[path],
                                     rss_peak_from="VmHWM, reset before each round"
                                     if all(r for _, r in peaks[path]) else "VmRSS samples")
                    log(f"         {path} peak RSS {peak / MB:.0f} MB "
                        f"(+{(peak - idle[path]) / MB:.0f} MB over idle) at c={conns}")
                self.loads.append(res)

    def sse(self) -> None:
        variants = [("4 KB partial", payloads.SMALL_RAW, True),
                    ("~1.5 MB partial", SSE_BIG_RAW, False)]
        for label, raw, judged in variants:
            body = payloads.request_body(stream=True, partial_images=1,
                                         prompt=payloads.sse_prompt(raw, 0.02, 0.005))
            measured = self.run_async(sse_latencies(
                {p: self.urls[p] for p in PATHS}, self.plan["sse_n"], body))
            paths: dict[str, Any] = {}
            for path, (lat, failures) in measured.items():
                paths[path] = {"p50_ms": round(pct(lat, 0.5), 3),
                               "p99_ms": round(pct(lat, 0.99), 3), "streams": len(lat),
                               "failures": failures, "samples_ms": [round(v, 3) for v in lat]}
                log(f"  sse    {path:<8} {label:<15} p50={paths[path]['p50_ms']:.2f}ms "
                    f"p99={paths[path]['p99_ms']:.2f}ms"
                    + (f"  FAILURES={failures}" if failures else ""))
            self.results["sse"].append({"label": label, "raw_bytes": raw, "judged": judged,
                                        "n": self.plan["sse_n"], "paths": paths})

    def socketio_fanout(self, remaining_s: float) -> None:
        clients = self.args.sio_clients or self.plan["sio_clients"]
        procs = self.args.sio_procs or self.plan["sio_procs"]
        budget = max(20.0, min(150.0, remaining_s - 25.0))
        try:
            summary = self.run_async(fanout.measure_fanout(
                self.fleet, SCRIPT, self.urls["gateway_base"], self.urls["gateway"], clients,
                procs, self.tmp, budget))
        except RuntimeError as exc:
            self.results["fanout"] = {"error": str(exc), "clients": clients}
            log(f"  socket.io fan-out failed: {exc}")
            return
        summary["why_fewer"] = ("--sio-clients" if self.args.sio_clients
                                else "--quick" if self.args.quick else "")
        self.results["fanout"] = summary
        for row in summary["per_event"]:
            log(f"  socket.io seq {row['seq']} {row['event']:<26} {row['received']:>5} got it"
                f"  p50={row['p50_ms']:.1f}ms p99={row['p99_ms']:.1f}ms max={row['max_ms']:.1f}ms")

    def litellm_peer(self) -> None:
        res = self.run_async(peer.measure_litellm(self.fleet, self.tmp, self.urls["direct"],
                                                  self.notes))
        if res is not None:
            self.loads.append(res)

    def redis_mode(self) -> None:
        try:
            self.results["redis"] = self.run_async(measure_redis(
                self.fleet, ROOT, self.tmp, self.upstream[1], self.plan,
                self.results.setdefault("code", {})))
        except RuntimeError as exc:
            self.results["redis"] = {"error": str(exc)}
            log(f"  Redis mode failed: {exc}")

    def long_jobs(self) -> None:
        up_pid, up_port = self.upstream
        runner = LongJobs(self.fleet, SCRIPT, self.spawn_path, up_pid,
                          f"http://{HOST}:{up_port}/stats", self.tmp, self.plan)
        self.results["long"] = runner.out  # filled burst by burst: an aborted run shows some
        self.run_async(runner.run())

    # -------------------------------------------------------------------------- run
    def run(self, started: float) -> None:
        meter = LoadMeter(self.fleet)
        self.start_servers()
        phases = [("small", "small JSON", self.small_json),
                  ("large", "16 MB answers", self.large_payload),
                  ("sse", "SSE first partial", self.sse), ("fanout", "Socket.IO fan-out", None),
                  ("litellm", "LiteLLM peer", self.litellm_peer),
                  ("redis", "Redis mode, --workers 2", self.redis_mode),
                  ("long", "long jobs", self.long_jobs)]
        meter.lap()
        machine_load = self.results["machine_load"] = {}
        for section, name, phase in phases:
            if section not in self.args.only:
                continue
            log(f"{name} ...")
            self.fleet.check_alive()
            if phase is None:
                self.socketio_fanout(self.plan["hard_limit"] - (time.perf_counter() - started))
            else:
                phase()
            machine_load[name] = lap = meter.lap()
            log(f"  ({lap['seconds']:.0f}s; cores busy {lap['busy_cores']:.2f} of "
                f"{os.cpu_count()}: this benchmark {lap['ours_cores']:.2f}, others "
                f"{lap['others_cores']:.2f}, steal {lap['steal_cores']:.2f})")


def run_bench(args: argparse.Namespace) -> int:
    import uvloop

    raise_nofile()
    started = time.perf_counter()
    plan = plan_for(args)
    loop = uvloop.new_event_loop()  # one loop, driven phase by phase
    caught: list[str] = []

    def abort(why: str) -> None:  # the running phase raises at once; cleanup follows
        caught.append(why)
        loop.stop()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, abort, signal.Signals(sig).name)
    loop.call_later(plan["hard_limit"], abort, f"hard time limit ({plan['hard_limit']:.0f}s)")
    tmp = Path(tempfile.mkdtemp(prefix="image-proxy-bench-"))
    bench = Bench(loop, args, tmp)
    load_before = os.getloadavg()
    aborted = ""
    try:
        bench.run(started)
    except BaseException:
        if not caught:
            raise
        aborted = caught[0]
        log(f"benchmark aborted: {aborted}")
        if aborted == "SIGINT":
            return 130
    finally:
        bench.fleet.stop_all()
        if pending := asyncio.all_tasks(loop):
            for task in pending:
                task.cancel()
            with contextlib.suppress(RuntimeError):
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()
        shutil.rmtree(tmp, ignore_errors=True)
    results = bench.results
    results["loads"] = [asdict(r) for r in bench.loads]
    print(report.build_table(results))
    runinfo.footer(ROOT, results, load_before, args.quick, time.perf_counter() - started,
                   args.json, aborted)
    return 1 if aborted else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="a smoke run under two minutes (fewer requests, 100 subscribers, "
                         "200/500 long jobs of 3-6 s)")
    ap.add_argument("--json", metavar="FILE", help="also dump the raw numbers as JSON")
    ap.add_argument("--only", default=",".join(SECTIONS),
                    help=f"comma-separated sections to run, of: {','.join(SECTIONS)}")
    ap.add_argument("--long-bursts", metavar="KIND:N,...",
                    help="the long-jobs section's bursts, e.g. sse:2000,json:2000 (default: "
                         "sse:500,sse:1000,sse:2000,json:2000; --quick sse:200,sse:500,json:500)")
    ap.add_argument("--long-after", type=float, metavar="SECONDS",
                    help="how long after a burst its server's RSS is read (default 60; quick 10)")
    ap.add_argument("--sio-clients", type=int, default=0,
                    help="Socket.IO subscribers (default 1,000; --quick 100)")
    ap.add_argument("--sio-procs", type=int, default=0,
                    help="worker processes holding the subscribers (default 4; --quick 1)")
    # Internal: this file re-invoked as a server or a Socket.IO worker.
    ap.add_argument("--serve", choices=["upstream", "relay"], help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--upstream", help=argparse.SUPPRESS)
    ap.add_argument("--sio-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--clients", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--job-id", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--deadline", type=float, default=120.0, help=argparse.SUPPRESS)
    ap.add_argument("--long-worker", action="store_true", help=argparse.SUPPRESS)
    for name in ("kind", "tag", "go"):
        ap.add_argument(f"--{name}", help=argparse.SUPPRESS)
    for name in ("first", "count", "n", "seed"):
        ap.add_argument(f"--{name}", type=int, help=argparse.SUPPRESS)
    for name in ("low", "high", "ramp", "cap"):
        ap.add_argument(f"--{name}", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.long_worker:
        longclient.worker_main(args)
        return
    args.only = {name.strip() for name in args.only.split(",") if name.strip()}
    if unknown := args.only - set(SECTIONS):
        ap.error(f"--only: unknown sections {sorted(unknown)}; known: {', '.join(SECTIONS)}")
    if args.serve:
        servers.serve(args.serve, args.port, args.upstream)
        return
    if args.sio_worker:
        fanout.worker_main(args.url, args.clients, args.job_id, args.out, args.deadline)
        return
    sys.exit(run_bench(args))


if __name__ == "__main__":
    main()
