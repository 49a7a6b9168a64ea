"""Every process a benchmark run starts, and nothing else: spawned on 127.0.0.1 free ports,
waited for (bounded), stopped newest first on exit, error, Ctrl-C or SIGTERM.

Children run in their own session (a terminal's Ctrl-C reaches only the benchmark, which then
stops them in order) and get SIGTERM from the kernel if the benchmark dies without cleaning up
(``PR_SET_PDEATHSIG``, Linux).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import IO, Any

import aiohttp

HOST = "127.0.0.1"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child, between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    """A free loopback port (the tiny race until the server binds it is accepted)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class Fleet:
    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def spawn(self, name: str, argv: Sequence[str], *, cwd: str | None = None,
              stdout: IO[Any] | int | None = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
        """Start a child (its stdout discarded: ours carries only the table; stderr is kept)."""
        proc = subprocess.Popen(list(argv), cwd=cwd, stdout=stdout, stdin=subprocess.DEVNULL,
                                start_new_session=True,
                                preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        self.procs.append((name, proc))
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        """Terminate, then kill after STOP_TIMEOUT_S; forget it."""
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT_S)
        self.procs = [(n, p) for n, p in self.procs if p is not proc]

    def stop_all(self) -> None:
        """Newest first: relays and the gateway before the upstream they call."""
        for _, proc in reversed(list(self.procs)):
            with contextlib.suppress(Exception):
                self.stop(proc)

    def check_alive(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited early (status {proc.returncode})")


async def wait_ready(proc: subprocess.Popen[bytes], url: str, *, body: bytes | None = None,
                     timeout: float = START_TIMEOUT_S) -> None:
    """Poll ``url`` (GET, or POST ``body``) until it answers 200; bounded by ``timeout``."""
    deadline = time.monotonic() + timeout
    client_timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=client_timeout) as session:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited early ({proc.returncode}): {proc.args}")
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                method = "POST" if body is not None else "GET"
                async with session.request(method, url, data=body,
                                           headers={"content-type": "application/json"}) as r:
                    await r.read()
                    if r.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"server did not answer within {timeout:.0f}s: {proc.args}")


# ------------------------------------------------------------------------------ memory
def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in bytes."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(("VmRSS:", "VmHWM:")):
                name, value = line.split(":", 1)
                out[name] = int(value.split()[0]) * 1024
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def reset_peak(pid: int) -> bool:
    """Reset a process's VmHWM to its current RSS (Linux >= 4.0); False if not allowed."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


class PeakSampler:
    """Samples VmRSS every few ms in the event loop: a fallback where VmHWM cannot be reset."""

    def __init__(self, pid: int, interval: float = 0.005) -> None:
        self.pid, self.interval, self.peak = pid, interval, 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:  # cancelled by stop()
            self.peak = max(self.peak, memory(self.pid).get("VmRSS", 0))
            await asyncio.sleep(self.interval)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._task = loop.create_task(self._run())

    async def stop(self) -> int:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        return self.peak


# ------------------------------------------------------------------------------ machine load
class LoadMeter:
    """How busy the machine was during a phase, and how much of that was this benchmark (this
    process, every child alive, every child already reaped): the rest is other people's work
    on the same cores, which is what makes a shared machine's numbers move."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self._start = self._snapshot()

    def _snapshot(self) -> tuple[float, float, float, float]:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        steal = fields[7] if len(fields) > 7 else 0
        busy = sum(fields[:8]) - idle  # guest time is already inside user
        mine = os.times()
        ours = mine.user + mine.system + mine.children_user + mine.children_system
        for _, proc in self.fleet.procs:
            with contextlib.suppress(OSError):
                ours += cpu_seconds(proc.pid)
        tick = os.sysconf("SC_CLK_TCK")
        return time.monotonic(), busy / tick, steal / tick, ours

    def lap(self) -> dict[str, float]:
        """Cores busy on average since the last lap: all of them, ours, others'; steal."""
        now = self._snapshot()
        (t0, busy0, steal0, ours0), self._start = self._start, now
        wall = max(now[0] - t0, 1e-6)
        busy, ours = (now[1] - busy0) / wall, (now[3] - ours0) / wall
        return {"seconds": round(wall, 1), "busy_cores": round(busy, 2),
                "ours_cores": round(ours, 2), "others_cores": round(max(busy - ours, 0.0), 2),
                "steal_cores": round((now[2] - steal0) / wall, 2)}
