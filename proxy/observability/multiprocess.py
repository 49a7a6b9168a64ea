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
  stop counting it. Its counters stay: what it did was done.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from prometheus_client.multiprocess import mark_process_dead
from uvicorn import Config
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


def run_workers(config: Config) -> None:
    """Serve ``config`` (an import string, ``config.workers`` > 1) with metrics summed over
    the workers; returns when the server stopped."""
    directory, made_here = prepare_directory()
    try:
        sock = config.bind_socket()
        try:
            MetricsSupervisor(config, [sock], directory).run()
        except KeyboardInterrupt:  # before the supervisor took the signals over
            pass
        finally:
            sock.close()
    finally:
        if made_here:
            shutil.rmtree(directory, ignore_errors=True)
            os.environ.pop(ENV, None)
