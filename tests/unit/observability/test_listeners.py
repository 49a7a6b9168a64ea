"""The listening sockets of ``serve --workers N`` (``proxy.observability.multiprocess``):
uvicorn's one shared socket by default; with ``server.reuse_port`` on Linux a socket per worker
on one port, the parent holding the port without listening (elsewhere, or where
``SO_REUSEPORT`` is refused, the shared socket)."""

from __future__ import annotations

import pickle
import socket
import sys

import pytest
from uvicorn import Config

from proxy.observability import multiprocess
from proxy.observability.multiprocess import WorkerListener, _listeners

LINUX = pytest.mark.skipif(not multiprocess.reuse_port_balances(), reason="Linux's SO_REUSEPORT")


def config(port: int = 0) -> Config:
    return Config("proxy.app:from_environment", host="127.0.0.1", port=port, workers=2)


@LINUX
def test_each_worker_gets_its_own_socket_on_the_port_the_parent_holds() -> None:
    anchor, given = _listeners(config(), True)
    try:
        port = anchor.getsockname()[1]
        assert port != 0
        assert len(given) == 1 and isinstance(given[0], WorkerListener)
        # What a worker unpickles is a socket of its own on that port; two can listen at once.
        first, second = (pickle.loads(pickle.dumps(given[0])) for _ in range(2))
        try:
            assert first.fileno() != second.fileno()
            assert first.getsockname()[1] == second.getsockname()[1] == port
            for sock in (first, second):
                sock.listen()
            # The parent's socket does not listen: a connection goes to a worker's.
            with socket.create_connection(("127.0.0.1", port), timeout=5):
                pass
        finally:
            first.close()
            second.close()
    finally:
        anchor.close()


@LINUX
def test_a_port_in_use_by_another_program_stops_the_start() -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        with pytest.raises(SystemExit):
            _listeners(config(taken.getsockname()[1]), True)
    finally:
        taken.close()


def test_without_reuse_port_the_workers_share_one_socket(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(multiprocess, "reuse_port_balances", lambda: False)
    sock, given = _listeners(config(), True)
    try:
        assert given == [sock] and isinstance(sock, socket.socket)
    finally:
        sock.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux")
def test_where_the_option_is_refused_the_workers_share_one_socket(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(family: int) -> socket.socket:
        raise PermissionError("SO_REUSEPORT refused")

    monkeypatch.setattr(multiprocess, "_reusable", refused)
    sock, given = _listeners(config(), True)
    try:
        assert given == [sock] and isinstance(sock, socket.socket)
    finally:
        sock.close()


def test_by_default_the_workers_share_one_socket() -> None:
    sock, given = _listeners(config(), False)
    try:
        assert given == [sock] and isinstance(sock, socket.socket)
    finally:
        sock.close()
