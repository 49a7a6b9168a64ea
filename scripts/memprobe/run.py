"""Run scripts/bench.py's long-jobs section on the gateway alone (``MEMPROBE_RELAY=1``: the bare
relay too, as the bench does), with a pause after each server's warm-up (``MEMPROBE_PAUSE``
seconds, default 10; 0 for the bench's own timing) so that the probe's baseline (the first idle
pass) comes before the burst. Arguments go to bench.py. Debugging, not a benchmark of record::

    MEMPROBE_DIR=/tmp/probe PYTHONPATH=$PWD:$PWD/scripts/memprobe \\
        .venv/bin/python scripts/memprobe/run.py --only long --long-bursts sse:2000

Without ``MEMPROBE_DIR`` no probe is loaded; ``MEMPROBE_PRELOAD=/usr/lib/.../libmimalloc.so.2``
runs each gateway on that allocator (``sitecustomize.py``).
"""

from __future__ import annotations

import asyncio
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import bench  # noqa: E402
from benchlib import longjobs  # noqa: E402

PAUSE_S = float(os.environ.get("MEMPROBE_PAUSE", "10"))
if not os.environ.get("MEMPROBE_RELAY"):
    longjobs.PATHS = ("gateway",)
_preflight = longjobs.preflight


async def preflight(urls: dict[str, str]) -> None:
    await _preflight(urls)
    await asyncio.sleep(PAUSE_S)


longjobs.preflight = preflight  # type: ignore[assignment]

if __name__ == "__main__":
    sys.argv[0] = bench.SCRIPT
    bench.main()
