"""The long-jobs load: one client process (``bench.py --long-worker``) holding a share of a burst's
concurrent jobs, and the one-job client the preflight uses in-process.

A worker makes its session (uvloop, aiohttp, no connection limit, its open-file limit raised),
writes ``<out>.ready``, and waits (bounded) for the coordinator's go file: the burst's start, in
CLOCK_MONOTONIC nanoseconds, which is system-wide, so every worker starts on the same clock. Job
``i`` of the burst's ``n`` starts ``ramp * i / n`` seconds after it, so all start within the
ramp. At the cap (or when the coordinator writes the stop file, to end a burst whose server grew
past the memory limit), whatever has not finished is cancelled and counted as unfinished. The worker
writes one row per job, and its own CPU time, to ``<out>``.

A job succeeds when its answer is 200 and the final image arrived whole with the upstream's stamp
in it (streamed: every partial image, then the ``completed`` event; JSON: the body). Its final
delivery time is the moment the client has the last byte of the final image, minus the stamp the
upstream wrote just before it sent that image.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from benchlib import payloads
from benchlib.fleet import raise_nofile

JSON_HEADERS = {"content-type": "application/json"}
GO_WAIT_S = 60.0  # how long a ready worker waits for the go file
# How much of an event the client copies out to read: its kind and the upstream's stamp, which
# sits in the first characters of its image (keep-alive comments come as frames of their own).
FRAME_HEAD = 8192


def job_body(kind: str, seconds: float, tag: str) -> bytes:
    prompt = payloads.long_prompt(seconds, tag)
    if kind == "sse":
        return payloads.request_body(stream=True, partial_images=payloads.LONG_PARTIALS,
                                     prompt=prompt)
    return payloads.request_body(prompt=prompt)


def _error_code(raw: bytes) -> str:
    with contextlib.suppress(Exception):
        err = orjson.loads(raw).get("error") or {}
        return str(err.get("code") or err.get("type") or "")
    return ""


async def one_job(session: aiohttp.ClientSession, url: str, kind: str,
                  body: bytes) -> tuple[str, float | None]:
    """Run one long job: ("", final delivery ms) on success, else (what went wrong, None)."""
    async with session.post(url, data=body, headers=JSON_HEADERS) as r:
        if r.status != 200:
            code = _error_code(await r.content.read(4096))
            return f"HTTP {r.status}{' ' + code if code else ''}", None
        if kind != "sse":
            raw = await r.read()
            arrived = time.monotonic_ns()
            stamp = payloads.read_stamp(raw[:4096])
            if stamp is None or not raw.rstrip().endswith(b"}"):
                return "answer without the stamped image", None
            return "", (arrived - stamp) / 1e6
        buffer = bytearray()
        partials = 0
        async for chunk in r.content.iter_any():
            search = max(0, len(buffer) - 3)  # earlier bytes hold no frame end
            buffer += chunk
            while (ends := payloads.frame_end(buffer, search))[0] >= 0:
                search = 0
                # Only the frame's head is looked at (its kind, the stamp near the start of
                # its image). Holding whole 1.5 MB frames and copying them out made this client
                # cost ~7 ms of CPU per job, three times the relay's, on the machine they share.
                frame = payloads.without_comments(bytes(buffer[:min(ends[0], FRAME_HEAD)]))
                del buffer[:ends[1]]
                if not frame:
                    continue  # a keep-alive alone
                head = frame[:96]
                if payloads.PARTIAL_KIND in head:
                    partials += 1
                elif payloads.COMPLETED_KIND in head:
                    arrived = time.monotonic_ns()
                    stamp = payloads.read_stamp(frame[:4096])
                    if stamp is None:
                        return "completed event without the stamp", None
                    if partials < payloads.LONG_PARTIALS:
                        return f"{partials} partial images, not {payloads.LONG_PARTIALS}", None
                    return "", (arrived - stamp) / 1e6
                elif b"error" in head:
                    return f"error event: {_error_code(frame.partition(b'data: ')[2])}", None
            if len(buffer) > FRAME_HEAD + 3:
                # An event still coming: its head and its last bytes (where its end may begin)
                # are all that is needed of it; the next search starts after the head.
                del buffer[FRAME_HEAD:-3]
        return "stream ended before the completed event", None


async def run_worker(url: str, kind: str, first: int, count: int, n: int, seed: int,
                     low: float, high: float, tag: str, ramp: float, cap: float,
                     out: Path, go: Path) -> None:
    durations = payloads.long_durations(seed, kind, n, low, high)[first:first + count]
    bodies = [job_body(kind, d, tag) for d in durations]
    timeout = aiohttp.ClientTimeout(total=cap + 5, sock_connect=30)
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
    rows: list[list[Any]] = [[first + i, "unfinished at the cap", None, None]
                             for i in range(count)]
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        write_whole(out.with_suffix(".ready"), "ready")
        deadline = time.monotonic() + GO_WAIT_S
        while (go_ns := _read_go(go)) is None:
            if time.monotonic() > deadline:
                raise SystemExit("no go file")
            await asyncio.sleep(0.005)

        async def job(i: int) -> None:
            start_ns = go_ns + int(ramp * 1e9 * (first + i) / n)
            await asyncio.sleep(max(0.0, (start_ns - time.monotonic_ns()) / 1e9))
            try:
                error, final_ms = await one_job(session, url, kind, bodies[i])
            except TimeoutError:
                error, final_ms = "client timeout", None
            except aiohttp.ClientError as exc:
                error, final_ms = type(exc).__name__, None
            done_s = (time.monotonic_ns() - go_ns) / 1e9
            rows[i][1:] = [error, round(done_s, 3),
                           round(final_ms, 3) if final_ms is not None else None]

        async def stop_file() -> None:  # the coordinator ends a burst early (server RSS)
            while True:  # cancelled once the jobs are over
                if _exists(go.with_suffix(".stop")):
                    return
                await asyncio.sleep(0.2)

        tasks = [asyncio.ensure_future(job(i)) for i in range(count)]
        stopper = asyncio.ensure_future(stop_file())
        end = go_ns / 1e9 + cap
        everything = asyncio.ensure_future(asyncio.wait(tasks))
        await asyncio.wait([everything, stopper], timeout=max(0.1, end - time.monotonic()),
                           return_when=asyncio.FIRST_COMPLETED)
        pending = [task for task in (*tasks, stopper, everything) if not task.done()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    write_whole(out, json.dumps({"rows": rows, "cpu_s": usage.ru_utime + usage.ru_stime}))


def write_whole(path: Path, text: str) -> None:
    """Whole or not at all: the coordinator polls for the file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _exists(path: Path) -> bool:
    return path.exists()


def _read_go(go: Path) -> int | None:
    """The burst's start (monotonic ns), once the coordinator wrote it."""
    try:
        return int(go.read_text())
    except FileNotFoundError:
        return None


def worker_main(args: Any) -> None:
    import uvloop

    raise_nofile()
    uvloop.run(run_worker(args.url, args.kind, args.first, args.count, args.n, args.seed,
                          args.low, args.high, args.tag, args.ramp, args.cap, Path(args.out),
                          Path(args.go)))
