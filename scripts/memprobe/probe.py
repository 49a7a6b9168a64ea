"""What holds a gateway's memory after a burst: a debug probe run inside the gateway process.

Not part of the product: ``scripts/memprobe/sitecustomize.py`` loads it into a ``python -m proxy
serve`` started with ``scripts/memprobe`` on ``PYTHONPATH`` and ``MEMPROBE_DIR`` set (CPython
3.11 on 64-bit Linux with glibc: :mod:`pymalloc` reads the allocator's arena table through the
symbols of ``libpython``). After each idle pass (:class:`proxy.service.memory.IdleTrimmer`) it
writes ``<MEMPROBE_DIR>/<pid>/pass-N.txt``:

- pymalloc's arenas: how many, how many bytes in use, which are sparse (< 256 KB in use);
- every used block of the sparse arenas, read before the probe allocates anything that lasts,
  as ``new`` (a live object the collector's objects lead to, not there at the first pass: the
  baseline), ``old``, ``unfound`` (a live object nothing found refers to: held from C; its
  text for strings), ``dead`` (count 0, type intact: an extension type's free list holds it) or
  ``raw`` (no object: a buffer, its first words shown); per arena, and in all;
- a few new survivors' referrers (two levels);
- the process's memory by mapping (``/proc/self/smaps``), glibc's ``malloc_info`` and
  ``sys._debugmallocstats()``.

The first pass is the baseline: run it before the burst (``scripts/memprobe/run.py`` waits for
it). A pass takes 0.2-2 s of the event loop: the probe is for experiments, never production.
"""

from __future__ import annotations

import bisect
import collections
import ctypes
import gc
import io
import os
import sys
import time
from typing import Any

from pymalloc import WORDS, Arenas, classify_blocks, symbols, used_blocks

SPARSE = 256 * 1024  # an arena with fewer bytes in use than this is "sparse"


def _all_objects() -> dict[int, Any]:
    gc.unfreeze()
    try:
        objs = gc.get_objects()
    finally:
        gc.freeze()
    seen: dict[int, Any] = {id(o): o for o in objs}
    frontier = objs
    for _ in range(3):  # non-GC objects the collector's refer to, and theirs (tuples)
        nxt = []
        for o in frontier:
            for r in gc.get_referents(o):
                if id(r) not in seen:
                    seen[id(r)] = r
                    nxt.append(r)
        frontier = nxt
    return seen


def _describe(obj: Any) -> str:
    tp = type(obj)
    name = f"{tp.__module__}.{tp.__qualname__}"
    try:
        if tp in (str, bytes, int, float):
            return f"{name} {obj!r:.60}"
        if tp is tuple:
            return f"tuple[{len(obj)}] {obj!r:.80}"
        if tp is dict:
            return f"dict[{len(obj)}] keys {list(obj)[:5]!r:.80}"
        if tp is list:
            return f"list[{len(obj)}] {obj[:3]!r:.80}"
        if hasattr(obj, "__qualname__"):
            return f"{name} {getattr(obj, '__module__', '')}.{obj.__qualname__}"
        return f"{name} {repr(obj)[:80]}"
    except Exception:
        return name


class Probe:
    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.syms = symbols()
        self.baseline: Any = None  # array of the baseline's ids, sorted
        self.passes = 0

    def _text(self, name: str, write: Any) -> str:
        path = os.path.join(self.folder, name)
        write(path)
        with open(path) as f:
            return f.read()

    def _mallocstats(self, path: str) -> None:
        sys.stderr.flush()
        saved = os.dup(2)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(fd, 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(fd)
            os.close(saved)

    @staticmethod
    def _malloc_info(path: str) -> None:
        libc = ctypes.CDLL(None)
        libc.fopen.restype = ctypes.c_void_p
        libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
        libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
        libc.fclose.argtypes = [ctypes.c_void_p]
        fp = libc.fopen(path.encode(), b"w")
        libc.malloc_info(0, fp)
        libc.fclose(fp)

    @staticmethod
    def _smaps() -> str:
        kinds: collections.Counter[str] = collections.Counter()
        big: list[tuple[int, str]] = []
        name = ""
        size = 0
        with open("/proc/self/smaps") as f:
            for line in f:
                head = line.split()
                if "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
                    lo, hi = (int(x, 16) for x in head[0].split("-"))
                    size = hi - lo
                    name = head[5] if len(head) > 5 else "[anon]"
                elif head[0] == "Rss:":
                    rss = int(head[1])
                    key = name if name.startswith("[") else os.path.basename(name)
                    kinds["[anon]" if key == "[anon]" else key] += rss
                    if rss > 2048:
                        big.append((rss, f"{key} size {size >> 10} KB"))
        lines = [f"  {kb / 1024:8.1f} MB  {key}" for key, kb in kinds.most_common(15)]
        lines += ["  big mappings:"] + [f"    {kb / 1024:7.1f} MB {what}" for kb, what in
                                        sorted(big, reverse=True)[:12]]
        return "\n".join(lines)

    def run(self) -> None:
        import array
        self.passes += 1
        started = time.perf_counter()
        # First what pymalloc holds, before the probe allocates anything that lasts.
        flat = array.array("Q")
        arenas = Arenas(self.syms)
        used = arenas.used_bytes()
        sparse = [i for _, i, _, _ in arenas.live if used.get(i, 0) < SPARSE]
        mismatches = used_blocks(arenas, sparse, flat) if self.baseline is not None else 0
        objs = _all_objects()
        out = io.StringIO()
        out.write(f"objects found: {len(objs)}; arenas live: {len(arenas.live)}; used bytes "
                  f"{sum(used.values()) / 2**20:.1f} MB in {len(arenas.live)} MiB; sparse "
                  f"(< {SPARSE >> 10} KB used): {len(sparse)}\n")
        if self.baseline is None:
            self.baseline = array.array("Q", sorted(objs))
            out.write("baseline taken\n")
        else:
            self._analyse(out, flat, objs, mismatches)
        del objs, flat
        self._texts(out)
        self._write(out, started)

    def _analyse(self, out: io.StringIO, flat: Any, objs: dict[int, Any],
                 mismatches: int) -> None:
        base = self.baseline

        def is_new(addr: int) -> bool:
            k = bisect.bisect_left(base, addr)
            return not (k < len(base) and base[k] == addr)

        types = {id(o): o for o in objs.values() if isinstance(o, type)}
        blocks: collections.Counter[str] = collections.Counter()
        per: dict[int, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        step = 3 + WORDS
        raws: list[str] = []
        sparse_new: list[Any] = []
        for i in range(0, len(flat), step):
            one = flat[i:i + step]
            kinds, raw, found = classify_blocks(one[1:], types, objs, is_new)
            blocks.update(kinds)
            per[one[0]].update(kinds)
            if raw and len(raws) < 120:
                raws += raw
            sparse_new += found
        blocks["pools whose free list did not match"] += mismatches
        out.write("\nused blocks in the sparse arenas (block size, kind):\n")
        for key, count in blocks.most_common(90):
            out.write(f"  {count:6d} {key}\n")
        out.write("per sparse arena (blocks: new objects, old objects, dead objects of free "
                  "lists, raw buffers; the new by type):\n")
        for index, kinds in sorted(per.items()):
            groups: collections.Counter[str] = collections.Counter()
            newtypes: collections.Counter[str] = collections.Counter()
            for key, n in kinds.items():
                parts = key.split()
                groups[parts[1]] += n
                if parts[1] in ("new", "dead", "unfound"):
                    newtypes[parts[1][0] + ":" + parts[2].rsplit(".", 1)[-1]] += n
            out.write(f"  {index:4d}: {dict(groups)} {dict(newtypes.most_common(8))}\n")
        out.write("raw samples (first words: types of the objects they point to):\n")
        out.write("\n".join(raws[:120]) + "\n")
        self._samples(out, sparse_new, objs)

    def _texts(self, out: io.StringIO) -> None:
        with open("/proc/self/smaps_rollup") as f:
            out.write(f.read())
        out.write(self._smaps() + "\n")
        stats = self._text(f"mallocstats-{self.passes}.txt", self._mallocstats)
        for line in stats.splitlines():
            if line.startswith("#") or "arenas" in line or line.startswith("Total"):
                out.write(line + "\n")
        info = self._text(f"malloc_info-{self.passes}.xml", self._malloc_info)
        out.write("malloc_info totals: " + " ".join(
            ln.strip() for ln in info.splitlines()[-8:]) + "\n")

    def _samples(self, out: io.StringIO, sparse_new: list[Any], objs: dict[int, Any]) -> None:
        by_type: dict[str, list[Any]] = collections.defaultdict(list)
        for obj in sparse_new:
            target = obj[1] if isinstance(obj, tuple) and len(obj) == 2 and \
                obj[0] == "buffer" else obj
            key = f"{type(target).__module__}.{type(target).__qualname__}"
            if len(by_type[key]) < 3:
                by_type[key].append(target)
        wanted = {id(o) for samples in by_type.values() for o in samples}
        # one pass over every object for the referrers of the samples and of their referrers
        refs: dict[int, list[Any]] = collections.defaultdict(list)
        for _ in range(2):
            for obj in objs.values():
                if type(obj).__name__ == "frame" or not gc.is_tracked(obj):
                    continue
                for r in gc.get_referents(obj):
                    if id(r) in wanted and len(refs[id(r)]) < 6:
                        refs[id(r)].append(obj)
            wanted = {id(r) for lst in refs.values() for r in lst} - set(refs)
        out.write("\nsamples with referrers (two levels):\n")
        for key, samples in sorted(by_type.items(), key=lambda kv: -len(kv[1])):
            for obj in samples:
                out.write(f"  [{key}] {_describe(obj)}\n")
                for ref in refs.get(id(obj), []):
                    out.write(f"    <- {_describe(ref)}\n")
                    for ref2 in refs.get(id(ref), [])[:3]:
                        out.write(f"        <- {_describe(ref2)}\n")
        del refs, wanted

    def _write(self, out: io.StringIO, started: float) -> None:
        out.write(f"probe took {time.perf_counter() - started:.2f} s\n")
        with open(os.path.join(self.folder, f"pass-{self.passes}.txt"), "w") as f:
            f.write(out.getvalue())


def _note(folder: str, name: str, text: str) -> None:
    with open(os.path.join(folder, name), "a") as f:
        f.write(text)


def _run_logged(probe: Probe, folder: str, done: int) -> None:
    """One probe after idle pass ``done``; its failure written to error.txt, not raised."""
    import traceback
    _note(folder, "log.txt", f"{time.time():.1f} pass {done}\n")
    try:
        probe.run()
    except Exception:  # a debug probe must not take the gateway down
        _note(folder, "error.txt", traceback.format_exc())


def install(folder: str | None, shuffled: bool, released: bool = False) -> None:
    """Once proxy.service.memory is imported (polled: sitecustomize runs before the gateway's
    own modules are importable): the free-list shuffle after each idle pass if ``shuffled``
    (:mod:`shuffle`), then the probe if ``folder``."""
    import threading

    def wait() -> None:
        while "proxy.service.memory" not in sys.modules:
            time.sleep(0.05)
        time.sleep(0.2)
        memory = sys.modules["proxy.service.memory"]
        if shuffled:
            import shuffle
            shuffle.patch(memory)
        if released:
            import release
            release.patch(memory)
        if folder is None:
            return
        probe = Probe(folder)
        original = memory.IdleTrimmer._pass

        async def _pass(self: Any) -> None:
            await original(self)
            _run_logged(probe, folder, self.done)

        memory.IdleTrimmer._pass = _pass
        _note(folder, "log.txt", f"{time.time():.1f} installed\n")

    threading.Thread(target=wait, daemon=True).start()
