"""Metrics that add up under ``serve --workers N``.

Each worker is a process with its own counters; a scrape reaches whichever worker accepts the
connection. prometheus_client's multiprocess mode fixes that: every worker writes its values to
files in one directory, and ``/metrics`` reads them all (:mod:`proxy.observability.metrics`).
Here is the parent's part:

- the directory: ``PROMETHEUS_MULTIPROC_DIR`` when the operator set it (its ``*.db`` files are
  removed first: they belong to an earlier run), otherwise a fresh one under the temporary
  directory (``TMPDIR``), removed when the gateway stops. It is put in the environment before
  any worker starts, so each imports prometheus_client with it set;
- the workers: uvicorn's supervisor, which also marks every worker that exits (killed, crashed,
  or replaced on SIGHUP) dead, so the gauges of live workers (jobs in flight, open streams, ...)
  stop counting it. Its counters stay: what it did was done;
- the listening sockets: uvicorn's one shared socket, on which every worker waits in
  ``accept`` and whichever is awake takes what comes (16 keep-alive connections opened at once
  went all to one worker in some runs: ``scripts/bench``, ``--workers 2``, 1.01 + 0.00 cores);
  or, with ``server.reuse_port`` on Linux, one per worker on the same port (``SO_REUSEPORT``),
  the kernel spreading new connections over the workers by their addresses. The parent then
  binds the port without listening (it holds the port, a chosen one for port 0, and takes no
  connection); each worker binds its own as it starts (:class:`WorkerListener`), so a worker
  that exits takes its socket with it and new connections go to the others. Not the default:
  a worker that stops resets the connections still in its own accept queue (the shared
  socket's queue outlives any one worker), which a drain on SIGTERM must not do unless the
  kernel hands them on (``net.ipv4.tcp_migrate_req=1``).
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

from prometheus_client.multiprocess import mark_process_dead
from uvicorn import Config
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

ENV = "PROMETHEUS_MULTIPROC_DIR"

log = logging.getLogger("proxy.observability")


def clear_named_directory() -> Path | None:
    """The directory ``PROMETHEUS_MULTIPROC_DIR`` names (None when unset), made if missing and
    emptied of an earlier run's files. A single process that finds it set writes there too."""
    named = os.environ.get(ENV)
    if not named:
        return None
    path = Path(named)
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    return path


def prepare_directory() -> tuple[Path, bool]:
    """The directory the workers write their metrics to, set in ``PROMETHEUS_MULTIPROC_DIR``
    and empty; whether it was made here (and is to be removed at the end)."""
    named = clear_named_directory()
    if named is not None:
        return named, False
    path = Path(tempfile.mkdtemp(prefix="image-proxy-metrics-"))
    os.environ[ENV] = str(path)
    return path, True


class MetricsSupervisor(Multiprocess):
    """uvicorn's supervisor of worker processes; a worker that is gone is marked dead in the
    metrics directory."""

    def __init__(self, config: Config, sockets: list, directory: Path) -> None:
        super().__init__(config, sockets)
        self.directory = directory
        self._pids: set[int] = set()

    def _mark_gone(self) -> None:
        """Mark dead every worker seen before that is no longer among the running ones."""
        running = {p.pid for p in self.processes
                   if p.pid is not None and p.process.exitcode is None}
        for pid in self._pids - running:
            mark_process_dead(pid, str(self.directory))
        self._pids = running

    def init_processes(self) -> None:
        super().init_processes()
        self._mark_gone()

    def keep_subprocess_alive(self) -> None:
        super().keep_subprocess_alive()
        self._mark_gone()

    def handle_signals(self) -> None:  # SIGHUP replaces workers, SIGTTOU stops one
        super().handle_signals()
        self._mark_gone()

    def join_all(self) -> None:
        super().join_all()
        self._mark_gone()


def reuse_port_balances() -> bool:
    """Whether sockets bound with ``SO_REUSEPORT`` share their connections out here (Linux;
    elsewhere the option exists with other meanings, or not at all)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def _reusable(family: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    return sock


def worker_socket(family: int, host: str, port: int) -> socket.socket:
    """A worker's own socket on the shared port (bound; the server listens on it)."""
    sock = _reusable(family)
    try:
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


class WorkerListener:
    """What the supervisor hands each worker in place of a socket: pickled into the worker as
    it is spawned, it becomes that worker's own socket there (:func:`worker_socket`)."""

    def __init__(self, family: int, host: str, port: int) -> None:
        self.family, self.host, self.port = family, host, port

    def __reduce__(self) -> tuple[Any, tuple[int, str, int]]:
        return worker_socket, (self.family, self.host, self.port)


def _listeners(config: Config, reuse_port: bool) -> tuple[socket.socket, list[Any]]:
    """The socket the parent keeps (closed at the end) and what each worker is given."""
    if (not reuse_port or not reuse_port_balances() or config.uds is not None
            or config.fd is not None):
        sock = config.bind_socket()
        return sock, [sock]
    family = socket.AF_INET6 if config.host and ":" in config.host else socket.AF_INET
    try:
        anchor = _reusable(family)
    except OSError:  # the option refused here (some sandboxes): the shared socket, then
        sock = config.bind_socket()
        return sock, [sock]
    try:
        anchor.bind((config.host, config.port))  # not listening: no connection comes to it
    except OSError as exc:
        anchor.close()
        logging.getLogger("uvicorn.error").error(exc)
        sys.exit(STARTUP_FAILURE)
    port = anchor.getsockname()[1]
    where = f"[{config.host}]" if family == socket.AF_INET6 else config.host
    logging.getLogger("uvicorn.error").info(
        "Uvicorn running on http://%s:%d, a socket per worker (Press CTRL+C to quit)", where,
        port)
    return anchor, [WorkerListener(family, config.host, port)]


def run_workers(config: Config, *, reuse_port: bool = False) -> None:
    """Serve ``config`` (an import string, ``config.workers`` > 1) with metrics summed over
    the workers (a listening socket each with ``reuse_port``); returns when it stopped."""
    directory, made_here = prepare_directory()
    try:
        sock, given = _listeners(config, reuse_port)
        try:
            MetricsSupervisor(config, given, directory).run()
        except KeyboardInterrupt:  # before the supervisor took the signals over
            pass
        finally:
            sock.close()
    finally:
        if made_here:
            shutil.rmtree(directory, ignore_errors=True)
            os.environ.pop(ENV, None)
