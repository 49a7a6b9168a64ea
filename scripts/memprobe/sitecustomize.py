"""Loads the memory probe (probe.py beside it) into a gateway (``python -m proxy serve``) when
``MEMPROBE_DIR`` is set; any other process started with this PYTHONPATH is left alone.

Experiments: ``MEMPROBE_PRELOAD=/path/to/libX.so``: the gateway starts again with that
allocator preloaded and ``PYTHONMALLOC=malloc`` (every object from it), nothing else changed.
``MEMPROBE_SHUFFLE=1``: extension types' free lists moved after each idle pass (shuffle.py).
``MEMPROBE_RELEASE=1``: the preloaded allocator's free memory released after each idle pass
(release.py).
"""

import os
import sys

_GATEWAY = "proxy" in sys.orig_argv and "serve" in sys.orig_argv

if _GATEWAY and os.environ.get("MEMPROBE_PRELOAD"):
    env = dict(os.environ)
    env["LD_PRELOAD"] = env.pop("MEMPROBE_PRELOAD")
    env["PYTHONMALLOC"] = "malloc"
    os.execve(sys.executable, sys.orig_argv, env)

_WANTED = ("MEMPROBE_DIR", "MEMPROBE_SHUFFLE", "MEMPROBE_RELEASE")
if _GATEWAY and any(os.environ.get(name) for name in _WANTED):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import faulthandler

    import probe

    folder = None
    if os.environ.get("MEMPROBE_DIR"):
        folder = os.path.join(os.environ["MEMPROBE_DIR"], str(os.getpid()))
        os.makedirs(folder, exist_ok=True)
        faulthandler.enable(open(os.path.join(folder, "fault.txt"), "w"))
    probe.install(folder, bool(os.environ.get("MEMPROBE_SHUFFLE")),
                  bool(os.environ.get("MEMPROBE_RELEASE")))
