"""Nonces: never the same twice, in a process or in a child it forks."""

from __future__ import annotations

import os

from proxy.core import nonces


def test_nonces_do_not_repeat_in_a_process_or_its_forked_child() -> None:
    mine = {nonces.nonce() for _ in range(1000)}
    assert len(mine) == 1000
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its nonces, to the parent
        os.close(read)
        os.write(write, "\n".join(nonces.nonce() for _ in range(1000)).encode())
        os._exit(0)
    os.close(write)
    mine |= {nonces.nonce() for _ in range(1000)}  # the parent goes on counting meanwhile
    with os.fdopen(read) as pipe:
        theirs = set(pipe.read().split("\n"))
    os.waitpid(pid, 0)
    assert len(theirs) == 1000
    assert not mine & theirs
