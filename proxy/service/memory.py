"""Giving memory back after a burst, and a garbage collector sized for a server.

The collector first. CPython's defaults (a young-generation collection every 700 net container
allocations, full collections over every object the process ever made) suit a script, not a
server that allocates a few hundred containers per request around ~85,000 objects of its own
(modules, pydantic schemas, routes) that live as long as it does. Each full collection walked
all of them: ~57 ms of a stopped event loop, the small-JSON p99 (70 ms at 16 connections), and
0.11 ms of CPU per request in all (``scripts/bench`` small JSON, measured with ``gc.callbacks``).
:func:`tune_collector`, once the gateway has started, moves what exists then into the permanent
generation (``gc.freeze``: never scanned again; nothing made at start-up is garbage later) and
collects the young generation every 5,000 allocations instead of 700: full collections cost a
few milliseconds, and the collector's share of CPU falls by about two thirds.

The allocator. An image gateway moves megabyte-sized strings (base64 images) through short-lived
buffers. glibc's allocator raises its mmap threshold as big blocks are freed, so after a burst
those blocks come from the heap and the process keeps hundreds of megabytes it no longer uses.
A fixed threshold (``memory.mmap_threshold``, 2 MiB) keeps every block of 2 MiB or more (whole
multi-megabyte answers) in its own mapping, returned to the system the moment it is freed;
smaller ones (a stream's ~1.5 MB final image and its copies) come from the heap, where freed
blocks are reused without page faults (with the threshold at 256 KiB each such buffer was a
fresh mapping: ~2,100 page faults and 10 ms of CPU per streamed job against ~470 and 7 ms now,
scripts/bench --quick --only long). The heap's free top is kept up to 8 MiB while jobs run
(``memory.trim_threshold``): a 16 MB answer passed through in ~256 KiB pieces frees and takes
back blocks at the top all the time, and with 1 MiB each trim was paid back in page faults on the
next piece (~2,600 faults and ~8 ms of system CPU per answer, none now).

Idle passes (:class:`IdleTrimmer`). Once the gateway has had no job for ``memory.idle_seconds``
(5), one pass (:func:`collect`) empties CPython's type attribute cache and collects the garbage
the burst left in reference cycles (an idle process makes too
few objects for the collector to come round: a streamed request used to leave objects in
cycles, its cancelled tasks with their tracebacks: 200 streams through one process holding the
gateway, its client and a fake upstream left 34,668 unreachable objects when sse-starlette wrote
streams, 19,262 with the gateway's own writer and a client watch per block, and in another such
run 6,483 against 1,419 once a request's one client watch ends by itself instead of cancelled),
and jobs cancelled by clients that left keep their frames and image buffers, hundreds of
megabytes after a 2,000-job burst, until a full collection) and ``malloc_trim`` hands back what
the heap holds free. More passes follow at 3, 9 and 27 times that idle time
(``memory.idle_passes``, 4 in all): what is freed later (pooled upstream connections close
``upstream.keepalive_timeout`` after their last use) is returned too. The first pass after
1,000-2,000 streams took 110-230 ms of CPU (~50,000 objects collected, a heap of several hundred
MB trimmed, the trim in a thread), later ones 3-30 ms: once per quiet spell, never while jobs
run. Elsewhere than glibc the trim is skipped and the collection still runs.

The type attribute cache (4,096 entries, one per type and name looked up) holds a strong
reference to each name: a name built at run time (``getattr(obj, "repr_" + kind)`` and the
like, in the libraries) stays alive in it, unreachable from any object, wherever the burst
allocated it. After 2,000 streams ~300-360 such strings (79 of them ``'result'``) were spread
over ~40 of the burst's arenas (``scripts/memprobe``); emptying the cache took the RSS a minute
after from 161 to 156 MB (92 before the burst; most of those arenas are held by free lists too,
below) and costs the next lookup of each name a miss, once per quiet spell.

What stays: CPython's small-object allocator (pymalloc) hands back a 1 MiB arena only when every
object in it is gone. A burst of 2,000 streams spreads its small objects over ~70 new arenas,
and the few hundred that outlive it keep most of them: tens of megabytes that no trim can
return (docs/benchmarks.md). Ended jobs' snapshots, kept ``jobs.retention_seconds`` for ``GET
/v1/images/jobs/{id}``, were most of them and are no Python objects any more
(:mod:`proxy.progress.ended`); what remains (``scripts/memprobe`` after 2,000 streams, a minute
after) is mostly not live at all: ~1,000 dead objects that C extension types keep on their own
free lists for reuse (uvloop's ``Handle`` and ``TimerHandle``, ``_asyncio``'s ``FutureIter``,
aiohttp's ``RawResponseMessage``, ~250 each; multidict's), whichever of the burst's objects were
freed first, one to a few dozen in each of ~40 arenas; no Python call empties those lists. And a
few live ones: counters' latest values (floats), weak references in the ABCs' caches.

So the gateway's objects come from jemalloc where the system has it (``memory.allocator: auto``,
the default; :func:`choose_allocator`): ``serve`` starts itself again with Debian's
``libjemalloc.so.2`` preloaded and ``PYTHONMALLOC=malloc``. A survivor then keeps a page, not
an arena, and an idle pass hands the event loop thread's cache of freed blocks back to the
arenas (:func:`release_thread_cache`: each thread's own, out of any other thread's reach) and
purges them (:func:`trim`; jemalloc's decay-based purging runs only as allocations happen, which
an idle process does not make). Its thread caches keep freed blocks of up to 2 MiB, not 32 KiB
(:data:`JEMALLOC_CONF`): under a burst of streams, a socket read's or an image piece's buffer is
used again at once instead of going back to an arena whose purge takes its pages away.
2,000 long jobs, RSS a minute after against before
(scripts/memprobe, the long-jobs section of bench.py): streams 1.70 x on pymalloc, 1.19 x on
jemalloc with the purge, 1.08-1.09 x with the loop's cache handed back first (1.07 x with no
thread caches at all, ``MALLOC_CONF=tcache:false``); JSON 1.61 x, 1.17-1.19 x, 1.05 x; mimalloc
with ``mi_collect`` at the passes 1.44 x and 1.32 x, jemalloc without the purge up to 1.78 x.
What stays (~5-8 MB) is pages that survivors pin, other threads' caches and the ended jobs'
snapshots, kept on purpose. Its cost: ~1 % more instructions per small JSON
request (callgrind, scripts/inproc.py: 1.713 M against 1.696 M, within pymalloc's own spread),
glibc's ``malloc`` for every object ~7.5 %. ``pymalloc`` and ``malloc`` remain choices, and
``auto`` is pymalloc where there is no jemalloc.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import functools
import gc
import logging
import os
import sys
import time
from collections.abc import Callable

log = logging.getLogger("proxy.memory")

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 2 * 1024 * 1024
TRIM_THRESHOLD = 8 * 1024 * 1024
# How long the gateway must have been without a job before the first idle pass, and how many
# passes a quiet spell gets (defaults of memory.idle_seconds and memory.idle_passes).
IDLE_SECONDS = 5.0
PASSES = 4
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


_LIBC = _libc()


# Young-generation collections every this many net container allocations (CPython: 700); the
# older generations keep CPython's ratios.
GC_YOUNG_THRESHOLD = 5000


def tune_collector() -> None:
    """Freeze what start-up made and space the young collections out (see the docstring)."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def collect() -> int:
    """An idle pass's collection (see the docstring): the type attribute cache's names, then the
    garbage in reference cycles; how many objects the collector found unreachable."""
    sys._clear_type_cache()
    return gc.collect()


def release_collector() -> None:
    """Let the collector see the frozen objects again (a gateway that stops, in a process that
    may go on: tests, embedding)."""
    gc.unfreeze()


def tune_allocator(mmap_threshold: int | None = MMAP_THRESHOLD,
                   trim_threshold: int | None = TRIM_THRESHOLD) -> bool:
    """Fix glibc's mmap and trim thresholds for this process (None: leave glibc's); False
    where there is no glibc."""
    if _LIBC is None:
        return False
    ok = True
    if mmap_threshold is not None:
        ok = bool(_LIBC.mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and ok
    if trim_threshold is not None:
        ok = bool(_LIBC.mallopt(M_TRIM_THRESHOLD, trim_threshold)) and ok
    return ok


def can_trim() -> bool:
    """Whether :func:`trim` does anything here (glibc, or jemalloc preloaded)."""
    return _LIBC is not None or _jemalloc_here()


def trim() -> None:
    """Return the allocator's free memory to the system: jemalloc's arenas purged when it is
    this process's allocator (left alone, an idle process gives its time-based purging
    nothing to run on), glibc's heap trimmed (nothing where there is neither)."""
    if _jemalloc_here():
        release_thread_cache()  # this thread's (the trim runs in a pool thread)
        ctypes.CDLL(None).mallctl(f"arena.{_ARENAS_ALL}.purge".encode(), None, None, None,
                                  ctypes.c_size_t(0))
    elif _LIBC is not None:
        _LIBC.malloc_trim(0)


def release_thread_cache() -> None:
    """Hand the calling thread's cache of freed blocks back to their arenas (jemalloc's
    ``thread.tcache.flush``; each thread has its own, so only that thread can): a purge then
    returns the pages they were on. Nothing on another allocator."""
    if _jemalloc_here():
        ctypes.CDLL(None).mallctl(b"thread.tcache.flush", None, None, None, ctypes.c_size_t(0))


def resident_bytes() -> int | None:
    """This process's resident memory (Linux), for the passes' debug log."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return None


# CPython reads its allocator from this variable when it starts, and only then; the dynamic
# loader reads LD_PRELOAD as the process starts.
ALLOCATOR_ENV = "PYTHONMALLOC"
PRELOAD_ENV = "LD_PRELOAD"
# jemalloc's MALLCTL_ARENAS_ALL: "arena.<this>.purge" purges every arena.
_ARENAS_ALL = 4096
# The MALLOC_CONF a preloaded jemalloc gets, unless the operator set one: blocks up to 2 MiB
# (lg 21) wait in the freeing thread's cache for the next allocation of their size, instead of
# only those up to 32 KiB. A stream's buffers (socket reads of up to 256 KiB, an image's
# base64 in pieces) are then used again while their pages are still there: with jemalloc's
# default, each freed one went back to its arena, where the time-based purge takes pages from
# under a burst's buffers and the next ones fault them in again. 2,000 concurrent streams on
# a 2-core machine (scripts/bench, long jobs): 300-380 minor faults per job, a third of the
# gateway's CPU spent zeroing fresh pages (perf: clear_page_erms), final images delivered
# 3-11 s late, 0.75-1.3 GB resident at the peak; with this, bursts alone (no other burst just
# before) 20-65 faults, 0.2-2.7 s at p99 and 240-530 MB (docs/benchmarks.md: it can still fall
# behind when short of CPU). The idle passes hand the loop thread's cache back before they
# purge, so what it holds is returned after a burst all the same. (``lg_tcache_max``: jemalloc
# 5.2 and 5.3 both read it; 5.3's ``tcache_max`` is unknown to 5.2.)
JEMALLOC_CONF = "lg_tcache_max:21"
CONF_ENV = "MALLOC_CONF"


@functools.cache
def _jemalloc_here() -> bool:
    """Whether this process's allocator is jemalloc (preloaded: its ``mallctl`` is global)."""
    try:
        return hasattr(ctypes.CDLL(None), "mallctl")
    except OSError:
        return False


@functools.cache
def jemalloc_library() -> str | None:
    """The name the dynamic loader knows jemalloc by (Debian's libjemalloc2, which redis-server
    depends on: ``libjemalloc.so.2``), or None. Only a preload can load it: its thread-local
    storage must be laid out as the process starts."""
    return ctypes.util.find_library("jemalloc")


def resolve_allocator(allocator: str) -> str:
    """The allocator ``serve`` runs the gateway on: ``auto`` is jemalloc where the loader finds
    it, else pymalloc (CPython's own); the others are themselves."""
    if allocator == "auto":
        return "jemalloc" if jemalloc_library() is not None else "pymalloc"
    return allocator


def choose_allocator(allocator: str) -> bool:
    """Have the gateway run on ``allocator`` (``pymalloc``: CPython's default; ``malloc``:
    glibc's for every object; ``jemalloc``: every object from jemalloc, preloaded, configured
    with :data:`JEMALLOC_CONF` unless ``MALLOC_CONF`` is set; ``auto``: see
    :func:`resolve_allocator`), unless ``PYTHONMALLOC`` was set for this process already
    (the operator's choice stands, a preload of theirs too). Processes started from here on
    inherit it; True when this one must start again for it."""
    allocator = resolve_allocator(allocator)
    if ALLOCATOR_ENV in os.environ or allocator == "pymalloc":
        return False
    if allocator == "jemalloc":
        library = jemalloc_library()
        if _jemalloc_here() or library is None:  # preloaded already, or not on this system
            return False
        os.environ[PRELOAD_ENV] = f"{library} {os.environ.get(PRELOAD_ENV, '')}".strip()
        os.environ.setdefault(CONF_ENV, JEMALLOC_CONF)  # an operator's own stands
        allocator = "malloc"  # CPython's objects from malloc, which is jemalloc's now
    os.environ[ALLOCATOR_ENV] = allocator
    return True


# Jobs running, and jobs admitted since start (a job that came and went between two looks
# still counts as activity).
Activity = Callable[[], tuple[int, int]]


class IdleTrimmer:
    """The idle passes (see the module's docstring): after jobs ran, once none has run for
    ``idle`` seconds, and again after 3, 9 ... times as long, ``passes`` in all, while the
    process stays idle. ``collect`` and ``trim`` are a pass's two steps."""

    def __init__(self, activity: Activity, idle: float = IDLE_SECONDS, passes: int = PASSES,
                 *, collect: Callable[[], object] = collect,
                 trim: Callable[[], None] = trim) -> None:
        self.activity, self.idle, self.passes = activity, idle, passes
        self.collect, self.trim = collect, trim
        self.done = 0  # passes run since start
        self.ran = asyncio.Event()  # set (and replaced) after each pass
        self._seen: tuple[int, int] | None = None
        self._due = 0  # passes still due in this quiet spell (0: no job since the last ones)
        self._quiet_since = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.idle > 0 and self._task is None:
            self._seen = self.activity()
            self._task = asyncio.ensure_future(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def step(self, now: float, activity: tuple[int, int]) -> bool:
        """One look at the jobs (running, admitted so far) at ``now``: whether a pass is due."""
        if self._seen is None:
            self._seen = activity  # what ran before the first look is not this spell's
        if activity[0] > 0 or activity != self._seen:
            self._seen, self._due, self._quiet_since = activity, self.passes, now
            return False
        if self._due and now - self._quiet_since >= self.idle * 3 ** (self.passes - self._due):
            self._due -= 1
            return True
        return False

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.idle / 2)
            if self.step(loop.time(), self.activity()):
                await self._pass()

    async def _pass(self) -> None:
        before, started = resident_bytes(), time.perf_counter()
        # On the loop: the collector may run finalizers that touch loop objects.
        found = self.collect()
        # This thread's cache of freed blocks (jemalloc's), which the trim's thread cannot reach:
        # back to the arenas first, or the pages under them stay.
        release_thread_cache()
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self.trim)
        after = resident_bytes()
        self.done += 1
        self.ran.set()
        self.ran = asyncio.Event()
        if log.isEnabledFor(logging.DEBUG) and before is not None and after is not None:
            log.debug("idle pass %d: %s objects collected, resident %.0f -> %.0f MB in %.1f ms",
                      self.done, found, before / 2**20, after / 2**20,
                      (time.perf_counter() - started) * 1e3)
