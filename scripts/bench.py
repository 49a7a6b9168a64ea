"""Benchmark the gateway against the fake upstream called directly and against a bare relay.

What: in one run, on 127.0.0.1 only, starts a fake OpenAI upstream (pre-built answers: a ~4 KB
image, n=4 x 4 MB, an SSE stream whose partial image carries its send time), a bare Starlette +
aiohttp relay, and the gateway (``python -m proxy serve`` with an ``openai`` model pointing at
the fake upstream, its usage ledger in a temporary data_dir, no keys). It measures each path side
by side: small JSON at 1 and 16 connections (req/s, p50, p99); the 16 MB answer (latency added,
and the relay's and gateway's peak RSS against the bytes in flight); the first partial image of a
stream (upstream sent -> client has it); and one Socket.IO ``progress`` event fanned out to
1,000 websocket subscribers. Prints one markdown table with the targets, met or missed.

Why: the gateway must do its work (auth, validation, routing, progress, usage) and stay near
the floor a bare relay sets; these are the numbers that say whether it does.

Usage: ``scripts/bench [--quick] [--json FILE] [--sio-clients N]``. Every server and worker is
this file (or the gateway) in a subprocess; all are stopped on exit, Ctrl-C, SIGTERM or error,
and the whole run is cut off at a hard time limit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
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
from benchlib import fanout, payloads, report, servers
from benchlib.fleet import (
    Fleet,
    LoadMeter,
    PeakSampler,
    free_port,
    memory,
    reset_peak,
    wait_ready,
)
from benchlib.load import LoadResult, combine, log, measure, one_stream, pct, sse_latencies

SCRIPT = os.path.abspath(__file__)
ROOT = os.path.dirname(os.path.dirname(SCRIPT))
HOST = "127.0.0.1"
MB = 1024 * 1024
PATHS = ("direct", "relay", "gateway")
SSE_BIG_RAW = 1_179_648  # -> ~1.5 MB of base64: a real 1024x1024 partial PNG's order of size

PLANS: dict[str, dict[str, Any]] = {
    # small_n and large (connections, requests) are per round; every path runs each round.
    "full": {"rounds": 3, "small_n": 1500, "small_conns": (1, 16), "large": ((1, 16), (4, 20)),
             "sse_n": 60, "sio_clients": 1000, "sio_procs": 4, "hard_limit": 295.0},
    "quick": {"rounds": 1, "small_n": 300, "small_conns": (1, 16), "large": ((1, 8), (4, 8)),
              "sse_n": 10, "sio_clients": 100, "sio_procs": 1, "hard_limit": 58.0},
}


def gateway_config(tmp: Path, port: int, upstream_port: int) -> Path:
    """The gateway's configuration: one openai model in front of the fake upstream."""
    path = tmp / "gateway.yaml"
    path.write_text(f"""\
server:
  host: {HOST}
  port: {port}
  shutdown_grace: 1
data_dir: {json.dumps(str(tmp / "data"))}
models:
  - name: {payloads.MODEL}
    provider: openai
    upstream_model: gpt-image-1
    base_url: "http://{HOST}:{upstream_port}/v1"
    api_key: sk-bench-not-a-real-key
""")
    return path


class Bench:
    def __init__(self, loop: asyncio.AbstractEventLoop, args: argparse.Namespace,
                 tmp: Path) -> None:
        self.loop, self.args, self.tmp = loop, args, tmp
        self.plan = PLANS["quick" if args.quick else "full"]
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
        small = payloads.request_body()
        up_port, relay_port, gw_port = free_port(), free_port(), free_port()
        route = servers.ROUTE
        up = self.fleet.spawn("fake upstream", [sys.executable, SCRIPT, "--serve", "upstream",
                                                "--port", str(up_port)])
        self.urls["direct"] = f"http://{HOST}:{up_port}{route}"
        self.run_async(wait_ready(up, self.urls["direct"], body=small))
        relay = self.fleet.spawn("bare relay", [
            sys.executable, SCRIPT, "--serve", "relay", "--port", str(relay_port),
            "--upstream", self.urls["direct"]])
        self.urls["relay"] = f"http://{HOST}:{relay_port}{route}"
        self.run_async(wait_ready(relay, self.urls["relay"], body=small))
        config = gateway_config(self.tmp, gw_port, up_port)
        gateway = self.fleet.spawn("gateway", [
            sys.executable, "-m", "proxy", "serve", "--config", str(config),
            "--port", str(gw_port), "--log-level", "warning"], cwd=ROOT)
        self.urls["gateway_base"] = f"http://{HOST}:{gw_port}"
        self.urls["gateway"] = f"http://{HOST}:{gw_port}{route}"
        self.run_async(wait_ready(gateway, f"{self.urls['gateway_base']}/healthz", timeout=60))
        self.pids = {"relay": relay.pid, "gateway": gateway.pid}  # RSS is tracked for these
        self.cpu_pids = {"direct": up.pid, **self.pids}  # CPU per request for all three
        self.run_async(self.preflight())
        log(f"servers up: upstream :{up_port}, relay :{relay_port}, gateway :{gw_port}")

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
        """Optional: LiteLLM's proxy in front of the same upstream, when it is installed."""
        if importlib.util.find_spec("litellm") is None:
            self.notes.append(("LiteLLM proxy (peer)", "skipped: litellm is not importable"))
            return
        port = free_port()
        config = self.tmp / "litellm.yaml"
        upstream_base = self.urls["direct"].rsplit("/images/", 1)[0]
        config.write_text(f"""\
model_list:
  - model_name: {payloads.MODEL}
    litellm_params:
      model: openai/gpt-image-1
      api_base: {upstream_base}
      api_key: sk-bench-not-a-real-key
""")
        proc = self.fleet.spawn("litellm", [sys.executable, "-m", "litellm.proxy.proxy_cli",
                                            "--config", str(config), "--host", HOST,
                                            "--port", str(port)],
                                stdout=subprocess.DEVNULL)
        url = f"http://{HOST}:{port}/v1/images/generations"
        try:
            self.run_async(wait_ready(proc, f"http://{HOST}:{port}/health/liveliness",
                                      timeout=90))
            res = self.run_async(measure("litellm", "peer", url, 16, 300,
                                         payloads.request_body()))
            self.notes.append(("LiteLLM proxy (peer), small JSON, 16 conns",
                               f"{res.req_s:,.0f} req/s, p50 {res.p50_ms:.1f} ms, "
                               f"p99 {res.p99_ms:.1f} ms, {res.errors} errors"))
            self.loads.append(res)
        except RuntimeError as exc:
            self.notes.append(("LiteLLM proxy (peer)", f"skipped: {exc}"))
        finally:
            self.fleet.stop(proc)

    # -------------------------------------------------------------------------- run
    def run(self, started: float) -> dict[str, Any]:
        meter = LoadMeter(self.fleet)
        self.start_servers()
        phases = [("small JSON", self.small_json), ("16 MB answers", self.large_payload),
                  ("SSE first partial", self.sse), ("Socket.IO fan-out", None),
                  ("LiteLLM peer", self.litellm_peer)]
        meter.lap()
        machine_load = self.results["machine_load"] = {}
        for name, phase in phases:
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
        self.results["loads"] = [asdict(r) for r in self.loads]
        return self.results


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        model = next((line.split(":", 1)[1].strip() for line in cpuinfo
                      if line.startswith("model name")), "")
    return {"cpus": os.cpu_count(), "cpu_model": model, "loadavg": os.getloadavg(),
            "python": sys.version.split()[0], "aiohttp": aiohttp.__version__, **tree_state()}


def tree_state() -> dict[str, Any]:
    """Which gateway code was measured: the commit, and uncommitted files under proxy/."""
    def git(*argv: str) -> str:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            return subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        return ""

    changed = [line[3:] for line in git("status", "--porcelain", "--", "proxy").splitlines()]
    return {"commit": git("rev-parse", "--short", "HEAD"), "proxy_uncommitted": changed}


def run_bench(args: argparse.Namespace) -> int:
    import uvloop

    started = time.perf_counter()
    plan = PLANS["quick" if args.quick else "full"]
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
    try:
        results = bench.run(started)
    except BaseException:
        if caught:
            log(f"benchmark aborted: {caught[0]}")
            return 130 if caught[0] == "SIGINT" else 1
        raise
    finally:
        bench.fleet.stop_all()
        if pending := asyncio.all_tasks(loop):
            for task in pending:
                task.cancel()
            with contextlib.suppress(RuntimeError):
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()
        shutil.rmtree(tmp, ignore_errors=True)
    total = time.perf_counter() - started
    print(report.build_table(results))
    info = machine()
    load = info["loadavg"]
    laps = results.get("machine_load", {})
    others = ", ".join(f"{name} {lap['others_cores']:.2f}" for name, lap in laps.items()
                       if lap["seconds"] >= 1)
    print(f"\n{info['cpus']} CPUs ({info['cpu_model']}), loadavg {load_before[0]:.2f} before / "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} after, Python {info['python']}, "
          f"{'quick' if args.quick else 'full'} run, total {total:.0f}s.\n"
          f"Cores used by other work on this machine while each phase ran: {others}.")
    if args.json:
        meta = {**info, "loadavg_before": load_before, "quick": args.quick,
                "seconds": round(total, 1), "date": time.strftime("%Y-%m-%d %H:%M:%S %z")}
        with open(args.json, "w") as out:
            json.dump({"meta": meta, **results}, out, indent=2)
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="a smoke run under a minute (fewer requests, 100 subscribers)")
    ap.add_argument("--json", metavar="FILE", help="also dump the raw numbers as JSON")
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
    args = ap.parse_args()
    if args.serve:
        servers.serve(args.serve, args.port, args.upstream)
        return
    if args.sio_worker:
        fanout.worker_main(args.url, args.clients, args.job_id, args.out, args.deadline)
        return
    sys.exit(run_bench(args))


if __name__ == "__main__":
    main()
