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

The allocator.

An image gateway moves megabyte-sized strings (base64 images) through short-lived buffers. glibc's
allocator raises its mmap threshold as big blocks are freed, so after a burst those blocks come
from the heap and the process keeps hundreds of megabytes it no longer uses. A fixed threshold
keeps every block of 2 MiB or more (whole multi-megabyte answers) in its own mapping, returned to
the system the moment it is freed; smaller ones (a stream's ~1.5 MB final image and its copies)
come from the heap, where freed blocks are reused without page faults (with the threshold at
256 KiB each such buffer was a fresh mapping: ~2,100 page faults and 10 ms of CPU per streamed
job against ~470 and 7 ms now, scripts/bench --quick --only long). The heap's free top is kept
up to 8 MiB while jobs run: a 16 MB answer passed through in ~256 KiB pieces frees and takes
back blocks at the top all the time, and with 1 MiB each trim was paid back in page faults on
the next piece (~2,600 faults and ~8 ms of system CPU per answer, none now). Once the gateway
has had no job for a few seconds, the collector collects what the burst left in reference
cycles and ``malloc_trim`` hands back what the heap still holds. Elsewhere than glibc the
allocator's part is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import gc
import logging
from collections.abc import Callable

log = logging.getLogger("proxy.memory")

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 2 * 1024 * 1024
TRIM_THRESHOLD = 8 * 1024 * 1024
# How long the gateway must have been without a job before the heap is trimmed.
IDLE_SECONDS = 5.0


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


def release_collector() -> None:
    """Let the collector see the frozen objects again (a gateway that stops, in a process that
    may go on: tests, embedding)."""
    gc.unfreeze()


def tune_allocator() -> bool:
    """Fix glibc's mmap and trim thresholds for this process; False where there is no glibc."""
    if _LIBC is None:
        return False
    ok = bool(_LIBC.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    return bool(_LIBC.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)) and ok


def trim() -> None:
    """Return the heap's free memory to the system."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


async def trim_when_idle(running: Callable[[], int], every: float = IDLE_SECONDS) -> None:
    """Forever: after jobs ran, once none has run for ``every`` seconds, trim the heap (once
    per quiet spell)."""
    dirty = False
    while True:
        await asyncio.sleep(every)
        busy = running() > 0
        if busy:
            dirty = True
        elif dirty:
            dirty = False
            # First the garbage in reference cycles a burst left behind (finished responses,
            # their tasks and buffers): an idle process makes too few objects for the young
            # collection to come round, so without this it would hold them until the next
            # burst. A few milliseconds, when nothing runs.
            gc.collect()
            with contextlib.suppress(Exception):
                await asyncio.to_thread(trim)
