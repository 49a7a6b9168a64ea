"""pymalloc's arenas read from inside the process (CPython 3.11, 64-bit Linux): the arena table
through ``libpython``'s symbols (``nm``), pools through their headers, and what each used block
of an arena holds: a live object (by the type pointer where its header says), a dead one (count
0, type intact: an extension type's free list keeps it), or a raw buffer. For ``probe.py``.

Reading process memory with ctypes: nothing here makes an object from an address it has not
seen the collector hand out (:func:`as_object` only names the type).
"""

from __future__ import annotations

import collections
import ctypes
from typing import Any

ARENA = 1 << 20
POOL = 1 << 14
LIB = "libpython3.11.so"
SYMBOLS = {"arenas": 0, "maxarenas": 0}
MANAGED_DICT = 1 << 4
HAVE_GC = 1 << 14


def _lib_base() -> tuple[int, str]:
    with open("/proc/self/maps") as maps:
        for line in maps:
            parts = line.split()
            if len(parts) >= 6 and LIB in parts[5] and int(parts[2], 16) == 0:
                return int(parts[0].split("-")[0], 16), parts[5]
    raise RuntimeError("libpython not mapped")


def symbols() -> dict[str, int]:
    import subprocess
    base, path = _lib_base()
    out = subprocess.run(["nm", path], capture_output=True, text=True, check=True).stdout
    found = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] in SYMBOLS:
            found[parts[2]] = base + int(parts[0], 16)
    return found


class Arenas:
    """pymalloc's arena table (struct arena_object, 48 bytes each, 3.11)."""

    def __init__(self, syms: dict[str, int]) -> None:
        table = ctypes.c_void_p.from_address(syms["arenas"]).value or 0
        count = ctypes.c_uint.from_address(syms["maxarenas"]).value
        self.live: list[tuple[int, int, int, int]] = []  # address, index, used pools, total
        for i in range(count):
            rec = table + 48 * i
            address = ctypes.c_size_t.from_address(rec).value
            if address:
                nfree = ctypes.c_uint.from_address(rec + 16).value
                ntotal = ctypes.c_uint.from_address(rec + 20).value
                self.live.append((address, i, ntotal - nfree, ntotal))
        self.live.sort()
        self.starts = [a[0] for a in self.live]

    def used_bytes(self) -> dict[int, int]:
        """Bytes in used blocks per arena index (pool headers: count, szidx)."""
        out: dict[int, int] = {}
        for address, index, _, _ in self.live:
            first = (address + POOL - 1) & ~(POOL - 1)
            total = 0
            for pool in range(first, address + ARENA - POOL + 1, POOL):
                count = ctypes.c_uint.from_address(pool).value
                if ctypes.c_uint.from_address(pool + 32).value != index:
                    continue
                szidx = ctypes.c_uint.from_address(pool + 36).value
                if count and szidx < 32:
                    total += count * (szidx + 1) * 16
            out[index] = total
        return out


WORDS = 8  # words of each used block kept for its classification


def _pool_blocks(pool: int, out: Any, index: int) -> int:
    """Append a used pool's used blocks to ``out`` as (address, size, its first WORDS words);
    how many (pool header, 3.11: ref.count at 0, freeblock at 8, szidx at 36, nextoffset at
    40; the header is 48 bytes)."""
    data = memoryview(ctypes.string_at(pool, POOL)).cast("Q")
    size = (data[4] >> 32) + 1 << 4
    nextoffset = data[5] & 0xFFFFFFFF
    free = set()
    blk = data[1]
    while blk and len(free) < 2048:
        free.add(blk)
        blk = data[(blk - pool) >> 3]
    n = 0
    for off in range(48, nextoffset, size):
        if pool + off in free:
            continue
        words = data[off >> 3:(off >> 3) + min(WORDS, size >> 3)].tolist()
        out.append(index)
        out.append(pool + off)
        out.append(size)
        out.extend(words + [0] * (WORDS - len(words)))
        n += 1
    return n


def _fits(tp: type, offset: int, size: int) -> bool:
    """Whether an object of ``tp`` can start ``offset`` bytes into a block of ``size``: the
    pre-headers its type has (GC head 16, managed dict 16 more) and its size class."""
    flags = tp.__flags__
    pre = (16 if flags & HAVE_GC else 0) + (16 if flags & MANAGED_DICT else 0)
    if offset != pre:
        return False
    if tp.__itemsize__ or issubclass(tp, (str, int)):  # variable-sized
        return True
    return (pre + tp.__basicsize__ + 15) & ~15 == size


def as_object(block: int, words: list[int], types: dict[int, Any], size: int,
               known: dict[int, Any]) -> tuple[type | None, Any]:
    """The type of the object starting in a block (plain, behind a GC head, or behind the
    managed dict's pre-header too) and the object if the enumeration found it; (None, None)."""
    for k in (0, 2, 4):
        refcnt, tp = words[k], words[k + 1]
        if tp in types and 0 < refcnt < 1 << 32 and _fits(types[tp], 8 * k, size):
            return types[tp], known.get(block + 8 * k)
    return None, None


def _hint(word: int, known: dict[int, Any]) -> str:
    obj = known.get(word)
    if obj is None:
        return f"{word:x}"
    if isinstance(obj, type):
        return f"<class {obj.__qualname__}>"
    return type(obj).__name__


def used_blocks(arenas: Any, indexes: list[int], out: Any) -> int:
    """Append the arenas' used blocks to the flat array ``out`` as (arena index, address,
    size, WORDS words); how many pools' free lists did not match their counts. Read before
    anything else is allocated: ``out`` is the only object that lasts."""
    mismatches = 0
    for index in indexes:
        address = next(a for a, i, _, _ in arenas.live if i == index)
        first = (address + POOL - 1) & ~(POOL - 1)
        for pool in range(first, address + ARENA - POOL + 1, POOL):
            if ctypes.c_uint.from_address(pool + 32).value != index or \
                    not ctypes.c_uint.from_address(pool).value:
                continue
            n = _pool_blocks(pool, out, index)
            mismatches += n != ctypes.c_uint.from_address(pool).value
    return mismatches


def classify_blocks(blocks: Any, types: dict[int, Any], known: dict[int, Any],
                    is_new: Any) -> tuple[collections.Counter[str], list[str], list[Any]]:
    """What used blocks are: objects by type, or raw buffers (a hex sample each)."""
    kinds: collections.Counter[str] = collections.Counter()
    raw: list[str] = []
    found: list[Any] = []
    step = 2 + WORDS
    for i in range(0, len(blocks), step):
        block, size = blocks[i], blocks[i + 1]
        # read again: what was in use at the snapshot may be gone by now
        words = memoryview(ctypes.string_at(block, 8 * min(WORDS, size >> 3))).cast("Q").tolist()
        words += [0] * (WORDS - len(words))
        tp, obj = as_object(block, words, types, size, known)
        if tp is not None:
            if obj is None:
                kinds[f"{size:3d} unfound {tp.__module__}.{tp.__qualname__}"] += 1
                if tp is str:
                    base = block + (16 if tp.__flags__ & HAVE_GC else 0)
                    state = ctypes.c_uint.from_address(base + 32).value
                    length = ctypes.c_ssize_t.from_address(base + 16).value
                    text = ctypes.string_at(base + 48, min(length, size - 48)) \
                        if state & 64 else b"(not ascii)"
                    kinds[f"str: interned={state & 3} refcnt={words[0]}: {text!r:.60}"] += 1
                continue
            new = is_new(id(obj))
            kinds[f"{size:3d} {'new' if new else 'old'} {tp.__module__}.{tp.__qualname__}"] += 1
            if new:
                found.append(obj)
            continue
        dead = next((types[words[k + 1]] for k in (0, 2, 4)
                     if words[k] == 0 and words[k + 1] in types
                     and _fits(types[words[k + 1]], 8 * k, size)), None)
        if dead is not None:  # refcount 0, type intact: an extension type's free list
            kinds[f"{size:3d} dead {dead.__module__}.{dead.__qualname__}"] += 1
            continue
        kinds[f"{size:3d} raw"] += 1
        if len(raw) < 40:
            hint = ",".join(_hint(w, known) for w in words[:min(WORDS, size // 8)])
            text = b"".join(w.to_bytes(8, "little") for w in words)
            raw.append(f"    {size:3d} @{block:x}: {hint}  {text!r:.140}")
    return kinds, raw, found


