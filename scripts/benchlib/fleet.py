"""Every process a benchmark run starts, and nothing else: spawned on 127.0.0.1 free ports,
waited for (bounded), stopped newest first on exit, error, Ctrl-C or SIGTERM.

Children run in their own session (a terminal's Ctrl-C reaches only the benchmark, which then
stops them in order), get SIGTERM from the kernel if the benchmark dies without cleaning up
(``PR_SET_PDEATHSIG``, Linux), and start with their open-file soft limit raised to the hard limit
(thousands of concurrent connections per process). A child's own children (``--workers 2``) are
in its process group, which is killed once the child has exited, should any be left.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import resource
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


def raise_nofile() -> int:
    """Raise this process's soft open-file limit to its hard limit; the soft limit after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft


def _child_setup() -> None:  # runs in the child, between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    with contextlib.suppress(Exception):
        raise_nofile()


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
                                preexec_fn=_child_setup if sys.platform == "linux" else None)
        self.procs.append((name, proc))
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        """Terminate, then kill after STOP_TIMEOUT_S; then whatever is left of its process
        group (its session, started for it alone); forget it."""
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT_S)
        finally:
            # Linux never hands out a pid still in use as a process group id, so this group is
            # the child's own (start_new_session) as long as any member of it is alive.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
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


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()  # fields from 3 (state) on


def cpu_seconds(pid: int, *, reaped: bool = False) -> float:
    """User + system CPU time a process has used so far (all its threads), in seconds; with
    ``reaped``, plus that of its children it has waited for."""
    fields = _stat(pid)
    ticks = int(fields[11]) + int(fields[12])
    if reaped:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def minor_faults(pid: int) -> int:
    """Minor page faults a process has taken so far (each fresh page of a large allocation)."""
    return int(_stat(pid)[7])


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (children, their children ...), from /proc."""
    parent: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                parent.setdefault(int(_stat(int(entry))[1]), []).append(int(entry))
    out: list[int] = []
    todo = [pid]
    while todo and len(out) < 10_000:
        for child in parent.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and of every process below it, alive or reaped by it (a
    ``--workers N`` server: the supervisor and its workers)."""
    total = 0.0
    for member in (pid, *descendants(pid)):
        with contextlib.suppress(OSError):
            total += cpu_seconds(member, reaped=True)
    return total


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
    process, every process below it alive, every one already reaped): the rest is other
    people's work on the same cores, which is what makes a shared machine's numbers move."""

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
        # A live descendant's own time plus that of the children it reaped: each CPU second
        # is counted once, whether its process is alive, reaped by a child, or reaped by us.
        for pid in descendants(os.getpid()):
            with contextlib.suppress(OSError):
                ours += cpu_seconds(pid, reaped=True)
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
