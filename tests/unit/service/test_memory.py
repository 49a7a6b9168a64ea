"""Memory back after a burst: the idle passes (collect, then trim) come once the gateway has
had no job for ``memory.idle_seconds``, and again at 3, 9 ... times that, ``memory.idle_passes``
in all per quiet spell; never while jobs run, nor before any job ran. A pass also empties the
type attribute cache, which holds the names looked up. Without glibc the trim is a no-op and the
rest still works."""

from __future__ import annotations

import asyncio
import os
import platform
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

from proxy.auth import new_key
from proxy.service import memory
from proxy.service.gateway import Gateway
from proxy.service.images import ImageService
from proxy.service.memory import IdleTrimmer
from proxy.service.replies import Order
from tests.support.gateways import gateway_config

TOKEN, TOKEN_HASH = new_key()
IDLE = 10.0


def passes_at(trimmer: IdleTrimmer, looks: list[tuple[float, tuple[int, int]]]) -> list[float]:
    """The moments, among ``looks`` (time, (running, admitted so far)), a pass is due."""
    return [now for now, activity in looks if trimmer.step(now, activity)]


def idle_from(start: float, activity: tuple[int, int], until: float) -> list[
        tuple[float, tuple[int, int]]]:
    return [(start + t, activity) for t in range(0, int(until - start) + 1)]


def test_no_pass_before_any_job() -> None:
    trimmer = IdleTrimmer(lambda: (0, 0), IDLE, 4)
    assert passes_at(trimmer, idle_from(0, (0, 0), 1000)) == []


def test_passes_after_a_burst_at_1_3_9_27_times_the_idle_time_then_none() -> None:
    trimmer = IdleTrimmer(lambda: (0, 0), IDLE, 4)
    looks = [(0.0, (0, 0)), (1.0, (3, 3)), (5.0, (2, 3))]  # a burst of three jobs
    looks += idle_from(6, (0, 3), 1000)  # they ended just before 6
    assert passes_at(trimmer, looks) == [16, 36, 96, 276]


def test_no_pass_while_jobs_run_and_a_new_spell_after_new_jobs() -> None:
    trimmer = IdleTrimmer(lambda: (0, 0), IDLE, 2)
    looks = [(0.0, (0, 0)), *idle_from(1, (1, 1), 100)]  # one job running for 100 s
    looks += idle_from(101, (0, 1), 200)
    looks += [(201.0, (1, 2)), *idle_from(202, (0, 2), 300)]
    assert passes_at(trimmer, looks) == [111, 131, 212, 232]


def test_a_job_that_came_and_went_between_two_looks_counts() -> None:
    trimmer = IdleTrimmer(lambda: (0, 0), IDLE, 1)
    looks = [(0.0, (0, 5)), *idle_from(1, (0, 6), 100)]  # never seen running
    assert passes_at(trimmer, looks) == [11]


async def test_the_gateway_collects_and_trims_once_idle_after_a_job(tmp_path: Path) -> None:
    gateway = Gateway.from_config(gateway_config(f"""
data_dir: {tmp_path}
keys: [{{name: k, key_sha256: {TOKEN_HASH}}}]
models: [{{name: local, provider: local}}]
memory: {{idle_seconds: 0.05, idle_passes: 2}}
"""))
    await gateway.start()
    steps: list[str] = []
    try:
        trimmer = gateway.trimmer
        assert trimmer is not None
        collect = trimmer.collect

        def counted_collect() -> object:
            steps.append("collect")
            return collect()

        trimmer.collect = counted_collect
        trimmer.trim = lambda: steps.append("trim")
        key = gateway.keys.authenticate(TOKEN)
        assert key is not None
        reply = await ImageService(gateway).submit(key, Order(job_id=str(uuid.uuid4()), fields={
            "model": "local", "prompt": "p", "size": "64x64", "quality": "low"}))
        assert (await reply.result())["data"]
        for _ in range(2):
            await asyncio.wait_for(trimmer.ran.wait(), 30)
        assert trimmer.done == 2
        assert steps == ["collect", "trim", "collect", "trim"]
    finally:
        await gateway.aclose()


def test_idle_seconds_0_turns_the_passes_off(tmp_path: Path) -> None:
    config = gateway_config(f"data_dir: {tmp_path}\nmodels: [{{name: local, provider: local}}]\n"
                            "memory: {idle_seconds: 0}\n")
    assert config.memory.idle_seconds == 0
    trimmer = IdleTrimmer(lambda: (0, 0), config.memory.idle_seconds)
    trimmer.start()  # outside a loop: would fail if it tried to start a task
    assert trimmer._task is None


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                    reason="the allocator settings are glibc's")
def test_on_glibc_the_allocator_is_tuned_and_trimmed() -> None:
    assert memory.can_trim()
    assert memory.tune_allocator(memory.MMAP_THRESHOLD, memory.TRIM_THRESHOLD)
    assert memory.tune_allocator(None, None)  # nothing asked: nothing to refuse
    memory.trim()


def test_without_glibc_the_allocator_parts_are_no_ops(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_LIBC", None)
    monkeypatch.setattr(memory, "_jemalloc_here", lambda: False)
    assert not memory.can_trim()
    assert memory.tune_allocator() is False
    memory.trim()  # nothing to call, nothing raised


async def test_a_gateway_without_glibc_still_starts_and_passes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_LIBC", None)
    monkeypatch.setattr(memory, "_jemalloc_here", lambda: False)
    gateway = Gateway.from_config(gateway_config(f"""
data_dir: {tmp_path}
models: [{{name: local, provider: local}}]
memory: {{idle_seconds: 0.05, idle_passes: 1}}
"""))
    await gateway.start()
    try:
        trimmer = gateway.trimmer
        assert trimmer is not None
        gateway.capacity.acquire("local", None).release()  # a job came and went
        await asyncio.wait_for(trimmer.ran.wait(), 30)
        assert trimmer.done == 1
    finally:
        await gateway.aclose()


def test_a_pass_lets_go_of_the_names_the_type_attribute_cache_holds() -> None:
    class Looked:
        pass

    name = "".join(["built_at_", "run_time"])  # not interned: only its users hold it
    before = sys.getrefcount(name)
    assert getattr(Looked, name, None) is None  # the lookup is cached with its name
    assert sys.getrefcount(name) > before
    memory.collect()
    assert sys.getrefcount(name) == before


# Run on jemalloc (as ``serve`` starts the gateway with ``memory.allocator: jemalloc``): ~100 MB
# of small objects (a burst's) made and freed, then the resident memory before and after
# ``memory.trim()``.
_FREED_THEN_TRIMMED = """
import os
from proxy.service import memory
assert memory.can_trim()
blocks = [b"%200d" % n for n in range(400_000)]
del blocks
before = memory.resident_bytes()
memory.trim()
print(before - memory.resident_bytes())
"""


@pytest.mark.skipif(memory.jemalloc_library() is None, reason="needs Debian's libjemalloc2")
def test_on_jemalloc_a_trim_purges_what_it_holds_free() -> None:
    env = {**os.environ, "LD_PRELOAD": str(memory.jemalloc_library()), "PYTHONMALLOC": "malloc"}
    done = subprocess.run([sys.executable, "-c", _FREED_THEN_TRIMMED], env=env, check=True,
                          capture_output=True, text=True, timeout=60)
    # jemalloc keeps freed pages until its decay timer runs, which only allocations drive:
    # without the purge an idle process would hold all of them (a trim of glibc's heap, not
    # in use here, returns nothing).
    assert int(done.stdout) > 64 * 2**20


# On jemalloc: the blocks a thread freed wait in that thread's cache, out of the purge's reach,
# until that thread hands them back (jemalloc's own counter of cached bytes, all arenas).
_CACHE_RELEASED = """
import ctypes
from proxy.service import memory
jemalloc = ctypes.CDLL(None)

def cached() -> int:
    epoch, value, size = ctypes.c_uint64(1), ctypes.c_size_t(0), ctypes.c_size_t(8)
    jemalloc.mallctl(b"epoch", None, None, ctypes.byref(epoch), ctypes.c_size_t(8))
    assert jemalloc.mallctl(b"stats.arenas.4096.tcache_bytes", ctypes.byref(value),
                            ctypes.byref(size), None, ctypes.c_size_t(0)) == 0
    return value.value

blocks = [b"x" * (16 + n % 3000) for n in range(20_000)]
del blocks
print(cached())
memory.release_thread_cache()
print(cached())
"""


@pytest.mark.skipif(memory.jemalloc_library() is None, reason="needs Debian's libjemalloc2")
def test_on_jemalloc_a_pass_hands_back_the_loops_cached_blocks() -> None:
    env = {**os.environ, "LD_PRELOAD": str(memory.jemalloc_library()), "PYTHONMALLOC": "malloc"}
    done = subprocess.run([sys.executable, "-c", _CACHE_RELEASED], env=env, check=True,
                          capture_output=True, text=True, timeout=60)
    before, after = (int(line) for line in done.stdout.split())
    assert before > 64 * 1024 and after == 0


async def test_a_pass_releases_the_loop_threads_cache_before_the_trim(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, bool]] = []
    loop_thread = threading.get_ident()
    monkeypatch.setattr(memory, "release_thread_cache",
                        lambda: calls.append(("release", threading.get_ident() == loop_thread)))
    trimmer = IdleTrimmer(lambda: (0, 0), collect=lambda: 0,
                          trim=lambda: calls.append(("trim", False)))
    await trimmer._pass()
    assert calls == [("release", True), ("trim", False)]


# On jemalloc as ``serve`` configures it (JEMALLOC_CONF): a freed block of up to 2 MiB (a socket
# read's, an image piece's) waits in the thread's cache for the next one of its size, and the
# pass's release still hands it back before the purge.
_LARGE_CACHED = """
import ctypes
from proxy.service import memory
jemalloc = ctypes.CDLL(None)

def read(name: bytes) -> int:
    epoch, value, size = ctypes.c_uint64(1), ctypes.c_size_t(0), ctypes.c_size_t(8)
    jemalloc.mallctl(b"epoch", None, None, ctypes.byref(epoch), ctypes.c_size_t(8))
    assert jemalloc.mallctl(name, ctypes.byref(value), ctypes.byref(size), None,
                            ctypes.c_size_t(0)) == 0
    return value.value

memory.release_thread_cache()
pieces = [bytes(1_500_000 + n) for n in range(4)]
del pieces
print(read(b"opt.tcache_max"), read(b"stats.arenas.4096.tcache_bytes"))
memory.release_thread_cache()
print(read(b"stats.arenas.4096.tcache_bytes"))
"""


@pytest.mark.skipif(memory.jemalloc_library() is None, reason="needs Debian's libjemalloc2")
def test_on_jemalloc_freed_image_sized_blocks_wait_in_the_cache_until_a_pass() -> None:
    env = {**os.environ, "LD_PRELOAD": str(memory.jemalloc_library()), "PYTHONMALLOC": "malloc",
           "MALLOC_CONF": memory.JEMALLOC_CONF}
    done = subprocess.run([sys.executable, "-c", _LARGE_CACHED], env=env, check=True,
                          capture_output=True, text=True, timeout=60)
    first, second = done.stdout.splitlines()
    tcache_max, cached = (int(value) for value in first.split())
    assert tcache_max == 2 * 2**20
    assert cached >= 4 * 1_500_000
    assert int(second) < 64 * 1024  # the large blocks are back (a few small ones freed since)
    assert "Invalid conf" not in done.stderr


def test_jemalloc_is_configured_unless_the_operator_did(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (memory.ALLOCATOR_ENV, memory.PRELOAD_ENV, memory.CONF_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(memory, "_jemalloc_here", lambda: False)
    monkeypatch.setattr(memory, "jemalloc_library", lambda: "libjemalloc.so.2")
    assert memory.choose_allocator("jemalloc")
    assert os.environ[memory.CONF_ENV] == memory.JEMALLOC_CONF
    for name in (memory.ALLOCATOR_ENV, memory.PRELOAD_ENV):
        monkeypatch.delenv(name)
    monkeypatch.setenv(memory.CONF_ENV, "narenas:2")
    assert memory.choose_allocator("jemalloc")
    assert os.environ[memory.CONF_ENV] == "narenas:2"
    monkeypatch.delenv(memory.CONF_ENV)
    monkeypatch.delenv(memory.ALLOCATOR_ENV)
    monkeypatch.delenv(memory.PRELOAD_ENV)
    assert memory.choose_allocator("malloc")
    assert memory.CONF_ENV not in os.environ  # glibc's malloc: nothing of jemalloc's
