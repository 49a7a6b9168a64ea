"""Giving memory back after a burst.

An image gateway moves megabyte-sized strings (base64 images) through short-lived buffers. glibc's
allocator raises its mmap threshold as big blocks are freed, so after a burst those blocks come
from the heap and the process keeps hundreds of megabytes it no longer uses. A fixed threshold
keeps every block of 2 MiB or more (whole multi-megabyte answers) in its own mapping, returned to
the system the moment it is freed; smaller ones (a stream's ~1.5 MB final image and its copies)
come from the heap, where freed blocks are reused without page faults (with the threshold at
256 KiB each such buffer was a fresh mapping: ~2,100 page faults and 10 ms of CPU per streamed
job against ~470 and 7 ms now, scripts/bench --quick --only long). Once the gateway has had no
job for a few seconds, ``malloc_trim`` hands back what the heap still holds. Elsewhere than
glibc both are skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
from collections.abc import Callable

log = logging.getLogger("proxy.memory")

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 2 * 1024 * 1024
TRIM_THRESHOLD = 1024 * 1024
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
            with contextlib.suppress(Exception):
                await asyncio.to_thread(trim)
