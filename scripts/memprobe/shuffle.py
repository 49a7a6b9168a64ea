"""An experiment, not the product: move the objects C extension types keep on their free lists
out of the arenas a burst left sparse (``MEMPROBE_SHUFFLE=1``, after each idle pass).

Such a list holds, for reuse, the first of the burst's objects freed once it had room (~250 each
of uvloop's ``Handle`` and ``TimerHandle``, ``_asyncio``'s ``FutureIter``, aiohttp's
``RawResponseMessage``; multidict's), one to a few dozen in each of ~40 pymalloc arenas that
nothing else may hold. For each type: make ``N`` objects (the list's, then new ones), ``N``
more (new: pymalloc fills one pool before the next, so they sit in a few pools), then free the
second batch first (it fills the list again) and the first last (the list is full: freed for
good, and their arenas with them if nothing else is there).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

N = 300  # more than any of these lists holds (250, 255, ...)


def _noop() -> None:
    pass


def _makers(loop: asyncio.AbstractEventLoop) -> dict[str, Callable[[], Any]]:
    makers: dict[str, Callable[[], Any]] = {}
    fut = loop.create_future()
    makers["FutureIter"] = fut.__await__
    makers["TimerHandle"] = lambda: loop.call_later(3600, _noop)
    makers["Handle"] = lambda: loop.call_soon(_noop)
    try:
        from aiohttp._http_parser import RawResponseMessage
        from multidict import CIMultiDict, CIMultiDictProxy

        def raw() -> Any:
            return RawResponseMessage((1, 1), 200, "OK", CIMultiDictProxy(CIMultiDict()), (),
                                      False, None, False, False)

        makers["RawResponseMessage"] = raw
        makers["CIMultiDict"] = lambda: CIMultiDictProxy(CIMultiDict())
    except ImportError:
        pass
    return makers


async def shuffle() -> dict[str, int]:
    loop = asyncio.get_running_loop()
    held: dict[str, tuple[list[Any], list[Any]]] = {}
    for name, make in _makers(loop).items():
        first = [make() for _ in range(N)]
        second = [make() for _ in range(N)]
        held[name] = (first, second)
    for first, second in held.values():
        for obj in first + second:
            cancel = getattr(obj, "cancel", None)
            if cancel is not None:
                cancel()
    fut_sleep = asyncio.sleep(0)
    await fut_sleep  # the loop drops the cancelled handles it still held
    counts = {}
    for name, (first, second) in held.items():
        second.clear()
        first.clear()
        counts[name] = N
    return counts


def patch(memory: Any) -> None:
    """Run :func:`shuffle` after each idle pass of :mod:`proxy.service.memory`."""
    original = memory.IdleTrimmer._pass

    async def _pass(self: Any) -> None:
        await original(self)
        await shuffle()

    memory.IdleTrimmer._pass = _pass
