"""Benchmark upstream HTTP clients for the image gateway's relay path.

What: starts, on 127.0.0.1 only, a fake OpenAI upstream (``POST /v1/images/generations``
returning a fixed ImagesResponse with a ~4 KB ``b64_json``, or ~4 MB for the large case) and
a bare Starlette relay that forwards the body upstream and returns the upstream bytes, once
per client backend (httpx, httpx + httpx_aiohttp transport, aiohttp). Each server runs in its
own uvicorn subprocess (httptools + uvloop, no access log); an aiohttp load generator in this
process sends a bounded number of requests at 1 and 16 connections after a warm-up and
prints one markdown table (req/s, p50, p99, ratio vs the aiohttp relay).

Why: the gateway must choose its upstream client by measurement, not by reputation.
Usage: ``python scripts/bench_clients.py [--quick] [--json FILE]``. Servers are this file
re-invoked with ``--serve``; all are stopped on exit, Ctrl-C, SIGTERM or error.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Any

import aiohttp
import orjson
from benchlib.load import LoadResult, measure
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

HOST = "127.0.0.1"
ROUTE = "/v1/images/generations"
SMALL_RAW, LARGE_RAW = 3 * 1024, 3 * 1024 * 1024  # base64 -> ~4 KB / ~4 MB
REQUEST_BODY = orjson.dumps(
    {"model": "gpt-image-1", "prompt": "a red fox in snow", "n": 1, "size": "1024x1024"}
)
JSON_HEADERS = {"content-type": "application/json"}
CONNS = (1, 16)
START_TIMEOUT_S = 20.0
SCRIPT = os.path.abspath(__file__)


# --------------------------------------------------------------------------- servers
def upstream_app(raw_bytes: int) -> Starlette:
    """Fake upstream: always answers the same pre-serialized ImagesResponse."""
    b64 = base64.b64encode(random.Random(0).randbytes(raw_bytes)).decode()
    payload = orjson.dumps({
        "created": 1_700_000_000,
        "data": [{"b64_json": b64, "revised_prompt": "a red fox in snow"}],
        "usage": {"input_tokens": 9, "output_tokens": 272, "total_tokens": 281},
    })

    async def generations(request: Request) -> Response:
        await request.body()
        return Response(payload, media_type="application/json")

    return Starlette(routes=[Route(ROUTE, generations, methods=["POST"])])


def relay_app(backend: str, upstream_url: str) -> Starlette:
    """Bare relay: one route, forwards the body upstream, returns the upstream bytes."""
    state: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        if backend == "aiohttp":
            # the load tops out at 16 in flight; 64 leaves headroom without unbounded sockets
            connector = aiohttp.TCPConnector(limit=64, limit_per_host=64)
            async with aiohttp.ClientSession(connector=connector) as session:
                state["client"] = session
                yield
            return
        import httpx

        transport = None
        if backend == "httpx-aiohttp":
            from httpx_aiohttp import AiohttpTransport

            transport = AiohttpTransport()
        async with httpx.AsyncClient(transport=transport) as client:
            state["client"] = client
            yield

    async def forward_aiohttp(request: Request) -> Response:
        body = await request.body()
        async with state["client"].post(upstream_url, data=body, headers=JSON_HEADERS) as r:
            data = await r.read()
            return Response(data, status_code=r.status, media_type="application/json")

    async def forward_httpx(request: Request) -> Response:
        body = await request.body()
        r = await state["client"].post(upstream_url, content=body, headers=JSON_HEADERS)
        return Response(r.content, status_code=r.status_code, media_type="application/json")

    handler = forward_aiohttp if backend == "aiohttp" else forward_httpx
    return Starlette(routes=[Route(ROUTE, handler, methods=["POST"])], lifespan=lifespan)


def serve(args: argparse.Namespace) -> None:
    import uvicorn

    app = (upstream_app(LARGE_RAW if args.large else SMALL_RAW) if args.serve == "upstream"
           else relay_app(args.backend, args.upstream))
    uvicorn.run(app, host=HOST, port=args.port, loop="uvloop", http="httptools",
                access_log=False, log_level="warning")


# --------------------------------------------------------------------------- processes
async def wait_ready(proc: subprocess.Popen[bytes], url: str) -> None:
    """Poll until the server answers 200; bounded by START_TIMEOUT_S."""
    deadline = time.monotonic() + START_TIMEOUT_S
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited early ({proc.returncode}): {proc.args}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.post(url, data=REQUEST_BODY, headers=JSON_HEADERS) as r:
                    await r.read()
                    if r.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"server did not answer within {START_TIMEOUT_S}s: {proc.args}")


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """Stop servers newest first (relays before their upstream): terminate, then kill."""
    for p in reversed(procs):
        if p.poll() is None:
            p.terminate()
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)


def bench(loop: asyncio.AbstractEventLoop, quick: bool) -> list[LoadResult]:
    """Start upstreams, then one relay at a time; measure each path at every CONNS."""
    n_small, n_large = (500, 40) if quick else (3000, 200)
    procs: list[subprocess.Popen[bytes]] = []
    results: list[LoadResult] = []

    def start(*extra: str) -> str:
        """Start a server subprocess on a free port; return its URL once it answers."""
        with socket.socket() as sock:  # free loopback port (tiny race accepted)
            sock.bind((HOST, 0))
            port = int(sock.getsockname()[1])
        procs.append(subprocess.Popen([sys.executable, SCRIPT, "--port", str(port), *extra]))
        url = f"http://{HOST}:{port}{ROUTE}"
        loop.run_until_complete(wait_ready(procs[-1], url))
        return url

    try:
        up_small = start("--serve", "upstream")
        up_large = start("--serve", "upstream", "--large")
        plan: list[tuple[str, str, str | None, str, int]] = [
            ("upstream direct", "small", None, up_small, n_small),
            ("relay httpx", "small", "httpx", up_small, n_small),
            ("relay httpx+aiohttp-transport", "small", "httpx-aiohttp", up_small, n_small),
            ("relay aiohttp", "small", "aiohttp", up_small, n_small),
            ("upstream direct 4MB", "large", None, up_large, n_large),
            ("relay httpx 4MB", "large", "httpx", up_large, n_large),
            ("relay aiohttp 4MB", "large", "aiohttp", up_large, n_large),
        ]
        for path, group, backend, upstream, n in plan:
            n_up = len(procs)
            url = upstream
            if backend is not None:
                url = start("--serve", "relay", "--backend", backend, "--upstream", upstream)
            for conns in CONNS:
                results.append(loop.run_until_complete(
                    measure(path, group, url, conns, n, REQUEST_BODY)))
            stop(procs[n_up:])
            del procs[n_up:]
    finally:
        stop(procs)
    return results


def table(results: list[LoadResult]) -> str:
    base = {(r.group, r.conns): r.req_s for r in results if r.path.startswith("relay aiohttp")}
    lines = ["| path | connections | req/s | p50 ms | p99 ms | vs aiohttp relay |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in results:
        ref = base.get((r.group, r.conns))
        ratio = f"{r.req_s / ref:.2f}x" if ref else "n/a"
        lines.append(f"| {r.path} | {r.conns} | {r.req_s:,.0f} | {r.p50_ms:.2f} "
                     f"| {r.p99_ms:.2f} | {ratio} |")
    if failed := sum(r.errors for r in results):
        lines.append(f"\nWARNING: {failed} failed requests (see --json 'errors')")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="500 small / 40 large requests")
    ap.add_argument("--json", metavar="FILE", help="also dump raw numbers as JSON")
    ap.add_argument("--serve", choices=["upstream", "relay"], help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--large", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--backend", choices=["httpx", "httpx-aiohttp", "aiohttp"],
                    help=argparse.SUPPRESS)
    ap.add_argument("--upstream", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args)
        return

    import uvloop

    started = time.perf_counter()
    loop = uvloop.new_event_loop()  # one loop, driven step by step (works on 3.10 too)
    caught: list[int] = []

    def on_signal(signum: int) -> None:  # abort the running step; bench() then cleans up
        caught.append(signum)
        loop.stop()  # run_until_complete() raises at once, whatever the tasks do

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        results = bench(loop, args.quick)
    except BaseException:
        if caught:
            raise SystemExit(128 + caught[0]) from None
        raise
    finally:
        if pending := asyncio.all_tasks(loop):
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()
    print(table(results))
    load = os.getloadavg()
    print(f"\n{os.cpu_count()} CPUs, loadavg {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, "
          f"total {time.perf_counter() - started:.0f}s")
    if args.json:
        meta = {"cpus": os.cpu_count(), "loadavg": load, "quick": args.quick,
                "python": sys.version.split()[0], "aiohttp": aiohttp.__version__}
        with open(args.json, "w") as f:
            rows = [{k: v for k, v in asdict(r).items() if k != "latencies_ms"} for r in results]
            json.dump({"meta": meta, "results": rows}, f, indent=2)


if __name__ == "__main__":
    main()
