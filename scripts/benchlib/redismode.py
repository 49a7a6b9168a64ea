"""Redis mode and ``--workers 2``: what sharing job state through Redis costs per request, and what
a second worker process buys.

The bench starts its own ``redis-server`` (127.0.0.1, a free port, no persistence) and three
fresh gateways with the same configuration but for Redis: memory mode (1 process), Redis mode
(1 process), Redis mode with ``--workers 2``. Each takes small JSON requests (the ~4 KB answer)
at 16 connections, nobody watching the jobs, the three taking turns round after round. For each:
req/s (the median round's), latency, and the CPU of the gateway's whole process tree (the
supervisor and both workers with ``--workers 2``) per request and as cores used while the round
lasted (all CPU figures from the median round by req/s); redis-server's and the load
generator's are recorded beside it. Everything it starts it
stops, on any exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from pathlib import Path
from typing import Any

from benchlib import payloads, servers
from benchlib.fleet import (
    Fleet,
    cpu_seconds,
    descendants,
    free_port,
    tree_cpu_seconds,
    wait_ready,
)
from benchlib.gateway import HOST, gateway_config, spawn_gateway
from benchlib.load import LoadResult, combine, measure
from benchlib.runinfo import code_version

CONFIGS = (("memory", False, 1), ("redis", True, 1), ("redis-2w", True, 2))


async def _redis_ready(port: int, proc: Any, seconds: float = 10.0) -> None:
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited early ({proc.returncode})")
        with contextlib.suppress(OSError):
            reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(b"PING\r\n")
            await writer.drain()
            answer = await asyncio.wait_for(reader.readline(), 2)
            writer.close()
            if answer.startswith(b"+PONG"):
                return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"redis-server did not answer PING within {seconds:.0f}s")


def _cpu_or_zero(pid: int) -> float:
    try:
        return cpu_seconds(pid, reaped=True)
    except OSError:
        return 0.0


def _own_cpu() -> float:
    mine = os.times()
    return mine.user + mine.system


async def measure_redis(fleet: Fleet, root: str, tmp: Path, upstream_port: int,
                        plan: dict[str, Any], code: dict[str, str]) -> dict[str, Any]:
    binary = shutil.which("redis-server")
    if binary is None:
        return {"skipped": "redis-server is not installed"}
    port = free_port()
    redis = fleet.spawn("redis-server", [
        binary, "--bind", HOST, "--port", str(port), "--save", "", "--appendonly", "no",
        "--daemonize", "no", "--dir", str(tmp), "--logfile", ""])
    started: list[Any] = [redis]
    try:
        await _redis_ready(port, redis)
        url = f"redis://{HOST}:{port}/0"
        gateways: dict[str, tuple[str, int]] = {}
        for name, with_redis, workers in CONFIGS:
            gw_port = free_port()
            config = gateway_config(tmp, f"gw-{name}", gw_port, upstream_port,
                                    redis_url=url if with_redis else None)
            code[f"gateway ({name})"] = code_version(root)
            proc = spawn_gateway(fleet, root, f"gateway ({name})", config, gw_port,
                                 workers=workers)
            started.append(proc)
            await wait_ready(proc, f"http://{HOST}:{gw_port}/healthz", timeout=60)
            gateways[name] = (f"http://{HOST}:{gw_port}{servers.ROUTE}", proc.pid)
        await asyncio.sleep(1.0)  # with --workers 2: the second worker is up too
        body = payloads.request_body()
        n, conns = plan["redis_n"], 16
        runs: dict[str, list[LoadResult]] = {name: [] for name in gateways}
        for r in range(plan["rounds"]):
            for name, (gw_url, pid) in gateways.items():
                meters = {"server": lambda pid=pid: tree_cpu_seconds(pid),
                          "redis": lambda: cpu_seconds(redis.pid), "client": _own_cpu}
                for i, member in enumerate((pid, *descendants(pid))):  # 0: the one we started
                    meters[f"process{i}"] = lambda member=member: _cpu_or_zero(member)
                runs[name].append(await measure(
                    name, "redis", gw_url, conns, n, body,
                    warmup=max(conns * 2, n // 10) if r == 0 else conns * 2,
                    cpu_meters=meters))
        processes = {name: 1 + len(descendants(pid)) for name, (_, pid) in gateways.items()}
    finally:
        for proc in reversed(started):
            fleet.stop(proc)
    loads = []
    for rounds in runs.values():
        res = combine(rounds)
        # Every CPU figure from the median round (by req/s), so the parts add up to the whole.
        median = sorted(rounds, key=lambda r: r.req_s)[len(rounds) // 2]
        res.extra = {**median.extra, "rounds_req_s": res.extra["rounds_req_s"]}
        loads.append(res)
    return {"loads": [{k: v for k, v in vars(res).items() if k != "latencies_ms"}
                      for res in loads],
            "processes": processes, "n": n, "conns": conns, "rounds": plan["rounds"]}
