"""Nonces: for the markers that stand in for lifted values inside a JSON skeleton while it is
parsed or serialised (``proxy.upstream.lifted``, ``proxy.upstream.pieces``,
``proxy.http.responses``), and for lease tokens (``proxy.fleet.leases``).

A marker must not be guessable by whoever wrote the JSON (an upstream could otherwise plant one)
and must be unique within the answer; a lease token must be unique in the fleet. A per-process
secret (never sent anywhere) followed by a counter is both, without ``secrets.token_hex``'s
system call each time (1.7 % of the gateway's event loop in a long-JSON burst: each call also
gives up the GIL).
"""

from __future__ import annotations

import itertools
import os
import secrets

_SECRET = secrets.token_hex(8)
_COUNTER = itertools.count()


def _reseed() -> None:
    """A forked child gets a secret of its own (its parent's counter would repeat)."""
    global _SECRET, _COUNTER
    _SECRET = secrets.token_hex(8)
    _COUNTER = itertools.count()


os.register_at_fork(after_in_child=_reseed)


def nonce() -> str:
    """A fresh nonce: the process's secret and a number not given out before."""
    return f"{_SECRET}{next(_COUNTER):x}"
