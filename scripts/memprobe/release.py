"""An experiment, not the product: after each idle pass, what ``malloc_trim`` is to glibc for a
preloaded allocator (``MEMPROBE_RELEASE=1``): mimalloc's ``mi_collect(true)`` (its delayed
decommits otherwise wait for the next allocations, which an idle process does not make),
jemalloc's ``arena.<all>.purge``. Whichever is loaded; nothing otherwise."""

from __future__ import annotations

import asyncio
import ctypes
from typing import Any

_SELF = ctypes.CDLL(None)


def release() -> str:
    if hasattr(_SELF, "mi_collect"):
        _SELF.mi_collect(ctypes.c_bool(True))
        return "mi_collect"
    if hasattr(_SELF, "mallctl"):
        _SELF.mallctl(b"arena.4096.purge", None, None, None, ctypes.c_size_t(0))
        return "jemalloc purge"
    return "none"


def patch(memory: Any) -> None:
    original = memory.IdleTrimmer._pass

    async def _pass(self: Any) -> None:
        await original(self)
        await asyncio.to_thread(release)

    memory.IdleTrimmer._pass = _pass
