"""``memory.allocator``: ``serve`` runs the gateway on the allocator the configuration names
(CPython takes it only as it starts, so the process starts again as itself; jemalloc is
preloaded), unless ``PYTHONMALLOC`` was set for it. ``auto`` (the default) is jemalloc where
the system has it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from proxy.service.memory import JEMALLOC_CONF, jemalloc_library
from tests.support.processes import wait_answering
from tests.support.servers import free_port

CONFIG = """\
models:
  - name: local
    provider: local
memory:
  allocator: {allocator}
"""


def started_with(pid: int) -> str | None:
    """The PYTHONMALLOC process ``pid`` was (last) started with, ``+jemalloc`` and its
    MALLOC_CONF when jemalloc is mapped into it."""
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")

    def variable(name: bytes) -> str | None:
        found = [v for v in environ if v.startswith(name + b"=")]
        return found[0].split(b"=", 1)[1].decode() if found else None

    allocator = variable(b"PYTHONMALLOC")
    if b"libjemalloc" in Path(f"/proc/{pid}/maps").read_bytes():
        return f"{allocator}+jemalloc {variable(b'MALLOC_CONF')}"
    return allocator


def workers_of(pid: int) -> list[int]:
    """The worker processes ``pid`` spawned (multiprocessing's spawn, as uvicorn starts them)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in children
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()]


def allocator_of(tmp_path: Path, allocator: str, env: dict[str, str],
                 workers: int = 1) -> list[str | None]:
    """Serve with ``memory.allocator: <allocator>`` and the environment ``env``; once it
    answers, the PYTHONMALLOC its process (the one started, same pid) was last started with,
    then each of its workers'."""
    config = tmp_path / "gateway.yaml"
    config.write_text(CONFIG.format(allocator=allocator))
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "proxy", "serve", "--config", str(config),
                                "--port", str(port), "--workers", str(workers)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        wait_answering(process, f"http://127.0.0.1:{port}", 60)
        answer = httpx.post(f"http://127.0.0.1:{port}/v1/images/generations", timeout=60,
                            json={"model": "local", "prompt": "a red apple", "size": "256x256"})
        assert answer.status_code == 200
        while len(spawned := workers_of(process.pid)) < (workers if workers > 1 else 0):
            assert time.monotonic() < deadline, "not every worker started"
            time.sleep(0.1)
        return [started_with(process.pid), *(started_with(pid) for pid in spawned)]
    finally:
        process.terminate()
        process.wait(timeout=15)


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc")
def test_malloc_restarts_the_process_on_glibcs_allocator(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONMALLOC"}
    assert allocator_of(tmp_path, "malloc", env) == ["malloc"]


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc")
def test_pythonmalloc_in_the_environment_wins(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONMALLOC": "pymalloc"}
    assert allocator_of(tmp_path, "malloc", env) == ["pymalloc"]


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc")
def test_pymalloc_starts_once_as_it_is(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONMALLOC"}
    assert allocator_of(tmp_path, "pymalloc", env) == [None]


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc")
def test_workers_start_on_the_allocator_their_supervisor_does_not_restart(
        tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONMALLOC"}
    assert allocator_of(tmp_path, "malloc", env, workers=2) == [None, "malloc", "malloc"]


JEMALLOC = pytest.mark.skipif(jemalloc_library() is None, reason="needs Debian's libjemalloc2")


@JEMALLOC
def test_jemalloc_restarts_the_process_with_it_preloaded(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONMALLOC", "LD_PRELOAD", "MALLOC_CONF")}
    on_jemalloc = f"malloc+jemalloc {JEMALLOC_CONF}"  # its thread caches configured
    assert allocator_of(tmp_path, "jemalloc", env) == [on_jemalloc]
    assert allocator_of(tmp_path, "jemalloc", env, workers=2) == [None, on_jemalloc, on_jemalloc]


@JEMALLOC
def test_an_operators_malloc_conf_stands(tmp_path: Path) -> None:
    env = {**{k: v for k, v in os.environ.items() if k not in ("PYTHONMALLOC", "LD_PRELOAD")},
           "MALLOC_CONF": "narenas:2"}
    assert allocator_of(tmp_path, "jemalloc", env) == ["malloc+jemalloc narenas:2"]


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc")
def test_auto_is_jemalloc_where_the_system_has_it(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONMALLOC", "LD_PRELOAD", "MALLOC_CONF")}
    expected = [None] if jemalloc_library() is None else [f"malloc+jemalloc {JEMALLOC_CONF}"]
    assert allocator_of(tmp_path, "auto", env) == expected
