"""The gateway's own cost per request, without sockets on its side: a repeatable measure on a
shared, noisy machine. ``--kind small`` (the default) is the benchmark's small JSON request;
``stream`` and ``long-json`` are its long jobs with no wait (``bench-long dur=0``: two ~100 KB
partial images and a ~1.5 MB final image streamed, or one ~1.5 MB image as JSON), what a
stream or a large answer costs beyond a small request.

What: starts the benchmark's fake upstream (``bench.py --serve upstream``, its own process),
builds the gateway's ASGI app from the benchmark's configuration (``benchlib.gateway``), runs
its lifespan, and drives ``POST /v1/images/generations`` with raw ASGI calls (the answer is
counted, not kept: a long job's must carry its image), ``--conns`` at a time: after
``--warmup`` requests, ``--rounds`` rounds of ``--n``, each printing the process's CPU per
request (every thread: the usage ledger's writer too) and wall time per request. Uvicorn's
own work is not in it (the relay has the same).

Why: CPU per request in ``bench.py`` moves by ±30 % with the neighbours' load. Run under
callgrind it is exact: the instructions of ``--n 500`` minus those of ``--n 100`` (same
``--warmup``), divided by 400, repeat within ±0.3 %::

    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.%p \
        python scripts/inproc.py --rounds 1 --warmup 100 --n 100    # then --n 500

(the totals are on valgrind's "Collected" line; the upstream process is not instrumented).
Beware that callgrind runs the process ~50x slower: what depends on time (the usage ledger's
commit interval; for long jobs, how many of the upstream's reads wait together) is not
measured as it runs.

``--app relay`` drives the benchmark's bare relay (``benchlib.servers.relay_app``) the same
way: the gateway's own work per request is the difference.

Session 11 (AMD, a shared machine): small 0.73-0.83 ms, ``stream`` 2.7-2.9 ms, ``long-json``
2.2-3.4 ms of CPU per request, moving by 15-20 % from round to round. Session 12 (AMD): small
0.52-0.66 ms, the relay 0.14-0.18 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchlib import payloads
from benchlib.gateway import HOST, gateway_config
from benchlib.longclient import job_body
from benchlib.servers import ROUTE, relay_app

from proxy.app import create_app
from proxy.config import load_config

ROOT = Path(__file__).resolve().parent.parent
Message = dict[str, Any]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(port: int, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


async def lifespan(app: Any) -> Any:
    """Start the app's lifespan; returns the coroutine function that ends it."""
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    outbox: asyncio.Queue[Message] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    task = asyncio.create_task(app(scope, inbox.get, outbox.put))
    started = await outbox.get()
    if started["type"] != "lifespan.startup.complete":
        raise RuntimeError(f"the app did not start: {started}")

    async def stop() -> None:
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await task

    return stop


async def one(app: Any, body: bytes, least: int = 0) -> None:
    """One request, its answer read whole (at least ``least`` bytes of it: a stream that ended
    with an error event is a 200 too); the client stays until the answer is written."""
    answered = asyncio.Event()
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await answered.wait()
        return {"type": "http.disconnect"}

    status = length = 0

    async def send(message: Message) -> None:
        nonlocal status, length
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            length += len(message.get("body", b""))

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": ROUTE, "raw_path": ROUTE.encode(),
             "root_path": "", "query_string": b"", "server": (HOST, 8000),
             "client": (HOST, 50000),
             "headers": [(b"host", f"{HOST}:8000".encode()),
                         (b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode())]}
    await app(scope, receive, send)
    answered.set()
    if status != 200 or length < least:
        raise RuntimeError(f"the gateway answered {status} with {length} bytes")


async def drive(app: Any, body: bytes, n: int, conns: int, least: int = 0) -> None:
    left = n

    async def client() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await one(app, body, least)

    await asyncio.gather(*(client() for _ in range(conns)))


async def measure(args: argparse.Namespace, upstream_port: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="inproc-"))
    if args.app == "relay":
        app: Any = relay_app(f"http://{HOST}:{upstream_port}{ROUTE}")
    else:
        app = create_app(load_config(str(gateway_config(tmp, "inproc", free_port(),
                                                        upstream_port))))
    stop = await lifespan(app)
    try:
        body, least = BODIES[args.kind]()
        await drive(app, body, args.warmup, args.conns, least)
        for number in range(args.rounds):
            cpu, wall = time.process_time(), time.perf_counter()
            await drive(app, body, args.n, args.conns, least)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            print(f"round {number}: {cpu / args.n * 1e3:.3f} ms CPU per request, "
                  f"{wall / args.n * 1e3:.3f} ms wall", flush=True)
    finally:
        await stop()


# What each --kind sends (the small request, or a long job of no duration), and the fewest
# bytes its whole answer has (a long job's carries a ~1.5 MB image).
BODIES: dict[str, Callable[[], tuple[bytes, int]]] = {
    "small": lambda: (payloads.request_body(), 1_000),
    "stream": lambda: (job_body("sse", 0.0, "inproc"), 1_000_000),
    "long-json": lambda: (job_body("json", 0.0, "inproc"), 1_000_000),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", choices=sorted(BODIES), default="small",
                        help="what each request is (default: the small JSON request)")
    parser.add_argument("--app", choices=("gateway", "relay"), default="gateway",
                        help="what is driven: the gateway, or the benchmark's bare relay")
    parser.add_argument("--n", type=int, default=3000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--conns", type=int, default=16, help="requests at once")
    args = parser.parse_args()
    port = free_port()
    upstream = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "bench.py"), "--serve",
                                 "upstream", "--port", str(port)], cwd=ROOT)
    try:
        wait_for(port)
        try:
            import uvloop
        except ImportError:
            asyncio.run(measure(args, port))
        else:
            uvloop.run(measure(args, port))
    finally:
        upstream.terminate()
        upstream.wait()


if __name__ == "__main__":
    main()
